//! The PostgreSQL store's figures: a durable append and a durable workflow step, each against a
//! bare one-row `INSERT` committed in the same round trip (autocommit) on the same server in the
//! same run, and 16 writers against one. The server is the one `WAYPOINT_TEST_POSTGRES_URL`
//! names, or a throwaway cluster started like `cargo xtask test` starts one.

use std::str::FromStr;
use std::time::{Duration, Instant};

use eventually::store::Expected;
use waypoint_application::domain::{
    Artifact, CheckpointId, DecisionId, PlanEvent, PlanId, SnapshotId, StepCompleted, StepNumber,
};
use waypoint_application::{PlanResumeService, RecordedEvent};
use waypoint_store_postgres::testing::{find_server_binaries, TestCluster, TestDatabase, URL_VAR};
use waypoint_store_postgres::PostgresStore;

use super::{in_threads, median, millis, progress, recorded, Figure};

/// How many samples each figure takes.
struct Rounds {
    /// Paired (append, insert) samples.
    appends: usize,
    /// Workflows of the step figure, and the steps of each.
    workflows: usize,
    steps: u32,
    /// Appends of each writer in one round of the writers figure, and the rounds.
    writer_appends: u32,
    writer_rounds: usize,
}

const FULL: Rounds = Rounds { appends: 600, workflows: 10, steps: 50, writer_appends: 200, writer_rounds: 3 };
const QUICK: Rounds = Rounds { appends: 20, workflows: 1, steps: 10, writer_appends: 5, writer_rounds: 1 };

/// Where the figures are measured: the server `WAYPOINT_TEST_POSTGRES_URL` names, or a cluster of
/// our own, stopped and removed when this is dropped.
pub struct Server {
    cluster: Option<TestCluster>,
    described: String,
}

impl Server {
    /// The server to measure on, or why there is none.
    pub fn find() -> Result<Server, String> {
        if std::env::var(URL_VAR).is_ok_and(|url| !url.trim().is_empty()) {
            return Ok(Server { cluster: None, described: format!("the server {URL_VAR} names") });
        }
        let bin = find_server_binaries().map_err(|e| e.to_string())?;
        progress(&format!("starting a throwaway PostgreSQL with {}", bin.display()));
        let cluster = TestCluster::start(&bin)
            .map_err(|e| format!("cannot start a throwaway PostgreSQL with {}: {e}", bin.display()))?;
        let described = format!("a throwaway {} cluster", cluster.version());
        // The test databases are created on the server this variable names; nothing else runs
        // on another thread at this point of the bench.
        std::env::set_var(URL_VAR, cluster.url());
        Ok(Server { cluster: Some(cluster), described })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.cluster.take().is_some() {
            std::env::remove_var(URL_VAR);
        }
    }
}

/// The three figures, on `server`.
pub fn figures(server: &Server, quick: bool) -> Result<Vec<Figure>, String> {
    let rounds = if quick { QUICK } else { FULL };
    let database = TestDatabase::create("bench_pg");
    let store = PostgresStore::connect(database.url()).map_err(|e| e.to_string())?;
    let mut side = Side::new(database.url())?;
    let context = side.describe(&server.described)?;
    progress("measuring PostgreSQL appends against a bare commit");
    let append = append_vs_commit(&store, &mut side, rounds.appends, &context)?;
    progress("measuring a PostgreSQL workflow step against a bare commit");
    let step = step_vs_commit(&store, &mut side, &rounds, &context)?;
    progress("measuring 16 PostgreSQL writers against one");
    let writers = writers_vs_one(&store, database.url(), &side.bytes, &rounds)?;
    drop(store);
    Ok(vec![append, step, writers])
}

/// The baseline: a plain table in the same database, written over a connection of the same kind
/// (the same driver and URL) with the server's own `synchronous_commit`.
struct Side {
    client: postgres::Client,
    insert: postgres::Statement,
    bytes: Vec<u8>,
}

impl Side {
    fn new(url: &str) -> Result<Side, String> {
        let fail = |e: postgres::Error| format!("the bench's own connection: {e}");
        let mut client = postgres::Config::from_str(url).and_then(|c| c.connect(postgres::NoTls)).map_err(fail)?;
        client.batch_execute("CREATE TABLE IF NOT EXISTS bench_side (data bytea NOT NULL)").map_err(fail)?;
        let insert = client.prepare("INSERT INTO bench_side (data) VALUES ($1)").map_err(fail)?;
        Ok(Side { client, insert, bytes: Vec::new() })
    }

    /// One round trip: the insert and its commit, which waits for the WAL flush.
    fn commit(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        self.client.execute(&self.insert, &[&self.bytes]).map_err(|e| format!("the bare insert: {e}"))?;
        Ok(started.elapsed())
    }

