//! The PostgreSQL store's cost claims, each measured against a baseline in the same run on the
//! same server: a durable append vs a bare one-row `INSERT` (autocommit) of the same bytes, 16
//! writers on 16 plans vs one writer, a single-plan command in a store of 100,000 plans vs one of
//! 10, and listing 10,000 resumable plans. Every figure is also printed as a "paired" ratio from
//! alternating samples, because the 2-core machines it runs on are noisy.
//!
//! Uses the server named by `WAYPOINT_TEST_POSTGRES_URL` when set, otherwise starts a throwaway
//! cluster and removes it at the end. `WAYPOINT_BENCH_QUICK=1` shrinks every size (a smoke test).

use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use eventually::store::Expected;
use futures::executor::block_on;
use waypoint_application::{PlanResumeService, RecordedEvent, ResumeRequest, StepCheckpoint};
use waypoint_domain::{
    Artifact, CheckpointId, DecisionId, EventId, Interrupted, Message, Phase, PhaseStarted, PlanCreated, PlanEvent,
    PlanId, SnapshotId, StepCompleted, StepNumber, StepStarted,
};
use waypoint_store_postgres::testing::{find_server_binaries, TestCluster, TestDatabase, URL_VAR};
use waypoint_store_postgres::PostgresStore;

const QUICK_ENV: &str = "WAYPOINT_BENCH_QUICK";
/// Events of each filler plan: created, phase started, four steps started and completed, then
/// interrupted, so every filler is resumable.
const FILLER_STEPS: u32 = 4;
/// Checkpoints the measured plan records in a phase before it moves to the other phase, so its
/// state (every checkpoint of the phase) stays the same size however long the bench runs.
const CHECKPOINTS_PER_PHASE: u32 = 20;
/// Threads appending while a store is built.
const BUILDERS: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Sizes {
    quick: bool,
    large_plans: u32,
    small_plans: u32,
    list_plans: u32,
    paired_samples: usize,
    writer_appends: u32,
    writer_rounds: usize,
}

impl Sizes {
    fn from_env() -> Sizes {
        let quick = std::env::var(QUICK_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        if quick {
            Sizes {
                quick,
                large_plans: 2_000,
                small_plans: 10,
                list_plans: 500,
                paired_samples: 30,
                writer_appends: 16,
                writer_rounds: 2,
            }
        } else {
            Sizes {
                quick,
                large_plans: 100_000,
                small_plans: 10,
                list_plans: 10_000,
                paired_samples: 300,
                writer_appends: 128,
                writer_rounds: 5,
            }
        }
    }

    /// Criterion's sampling for one group: `samples` samples over `seconds`, much shorter in
    /// quick mode.
    fn configure(&self, group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, seconds: u64) {
        if self.quick {
            group.sample_size(10).warm_up_time(Duration::from_millis(100)).measurement_time(Duration::from_millis(300));
        } else {
            group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(seconds));
        }
    }
}

// ---- synthetic events ----

fn recorded(event: PlanEvent) -> RecordedEvent {
    RecordedEvent { event_id: EventId::from_uuid(uuid::Uuid::new_v4()), recorded_at: chrono::Utc::now(), event }
}

fn created() -> RecordedEvent {
    recorded(PlanEvent::PlanCreated(PlanCreated {
        name: None,
        total_steps: None,
        fingerprint: None,
        source: None,
        created_at: chrono::Utc::now(),
        steps: vec![],
    }))
}

fn phase_started() -> RecordedEvent {
    recorded(PlanEvent::PhaseStarted(PhaseStarted { phase: Phase::Strategize, runner: None, lease: None }))
}

fn step_started(step: u32) -> RecordedEvent {
    recorded(PlanEvent::StepStarted(StepStarted {
        step: StepNumber::new(step).unwrap(),
        decision_id: DecisionId::parse(&format!("decision-{step}")).unwrap(),
        name: None,
        attempt: None,
        lease: None,
    }))
}

fn snapshot() -> SnapshotId {
    SnapshotId::parse("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08").unwrap()
}

/// A typical checkpoint: a decision id, a snapshot digest and one artifact.
fn step_completed(step: u32) -> RecordedEvent {
    recorded(PlanEvent::StepCompleted(StepCompleted {
        checkpoint_id: CheckpointId::from_uuid(uuid::Uuid::new_v4()),
        step: StepNumber::new(step).unwrap(),
        decision_id: DecisionId::parse(&format!("decision-{step}")).unwrap(),
        snapshot_id: Some(snapshot()),
        artifacts: vec![Artifact::parse("build/output/report.json").unwrap()],
        name: None,
        output: None,
        fingerprint: None,
    }))
}

