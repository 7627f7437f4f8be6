//! The store's cost claims, each measured against a baseline in the same run: durable append vs
//! raw write + fdatasync, 16 concurrent writers vs one, reading a plan and opening the store at
//! 1,000,000 events vs 1,000, and the peak memory of opening the large store.

use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use eventually::store::Expected;
use waypoint_application::domain::{
    Artifact, CheckpointId, DecisionId, EventId, Phase, PhaseStarted, PlanCreated, PlanEvent, PlanId, SnapshotId,
    StepCompleted, StepNumber,
};
use waypoint_application::RecordedEvent;
use waypoint_store_file::{inspect, AppendRequest, FileStore, StoreOptions};

const PEAK_ENV: &str = "WAYPOINT_BENCH_OPEN_PEAK";
/// Appends per writer in each paired round: long enough that start-up and the last stragglers
/// (when fewer than 16 writers are left to batch) weigh little.
const PAIRED_APPENDS: u32 = 256;

fn created() -> RecordedEvent {
    let now = chrono::Utc::now();
    let event = PlanEvent::PlanCreated(PlanCreated {
        name: None,
        total_steps: None,
        fingerprint: None,
        source: None,
        created_at: now,
        steps: vec![],
    });
    RecordedEvent { event_id: EventId::from_uuid(uuid::Uuid::new_v4()), recorded_at: now, event }
}

fn phase_started() -> RecordedEvent {
    let event = PlanEvent::PhaseStarted(PhaseStarted { phase: Phase::Strategize, runner: None, lease: None });
    RecordedEvent { event_id: EventId::from_uuid(uuid::Uuid::new_v4()), recorded_at: chrono::Utc::now(), event }
}

/// A typical checkpoint: a decision id, a snapshot digest and one artifact.
fn step_completed(step: u32) -> RecordedEvent {
    let event = PlanEvent::StepCompleted(StepCompleted {
        checkpoint_id: CheckpointId::from_uuid(uuid::Uuid::new_v4()),
        step: StepNumber::new(step).unwrap(),
        decision_id: DecisionId::parse(&format!("decision-{step}")).unwrap(),
        snapshot_id: Some(
            SnapshotId::parse("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08").unwrap(),
        ),
        artifacts: vec![Artifact::parse("build/output/report.json").unwrap()],
        name: None,
        output: None,
        fingerprint: None,
    });
    RecordedEvent { event_id: EventId::from_uuid(uuid::Uuid::new_v4()), recorded_at: chrono::Utc::now(), event }
}

/// The events of a plan, version 1 to `count`.
fn plan_events(from_version: u32, count: u32) -> Vec<RecordedEvent> {
    (from_version..from_version + count)
        .map(|v| match v {
            1 => created(),
            2 => phase_started(),
            v => step_completed(v - 2),
        })
        .collect()
}

fn bench_dir() -> tempfile::TempDir {
    // The build's scratch directory is on the same disk as the target dir, unlike a tmpfs /tmp.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// A store of `total` events: a 100-event `target` plan plus 10 filler plans sharing the rest,
/// so both sizes have the same plans and differ only in events. Written in bulk: one fdatasync
/// per 10,000 events, one checkpoint at the end.
fn build_store(dir: &Path, total: u32) {
    let options = StoreOptions { checkpoint_every: u32::MAX, ..StoreOptions::default() };
    let store = FileStore::open_with(dir, options).unwrap();
    let target = PlanId::parse("target").unwrap();
    store.append_events(&target, Expected::Exact(0), plan_events(1, 100)).unwrap();
    let fillers: Vec<PlanId> = (0..10).map(|i| PlanId::parse(&format!("filler-{i}")).unwrap()).collect();
    let per_filler = (total - 100) / 10;
    let chunk = 1000.min(per_filler);
    let mut written = 0;
    while written < per_filler {
        let n = chunk.min(per_filler - written);
        let requests = fillers
            .iter()
            .map(|id| AppendRequest {
                plan_id: id.clone(),
                expected: Expected::Exact(written),
                events: plan_events(written + 1, n),
            })
            .collect();
        for result in store.append_many(requests) {
            result.unwrap();
        }
        written += n;
    }
    store.checkpoint().unwrap();
}

/// The baseline's file: raw writes and fdatasyncs on the same disk as the store.
fn raw_log(dir: &tempfile::TempDir) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(dir.path().join("raw")).unwrap()
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Peak resident memory of a fresh process that opens `dir` and lists its catalog.
fn open_peak_kib(dir: &Path) -> u64 {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .env(PEAK_ENV, dir)
        .output()
        .expect("the peak-memory child runs");
    String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0)
}