    /// Sizes the baseline's row like a stored `StepCompleted` (written once, through a store of
    /// its own), and says what the server is and what one round trip costs there.
    fn describe(&mut self, server: &str) -> Result<String, String> {
        let fail = |e: postgres::Error| format!("the bench's own connection: {e}");
        let database: String = self.client.query_one("SELECT current_database()", &[]).map_err(fail)?.get(0);
        let probe = TestDatabase::create("bench_pg_row");
        let store = PostgresStore::connect(probe.url()).map_err(|e| e.to_string())?;
        let plan = PlanId::parse("row").expect("valid");
        store.append_events(&plan, Expected::Exact(0), vec![step_completed(1)]).map_err(|e| e.to_string())?;
        drop(store);
        let mut probe_client =
            postgres::Config::from_str(probe.url()).and_then(|c| c.connect(postgres::NoTls)).map_err(fail)?;
        let row_bytes: i32 =
            probe_client.query_one("SELECT pg_column_size(e.*) FROM waypoint_events e", &[]).map_err(fail)?.get(0);
        drop(probe_client);
        self.bytes = vec![0x5A; row_bytes.max(1) as usize];
        let mut round_trips = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            self.client.batch_execute("SELECT 1").map_err(fail)?;
            round_trips.push(started.elapsed());
        }
        let setting = |client: &mut postgres::Client, name: &str| -> Result<String, String> {
            Ok(client.query_one(&format!("SHOW {name}"), &[]).map_err(fail)?.get(0))
        };
        Ok(format!(
            "{server} (database {database}, synchronous_commit={}, fsync={}); one round trip (SELECT 1) {:.3} ms; \
             the bare commit inserts {row_bytes} bytes, the size of one stored StepCompleted row",
            setting(&mut self.client, "synchronous_commit")?,
            setting(&mut self.client, "fsync")?,
            millis(median(round_trips)),
        ))
    }
}