/// A resumable plan: created, started, `FILLER_STEPS` steps done, then interrupted.
fn filler_events() -> Vec<RecordedEvent> {
    let mut events = vec![created(), phase_started()];
    for step in 1..=FILLER_STEPS {
        events.push(step_started(step));
        events.push(step_completed(step));
    }
    events.push(recorded(PlanEvent::Interrupted(Interrupted {
        reason: Message::parse("deploy").unwrap(),
        at: chrono::Utc::now(),
    })));
    events
}

// ---- the server and its databases ----

/// The server the bench runs on; a cluster of its own unless `WAYPOINT_TEST_POSTGRES_URL` is set.
struct Server {
    cluster: Option<TestCluster>,
}

impl Server {
    fn start() -> Server {
        if std::env::var(URL_VAR).is_ok_and(|v| !v.trim().is_empty()) {
            eprintln!("using the server in {URL_VAR}");
            return Server { cluster: None };
        }
        let bin = find_server_binaries().expect("PostgreSQL server binaries (or set WAYPOINT_TEST_POSTGRES_URL)");
        let cluster = TestCluster::start(&bin).expect("a throwaway PostgreSQL cluster starts");
        eprintln!("started a throwaway cluster ({}) in {}", cluster.version(), cluster.dir().display());
        // No other thread runs yet; test support reads the server from this variable.
        std::env::set_var(URL_VAR, cluster.url());
        Server { cluster: Some(cluster) }
    }
}

fn client(url: &str) -> postgres::Client {
    postgres::Config::from_str(url).and_then(|c| c.connect(postgres::NoTls)).expect("connects to the bench server")
}

/// `url` with the session setting `synchronous_commit=off`: only for building stores, whose
/// commits need not wait for the disk.
fn unsynchronised(url: &str) -> String {
    if url.contains("://") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}options=-c%20synchronous_commit%3Doff")
    } else {
        format!("{url} options='-c synchronous_commit=off'")
    }
}

/// A fresh database with `fillers` resumable plans (`filler-N`) and, if `target`, a plan `target`
/// in strategize, processing, with no checkpoint yet. The fillers are appended by a few
/// threads through the store itself (so they are in its own format), with commits that do not
/// wait for the disk; then the tables are vacuumed and analysed.
fn build_database(label: &str, fillers: u32, target: bool) -> (TestDatabase, PostgresStore) {
    let database = TestDatabase::create(label);
    let url = database.url().to_owned();
    let builder = PostgresStore::connect(&unsynchronised(&url)).expect("the builder connects");
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..BUILDERS {
            let store = builder.reconnect().unwrap();
            scope.spawn(move || {
                for i in (thread as u32..fillers).step_by(BUILDERS) {
                    let id = PlanId::parse(&format!("filler-{i}")).unwrap();
                    store.append_events(&id, Expected::Exact(0), filler_events()).unwrap();
                }
            });
        }
    });
    if target {
        let id = PlanId::parse("target").unwrap();
        builder.append_events(&id, Expected::Exact(0), vec![created(), phase_started()]).unwrap();
    }
    drop(builder);
    // A checkpoint now, so the build's dirty pages are not still being written out (and
    // competing for the disk) while the figures are taken.
    let mut admin = client(&url);
    admin.batch_execute("VACUUM ANALYZE").unwrap();
    admin.batch_execute("CHECKPOINT").unwrap();
    eprintln!("built {label}: {fillers} plans in {:.1?}", started.elapsed());
    // The measured store connects after the build, as a process opening an existing store would.
    let store = PostgresStore::connect(&url).expect("the store connects");
    (database, store)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

// ---- 1. a durable append vs a bare INSERT of the same bytes ----

/// One store and, in the same database, a plain table written over the same kind of connection
/// (`postgres` crate, no TLS, same URL) with the server's own `synchronous_commit`.
struct AppendPair {
    _database: TestDatabase,
    store: PostgresStore,
    plan: PlanId,
    version: u32,
    raw: postgres::Client,
    insert: postgres::Statement,
    bytes: Vec<u8>,
}

