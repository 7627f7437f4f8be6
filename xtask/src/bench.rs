//! `cargo xtask bench`: builds synthetic stores and measures Waypoint's speed and memory claims,
//! each figure against a baseline measured in the same run (these machines are noisy, so only
//! ratios travel). `--quick` uses small sizes and only proves that every figure is produced.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use eventually::store::Expected;
use serde::Serialize;
use waypoint_application::domain::{
    Artifact, CheckpointId, DecisionId, EventId, Interrupted, Message, Phase, PhaseStarted, PlanCancelled, PlanCreated,
    PlanEvent, PlanId, SnapshotId, StepCompleted, StepNumber, StepStarted, TotalSteps,
};
use waypoint_application::{Catalog, PlanResumeService, RecordedEvent};
use waypoint_store_file::record::{self, FILE_HEADER};
use waypoint_store_file::storage::{OsStorage, Storage};
use waypoint_store_file::{inspect, AppendRequest, FileStore, StoreOptions};

mod bare_commit;
mod pg;
mod scale;
mod traces;
mod ui;
mod workers;

const USAGE: &str =
    "usage: cargo xtask bench [--quick] [--keep] [--plans N --events M] [--only retention|python|ui|traces|runner|postgres|workers|replay|list|single|appends|scale [--store DIR]] [--format rich|json]

Builds synthetic stores in a scratch directory under target/ and prints each figure as a ratio to
a baseline measured in the same run. The full run rebuilds itself in release mode and takes a few
minutes; --quick uses small sizes (a smoke test: it proves every figure is produced); --keep leaves
the synthetic stores in place for a look with `waypoint` or `cargo xtask replay`; --plans and
--events size the large store (100,000 plans and 10,000,000 events by default); --only retention
builds the large store and measures retention alone (it always runs last: it compacts that store).
The full run (not --quick) ends with a durable step from Python vs one from Rust on the same file
store, which builds the Python wheel with maturin into a throwaway virtualenv (maturin must be
installed in python3 or $WAYPOINT_PYTHON); --only python measures that alone (with --quick, a
smoke run of it on a dev build); --only ui builds the large store and measures the dashboard's page
of 50 and its memory alone; --only traces measures a traced plan-file step against an untraced
one alone; --only runner measures the plan-file runner's overhead per `true` step alone. The
PostgreSQL figures (a durable append and a workflow step against a bare commit, 16 writers against
one) run on the server WAYPOINT_TEST_POSTGRES_URL names, or on a throwaway cluster started with
the server binaries `cargo xtask test` finds; without either the full run says they were not
measured, and --only postgres (those figures alone) fails. The workers figures (plans/s of 1, 2
and 4 `waypoint worker --once` processes, 100 plans of 5 steps, 10 with --quick) need a throwaway
PostgreSQL server (its binaries as `cargo xtask test` finds them): the full run says why they were
not measured when there are none, --only workers fails; both also measure the file store, and a
queue's poll beside 10,000 open plans of others. --only replay builds the large store and measures
replay's throughput and peak memory alone, or with --store DIR measures them over an existing
store instead (one kept with --keep). --only list builds the two listing stores and measures
`plan list --resumable` over them alone; --only single builds the large store and measures the
single-plan commands against a one-plan store, right after a checkpoint and just before one;
--only appends measures the file store's durable append and its 16 writers alone; --only scale
builds stores of 100,000 and 1,000,000 plans (1,000 and 10,000 with --quick) and measures a whole
`plan list` of every plan (time and peak memory) and replay's peak memory over both alone.";

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    /// Every figure (the quick run leaves out the Python one, which needs maturin).
    All,
    /// The large store and retention.
    Retention,
    /// A durable step from Python vs from Rust.
    Python,
    /// The large store and the dashboard's page of 50.
    Ui,
    /// A traced plan-file step vs an untraced one.
    Traces,
    /// The plan-file runner's overhead per `true` step.
    Runner,
    /// The PostgreSQL store's appends, workflow step and writers.
    Postgres,
    /// Workers' throughput and a queue's poll.
    Workers,
    /// The large store's replay: throughput and peak memory.
    Replay,
    /// `plan list --resumable` over the listing stores.
    List,
    /// The large store's single-plan commands, after a checkpoint and just before one.
    Single,
    /// The file store's durable append and its 16 writers.
    Appends,
    /// The listing and replay at 1,000,000 plans against 100,000.
    Scale,
}

/// How big the synthetic stores are.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Plans in the large store: the long and the short plan, resumable fillers, finished fillers.
    large_plans: u32,
    /// Resumable (interrupted) filler plans in the large store; the other fillers are finished.
    resumable_plans: u32,
    /// Events in the large store (the replay, memory and single-plan figures).
    large_events: u32,
    /// Events of the long plan in the large store (the resume figure).
    long_plan_events: u32,
    /// Plans in the listing stores (small and large).
    list_plans: (u32, u32),
    /// Process runs per timed command; the median is reported.
    runs: usize,
    /// Steps of the long plan-file plan (against one of [`SHORT_PLAN_FILE`] steps).
    plan_file_steps: u32,
    /// Appends per latency sample set.
    appends: usize,
    /// Steps of `true` in the plan file whose per-step overhead is measured.
    runner_steps: u32,
    /// Appends of each writer in the 16-writer figure.
    writer_appends: u32,
    /// Steps of each workflow in the Python vs Rust figure.
    workflow_steps: u32,
}

const FULL: Sizes = Sizes {
    large_plans: 100_000,
    resumable_plans: 10_000,
    large_events: 10_000_000,
    long_plan_events: 100_000,
    list_plans: (1_000, 10_000),
    runs: 15,
    plan_file_steps: 10_000,
    appends: 300,
    runner_steps: 1_000,
    writer_appends: 200,
    workflow_steps: 500,
};
const QUICK: Sizes = Sizes {
    large_plans: 300,
    resumable_plans: 100,
    large_events: 20_000,
    long_plan_events: 1_000,
    list_plans: (10, 100),
    runs: 3,
    plan_file_steps: 100,
    appends: 20,
    runner_steps: 20,
    writer_appends: 10,
    workflow_steps: 20,
};
/// Events of the short plan the long one is compared with.
const SHORT_PLAN_EVENTS: u32 = 10;
/// Events of each plan in the listing stores.
const LIST_PLAN_EVENTS: u32 = 10;

/// One measured figure.
#[derive(Debug, Serialize)]
struct Figure {
    name: &'static str,
    measured: f64,
    baseline: Option<f64>,
    unit: &'static str,
    /// `measured / baseline`, or `measured` itself for absolute goals.
    value: f64,
    goal: &'static str,
    met: bool,
    how: String,
}