/// A typical checkpoint: a decision id, a snapshot digest and one artifact.
fn step_completed(step: u32) -> RecordedEvent {
    recorded(PlanEvent::StepCompleted(StepCompleted {
        checkpoint_id: CheckpointId::from_uuid(uuid::Uuid::new_v4()),
        step: StepNumber::new(step.max(1)).expect("positive"),
        decision_id: DecisionId::parse(&format!("decision-{step}")).expect("valid"),
        snapshot_id: Some(
            SnapshotId::parse("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
                .expect("valid"),
        ),
        artifacts: vec![Artifact::parse("build/output/report.json").expect("valid")],
        name: None,
        output: None,
        fingerprint: None,
    }))
}

/// A plan `name` created and started: appends to it are checkpoints of a running plan.
fn new_plan(store: &PostgresStore, name: &str) -> Result<(PlanId, u32), String> {
    let plan = PlanId::parse(name).map_err(|e| e.to_string())?;
    let version = store
        .append_events(&plan, Expected::Exact(0), super::plan_events(1, 2, None, false))
        .map_err(|e| e.to_string())?;
    Ok((plan, version))
}

/// Samples left out before the ones kept: connections, prepared statements and caches warm up.
const WARM_UP: usize = 10;

/// A durable append of one `StepCompleted` through the store vs a bare insert and commit,
/// alternating, median of each.
fn append_vs_commit(store: &PostgresStore, side: &mut Side, samples: usize, context: &str) -> Result<Figure, String> {
    let (plan, mut version) = new_plan(store, "append")?;
    let (mut appends, mut commits) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for sample in 0..WARM_UP + samples {
        // The event is built before the clock starts: this measures the store, not uuid generation.
        let event = step_completed(version);
        let started = Instant::now();
        version = store.append_events(&plan, Expected::Exact(version), vec![event]).map_err(|e| e.to_string())?;
        let append = started.elapsed();
        let commit = side.commit()?;
        if sample >= WARM_UP {
            appends.push(append);
            commits.push(commit);
        }
    }
    let (ours, baseline) = (median(appends), median(commits));
    let ratio = ours.as_secs_f64() / baseline.as_secs_f64();
    Ok(Figure {
        name: "pg durable append vs bare commit",
        measured: millis(ours),
        baseline: Some(millis(baseline)),
        unit: "ms",
        value: ratio,
        goal: "<= 1.3",
        met: ratio <= 1.3,
        how: format!(
            "median of {samples} single-event appends (a typical StepCompleted) to one plan through PostgresStore vs a \
             one-row INSERT committed in the same round trip (autocommit), alternating; {context}"
        ),
    })
}

/// A durable step of the Rust workflow API (its start and its completion recorded) vs a bare
/// insert and commit, alternating, median of each.
fn step_vs_commit(store: &PostgresStore, side: &mut Side, rounds: &Rounds, context: &str) -> Result<Figure, String> {
    let service = PlanResumeService::new(store.clone());
    let (mut steps, mut commits) = (Vec::new(), Vec::new());
    for workflow in 0..rounds.workflows {
        let key = PlanId::parse(&format!("workflow-{workflow}")).map_err(|e| e.to_string())?;
        futures::executor::block_on(async {
            let mut run = service.workflow(&key).await.map_err(|e| e.to_string())?;
            for n in 0..rounds.steps {
                let started = Instant::now();
                let _: serde_json::Value = run
                    .step(&format!("s{n}"), |_| async move { Ok::<_, String>(serde_json::json!({ "n": n })) })
                    .await
                    .map_err(|e| e.to_string())?;
                let step = started.elapsed();
                let commit = side.commit()?;
                // The first steps of the first workflow warm the connections up.
                if workflow > 0 || n as usize >= WARM_UP.min(rounds.steps as usize / 2) {
                    steps.push(step);
                    commits.push(commit);
                }
            }
            run.finish().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        })?;
    }
    let samples = steps.len();
    let (ours, baseline) = (median(steps), median(commits));
    let ratio = ours.as_secs_f64() / baseline.as_secs_f64();
    Ok(Figure {
        name: "pg workflow step vs bare commit",
        measured: millis(ours),
        baseline: Some(millis(baseline)),
        unit: "ms",
        value: ratio,
        goal: "<= 2.6",
        met: ratio <= 2.6,
        how: format!(
            "median of {samples} steps ({} workflows of {} steps, `Workflow::step` returning {{\"n\": n}}: its start and \
             its completion recorded, under the run lock) vs the bare commit, alternating; {context}",
            rounds.workflows, rounds.steps
        ),
    })
}

/// Appends per second of 16 threads, each appending single checkpoints to its own plan through
/// one store (its pool of connections), vs one thread; paired rounds, median of each.
fn writers_vs_one(store: &PostgresStore, url: &str, row: &[u8], rounds: &Rounds) -> Result<Figure, String> {
    let appends = rounds.writer_appends;
    let rate = |writers: u32, round: usize| -> Result<f64, String> {
        let plans = (0..writers)
            .map(|w| new_plan(store, &format!("writer-{writers}-{w}-{round}")))
            .collect::<Result<Vec<_>, _>>()?;
        let work: Vec<_> = plans
            .into_iter()
            .map(|(plan, version)| {
                let events: Vec<_> = (0..appends).map(|i| step_completed(version - 1 + i)).collect();
                (plan, version, events)
            })
            .collect();
        let started = Instant::now();
        in_threads(work, |(plan, mut version, events)| {
            for event in events {
                version =
                    store.append_events(&plan, Expected::Exact(version), vec![event]).map_err(|e| e.to_string())?;
            }
            Ok(())
        })?;
        Ok(f64::from(writers * appends) / started.elapsed().as_secs_f64())
    };
    // A round of 16 first, untimed: the pool opens its connections.
    rate(16, usize::MAX)?;
    let (one, many) = super::paired_writer_rates(rounds.writer_rounds, rate)?;
    let ratio = many / one;
    let ceiling = bare_writers_vs_one(url, row, rounds)?;
    Ok(Figure {
        name: "pg 16 writers vs one, throughput",
        measured: many,
        baseline: Some(one),
        unit: "appends/s",
        value: ratio,
        goal: ">= 6",
        met: ratio >= 6.0,
        how: format!(
            "16 threads appending {appends} single events each to their own plan through one PostgresStore vs one \
             thread, median of {} paired rounds; the machine's ceiling, measured the same way: 16 connections each \
             committing bare one-row INSERTs reach {ceiling:.2} times one",
            rounds.writer_rounds
        ),
    })
}

/// Commits per second of 16 connections, each committing bare one-row inserts of `row` (the
/// append figure's baseline), vs one: what 16 writers can reach on this server and machine
/// whatever they write, since every commit's work shares the same cores.
fn bare_writers_vs_one(url: &str, row: &[u8], rounds: &Rounds) -> Result<f64, String> {
    let commits = rounds.writer_appends;
    let sides = (0..16)
        .map(|_| Side::new(url).map(|side| Side { bytes: row.to_vec(), ..side }))
        .collect::<Result<Vec<_>, _>>()?;
    let sides: Vec<_> = sides.into_iter().map(std::sync::Mutex::new).collect();
    let rate = |writers: u32, _round: usize| -> Result<f64, String> {
        let started = Instant::now();
        in_threads(&sides[..writers as usize], |side| {
            let mut side = side.lock().map_err(|_| "a writer panicked".to_owned())?;
            (0..commits).try_for_each(|_| side.commit().map(drop))
        })?;
        Ok(f64::from(writers * commits) / started.elapsed().as_secs_f64())
    };
    rate(16, usize::MAX)?;
    let (one, many) = super::paired_writer_rates(rounds.writer_rounds, rate)?;
    Ok(many / one)
}