/// Concurrent writers in one process, each appending to its own plan of one shared store.
struct Writers {
    _dir: tempfile::TempDir,
    store: FileStore,
    plans: Vec<PlanId>,
}

impl Writers {
    fn new(count: usize) -> Self {
        let dir = bench_dir();
        let store = FileStore::open(dir.path()).unwrap();
        let plans: Vec<PlanId> = (0..count).map(|i| PlanId::parse(&format!("writer-{i}")).unwrap()).collect();
        for id in &plans {
            store.append_events(id, Expected::Exact(0), plan_events(1, 2)).unwrap();
        }
        Writers { _dir: dir, store, plans }
    }

    /// Every writer appends `per_writer` checkpoints at once; returns the wall time per append.
    /// Events are built before the clock starts, as in the single-writer case.
    fn time_per_append(&self, per_writer: u32) -> Duration {
        let work: Vec<(PlanId, u32, Vec<RecordedEvent>)> = self
            .plans
            .iter()
            .map(|id| {
                let version = self.store.summary_view(id).unwrap().unwrap().version;
                (id.clone(), version, (0..per_writer).map(|i| step_completed(version - 1 + i)).collect())
            })
            .collect();
        let start = Instant::now();
        std::thread::scope(|scope| {
            for (id, mut version, events) in work {
                let store = self.store.clone();
                scope.spawn(move || {
                    for event in events {
                        version = store.append_events(&id, Expected::Exact(version), vec![event]).unwrap();
                    }
                });
            }
        });
        start.elapsed() / (per_writer * self.plans.len() as u32)
    }
}

fn append_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));

    let dir = bench_dir();
    let store = FileStore::open(dir.path()).unwrap();
    let plan = PlanId::parse("single").unwrap();
    store.append_events(&plan, Expected::Exact(0), plan_events(1, 2)).unwrap();
    let version = std::cell::Cell::new(2);
    group.bench_function("durable_step_completed", |b| {
        // The event is built outside the timing: this measures the store, not uuid generation.
        b.iter_batched(
            || step_completed(version.get() - 1),
            |event| version.set(store.append_events(&plan, Expected::Exact(version.get()), vec![event]).unwrap()),
            BatchSize::SmallInput,
        )
    });

    // The same bytes, written and fdatasync'd with nothing else: the floor for a durable append.
    let log_len = || std::fs::metadata(inspect::log_file(dir.path())).unwrap().len();
    let before = log_len();
    version.set(store.append_events(&plan, Expected::Exact(version.get()), vec![step_completed(1)]).unwrap());
    let record_len = log_len() - before;
    let raw_dir = bench_dir();
    let raw = raw_log(&raw_dir);
    let bytes = vec![0x5Au8; record_len as usize];
    let mut offset = 0u64;
    group.bench_function("raw_write_fdatasync", |b| {
        b.iter(|| {
            raw.write_all_at(&bytes, offset).unwrap();
            raw.sync_data().unwrap();
            offset += bytes.len() as u64;
        })
    });

    let writers = Writers::new(16);
    group.throughput(Throughput::Elements(1));
    group.bench_function("16_writers_per_append", |b| {
        b.iter_custom(|iters| {
            let per_writer = iters.div_ceil(writers.plans.len() as u64).max(1);
            // `iters` appends at the measured time per append, so the figure compares directly
            // with the single writer's.
            writers.time_per_append(per_writer as u32).mul_f64(iters as f64)
        })
    });
    group.finish();
}

