//! `cargo xtask bench`: builds synthetic stores and measures Waypoint's speed and memory claims,
//! each figure against a baseline measured in the same run (these machines are noisy, so only
//! ratios travel). `--quick` uses small sizes and only proves that every figure is produced.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use eventually::store::Expected;
use serde::Serialize;
use waypoint_application::domain::{
    Artifact, CheckpointId, DecisionId, EventId, Interrupted, Message, Phase, PhaseStarted, PlanCreated, PlanEvent,
    PlanId, SnapshotId, StepCompleted, StepNumber, StepStarted, TotalSteps,
};
use waypoint_application::{Catalog, RecordedEvent};
use waypoint_store_file::record::{self, FILE_HEADER};
use waypoint_store_file::{inspect, AppendRequest, FileStore, StoreOptions};

const USAGE: &str = "usage: cargo xtask bench [--quick] [--keep] [--format rich|json]

Builds synthetic stores in a scratch directory under target/ and prints each figure as a ratio to
a baseline measured in the same run. The full run rebuilds itself in release mode and takes a few
minutes; --quick uses small sizes (a smoke test: it proves every figure is produced); --keep leaves
the synthetic stores in place for a look with `waypoint` or `cargo xtask replay`.";

/// How big the synthetic stores are.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Events in the large store (the replay and memory figures).
    large_events: u32,
    /// Events of the long plan in the large store (the resume figure).
    long_plan_events: u32,
    /// Plans in the listing stores (small and large).
    list_plans: (u32, u32),
    /// Process runs per timed command; the median is reported.
    runs: usize,
    /// Appends per latency sample set.
    appends: usize,
    /// Steps of `true` in the plan file whose per-step overhead is measured.
    runner_steps: u32,
}

const FULL: Sizes = Sizes {
    large_events: 1_000_000,
    long_plan_events: 100_000,
    list_plans: (1_000, 10_000),
    runs: 15,
    appends: 300,
    runner_steps: 1_000,
};
const QUICK: Sizes = Sizes {
    large_events: 10_000,
    long_plan_events: 1_000,
    list_plans: (10, 100),
    runs: 3,
    appends: 20,
    runner_steps: 20,
};
/// Events of the short plan the long one is compared with.
const SHORT_PLAN_EVENTS: u32 = 10;
/// Events of each plan in the listing stores.
const LIST_PLAN_EVENTS: u32 = 10;
/// Events of each filler plan in the large store.
const FILLER_PLAN_EVENTS: u32 = 100;

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

#[derive(Debug, Serialize)]
struct Report {
    quick: bool,
    sizes: SizesReport,
    figures: Vec<Figure>,
}

#[derive(Debug, Serialize)]
struct SizesReport {
    large_store_events: u64,
    long_plan_events: u32,
    list_plans: (u32, u32),
}