impl AppendPair {
    fn new() -> AppendPair {
        let database = TestDatabase::create("bench_append");
        let store = PostgresStore::connect(database.url()).unwrap();
        let plan = PlanId::parse("single").unwrap();
        let version = store.append_events(&plan, Expected::Exact(0), vec![created(), phase_started()]).unwrap();
        let version = store.append_events(&plan, Expected::Exact(version), vec![step_completed(1)]).unwrap();
        let mut raw = client(database.url());
        // The stored row of one typical checkpoint, header and every column included.
        let row_bytes: i32 = raw
            .query_one("SELECT pg_column_size(e.*) FROM waypoint_events e ORDER BY position DESC LIMIT 1", &[])
            .unwrap()
            .get(0);
        let setting = |raw: &mut postgres::Client, name: &str| -> String {
            raw.query_one(&format!("SHOW {name}"), &[]).unwrap().get(0)
        };
        eprintln!(
            "server: synchronous_commit={}, fsync={}, wal_sync_method={}; one StepCompleted row is {row_bytes} bytes",
            setting(&mut raw, "synchronous_commit"),
            setting(&mut raw, "fsync"),
            setting(&mut raw, "wal_sync_method"),
        );
        raw.batch_execute("CREATE TABLE bench_raw (data bytea NOT NULL)").unwrap();
        let insert = raw.prepare("INSERT INTO bench_raw (data) VALUES ($1)").unwrap();
        let bytes = vec![0x5A; row_bytes as usize];
        AppendPair { _database: database, store, plan, version, raw, insert, bytes }
    }

    fn next_event(&self) -> RecordedEvent {
        step_completed(self.version - 1)
    }

    fn append(&mut self, event: RecordedEvent) {
        self.version = self.store.append_events(&self.plan, Expected::Exact(self.version), vec![event]).unwrap();
    }

    /// One round trip: the insert and its commit (autocommit), waiting for the WAL flush as the
    /// server's `synchronous_commit` says.
    fn insert(&mut self) {
        self.raw.execute(&self.insert, &[&self.bytes]).unwrap();
    }
}

// ---- 2. 16 writers vs one ----

/// Concurrent writers, each on its own plan with its own store handle (its own connections), as
/// 16 processes would be.
struct Writers {
    writers: Vec<(PostgresStore, PlanId, u32)>,
}

impl Writers {
    fn new(store: &PostgresStore, count: usize) -> Writers {
        let writers = (0..count)
            .map(|i| {
                let handle = store.reconnect().unwrap();
                let id = PlanId::parse(&format!("writer-{i}")).unwrap();
                let version = handle.append_events(&id, Expected::Exact(0), vec![created(), phase_started()]).unwrap();
                (handle, id, version)
            })
            .collect();
        Writers { writers }
    }

    /// Every writer appends `per_writer` checkpoints at once; returns the wall time per append.
    /// Events are built before the clock starts, as in the single-writer case.
    fn time_per_append(&mut self, per_writer: u32) -> Duration {
        let work: Vec<_> = self
            .writers
            .iter_mut()
            .map(|(store, id, version)| {
                let events: Vec<_> = (0..per_writer).map(|i| step_completed(*version - 1 + i)).collect();
                (store, id, version, events)
            })
            .collect();
        let start = Instant::now();
        std::thread::scope(|scope| {
            for (store, id, version, events) in work {
                scope.spawn(move || {
                    for event in events {
                        *version = store.append_events(id, Expected::Exact(*version), vec![event]).unwrap();
                    }
                });
            }
        });
        start.elapsed() / (per_writer * self.writers.len() as u32)
    }
}

/// One writer appending `count` checkpoints in a row; the wall time per append.
fn single_writer_per_append(pair: &mut AppendPair, count: u32) -> Duration {
    let events: Vec<_> = (0..count).map(|i| step_completed(pair.version - 1 + i)).collect();
    let start = Instant::now();
    for event in events {
        pair.append(event);
    }
    start.elapsed() / count
}