fn scale_benches(c: &mut Criterion) {
    let small = bench_dir();
    let large = bench_dir();
    let started = Instant::now();
    build_store(small.path(), 1_000);
    build_store(large.path(), 1_000_000);
    eprintln!("built the 1,000 and 1,000,000-event stores in {:?}", started.elapsed());
    let small_peak = open_peak_kib(small.path());
    let large_peak = open_peak_kib(large.path());
    eprintln!("peak memory (VmHWM) of a process opening the store: 1,000 events {small_peak} KiB, 1,000,000 events {large_peak} KiB");

    let target = PlanId::parse("target").unwrap();
    let mut group = c.benchmark_group("scale");
    group.sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for (name, dir) in [("1k", &small), ("1m", &large)] {
        let store = FileStore::open_read_only(dir.path()).unwrap();
        group.bench_function(format!("read_plan_100_events/{name}"), |b| {
            b.iter(|| black_box(store.read_plan(&target, 1).unwrap()))
        });
        group.bench_function(format!("open/{name}"), |b| b.iter(|| black_box(FileStore::open(dir.path()).unwrap())));
        group.bench_function(format!("open_read_only/{name}"), |b| {
            b.iter(|| black_box(FileStore::open_read_only(dir.path()).unwrap()))
        });
    }
    group.finish();
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// The ratios the claims are about, from paired samples taken alternately in this run, so a
/// disk or a neighbour that speeds up or slows down affects both sides alike.
fn paired_ratios() {
    let dir = bench_dir();
    let store = FileStore::open(dir.path()).unwrap();
    let plan = PlanId::parse("paired").unwrap();
    let mut version = store.append_events(&plan, Expected::Exact(0), plan_events(1, 2)).unwrap();
    let raw_dir = bench_dir();
    let raw = raw_log(&raw_dir);
    let log_len = || std::fs::metadata(inspect::log_file(dir.path())).unwrap().len();
    let before = log_len();
    version = store.append_events(&plan, Expected::Exact(version), vec![step_completed(version - 1)]).unwrap();
    let record_len = log_len() - before;
    let bytes = vec![0x5Au8; record_len as usize];
    let (mut durable, mut baseline) = (Vec::new(), Vec::new());
    let mut offset = 0;
    for _ in 0..400 {
        let event = step_completed(version - 1);
        let start = Instant::now();
        version = store.append_events(&plan, Expected::Exact(version), vec![event]).unwrap();
        durable.push(start.elapsed());
        let start = Instant::now();
        raw.write_all_at(&bytes, offset).unwrap();
        raw.sync_data().unwrap();
        baseline.push(start.elapsed());
        offset += record_len;
    }
    let (durable, baseline) = (median(durable), median(baseline));
    eprintln!(
        "paired: durable append {durable:?} vs raw write + fdatasync of {record_len} bytes {baseline:?}: ratio {:.2}",
        durable.as_secs_f64() / baseline.as_secs_f64()
    );

    let writers = Writers::new(16);
    let (mut single, mut sixteen) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let events: Vec<_> = (0..PAIRED_APPENDS).map(|i| step_completed(version - 1 + i)).collect();
        let start = Instant::now();
        for event in events {
            version = store.append_events(&plan, Expected::Exact(version), vec![event]).unwrap();
        }
        single.push(start.elapsed() / PAIRED_APPENDS);
        sixteen.push(writers.time_per_append(PAIRED_APPENDS));
    }
    let (single, sixteen) = (median(single), median(sixteen));
    eprintln!(
        "paired: single writer {single:?} per append vs 16 writers {sixteen:?} per append: throughput ratio {:.2}",
        single.as_secs_f64() / sixteen.as_secs_f64()
    );
}

fn main() {
    if let Some(dir) = std::env::var_os(PEAK_ENV) {
        let store = FileStore::open(&dir).unwrap();
        black_box(store.catalog_snapshot().unwrap());
        println!("{}", vm_hwm_kib());
        return;
    }
    paired_ratios();
    let mut criterion = Criterion::default().configure_from_args();
    append_benches(&mut criterion);
    scale_benches(&mut criterion);
    criterion.final_summary();
}