pub fn main(root: &Path, args: &[String]) -> ExitCode {
    let mut quick = false;
    let mut json = false;
    let mut keep = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--keep" => keep = true,
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
    match run(root, if quick { QUICK } else { FULL }, quick, keep) {
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

fn run(root: &Path, sizes: Sizes, quick: bool, keep: bool) -> Result<Report, String> {
    // Under target/: the same disk as the build, unlike a tmpfs /tmp, so fsync costs are real.
    let scratch = Scratch(root.join("target").join(format!("xtask-bench-{}", std::process::id())), keep);
    std::fs::create_dir_all(&scratch.0).map_err(|e| format!("cannot create {}: {e}", scratch.0.display()))?;
    let waypoint = build_waypoint(root, quick)?;
    let mut figures = Vec::new();

    progress("building the large store");
    let large = scratch.0.join("large");
    let large_events = build_large_store(&large, sizes)?;
    figures.push(replay_throughput(&large)?);
    figures.push(replay_peak_memory(&large)?);
    figures.push(resume_dry_run(&waypoint, &large, sizes.runs)?);

    progress("building the listing stores");
    let (few, many) = sizes.list_plans;
    let small_list = scratch.0.join("list-small");
    let large_list = scratch.0.join("list-large");
    build_list_store(&small_list, few)?;
    build_list_store(&large_list, many)?;
    figures.extend(list_resumable(&waypoint, (&small_list, few), (&large_list, many), sizes.runs)?);

    progress("measuring durable appends");
    figures.push(append_latency(&scratch.0.join("append"), sizes.appends)?);

    progress("measuring the runner's overhead per step");
    figures.push(runner_overhead(&waypoint, &scratch.0.join("runner"), sizes.runner_steps)?);

    Ok(Report {
        quick,
        sizes: SizesReport {
            large_store_events: large_events,
            long_plan_events: sizes.long_plan_events,
            list_plans: sizes.list_plans,
        },
        figures,
    })
}

fn progress(what: &str) {
    eprintln!("bench: {what}");
}

/// Builds the `waypoint` binary in the profile this bench runs in and returns its path.
fn build_waypoint(root: &Path, quick: bool) -> Result<PathBuf, String> {
    let release = !cfg!(debug_assertions) && !quick;
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.args(["build", "--quiet", "-p", "waypoint-cli", "--bin", "waypoint"]).current_dir(root);
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
        2 => PlanEvent::PhaseStarted(PhaseStarted { phase: Phase::Strategize, runner: None }),
        v if v % 2 == 1 => PlanEvent::StepStarted(StepStarted {
            step: step((v - 1) / 2),
            decision_id: DecisionId::parse(&format!("decision-{}", (v - 1) / 2)).expect("valid"),
            name: None,
            attempt: None,
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

/// The large store: a long plan, a short plan (both interrupted) and filler plans of 100
/// events, in all `sizes.large_events` events, written in bulk.
fn build_large_store(dir: &Path, sizes: Sizes) -> Result<u64, String> {
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
    let fillers = (sizes.large_events - sizes.long_plan_events) / FILLER_PLAN_EVENTS;
    for batch in (0..fillers).collect::<Vec<_>>().chunks(1_000) {
        let requests = batch
            .iter()
            .map(|i| AppendRequest {
                plan_id: PlanId::parse(&format!("filler-{i}")).expect("valid"),
                expected: Expected::Exact(0),
                events: plan_events(1, FILLER_PLAN_EVENTS, None, false),
            })
            .collect();
        append_all(&store, requests)?;
        total += u64::from(FILLER_PLAN_EVENTS) * batch.len() as u64;
    }
    store.checkpoint().map_err(|e| e.to_string())?;
    Ok(total)
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
                // The CLI re-checks `sha256:` snapshots of recorded outputs, which do not exist
                // here: these checkpoints name none, so every plan is resumable and listed.
                for recorded in &mut events {
                    if let PlanEvent::StepCompleted(checkpoint) = &mut recorded.event {
                        checkpoint.snapshot_id = None;
                        checkpoint.artifacts.clear();
                    }
                }
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

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Replay (CRC-checked, decoded, folded into the catalog) vs serde_json parsing the same records'
/// data bytes, already in memory.
fn replay_throughput(store: &Path) -> Result<Figure, String> {
    progress("measuring replay throughput");
    let started = Instant::now();
    let mut catalog = Catalog::default();
    let mut events = 0u64;
    for located in inspect::events(store).map_err(|e| e.to_string())? {
        let located = located.map_err(|e| e.to_string())?;
        catalog.apply(&located.event);
        events += 1;
    }
    let replay = started.elapsed();
    std::hint::black_box(&catalog);

    let data = record_data(store)?;
    let started = Instant::now();
    for bytes in &data {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        std::hint::black_box(value);
    }
    let parse = started.elapsed();
    let replay_rate = events as f64 / replay.as_secs_f64();
    let parse_rate = data.len() as f64 / parse.as_secs_f64();
    let ratio = replay_rate / parse_rate;
    Ok(Figure {
        name: "replay throughput",
        measured: replay_rate,
        baseline: Some(parse_rate),
        unit: "events/s",
        value: ratio,
        goal: ">= 0.5",
        met: ratio >= 0.5,
        how: format!(
            "{events} events read, CRC-checked, decoded and folded vs serde_json::Value parsing of their data bytes"
        ),
    })
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
        let started = Instant::now();
        let output = Command::new(waypoint)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        let elapsed = started.elapsed();
        if !output.status.success() {
            return Err(format!("waypoint {args:?} failed: {}", String::from_utf8_lossy(&output.stderr)));
        }
        if i > 0 {
            samples.push(elapsed);
        }
    }
    Ok(median(samples))
}

fn resume_dry_run(waypoint: &Path, store: &Path, runs: usize) -> Result<Figure, String> {
    progress("measuring resume --dry-run");
    let store = store.to_str().ok_or("the scratch path is not UTF-8")?;
    let dry_run =
        |plan: &str| ["--store", store, "--format", "json", "plan", "resume", plan, "--dry-run"].map(String::from);
    let long_args = dry_run("long");
    let short_args = dry_run("short");
    let long = time_process(waypoint, &long_args.iter().map(String::as_str).collect::<Vec<_>>(), runs)?;
    let short = time_process(waypoint, &short_args.iter().map(String::as_str).collect::<Vec<_>>(), runs)?;
    let ratio = long.as_secs_f64() / short.as_secs_f64();
    Ok(Figure {
        name: "resume --dry-run, long vs short plan",
        measured: millis(long),
        baseline: Some(millis(short)),
        unit: "ms",
        value: ratio,
        goal: "<= 1.5",
        met: ratio <= 1.5,
        how: "whole `waypoint plan resume ID --dry-run --format json` process, median; the long plan's history is 10,000x the short one's in the full run".into(),
    })
}

/// `waypoint run` on a plan file of `steps` steps that each run `true`, per step, against the
/// same number of `sh -c true` processes started one after another in this run: what the runner
/// adds to each step (its supervisor process, two durable appends, the output and log files).
fn runner_overhead(waypoint: &Path, dir: &Path, steps: u32) -> Result<Figure, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut plan = String::from("name = \"overhead\"\n");
    for n in 1..=steps {
        plan.push_str(&format!("[[steps]]\nname = \"step {n}\"\nrun = \"true\"\n"));
    }
    let plan_path = dir.join("plan.toml");
    std::fs::write(&plan_path, plan).map_err(|e| format!("cannot write {}: {e}", plan_path.display()))?;
    let store = dir.join("store");

    let started = Instant::now();
    for _ in 0..steps {
        let status =
            Command::new("sh").args(["-c", "true"]).stdin(Stdio::null()).status().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("`sh -c true` failed".into());
        }
    }
    let baseline = started.elapsed();

    let started = Instant::now();
    let output = Command::new(waypoint)
        .arg("--store")
        .arg(&store)
        .args(["--format", "json", "run"])
        .arg(&plan_path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    let run = started.elapsed();
    if !output.status.success() {
        return Err(format!("waypoint run failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let per_step = run / steps;
    let per_shell = baseline / steps;
    let ratio = per_step.as_secs_f64() / per_shell.as_secs_f64();
    Ok(Figure {
        name: "run, overhead per step",
        measured: millis(per_step),
        baseline: Some(millis(per_shell)),
        unit: "ms",
        value: ratio,
        goal: "<= 25",
        met: ratio <= 25.0,
        how: format!(
            "`waypoint run` of a plan file of {steps} `true` steps, per step, against `sh -c true` started {steps} times in the same run"
        ),
    })
}

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
    let mut raw: File =
        OpenOptions::new().create(true).append(true).open(dir.join("raw.log")).map_err(|e| e.to_string())?;
    let bytes = vec![b'x'; record_len];
    let mut raw_samples = Vec::with_capacity(appends);
    for _ in 0..appends {
        let started = Instant::now();
        raw.write_all(&bytes).map_err(|e| e.to_string())?;
        raw.sync_data().map_err(|e| e.to_string())?;
        raw_samples.push(started.elapsed());
    }
    let (ours, baseline) = (median(store_samples), median(raw_samples));
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

fn print_table(report: &Report) {
    println!(
        "Waypoint benchmarks{} (large store: {} events, long plan: {} events, listing: {} and {} plans)\n",
        if report.quick { " --quick" } else { "" },
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