fn append_benches(c: &mut Criterion, sizes: Sizes) {
    let mut pair = AppendPair::new();
    let (mut durable, mut baseline, mut round_trip) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..sizes.paired_samples {
        let event = pair.next_event();
        let start = Instant::now();
        pair.append(event);
        durable.push(start.elapsed());
        let start = Instant::now();
        pair.insert();
        baseline.push(start.elapsed());
        // Not a baseline: what one round trip costs, to tell round trips from disk waits.
        let start = Instant::now();
        pair.raw.batch_execute("SELECT 1").unwrap();
        round_trip.push(start.elapsed());
    }
    let (durable, baseline, round_trip) = (median(durable), median(baseline), median(round_trip));
    eprintln!(
        "paired: durable append {durable:?} vs INSERT + COMMIT of {} bytes {baseline:?}: ratio {:.2} (goal <= 1.3); \
         one round trip (SELECT 1) {round_trip:?}",
        pair.bytes.len(),
        ratio(durable, baseline)
    );

    let mut writers = Writers::new(&pair.store, 16);
    let (mut single, mut sixteen) = (Vec::new(), Vec::new());
    for _ in 0..sizes.writer_rounds {
        single.push(single_writer_per_append(&mut pair, sizes.writer_appends));
        sixteen.push(writers.time_per_append(sizes.writer_appends));
    }
    let (single, sixteen) = (median(single), median(sixteen));
    eprintln!(
        "paired: single writer {single:?} per append vs 16 writers {sixteen:?} per append: throughput ratio {:.2} (goal >= 6)",
        ratio(single, sixteen)
    );

    let mut group = c.benchmark_group("append");
    sizes.configure(&mut group, 4);
    let pair = std::cell::RefCell::new(pair);
    group.bench_function("durable_step_completed", |b| {
        // The event is built outside the timing: this measures the store, not uuid generation.
        b.iter_batched(|| pair.borrow().next_event(), |event| pair.borrow_mut().append(event), BatchSize::SmallInput)
    });
    group.bench_function("insert_commit_same_bytes", |b| b.iter(|| pair.borrow_mut().insert()));
    group.throughput(Throughput::Elements(1));
    group.bench_function("16_writers_per_append", |b| {
        b.iter_custom(|iters| {
            let per_writer = iters.div_ceil(16).max(1);
            writers.time_per_append(per_writer as u32).mul_f64(iters as f64)
        })
    });
    group.finish();
}

// ---- 3. a single-plan command at 100,000 plans vs 10 ----

/// The measured plan of one store, and what it needs to go on recording checkpoints for as long
/// as the bench wants: after `CHECKPOINTS_PER_PHASE` it completes the phase and enters the other
/// one (untimed), which starts a fresh list of checkpoints.
struct Target {
    service: PlanResumeService<PostgresStore>,
    id: PlanId,
    phase: Phase,
    next_step: u32,
}

impl Target {
    fn new(store: PostgresStore) -> Target {
        Target {
            service: PlanResumeService::new(store),
            id: PlanId::parse("target").unwrap(),
            phase: Phase::Strategize,
            next_step: 1,
        }
    }

    fn dry_run(&self) -> Duration {
        let request = ResumeRequest { dry_run: true, ..ResumeRequest::default() };
        let start = Instant::now();
        black_box(block_on(self.service.resume_plan(&self.id, request)).unwrap());
        start.elapsed()
    }

    fn checkpoint(&mut self) -> Duration {
        if self.next_step > CHECKPOINTS_PER_PHASE {
            block_on(self.service.complete_phase(&self.id)).unwrap();
            self.phase = if self.phase == Phase::Strategize { Phase::Execute } else { Phase::Strategize };
            block_on(self.service.start_phase(&self.id, self.phase, None)).unwrap();
            self.next_step = 1;
        }
        let step = self.next_step;
        let checkpoint = StepCheckpoint {
            snapshot_id: Some(snapshot()),
            artifacts: vec![Artifact::parse("build/output/report.json").unwrap()],
            ..StepCheckpoint::new(
                StepNumber::new(step).unwrap(),
                DecisionId::parse(&format!("decision-{step}")).unwrap(),
            )
        };
        let start = Instant::now();
        let recorded = block_on(self.service.record_step_checkpoint(&self.id, checkpoint)).unwrap();
        let elapsed = start.elapsed();
        assert!(recorded.appended);
        self.next_step += 1;
        elapsed
    }
}