impl Figure {
    /// A time against a baseline time of the same run, whose goal is at most 1.5 times it: the
    /// goal of every "costs what the small case costs" figure.
    fn within_half_again(name: &'static str, measured: Duration, baseline: Duration, how: String) -> Self {
        let ratio = measured.as_secs_f64() / baseline.as_secs_f64();
        Figure {
            name,
            measured: millis(measured),
            baseline: Some(millis(baseline)),
            unit: "ms",
            value: ratio,
            goal: "<= 1.5",
            met: ratio <= 1.5,
            how,
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    quick: bool,
    sizes: SizesReport,
    figures: Vec<Figure>,
}

#[derive(Debug, Serialize)]
struct SizesReport {
    large_store_plans: u32,
    large_store_events: u64,
    long_plan_events: u32,
    list_plans: (u32, u32),
}

pub fn main(root: &Path, args: &[String]) -> ExitCode {
    let mut quick = false;
    let mut json = false;
    let mut keep = false;
    let mut plans = None;
    let mut events = None;
    let mut only = Only::All;
    let mut reuse = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            // Internal: the memory probe runs in a fresh process of this binary.
            "--probe-memory" => return probe_memory(it.next(), it.next()),
            "--quick" => quick = true,
            "--keep" => keep = true,
            "--plans" => match it.next().and_then(|n| n.parse::<u32>().ok()).filter(|&n| n >= 1_000) {
                Some(n) => plans = Some(n),
                None => return usage_error("--plans takes a number of at least 1000"),
            },
            "--events" => match it.next().and_then(|n| n.parse::<u32>().ok()) {
                Some(n) => events = Some(n),
                None => return usage_error("--events takes a number"),
            },
            "--only" => {
                match it.next().map(String::as_str) {
                    Some("retention") => only = Only::Retention,
                    Some("python") => only = Only::Python,
                    Some("ui") => only = Only::Ui,
                    Some("traces") => only = Only::Traces,
                    Some("runner") => only = Only::Runner,
                    Some("postgres") => only = Only::Postgres,
                    Some("workers") => only = Only::Workers,
                    Some("replay") => only = Only::Replay,
                    Some("list") => only = Only::List,
                    Some("single") => only = Only::Single,
                    Some("appends") => only = Only::Appends,
                    Some("scale") => only = Only::Scale,
                    _ => return usage_error(
                        "--only takes retention, python, ui, traces, runner, postgres, workers, replay, list, single, \
                         appends or scale",
                    ),
                }
            }
            "--store" => match it.next() {
                Some(dir) => reuse = Some(PathBuf::from(dir)),
                None => return usage_error("--store takes a store's directory"),
            },
            "--format" => match it.next().map(String::as_str) {
                Some("json") => json = true,
                Some("rich") => json = false,
                _ => return usage_error("--format takes rich or json"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unexpected argument {other:?}")),
        }
    }
    // Speed figures from an unoptimised build would measure the compiler, not the code.
    if !quick && cfg!(debug_assertions) {
        eprintln!("bench: rebuilding in release mode");
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["run", "--quiet", "--release", "-p", "xtask", "--", "bench"])
            .args(args)
            .current_dir(root)
            .status();
        return match status {
            Ok(s) if s.success() => ExitCode::SUCCESS,
            Ok(s) => ExitCode::from(s.code().unwrap_or(1) as u8),
            Err(e) => {
                eprintln!("error: cannot run cargo: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if reuse.is_some() && only != Only::Replay {
        return usage_error("--store goes with --only replay");
    }
    let mut sizes = if quick { QUICK } else { FULL };
    sizes.large_plans = plans.unwrap_or(sizes.large_plans);
    sizes.large_events = events.unwrap_or(sizes.large_events);
    sizes.resumable_plans = sizes.resumable_plans.min((sizes.large_plans - 2) / 2);
    if u64::from(sizes.large_events) < u64::from(sizes.long_plan_events) + 4 * u64::from(sizes.large_plans) {
        return usage_error("--events must leave at least four events for each plan besides the long one");
    }
    match run(root, sizes, quick, keep, only, reuse.as_deref()) {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
            } else {
                print_table(&report);
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}\n\n{USAGE}");
    ExitCode::from(2)
}

/// Removes the scratch directory however the bench ends, unless asked to keep it.
struct Scratch(PathBuf, bool);

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.1 {
            eprintln!("bench: kept the stores in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn run(root: &Path, sizes: Sizes, quick: bool, keep: bool, only: Only, reuse: Option<&Path>) -> Result<Report, String> {
    // Under target/: the same disk as the build, unlike a tmpfs /tmp, so fsync costs are real.
    let scratch = Scratch(root.join("target").join(format!("xtask-bench-{}", std::process::id())), keep);
    std::fs::create_dir_all(&scratch.0).map_err(|e| format!("cannot create {}: {e}", scratch.0.display()))?;
    let mut figures = Vec::new();
    let report = |figures, large_events| Report {
        quick,
        sizes: SizesReport {
            large_store_plans: sizes.large_plans,
            large_store_events: large_events,
            long_plan_events: sizes.long_plan_events,
            list_plans: sizes.list_plans,
        },
        figures,
    };
    if only == Only::Python {
        figures.push(python_step_cost(root, &scratch.0, sizes.workflow_steps, quick)?);
        return Ok(report(figures, 0));
    }
    if only == Only::Postgres {
        let server = pg::Server::find().map_err(|e| format!("no PostgreSQL server to measure on: {e}"))?;
        figures.extend(pg::figures(&server, quick)?);
        return Ok(report(figures, 0));
    }
    if only == Only::Appends {
        figures.push(append_latency(&scratch.0.join("append"), sizes.appends)?);
        figures.push(writers_throughput(&scratch.0.join("writers"), sizes.writer_appends)?);
        return Ok(report(figures, 0));
    }
    if only == Only::Replay {
        // Replay needs no `waypoint` binary: only the large store, or the one named.
        let large = match reuse {
            Some(dir) => dir.to_path_buf(),
            None => {
                progress("building the large store");
                let large = scratch.0.join("large");
                build_large_store(&large, sizes)?;
                large
            }
        };
        let (throughput, events) = replay_throughput(&large)?;
        figures.push(throughput);
        figures.push(replay_peak_memory(&large)?);
        return Ok(report(figures, events));
    }
    let waypoint = build_waypoint(root, quick)?;
    if only == Only::Traces {
        figures.push(traces::trace_overhead(
            &waypoint,
            &scratch.0.join("traces"),
            sizes.runner_steps,
            sizes.runs.min(traces::MAX_ROUNDS),
        )?);
        return Ok(report(figures, 0));
    }
    if only == Only::Runner {
        figures.push(runner_overhead(&waypoint, &scratch.0.join("runner"), sizes.runner_steps)?);
        return Ok(report(figures, 0));
    }
    if only == Only::Workers {
        figures.extend(workers::figures(&waypoint, &scratch.0.join("workers"), quick, true)?);
        return Ok(report(figures, 0));
    }
    if only == Only::List {
        figures.extend(listing(&waypoint, &scratch.0, sizes)?);
        return Ok(report(figures, 0));
    }
    if only == Only::Scale {
        figures.extend(scale::figures(&waypoint, &scratch.0, sizes, quick)?);
        return Ok(report(figures, 0));
    }

    progress("building the large store");
    let large = scratch.0.join("large");
    let started = Instant::now();
    let (large_events, per_filler) = build_large_store(&large, sizes)?;
    let built_in = started.elapsed();
    progress(&format!("built {large_events} events in {:.1} s", built_in.as_secs_f64()));
    if only == Only::Ui {
        figures.extend(ui::page_of_50(&waypoint, &large, &scratch.0, sizes)?);
        return Ok(report(figures, large_events));
    }
    if only == Only::Single {
        let one = scratch.0.join("one");
        build_one_plan_store(&one)?;
        figures.extend(single_plan_commands(&waypoint, &large, &one, sizes)?);
        figures.extend(worst_point_of_cycle(&waypoint, &large, &one, sizes)?);
        return Ok(report(figures, large_events));
    }
    if only == Only::All {
        other_figures(&waypoint, &scratch.0, &large, sizes, &mut figures)?;
        figures.extend(workers::figures(&waypoint, &scratch.0.join("workers"), quick, false)?);
        figures.extend(scale::figures(&waypoint, &scratch.0, sizes, quick)?);
    }
    // Last of the store's figures: it removes the finished plans of the large store.
    progress("measuring retention");
    let build = (large_events, built_in);
    figures.extend(retention(&waypoint, &large, &scratch.0.join("archive"), sizes, per_filler, build)?);
    if only == Only::All {
        match pg::Server::find() {
            Ok(server) => figures.extend(pg::figures(&server, quick)?),
            Err(why) => progress(&format!("the PostgreSQL figures were not measured: {why}")),
        }
    }
    if only == Only::All && !quick {
        figures.push(python_step_cost(root, &scratch.0, sizes.workflow_steps, quick)?);
    }
    Ok(report(figures, large_events))
}

/// Rounds of the Python vs Rust figure: a Rust workflow, then a Python one, each round. The disk's
/// speed drifts with the machine's load, so each round's two sides are compared with each other
/// and the median of those ratios is the figure.
const WORKFLOW_ROUNDS: usize = 7;

/// One workflow of `steps` steps in Python, timed by the script itself (its loop only).
const PYTHON_STEPS: &str = r#"
import json, sys, time
import waypoint

store = waypoint.open(sys.argv[1])
steps = int(sys.argv[3])

def value(n):
    return {"n": n}

with store.workflow(sys.argv[2]) as run:
    started = time.perf_counter()
    for n in range(steps):
        run.step(f"s{n}", value, n)
    elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed}))
"#;

/// A durable step through the Python package's `run.step` against one through the Rust
/// workflow API's `Workflow::step`, on the same file store in the same run: what the Python
/// face adds to the engine (the GIL released and taken back, the output converted, the call).
fn python_step_cost(root: &Path, scratch: &Path, steps: u32, quick: bool) -> Result<Figure, String> {
    progress("building the Python wheel with maturin into a throwaway virtualenv");
    let profile = if quick { "dev" } else { "release" };
    let venv = crate::python::Venv::with_wheel(root, profile)?;
    let script = venv.scratch("steps.py");
    std::fs::write(&script, PYTHON_STEPS).map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    let store = scratch.join("workflows");
    progress("measuring a durable step from Python and from Rust");
    let (mut python, mut rust, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..WORKFLOW_ROUNDS {
        let rust_step = rust_steps(&store, &format!("rust-{round}"), steps)? / steps;
        let output = Command::new(venv.python())
            .arg(&script)
            .arg(&store)
            .arg(format!("python-{round}"))
            .arg(steps.to_string())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", venv.python().display()))?;
        if !output.status.success() {
            return Err(format!("the Python steps failed: {}", String::from_utf8_lossy(&output.stderr)));
        }
        let doc: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
        let seconds = doc["seconds"].as_f64().ok_or("the Python steps printed no time")?;
        let python_step = Duration::from_secs_f64(seconds) / steps;
        ratios.push(python_step.as_secs_f64() / rust_step.as_secs_f64());
        python.push(python_step);
        rust.push(rust_step);
    }
    let (python, rust) = (median(python), median(rust));
    let ratio = median_f64(ratios);
    Ok(Figure {
        name: "durable step, Python vs Rust",
        measured: millis(python),
        baseline: Some(millis(rust)),
        unit: "ms",
        value: ratio,
        goal: "<= 1.25",
        met: ratio <= 1.25,
        how: format!(
            "per step of a {steps}-step workflow, `run.step` from Python (wheel built with --profile {profile}, {} bytes) vs \
             `Workflow::step` from Rust, each returning {{\"n\": n}}, on the same file store; {WORKFLOW_ROUNDS} rounds of one Rust then one Python workflow, median per-step times, and the median of the rounds' ratios as the value",
            venv.wheel_bytes()
        ),
    })
}

/// The time `steps` steps of one Rust workflow take on the file store at `dir`.
fn rust_steps(dir: &Path, key: &str, steps: u32) -> Result<Duration, String> {
    let service = PlanResumeService::new(FileStore::open(dir).map_err(|e| e.to_string())?);
    let key = PlanId::parse(key).map_err(|e| e.to_string())?;
    futures::executor::block_on(async {
        let mut run = service.workflow(&key).await.map_err(|e| e.to_string())?;
        let started = Instant::now();
        for n in 0..steps {
            let _: serde_json::Value = run
                .step(&format!("s{n}"), |_| async move { Ok::<_, String>(serde_json::json!({ "n": n })) })
                .await
                .map_err(|e| e.to_string())?;
        }
        let elapsed = started.elapsed();
        run.finish().await.map_err(|e| e.to_string())?;
        Ok(elapsed)
    })
}

/// Every figure but retention's, in the order they are reported.
fn other_figures(
    waypoint: &Path,
    scratch: &Path,
    large: &Path,
    sizes: Sizes,
    figures: &mut Vec<Figure>,
) -> Result<(), String> {
    let one = scratch.join("one");
    build_one_plan_store(&one)?;
    figures.push(replay_throughput(large)?.0);
    figures.push(replay_peak_memory(large)?);
    figures.push(resume_dry_run(waypoint, large, sizes.runs)?);
    figures.push(open_peak_memory(large, &one)?);

    figures.extend(listing(waypoint, scratch, sizes)?);
    figures.extend(list_at_scale(waypoint, large, &scratch.join("list-large"), sizes)?);
    figures.extend(single_plan_commands(waypoint, large, &one, sizes)?);
    figures.extend(ui::page_of_50(waypoint, large, scratch, sizes)?);
    figures.extend(worst_point_of_cycle(waypoint, large, &one, sizes)?);

    progress("measuring durable appends");
    figures.push(append_latency(&scratch.join("append"), sizes.appends)?);
    figures.push(writers_throughput(&scratch.join("writers"), sizes.writer_appends)?);

    progress("measuring the runner's overhead per step");
    figures.push(runner_overhead(waypoint, &scratch.join("runner"), sizes.runner_steps)?);
    figures.extend(long_plan_file(waypoint, &scratch.join("long-plan-file"), sizes.plan_file_steps, sizes.runs)?);
    figures.push(traces::trace_overhead(
        waypoint,
        &scratch.join("traces"),
        sizes.runner_steps,
        sizes.runs.min(traces::MAX_ROUNDS),
    )?);

    Ok(())
}

fn progress(what: &str) {
    eprintln!("bench: {what}");
}

/// Builds the `waypoint` binary in the profile this bench runs in and returns its path.
fn build_waypoint(root: &Path, quick: bool) -> Result<PathBuf, String> {
    let release = !cfg!(debug_assertions) && !quick;
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.args(["build", "--quiet", "-p", "waypoint-cli", "--bins"]).current_dir(root);
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("`cargo build -p waypoint-cli` failed".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join(if release { "release" } else { "debug" }).join("waypoint"))
}

// ---- synthetic events ----

fn recorded(event: PlanEvent) -> RecordedEvent {
    RecordedEvent { event_id: EventId::from_uuid(uuid::Uuid::new_v4()), recorded_at: Utc::now(), event }
}

/// Version `v` of a plan whose steps run one after another: created, phase started, then
/// alternating step started / step completed. `total` is given at creation when known.
fn plan_event(v: u32, total: Option<u32>) -> RecordedEvent {
    let step = |n: u32| StepNumber::new(n).expect("steps count from 1");
    recorded(match v {
        1 => PlanEvent::PlanCreated(PlanCreated {
            name: None,
            total_steps: total.map(|t| TotalSteps::new(t).expect("a positive total")),
            fingerprint: None,
            source: None,
            created_at: Utc::now(),
            steps: vec![],
        }),
        2 => PlanEvent::PhaseStarted(PhaseStarted { phase: Phase::Strategize, runner: None, lease: None }),
        v if v % 2 == 1 => PlanEvent::StepStarted(StepStarted {
            step: step((v - 1) / 2),
            decision_id: DecisionId::parse(&format!("decision-{}", (v - 1) / 2)).expect("valid"),
            name: None,
            attempt: None,
            lease: None,
        }),
        v => PlanEvent::StepCompleted(StepCompleted {
            checkpoint_id: CheckpointId::from_uuid(uuid::Uuid::new_v4()),
            step: step((v - 2) / 2),
            decision_id: DecisionId::parse(&format!("decision-{}", (v - 2) / 2)).expect("valid"),
            snapshot_id: Some(
                SnapshotId::parse("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
                    .expect("valid"),
            ),
            artifacts: vec![Artifact::parse("build/output/report.json").expect("valid")],
            name: None,
            output: None,
            fingerprint: None,
        }),
    })
}

fn interrupted() -> RecordedEvent {
    recorded(PlanEvent::Interrupted(Interrupted { reason: Message::parse("deploy").expect("valid"), at: Utc::now() }))
}

/// `count` events of a plan from version `from`, then an interruption if `interrupt` (so the
/// plan is resumable).
fn plan_events(from: u32, count: u32, total: Option<u32>, interrupt: bool) -> Vec<RecordedEvent> {
    let mut events: Vec<RecordedEvent> = (from..from + count).map(|v| plan_event(v, total)).collect();
    if interrupt {
        events.push(interrupted());
    }
    events
}

fn bulk_store(dir: &Path) -> Result<FileStore, String> {
    // One checkpoint at the end instead of one per thousand records: the build is not measured.
    let options = StoreOptions { checkpoint_every: u32::MAX, ..StoreOptions::default() };
    FileStore::open_with(dir, options).map_err(|e| e.to_string())
}

fn append_all(store: &FileStore, requests: Vec<AppendRequest>) -> Result<(), String> {
    store.append_many(requests).into_iter().try_for_each(|r| r.map(drop).map_err(|e| e.to_string()))
}

/// The large store: a long plan, a short plan (both interrupted), `resumable_plans` interrupted
/// filler plans and finished (cancelled) ones up to `large_plans`, `large_events` events in all,
/// written in bulk through `append_many`. Returns the events written and the events of each filler.
fn build_large_store(dir: &Path, sizes: Sizes) -> Result<(u64, u32), String> {
    let store = bulk_store(dir)?;
    let long = PlanId::parse("long").expect("valid");
    let mut written = 0;
    while written < sizes.long_plan_events {
        let n = 10_000.min(sizes.long_plan_events - written);
        let last = written + n == sizes.long_plan_events;
        let request = AppendRequest {
            plan_id: long.clone(),
            expected: Expected::Exact(written),
            events: plan_events(written + 1, n, None, last),
        };
        append_all(&store, vec![request])?;
        written += n;
    }
    let short = PlanId::parse("short").expect("valid");
    let request = AppendRequest {
        plan_id: short,
        expected: Expected::Exact(0),
        events: plan_events(1, SHORT_PLAN_EVENTS, None, true),
    };
    append_all(&store, vec![request])?;
    let mut total = u64::from(sizes.long_plan_events) + u64::from(SHORT_PLAN_EVENTS) + 2;
    let fillers = sizes.large_plans - 2;
    let per_filler = ((u64::from(sizes.large_events) - total) / u64::from(fillers)).max(4) as u32;
    for batch in (0..fillers).collect::<Vec<_>>().chunks(1_000) {
        let requests = batch
            .iter()
            .map(|&i| {
                let resumable = i < sizes.resumable_plans;
                // Resumable fillers end interrupted; the others are cancelled: finished.
                let mut events = plan_events(1, per_filler - 1, None, resumable);
                if !resumable {
                    events.push(recorded(PlanEvent::PlanCancelled(PlanCancelled { reason: None })));
                }
                without_snapshots(&mut events);
                AppendRequest {
                    plan_id: PlanId::parse(&format!("filler-{i}")).expect("valid"),
                    expected: Expected::Exact(0),
                    events,
                }
            })
            .collect::<Vec<_>>();
        total += requests.iter().map(|r| r.events.len() as u64).sum::<u64>();
        append_all(&store, requests)?;
    }
    store.checkpoint().map_err(|e| e.to_string())?;
    Ok((total, per_filler))
}

/// The CLI re-checks `sha256:` snapshots of recorded outputs, which do not exist here: these
/// checkpoints name none, so interrupted plans are resumable and listed.
fn without_snapshots(events: &mut [RecordedEvent]) {
    for recorded in events {
        if let PlanEvent::StepCompleted(checkpoint) = &mut recorded.event {
            checkpoint.snapshot_id = None;
            checkpoint.artifacts.clear();
        }
    }
}

/// The baseline of the single-plan figures: a store holding one plan of ten events.
fn build_one_plan_store(dir: &Path) -> Result<(), String> {
    let store = bulk_store(dir)?;
    let request = AppendRequest {
        plan_id: PlanId::parse("short").expect("valid"),
        expected: Expected::Exact(0),
        events: plan_events(1, SHORT_PLAN_EVENTS, None, true),
    };
    append_all(&store, vec![request])
}

/// `plans` interrupted plans of ten events each: every one of them is resumable.
fn build_list_store(dir: &Path, plans: u32) -> Result<(), String> {
    let store = bulk_store(dir)?;
    let steps = (LIST_PLAN_EVENTS - 2) / 2 + 2;
    for batch in (0..plans).collect::<Vec<_>>().chunks(1_000) {
        let requests = batch
            .iter()
            .map(|i| {
                let mut events = plan_events(1, LIST_PLAN_EVENTS, Some(steps), true);
                without_snapshots(&mut events);
                AppendRequest {
                    plan_id: PlanId::parse(&format!("plan-{i}")).expect("valid"),
                    expected: Expected::Exact(0),
                    events,
                }
            })
            .collect();
        append_all(&store, requests)?;
    }
    store.checkpoint().map_err(|e| e.to_string())
}

// ---- figures ----

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The median of rates or ratios (the upper one of an even count, as [`median`]).
fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Throughput of one writer and of 16, in `rounds` paired rounds (one, then 16, alternating, so
/// drift in the disk's speed hits both alike), the median of each. `rate(writers, round)`
/// measures one round.
fn paired_writer_rates(
    rounds: usize,
    mut rate: impl FnMut(u32, usize) -> Result<f64, String>,
) -> Result<(f64, f64), String> {
    let (mut single, mut sixteen) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        single.push(rate(1, round)?);
        sixteen.push(rate(16, round)?);
    }
    Ok((median_f64(single), median_f64(sixteen)))
}

/// Runs `job` on each item of `work`, each on its own thread, all at once; the first error (or a
/// panic) of any.
fn in_threads<T: Send>(
    work: impl IntoIterator<Item = T>,
    job: impl Fn(T) -> Result<(), String> + Sync,
) -> Result<(), String> {
    std::thread::scope(|scope| {
        let job = &job;
        let handles: Vec<_> = work.into_iter().map(|item| scope.spawn(move || job(item))).collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| "a writer panicked".to_owned())?)
    })
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Rounds of the replay figure: a replay, then the baseline's parse, each round. Other builds
/// share the machine, so each round's two sides are compared with each other and the median of
/// those ratios is the figure.
const REPLAY_ROUNDS: usize = 3;

/// Replay (CRC-checked, decoded, folded into the catalog) vs serde_json parsing the same records'
/// data bytes, already in memory, into `serde_json::Value`s.
/// Returns the figure and the number of events replayed.
fn replay_throughput(store: &Path) -> Result<(Figure, u64), String> {
    progress("measuring replay throughput");
    let data = record_data(store)?;
    let (mut replay_rates, mut parse_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut events = 0u64;
    for _ in 0..REPLAY_ROUNDS {
        let started = Instant::now();
        let mut catalog = Catalog::default();
        events = 0;
        for located in inspect::events(store).map_err(|e| e.to_string())? {
            let located = located.map_err(|e| e.to_string())?;
            catalog.apply(&located.event);
            events += 1;
        }
        let replay = started.elapsed();
        std::hint::black_box(&catalog);
        drop(catalog);

        let started = Instant::now();
        for bytes in &data {
            let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            std::hint::black_box(value);
        }
        let parse = started.elapsed();
        let replay_rate = events as f64 / replay.as_secs_f64();
        let parse_rate = data.len() as f64 / parse.as_secs_f64();
        ratios.push(replay_rate / parse_rate);
        replay_rates.push(replay_rate);
        parse_rates.push(parse_rate);
    }
    let ratio = median_f64(ratios);
    let figure = Figure {
        name: "replay throughput",
        measured: median_f64(replay_rates),
        baseline: Some(median_f64(parse_rates)),
        unit: "events/s",
        value: ratio,
        goal: ">= 1.0",
        met: ratio >= 1.0,
        how: format!(
            "{events} events read, CRC-checked, decoded and folded into the catalog vs serde_json::Value parsing of \
             their data bytes from memory; {REPLAY_ROUNDS} rounds of one replay then one parse, median rates, and the \
             median of the rounds' ratios as the value"
        ),
    };
    Ok((figure, events))
}

/// Every record's data bytes, read outside any timing.
fn record_data(store: &Path) -> Result<Vec<Vec<u8>>, String> {
    let bytes = std::fs::read(inspect::log_file(store)).map_err(|e| e.to_string())?;
    let mut rest = &bytes[FILE_HEADER.len()..];
    let mut data = Vec::new();
    while !rest.is_empty() {
        let (raw, len) = record::decode(rest).map_err(|e| e.to_string())?;
        data.push(raw.data);
        rest = &rest[len..];
    }
    Ok(data)
}

/// Peak resident memory of `xtask replay` over the large store, as a separate process.
fn replay_peak_memory(store: &Path) -> Result<Figure, String> {
    progress("measuring replay peak memory");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = Command::new(exe)
        .args(["replay", "--format", "json", "--store"])
        .arg(store)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("xtask replay failed: {}", String::from_utf8_lossy(&output.stdout)));
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    let bytes = report["peak_rss_bytes"].as_u64().ok_or("xtask replay reported no peak memory")?;
    let events = report["events"].as_u64().unwrap_or(0);
    let mib = bytes as f64 / (1024.0 * 1024.0);
    Ok(Figure {
        name: "replay peak memory",
        measured: mib,
        baseline: None,
        unit: "MiB",
        value: mib,
        goal: "<= 64 MiB",
        met: mib <= 64.0,
        how: format!("VmHWM of `xtask replay` over {events} events"),
    })
}

/// Median wall time of `waypoint ARGS` run `runs` times (plus one warm-up run).
fn time_process(waypoint: &Path, args: &[&str], runs: usize) -> Result<Duration, String> {
    let mut samples = Vec::with_capacity(runs);
    for i in 0..=runs {
        let elapsed = time_once(waypoint, args)?;
        if i > 0 {
            samples.push(elapsed);
        }
    }
    Ok(median(samples))
}

/// Runs `command` (a `waypoint` process, its stdout as the caller set it) without colour or
/// input, and times it; an error with its stderr when it fails.
fn run_timed(command: &mut Command) -> Result<(Duration, std::process::Output), String> {
    let started = Instant::now();
    let output =
        command.env("NO_COLOR", "1").stdin(Stdio::null()).stderr(Stdio::piped()).output().map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        return Err(format!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok((elapsed, output))
}

fn resume_dry_run(waypoint: &Path, store: &Path, runs: usize) -> Result<Figure, String> {
    progress("measuring resume --dry-run");
    let store = store.to_str().ok_or("the scratch path is not UTF-8")?;
    let dry_run = |plan: &'static str| ["--store", store, "--format", "json", "plan", "resume", plan, "--dry-run"];
    // Alternating, so a burst of disk writeback (the store was just written) hits both alike.
    let (mut long_samples, mut short_samples) = (Vec::new(), Vec::new());
    for run in 0..=runs {
        let long = time_once(waypoint, &dry_run("long"))?;
        let short = time_once(waypoint, &dry_run("short"))?;
        if run > 0 {
            long_samples.push(long);
            short_samples.push(short);
        }
    }
    let (long, short) = (median(long_samples), median(short_samples));
    // What every command about the plan reads: its compact view (ADR 0018), as JSON.
    let views = FileStore::open_read_only(store).map_err(|e| e.to_string())?;
    let view_bytes = |plan: &str| -> Result<usize, String> {
        let id = PlanId::parse(plan).map_err(|e| e.to_string())?;
        let view = views.summary_view(&id).map_err(|e| e.to_string())?.ok_or_else(|| format!("no plan {plan}"))?;
        serde_json::to_vec(&view).map(|bytes| bytes.len()).map_err(|e| e.to_string())
    };
    let (long_view, short_view) = (view_bytes("long")?, view_bytes("short")?);
    Ok(Figure::within_half_again(
        "resume --dry-run, long vs short plan",
        long,
        short,
        format!(
            "whole `waypoint plan resume ID --dry-run --format json` process, median; the long plan's history is \
             10,000x the short one's in the full run; their compact views are {long_view} and {short_view} bytes \
             of JSON"
        ),
    ))
}

/// `waypoint run` on a plan file of `steps` steps that each run `true`, per step, against the
/// same number of `sh -c true` processes started one after another in this run: what the runner
/// adds to each step (handing the attempt to the run's supervisor, two durable appends, the
/// output and log files).
fn runner_overhead(waypoint: &Path, dir: &Path, steps: u32) -> Result<Figure, String> {
    progress("measuring the runner's overhead per step");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Paired rounds: the disk's and the CPU's speed drift with the machine's load, so each
    // round's run is compared with the shells started just before it, and the median of those
    // ratios is the figure.
    let per_round = (steps / RUNNER_ROUNDS as u32).max(1);
    let plan_path = dir.join("plan.toml");
    write_true_plan(&plan_path, "overhead", per_round)?;
    let mut rounds = Vec::with_capacity(RUNNER_ROUNDS);
    for round in 0..RUNNER_ROUNDS {
        let started = Instant::now();
        for _ in 0..per_round {
            let status =
                Command::new("sh").args(["-c", "true"]).stdin(Stdio::null()).status().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("`sh -c true` failed".into());
            }
        }
        let baseline = started.elapsed();
        let run = time_run(waypoint, &dir.join(format!("store-{round}")), &plan_path)?;
        rounds.push((run / per_round, baseline / per_round));
    }
    rounds.sort_by(|a, b| {
        let ratio = |(run, shell): &(Duration, Duration)| run.as_secs_f64() / shell.as_secs_f64();
        ratio(a).total_cmp(&ratio(b))
    });
    let (per_step, per_shell) = rounds[rounds.len() / 2];
    let ratio = per_step.as_secs_f64() / per_shell.as_secs_f64();
    Ok(Figure {
        name: "run, overhead per step",
        measured: millis(per_step),
        baseline: Some(millis(per_shell)),
        unit: "ms",
        value: ratio,
        goal: "<= 2.5",
        met: ratio <= 2.5,
        how: format!(
            "`waypoint run` of a plan file of {per_round} `true` steps, per step, against `sh -c true` started {per_round} times just before it; median of {RUNNER_ROUNDS} paired rounds"
        ),
    })
}

/// The time of `waypoint --store STORE run PLAN`, whole process.
fn time_run(waypoint: &Path, store: &Path, plan: &Path) -> Result<Duration, String> {
    let mut run = Command::new(waypoint);
    run.arg("--store").arg(store).args(["--format", "json", "run"]).arg(plan).stdout(Stdio::null());
    Ok(run_timed(&mut run)?.0)
}

/// Steps of the short plan-file plan the long one is compared with.
const SHORT_PLAN_FILE: u32 = 10;

/// A plan file of `steps` steps that each run `true`, written to `path`.
fn write_true_plan(path: &Path, name: &str, steps: u32) -> Result<(), String> {
    let mut plan = format!("name = \"{name}\"\n");
    for n in 1..=steps {
        plan.push_str(&format!("[[steps]]\nname = \"step {n}\"\nrun = \"true\"\n"));
    }
    std::fs::write(path, plan).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A plan-file plan of `steps` steps against one of [`SHORT_PLAN_FILE`] (issue: long plans):
/// what `waypoint run` costs per step, and what `plan show` of the finished plan costs. A plan
/// file's drift check reads every step's definition, so `plan show` may grow with the steps; the
/// run's cost per step must not.
fn long_plan_file(waypoint: &Path, dir: &Path, steps: u32, runs: usize) -> Result<[Figure; 2], String> {
    progress(&format!("running a plan file of {steps} steps"));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut ran = Vec::new();
    for (name, count) in [("short", SHORT_PLAN_FILE), ("long", steps)] {
        let plan = dir.join(format!("{name}.toml"));
        write_true_plan(&plan, name, count)?;
        let store = dir.join(format!("{name}-store"));
        let per_step = time_run(waypoint, &store, &plan)? / count;
        let (_, listed) =
            run_timed(Command::new(waypoint).arg("--store").arg(&store).args(["--format", "json", "plan", "list"]))?;
        let listing: serde_json::Value = serde_json::from_slice(&listed.stdout).map_err(|e| e.to_string())?;
        let id = listing["plans"][0]["plan_id"].as_str().ok_or("the plan list names no plan")?.to_owned();
        ran.push((store, id, per_step));
    }
    let show = |(store, id, _): &(PathBuf, String, Duration)| -> Result<Duration, String> {
        let store = store.display().to_string();
        time_process(waypoint, &["--store", &store, "--format", "json", "plan", "show", id.as_str()], runs)
    };
    let (short_show, long_show) = (show(&ran[0])?, show(&ran[1])?);
    let (short_step, long_step) = (ran[0].2, ran[1].2);
    let show_ratio = long_show.as_secs_f64() / short_show.as_secs_f64();
    Ok([
        Figure::within_half_again(
            "run, per step of a long plan file",
            long_step,
            short_step,
            format!("`waypoint run` of {steps} `true` steps vs {SHORT_PLAN_FILE}, whole run divided by its steps"),
        ),
        Figure {
            name: "plan show, long plan-file plan",
            measured: millis(long_show),
            baseline: Some(millis(short_show)),
            unit: "ms",
            value: show_ratio,
            goal: "linear in the steps or better",
            met: show_ratio <= f64::from(steps) / f64::from(SHORT_PLAN_FILE),
            how: format!(
                "whole `waypoint plan show ID --format json` of the finished {steps}-step plan-file plan vs the {SHORT_PLAN_FILE}-step one, median; it re-reads the plan file to check every step's definition"
            ),
        },
    ])
}

/// Builds the two listing stores under `scratch` and measures `plan list --resumable` on them.
fn listing(waypoint: &Path, scratch: &Path, sizes: Sizes) -> Result<[Figure; 2], String> {
    progress("building the listing stores");
    let (few, many) = sizes.list_plans;
    let small_list = scratch.join("list-small");
    let large_list = scratch.join("list-large");
    build_list_store(&small_list, few)?;
    build_list_store(&large_list, many)?;
    list_resumable(waypoint, (&small_list, few), (&large_list, many), sizes.runs)
}

/// `plan show` and `resume --dry-run` of one plan with the large store's tail one record short
/// of a checkpoint: the most a single-plan command reads past the checkpoint. The tail is made of
/// other plans' first events, which every open must decode (a new plan has no view yet).
fn worst_point_of_cycle(waypoint: &Path, large: &Path, one: &Path, sizes: Sizes) -> Result<Vec<Figure>, String> {
    progress("measuring single-plan commands just before a checkpoint is due");
    let store = FileStore::open(large).map_err(|e| e.to_string())?;
    store.checkpoint().map_err(|e| e.to_string())?;
    let tail = StoreOptions::default().checkpoint_every - 1;
    let requests = (0..tail)
        .map(|i| AppendRequest {
            plan_id: PlanId::parse(&format!("tail-{i}")).expect("valid"),
            expected: Expected::Exact(0),
            events: plan_events(1, 1, None, false),
        })
        .collect();
    append_all(&store, requests)?;
    drop(store);
    let mut figures = Vec::new();
    for (name, command) in [
        ("plan show, a checkpoint due", &["show", "short"][..]),
        ("resume --dry-run, a checkpoint due", &["resume", "short", "--dry-run"][..]),
    ] {
        let args = |store: &Path| -> Vec<String> {
            ["--store", &store.display().to_string(), "--format", "json", "plan"]
                .iter()
                .chain(command)
                .map(|a| a.to_string())
                .collect()
        };
        let (many, alone) = (args(large), args(one));
        let many = time_process(waypoint, &many.iter().map(String::as_str).collect::<Vec<_>>(), sizes.runs)?;
        let alone = time_process(waypoint, &alone.iter().map(String::as_str).collect::<Vec<_>>(), sizes.runs)?;
        figures.push(Figure::within_half_again(
            name,
            many,
            alone,
            format!(
                "whole `waypoint plan {}` process, median, large store with {tail} records past its checkpoint vs a store of one plan",
                command.join(" ")
            ),
        ));
    }
    Ok(figures)
}

/// Paired rounds of the runner's overhead figure.
const RUNNER_ROUNDS: usize = 5;

fn list_resumable(
    waypoint: &Path,
    (small, few): (&Path, u32),
    (large, many): (&Path, u32),
    runs: usize,
) -> Result<[Figure; 2], String> {
    progress("measuring list --resumable");
    let args = |store: &Path| -> Vec<String> {
        ["--store", &store.display().to_string(), "--format", "json", "plan", "list", "--resumable"]
            .map(String::from)
            .to_vec()
    };
    let small_args = args(small);
    let large_args = args(large);
    for (store_args, plans) in [(&small_args, few), (&large_args, many)] {
        let listed = count_listed(waypoint, store_args)?;
        if listed != plans as usize {
            return Err(format!("`waypoint plan list --resumable` listed {listed} plans, expected {plans}"));
        }
    }
    let few_time = time_process(waypoint, &small_args.iter().map(String::as_str).collect::<Vec<_>>(), runs)?;
    let many_time = time_process(waypoint, &large_args.iter().map(String::as_str).collect::<Vec<_>>(), runs)?;
    let growth = many_time.as_secs_f64() / few_time.as_secs_f64();
    let scale = f64::from(many) / f64::from(few);
    Ok([
        Figure {
            name: "list --resumable, absolute",
            measured: millis(many_time),
            baseline: None,
            unit: "ms",
            value: millis(many_time),
            goal: "<= 100 ms",
            met: millis(many_time) <= 100.0,
            how: format!(
                "whole `waypoint plan list --resumable --format json` process over {many} resumable plans, median"
            ),
        },
        Figure {
            name: "list --resumable, growth",
            measured: millis(many_time),
            baseline: Some(millis(few_time)),
            unit: "ms",
            value: growth,
            goal: "<= plan ratio (linear or better)",
            met: growth <= scale,
            how: format!("{many} plans vs {few} plans ({scale:.0}x the plans)"),
        },
    ])
}

/// How many plans `waypoint ARGS` (a JSON listing) printed: the timed runs must list them all.
fn count_listed(waypoint: &Path, args: &[String]) -> Result<usize, String> {
    let output = Command::new(waypoint).args(args).stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    Ok(doc["plans"].as_array().map_or(0, Vec::len))
}

/// Durable append of a typical `StepCompleted` vs a raw `write` + `fdatasync` of a record of
/// the same size, on the same disk, median latency of each.
fn append_latency(dir: &Path, appends: usize) -> Result<Figure, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let store = FileStore::open(dir.join("store")).map_err(|e| e.to_string())?;
    let plan = PlanId::parse("append").expect("valid");
    let mut version =
        store.append_events(&plan, Expected::Exact(0), plan_events(1, 2, None, false)).map_err(|e| e.to_string())?;
    let mut store_samples = Vec::with_capacity(appends);
    for _ in 0..appends {
        let event = plan_event(version + 1, None);
        let started = Instant::now();
        version = store.append_events(&plan, Expected::Exact(version), vec![event]).map_err(|e| e.to_string())?;
        store_samples.push(started.elapsed());
    }
    // The baseline writes records of the size the store wrote for these events.
    let log_len = std::fs::metadata(inspect::log_file(dir.join("store"))).map_err(|e| e.to_string())?.len();
    let record_len = (log_len as usize - FILE_HEADER.len()) / version as usize;
    let baseline = fdatasync_floor(&dir.join("raw.log"), record_len, appends)?;
    let ours = median(store_samples);
    let ratio = ours.as_secs_f64() / baseline.as_secs_f64();
    Ok(Figure {
        name: "durable append latency",
        measured: millis(ours),
        baseline: Some(millis(baseline)),
        unit: "ms",
        value: ratio,
        goal: "<= 1.25",
        met: ratio <= 1.25,
        how: format!("median of {appends} single-event appends vs raw write + fdatasync of {record_len} bytes"),
    })
}

/// The log's storage, counting its fdatasyncs (how many appends one sync carried), or skipping
/// them (what the appends cost without).
#[derive(Debug, Default)]
struct CountedSyncs {
    syncs: std::sync::atomic::AtomicU64,
    skip: std::sync::atomic::AtomicBool,
}

impl CountedSyncs {
    fn count(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Storage for CountedSyncs {
    fn write_all_at(&self, file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        OsStorage.write_all_at(file, bytes, offset)
    }

    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        self.syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.skip.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        OsStorage.sync_data(file)
    }

    fn truncate(&self, file: &File, len: u64) -> std::io::Result<()> {
        OsStorage.truncate(file, len)
    }
}

/// The machine's floor for a durable append: the median of `n` raw writes of `record_len` bytes,
/// each followed by fdatasync, to a file at `path`.
fn fdatasync_floor(path: &Path, record_len: usize, n: usize) -> Result<Duration, String> {
    let mut raw: File = OpenOptions::new().create(true).append(true).open(path).map_err(|e| e.to_string())?;
    let bytes = vec![b'x'; record_len];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        raw.write_all(&bytes).map_err(|e| e.to_string())?;
        raw.sync_data().map_err(|e| e.to_string())?;
        samples.push(started.elapsed());
    }
    Ok(median(samples))
}

/// Peak memory of opening a store read-only and loading one plan (in a fresh process of this
/// binary), in the large store vs the store of one plan.
fn open_peak_memory(large: &Path, one: &Path) -> Result<Figure, String> {
    progress("measuring the memory of an open");
    let probe = |store: &Path| -> Result<u64, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let output = Command::new(exe)
            .args(["bench", "--probe-memory"])
            .arg(store)
            .arg("short")
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim().parse::<u64>().map_err(|_| format!("the memory probe printed {text:?}"))
    };
    let (many, alone) = (probe(large)?, probe(one)?);
    let ratio = many as f64 / alone as f64;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    Ok(Figure {
        name: "open + load one plan, peak memory",
        measured: mib(many),
        baseline: Some(mib(alone)),
        unit: "MiB",
        value: ratio,
        goal: "<= 1.5 (flat)",
        met: ratio <= 1.5,
        how: "VmHWM of a process that opens the store read-only and loads one plan's views and events, large store vs a store of one plan".into(),
    })
}

/// The memory probe's body: open `store` read-only, load `plan` every way, print VmHWM.
fn probe_memory(store: Option<&String>, plan: Option<&String>) -> ExitCode {
    let (Some(store), Some(plan)) = (store, plan) else { return usage_error("--probe-memory takes STORE PLAN") };
    let run = || -> Result<u64, String> {
        let store = FileStore::open_read_only(store).map_err(|e| e.to_string())?;
        let id = PlanId::parse(plan).map_err(|e| e.to_string())?;
        store.summary_view(&id).map_err(|e| e.to_string())?;
        store.plan_view(&id).map_err(|e| e.to_string())?;
        store.read_plan(&id, 1).map_err(|e| e.to_string())?;
        let kib = crate::proc_status::kib(None, "VmHWM").ok_or("no VmHWM in /proc/self/status")?;
        Ok(kib * 1024)
    };
    match run() {
        Ok(bytes) => {
            println!("{bytes}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `plan list --resumable` over the large store's resumable plans (the finished ones are most of
/// the store), and `plan list` of every plan vs every plan of the 10,000-plan listing store.
fn list_at_scale(waypoint: &Path, large: &Path, list_store: &Path, sizes: Sizes) -> Result<[Figure; 3], String> {
    progress("measuring listings of the large store");
    let args = |store: &Path, resumable: bool| -> Vec<String> {
        let mut args: Vec<String> =
            ["--store", &store.display().to_string(), "--format", "json", "plan", "list"].map(String::from).to_vec();
        if resumable {
            args.push("--resumable".into());
        }
        args
    };
    let resumable_args = args(large, true);
    // The long and short plans name snapshots the CLI cannot find, so only the fillers list.
    let expected = sizes.resumable_plans as usize;
    let listed = count_listed(waypoint, &resumable_args)?;
    if listed != expected {
        return Err(format!(
            "`waypoint plan list --resumable` listed {listed} plans of the large store, expected {expected}"
        ));
    }
    let as_str = |v: &[String]| v.iter().map(String::clone).collect::<Vec<_>>();
    let resumable_time =
        time_process(waypoint, &as_str(&resumable_args).iter().map(String::as_str).collect::<Vec<_>>(), sizes.runs)?;
    // The listing store holds as many resumable plans and nothing else: the same answer.
    let same_answer =
        time_process(waypoint, &args(list_store, true).iter().map(String::as_str).collect::<Vec<_>>(), sizes.runs)?;
    let all_large = args(large, false);
    let all_small = args(list_store, false);
    let large_time =
        time_process(waypoint, &all_large.iter().map(String::as_str).collect::<Vec<_>>(), sizes.runs.min(5))?;
    let small_time =
        time_process(waypoint, &all_small.iter().map(String::as_str).collect::<Vec<_>>(), sizes.runs.min(5))?;
    let growth = large_time.as_secs_f64() / small_time.as_secs_f64();
    let scale = f64::from(sizes.large_plans) / f64::from(sizes.list_plans.1);
    Ok([
        Figure {
            name: "list --resumable in the large store",
            measured: millis(resumable_time),
            baseline: None,
            unit: "ms",
            value: millis(resumable_time),
            goal: "<= 30 ms",
            met: millis(resumable_time) <= 30.0,
            how: format!(
                "whole `waypoint plan list --resumable --format json` process listing {expected} resumable plans of {} (the rest finished, never read), median",
                sizes.large_plans
            ),
        },
        Figure {
            name: "list --resumable, large vs listing store",
            measured: millis(resumable_time),
            baseline: Some(millis(same_answer)),
            unit: "ms",
            value: resumable_time.as_secs_f64() / same_answer.as_secs_f64(),
            goal: "<= 1.5 (finished plans not read)",
            met: resumable_time.as_secs_f64() / same_answer.as_secs_f64() <= 1.5,
            how: format!(
                "the same {expected} resumable plans listed from the large store ({} plans, the rest finished) vs from a store holding only them, median",
                sizes.large_plans
            ),
        },
        Figure {
            name: "list all, large store vs listing store",
            measured: millis(large_time),
            baseline: Some(millis(small_time)),
            unit: "ms",
            value: growth,
            goal: "<= plan ratio (linear or better)",
            met: growth <= scale,
            how: format!(
                "whole `waypoint plan list --format json` over {} plans vs {} plans ({scale:.0}x the plans), median",
                sizes.large_plans, sizes.list_plans.1
            ),
        },
    ])
}

/// Every command about one plan, as whole `waypoint` processes, in the large store vs a store of
/// one plan. Each run works on a fresh plan in both stores, alternating between them.
fn single_plan_commands(waypoint: &Path, large: &Path, one: &Path, sizes: Sizes) -> Result<Vec<Figure>, String> {
    progress("measuring single-plan commands");
    const COMMANDS: [&str; 8] =
        ["create", "step-started", "checkpoint", "interrupt", "show", "resume --dry-run", "resume", "history"];
    let mut samples: Vec<[Vec<Duration>; 2]> = COMMANDS.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    for run in 0..=sizes.runs {
        let id = format!("probe-{run}");
        for (s, store) in [large, one].iter().enumerate() {
            let store = store.display().to_string();
            let base = ["--store", store.as_str(), "--format", "json", "plan"];
            let steps: [(Option<usize>, Vec<&str>); 9] = [
                (Some(0), vec!["create", "--id", &id, "--total-steps", "5"]),
                (None, vec!["start", &id, "--phase", "strategize"]),
                (Some(1), vec!["step-started", &id, "--step", "1", "--decision", "d-1"]),
                (Some(2), vec!["checkpoint", &id, "--step", "1", "--decision", "d-1"]),
                (Some(3), vec!["interrupt", &id, "--reason", "pause"]),
                (Some(4), vec!["show", &id]),
                (Some(5), vec!["resume", &id, "--dry-run"]),
                (Some(6), vec!["resume", &id]),
                (Some(7), vec!["history", &id]),
            ];
            for (slot, args) in steps {
                let all: Vec<&str> = base.iter().copied().chain(args).collect();
                let elapsed = time_once(waypoint, &all)?;
                if let (Some(slot), true) = (slot, run > 0) {
                    samples[slot][s].push(elapsed);
                }
            }
        }
    }
    Ok(COMMANDS
        .iter()
        .zip(samples)
        .map(|(command, [many, alone])| {
            let name = match *command {
                "create" => "plan create, large vs one-plan store",
                "step-started" => "plan step-started, large vs one-plan",
                "checkpoint" => "plan checkpoint, large vs one-plan",
                "interrupt" => "plan interrupt, large vs one-plan",
                "show" => "plan show, large vs one-plan",
                "resume --dry-run" => "plan resume --dry-run, large vs one",
                "resume" => "plan resume, large vs one-plan",
                _ => "plan history, large vs one-plan",
            };
            Figure::within_half_again(
                name,
                median(many),
                median(alone),
                format!(
                    "whole `waypoint plan {command}` process on a fresh plan, median of {} runs, large store ({} plans, {} events) vs a store of one plan",
                    sizes.runs, sizes.large_plans, sizes.large_events
                ),
            )
        })
        .collect())
}

/// Retention (issue 14): every finished plan of the large store (all but the long, the short
/// and the resumable fillers: 90% of the plans in the full run) compacted by the release
/// `waypoint store compact --older-than 0s` into an archive beside it. The store's disk usage and
/// the commands about a kept plan are measured before and after; the compaction's throughput is
/// compared with the bulk write that built the store.
fn retention(
    waypoint: &Path,
    store: &Path,
    archive: &Path,
    sizes: Sizes,
    per_filler: u32,
    (built_events, built_in): (u64, Duration),
) -> Result<[Figure; 4], String> {
    let store_arg = store.to_str().ok_or("the scratch path is not UTF-8")?;
    let archive_arg = archive.to_str().ok_or("the scratch path is not UTF-8")?;
    // A resumable filler: kept, and it names no snapshot the CLI would look for.
    let kept = "filler-0";
    let show = ["--store", store_arg, "--format", "json", "plan", "show", kept];
    let dry_run = ["--store", store_arg, "--format", "json", "plan", "resume", kept, "--dry-run"];
    let size_before = disk_usage(store)?;
    let show_before = time_process(waypoint, &show, sizes.runs)?;
    let dry_run_before = time_process(waypoint, &dry_run, sizes.runs)?;

    let compact = ["--store", store_arg, "--format", "json", "store", "compact", "--older-than", "0s"];
    let (compacted_in, output) = run_timed(Command::new(waypoint).args(compact).args(["--archive", archive_arg]))?;
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    let removed = doc["removed"].as_array().map_or(0, Vec::len) as u64;
    let finished = u64::from(sizes.large_plans - 2 - sizes.resumable_plans);
    if removed != finished {
        return Err(format!("waypoint store compact removed {removed} plans, expected the {finished} finished ones"));
    }

    let size_after = disk_usage(store)?;
    let archive_size = disk_usage(archive)?;
    let show_after = time_process(waypoint, &show, sizes.runs)?;
    let dry_run_after = time_process(waypoint, &dry_run, sizes.runs)?;

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let size_ratio = size_after as f64 / size_before as f64;
    let kept_plans = sizes.large_plans - removed as u32;
    let command = |name, command: &str, (after, before): (Duration, Duration)| {
        let ratio = after.as_secs_f64() / before.as_secs_f64();
        Figure {
            name,
            measured: millis(after),
            baseline: Some(millis(before)),
            unit: "ms",
            value: ratio,
            goal: "<= 1.1",
            met: ratio <= 1.1,
            how: format!(
                "whole `waypoint plan {command}` process on a kept resumable plan, median of {} runs, after vs before compacting {removed} of {} plans",
                sizes.runs, sizes.large_plans
            ),
        }
    };
    let removed_events = removed * u64::from(per_filler);
    let compact_rate = removed_events as f64 / compacted_in.as_secs_f64();
    let build_rate = built_events as f64 / built_in.as_secs_f64();
    Ok([
        Figure {
            name: "compacted store size vs before",
            measured: mib(size_after),
            baseline: Some(mib(size_before)),
            unit: "MiB",
            value: size_ratio,
            goal: "<= 0.2",
            met: size_ratio <= 0.2,
            how: format!(
                "blocks allocated under the store directory after vs before compacting {removed} finished plans of {}, {kept_plans} kept; the archive takes {:.1} MiB",
                sizes.large_plans,
                mib(archive_size)
            ),
        },
        command("plan show, compacted vs before", "show", (show_after, show_before)),
        command("resume --dry-run, compacted vs before", "resume --dry-run", (dry_run_after, dry_run_before)),
        Figure {
            name: "compaction vs bulk write, events/s",
            measured: compact_rate,
            baseline: Some(build_rate),
            unit: "events/s",
            value: compact_rate / build_rate,
            goal: ">= 0.5",
            met: compact_rate / build_rate >= 0.5,
            how: format!(
                "`waypoint store compact --older-than 0s` archiving and removing {removed} plans ({removed_events} events) in {:.1} s, {:.0} plans/s, vs the bulk write that built the store ({built_events} events in {:.1} s)",
                compacted_in.as_secs_f64(),
                removed as f64 / compacted_in.as_secs_f64(),
                built_in.as_secs_f64()
            ),
        },
    ])
}

/// Bytes allocated on disk to everything under `dir` (a punched hole takes none), as `du` counts.
fn disk_usage(dir: &Path) -> Result<u64, String> {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let meta = std::fs::symlink_metadata(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        total += meta.blocks() * 512;
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
            let entry = entry.map_err(|e| e.to_string())?;
            let meta = entry.metadata().map_err(|e| e.to_string())?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

/// Wall time of one `waypoint ARGS` process, which must succeed.
fn time_once(waypoint: &Path, args: &[&str]) -> Result<Duration, String> {
    Ok(run_timed(Command::new(waypoint).args(args).stdout(Stdio::null()))?.0)
}

/// Appends per second of 16 threads, each appending to its own plan of one store (group commit
/// shares their writes and fdatasyncs), vs one thread.
fn writers_throughput(dir: &Path, appends: u32) -> Result<Figure, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let syncs = Arc::new(CountedSyncs::default());
    let options = StoreOptions { storage: syncs.clone(), ..StoreOptions::default() };
    let store = FileStore::open_with(dir.join("store"), options).map_err(|e| e.to_string())?;
    let mut per_sync = Vec::new();
    let mut rate = |writers: u32, round: usize| -> Result<f64, String> {
        let synced_before = syncs.count();
        let started = Instant::now();
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let store = store.clone();
                std::thread::spawn(move || -> Result<(), String> {
                    let plan = PlanId::parse(&format!("w{writers}-{w}-{round}")).expect("valid");
                    let mut version = 0;
                    for _ in 0..appends {
                        let event = plan_event(version + 1, None);
                        version = store
                            .append_events(&plan, Expected::Exact(version), vec![event])
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().map_err(|_| "a writer panicked".to_owned())??;
        }
        let elapsed = started.elapsed();
        if writers > 1 {
            per_sync.push(f64::from(writers * appends) / (syncs.count() - synced_before).max(1) as f64);
        }
        Ok(f64::from(writers * appends) / elapsed.as_secs_f64())
    };
    let (one, many) = paired_writer_rates(3, &mut rate)?;
    let ratio = many / one;
    // The ceiling the machine's cores set: 16 writers with every sync skipped do only the
    // appends' own work, which no group commit can go faster than.
    syncs.skip.store(true, std::sync::atomic::Ordering::Relaxed);
    let unsynced = median_f64((3..6).map(|round| rate(16, round)).collect::<Result<Vec<_>, _>>()?);
    syncs.skip.store(false, std::sync::atomic::Ordering::Relaxed);
    // What explains the figure: how many appends each fdatasync of the log carried with 16
    // writers (the group commit), against what one append and one bare fdatasync cost here.
    let floor = fdatasync_floor(&dir.join("raw.log"), 256, 200)?;
    let shared = median_f64(per_sync);
    // And the bound this disk and these cores put on any group commit: the same writers through
    // a commit that does nothing but write and sync the queued records (paired rounds).
    let (bare_one, bare_many) =
        paired_writer_rates(3, |writers, _| bare_commit::rate(&dir.join("bare.log"), writers, appends, 256))?;
    let bare = bare_many / bare_one;
    Ok(Figure {
        name: "16 writers vs one, throughput",
        measured: many,
        baseline: Some(one),
        unit: "appends/s",
        value: ratio,
        goal: ">= 8",
        met: ratio >= 8.0,
        how: format!(
            "16 threads appending {appends} single events each to their own plan vs one thread, median of 3 paired rounds; with 16 writers each fdatasync of the log carried {shared:.1} appends; one writer's append took {:.3} ms, a bare write + fdatasync {:.3} ms; 16 writers with no fdatasync at all (the appends' own work on these cores) reach {:.1}x one synced writer; a bare group commit of 256-byte records (one leader writes and syncs every queued record, no store work) reaches {bare:.1}x its own single writer: what sharing the disk's syncs gives on this machine with no store work at all",
            1e3 / one,
            millis(floor),
            unsynced / one
        ),
    })
}

fn print_table(report: &Report) {
    println!(
        "Waypoint benchmarks{} (large store: {} plans, {} events, long plan: {} events, listing: {} and {} plans)\n",
        if report.quick { " --quick" } else { "" },
        report.sizes.large_store_plans,
        report.sizes.large_store_events,
        report.sizes.long_plan_events,
        report.sizes.list_plans.0,
        report.sizes.list_plans.1
    );
    println!("{:<38} {:>14} {:>14} {:>9}  {:<34} met", "figure", "measured", "baseline", "value", "goal");
    for f in &report.figures {
        let baseline = f.baseline.map_or_else(|| "-".to_owned(), |b| format!("{b:.3} {}", f.unit));
        println!(
            "{:<38} {:>14} {:>14} {:>9.3}  {:<34} {}",
            f.name,
            format!("{:.3} {}", f.measured, f.unit),
            baseline,
            f.value,
            f.goal,
            if f.met { "yes" } else { "NO" }
        );
    }
    println!();
    for f in &report.figures {
        println!("  {}: {}", f.name, f.how);
    }
}