fn scale_benches(c: &mut Criterion, sizes: Sizes) {
    let started = Instant::now();
    let (_small_db, small_store) = build_database("bench_small", sizes.small_plans, true);
    let (_large_db, large_store) = build_database("bench_large", sizes.large_plans, true);
    eprintln!("built the {} and {}-plan stores in {:.1?}", sizes.small_plans, sizes.large_plans, started.elapsed());
    let mut small = Target::new(small_store);
    let mut large = Target::new(large_store);
    let (mut small_dry, mut large_dry, mut small_cp, mut large_cp) = (vec![], vec![], vec![], vec![]);
    for sample in 0..sizes.paired_samples {
        // Which store goes first alternates, so neither always follows the other's commit.
        if sample % 2 == 0 {
            small_dry.push(small.dry_run());
            large_dry.push(large.dry_run());
            small_cp.push(small.checkpoint());
            large_cp.push(large.checkpoint());
        } else {
            large_dry.push(large.dry_run());
            small_dry.push(small.dry_run());
            large_cp.push(large.checkpoint());
            small_cp.push(small.checkpoint());
        }
    }
    let (small_dry, large_dry) = (median(small_dry), median(large_dry));
    let (small_cp, large_cp) = (median(small_cp), median(large_cp));
    eprintln!(
        "paired: resume --dry-run at {} plans {large_dry:?} vs {} plans {small_dry:?}: ratio {:.2} (goal <= 1.5)",
        sizes.large_plans,
        sizes.small_plans,
        ratio(large_dry, small_dry)
    );
    eprintln!(
        "paired: record_step_checkpoint at {} plans {large_cp:?} vs {} plans {small_cp:?}: ratio {:.2} (goal <= 1.5)",
        sizes.large_plans,
        sizes.small_plans,
        ratio(large_cp, small_cp)
    );

    let mut group = c.benchmark_group("scale");
    sizes.configure(&mut group, 3);
    for (name, target) in [(sizes.small_plans, &mut small), (sizes.large_plans, &mut large)] {
        group.bench_function(format!("resume_dry_run/{name}_plans"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| target.dry_run()).sum())
        });
        group.bench_function(format!("record_step_checkpoint/{name}_plans"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| target.checkpoint()).sum())
        });
    }
    group.finish();
}

// ---- 4. listing resumable plans ----

fn list_benches(c: &mut Criterion, sizes: Sizes) {
    let (database, store) = build_database("bench_list", sizes.list_plans, false);
    // Where the time goes: the catalog query alone, then the store's read (query and decoding).
    let mut raw = client(database.url());
    let query: Vec<Duration> = (0..10)
        .map(|_| {
            let start = Instant::now();
            black_box(raw.query("SELECT view FROM waypoint_plans WHERE view IS NOT NULL", &[]).unwrap());
            start.elapsed()
        })
        .collect();
    let read: Vec<Duration> = (0..10)
        .map(|_| {
            let start = Instant::now();
            black_box(store.catalog_views().unwrap());
            start.elapsed()
        })
        .collect();
    let bytes: i64 = raw.query_one("SELECT sum(octet_length(view))::bigint FROM waypoint_plans", &[]).unwrap().get(0);
    let query = median(query);
    eprintln!(
        "of which: the catalog query {:.1} ms ({bytes} bytes of views), the store's catalog read with decoding {:.1} ms",
        query.as_secs_f64() * 1e3,
        median(read).as_secs_f64() * 1e3
    );
    let service = PlanResumeService::new(store);
    let list = || {
        let start = Instant::now();
        let listed = block_on(service.list_resumable()).unwrap();
        let elapsed = start.elapsed();
        assert_eq!(listed.len(), sizes.list_plans as usize, "every filler plan is resumable");
        elapsed
    };
    let runs: Vec<Duration> = (0..sizes.paired_samples.min(30)).map(|_| list()).collect();
    let listing = median(runs);
    eprintln!(
        "list_resumable over {} resumable plans: median {:.1} ms (goal <= 100 ms); {:.2} times the catalog query alone",
        sizes.list_plans,
        listing.as_secs_f64() * 1e3,
        ratio(listing, query)
    );
    let mut group = c.benchmark_group("list");
    sizes.configure(&mut group, 4);
    group.bench_function(format!("list_resumable/{}_plans", sizes.list_plans), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| list()).sum())
    });
    group.finish();
}

fn main() {
    let sizes = Sizes::from_env();
    if sizes.quick {
        eprintln!("{QUICK_ENV} is set: small sizes, figures for a smoke test only");
    }
    let server = Server::start();
    let mut criterion = Criterion::default().configure_from_args();
    append_benches(&mut criterion, sizes);
    scale_benches(&mut criterion, sizes);
    list_benches(&mut criterion, sizes);
    criterion.final_summary();
    // Every database was dropped with its benchmark; now the cluster goes.
    drop(server.cluster);
}
