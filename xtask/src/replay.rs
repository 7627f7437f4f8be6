//! `cargo xtask replay`: rebuild every projection from the log, from scratch, in flat memory;
//! compare with what the store checkpointed (`--verify`); show a plan as it was (`--until`,
//! `--at`); and print statistics about the log. A plain replay holds the plans in flight: each
//! plan is counted and let go once it is folded to the version the store gives it, so its memory
//! follows how many plans interleave in the log, not how many there are (`--verify` holds every
//! plan's view, to compare them).

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use eventually::versioning::Versioned;
use serde::Serialize;
use serde_json::{json, Value};
use waypoint_application::{Catalog, Clock, PlanView, RunLocks, StoredEvent, SystemClock, VerifyReport};
use waypoint_domain::{
    evaluate_eligibility, EligibilityInputs, PlanId, ResumeEligibility, ResumeSummary, SnapshotCheck,
};
use waypoint_store_file::verify::Verifier;
use waypoint_store_file::{inspect, FileStore, FileStoreError, PlanVersions};

const USAGE: &str =
    "usage: cargo xtask replay [--store DIR] [--plan ID] [--until VERSION | --at TIME] [--verify] [--format rich|json]

Streams the store's log and rebuilds every projection from scratch: plan state, ResumeMetadata,
eligibility, summaries and the catalog. Nothing is written.

  --store DIR       the store directory (default: $WAYPOINT_STORE, else ./.waypoint)
  --plan ID         only this plan; prints its summary and eligibility
  --until VERSION   the plan as it was at this version (needs --plan)
  --at TIME         every plan as it was at this instant (RFC 3339, e.g. 2026-11-21T10:00:00Z)
  --verify          compare the rebuilt projections with the store's checkpointed catalog,
                    plan indexes and view snapshots, and with the store's incremental fold;
                    exit 1 naming every difference
  --format FORMAT   rich (default) or json

Exit codes: 0 ok, 1 differences found, 2 usage error, 6 store unreadable or corrupt";

/// Exit code for an unreadable or corrupt store, as in the CLI contract.
const EXIT_STORE: u8 = 6;
const EXIT_DIFFERENCES: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Rich,
    Json,
}

/// Where the replay stops: the present, a plan's version, or an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    Now,
    Version(u32),
    At(DateTime<Utc>),
}

impl Cut {
    fn includes(self, event: &StoredEvent) -> bool {
        match self {
            Cut::Now => true,
            Cut::Version(v) => event.version() <= v,
            Cut::At(t) => event.recorded_at <= t,
        }
    }
}

#[derive(Debug)]
struct Args {
    store: PathBuf,
    plan: Option<PlanId>,
    cut: Cut,
    verify: bool,
    format: Format,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut store = None;
    let mut plan = None;
    let mut until = None;
    let mut at = None;
    let mut verify = false;
    let mut format = Format::Rich;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--store" => store = Some(PathBuf::from(value("--store")?)),
            "--plan" => {
                let raw = value("--plan")?;
                plan = Some(PlanId::parse(&raw).map_err(|e| format!("--plan: {e}"))?);
            }
            "--until" => {
                let raw = value("--until")?;
                let v: u32 = raw.parse().map_err(|_| format!("--until takes a version number, not {raw:?}"))?;
                if v == 0 {
                    return Err("--until takes a version of 1 or more".into());
                }
                until = Some(v);
            }
            "--at" => {
                let raw = value("--at")?;
                let t = DateTime::parse_from_rfc3339(&raw)
                    .map_err(|e| format!("--at takes an RFC 3339 time such as 2026-11-21T10:00:00Z: {e}"))?;
                at = Some(t.with_timezone(&Utc));
            }
            "--verify" => verify = true,
            "--format" => {
                format = match value("--format")?.as_str() {
                    "rich" => Format::Rich,
                    "json" => Format::Json,
                    other => return Err(format!("--format takes rich or json, not {other:?}")),
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let cut = match (until, at) {
        (Some(_), Some(_)) => return Err("--until and --at exclude each other".into()),
        (Some(_), None) if plan.is_none() => return Err("--until needs --plan: versions count per plan".into()),
        (Some(v), None) => Cut::Version(v),
        (None, Some(t)) => Cut::At(t),
        (None, None) => Cut::Now,
    };
    if verify && cut != Cut::Now {
        return Err("--verify checks the present: drop --until/--at".into());
    }
    let store = store
        .or_else(|| std::env::var_os("WAYPOINT_STORE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".waypoint"));
    Ok(Args { store, plan, cut, verify, format })
}

pub fn main(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(report) => {
            let differences = report.verify.as_ref().map_or(0, |v| v.differences.len());
            match args.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("report serializes")),
                Format::Rich => print_rich(&report),
            }
            if differences > 0 {
                ExitCode::from(EXIT_DIFFERENCES)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            if args.format == Format::Json {
                let doc = json!({"error": {"code": error_code(&error), "message": error.to_string()}});
                println!("{doc}");
            }
            eprintln!("error: {error}");
            ExitCode::from(EXIT_STORE)
        }
    }
}

fn error_code(error: &FileStoreError) -> &'static str {
    match error {
        FileStoreError::NotFound { .. } => "store_not_found",
        FileStoreError::Corrupt { .. } => "store_corrupt",
        FileStoreError::Decode { .. } => "store_undecodable",
        FileStoreError::Locked { .. } => "store_locked",
        _ => "store_io",
    }
}

/// Everything a replay reports. Serialized as the `--format json` document.
#[derive(Debug, Serialize)]
struct Report {
    store: PathBuf,
    events: u64,
    plans: usize,
    log_bytes: u64,
    elapsed_ms: u64,
    events_per_second: u64,
    events_by_type: Vec<TypeCount>,
    plans_by_phase_state: Vec<PhaseStateCount>,
    slowest_plans: Vec<SlowPlan>,
    /// With `--plan`: the plan's summary and eligibility, as of the cut.
    plan: Option<PlanReport>,
    verify: Option<VerifyReport>,
    /// Peak resident memory of this process, from /proc (Linux only).
    peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct TypeCount {
    #[serde(rename = "type")]
    event_type: String,
    schema_version: u16,
    count: u64,
}

#[derive(Debug, Serialize)]
struct PhaseStateCount {
    phase: String,
    state: String,
    count: u64,
}

#[derive(Debug, Serialize)]
struct SlowPlan {
    plan_id: PlanId,
    events: u64,
    rebuild_micros: u64,
}

#[derive(Debug, Serialize)]
struct PlanReport {
    version: u32,
    summary: ResumeSummary,
    eligibility: ResumeEligibility,
}

/// Per-plan replay facts kept while streaming: small and fixed-size, so memory stays flat.
#[derive(Debug, Default)]
struct PlanCost {
    events: u64,
    rebuild: Duration,
}

fn run(args: &Args) -> Result<Report, FileStoreError> {
    let started = Instant::now();
    let log_bytes = std::fs::metadata(inspect::log_file(&args.store)).map(|m| m.len()).unwrap_or(0);
    let mut verifier = if args.verify { Some(Verifier::new(&args.store, args.plan.clone())?) } else { None };
    let mut progress = Progress::new(log_bytes);
    // The walk's end is fixed here: the log as it stands now.
    let walk = inspect::events(&args.store)?;
    let live = FileStore::open_read_only(&args.store)?;
    // Memory holds the plans in flight, not every plan: each plan's version in the store, read
    // after the walk's end was fixed so that it is never short of the walk, says when a plan is
    // folded whole; it is then counted and let go. Not for one plan (its view is reported) nor
    // under --verify (the verifier holds every plan's view anyway).
    let mut whole = Whole::new((args.plan.is_none() && !args.verify).then(|| live.plan_versions()).transpose()?);

    let mut catalog = Catalog::default();
    let mut by_type: BTreeMap<(String, u16), u64> = BTreeMap::new();
    let mut costs: HashMap<PlanId, PlanCost> = HashMap::new();
    let mut events = 0u64;

    for located in walk {
        let located = located?;
        let stored = &located.event;
        progress.update(located.offset);
        let wanted = args.plan.as_ref().is_none_or(|p| p == stored.source_id());
        if wanted && args.cut.includes(stored) {
            events += 1;
            let made_whole = whole.makes_whole(stored, &located, &costs)?;
            fold(stored, located.schema_version, &mut catalog, &mut by_type, &mut costs);
            if made_whole {
                whole.let_go(stored.source_id(), &mut catalog, &mut costs);
            }
        }
        if let Some(verifier) = verifier.as_mut() {
            verifier.observe(&located);
        }
    }
    progress.finish();

    let plans = whole.plans + catalog.plans.len();
    let mut plans_by_phase_state = whole.by_phase_state;
    for view in catalog.plans.values() {
        count_phase_state(&mut plans_by_phase_state, view);
    }
    let mut slowest = whole.slowest;
    for (plan_id, cost) in costs {
        keep_slowest(&mut slowest, plan_id, cost);
    }

    let plan = match &args.plan {
        Some(plan_id) => catalog.plans.get(plan_id).map(|view| plan_report(&live, view, args.cut)),
        None => None,
    };
    let verify = verifier.map(|verifier| verifier.finish(&live)).transpose()?;
    let elapsed = started.elapsed();
    Ok(Report {
        store: args.store.clone(),
        events,
        plans,
        log_bytes,
        elapsed_ms: elapsed.as_millis() as u64,
        events_per_second: (events as f64 / elapsed.as_secs_f64().max(1e-9)) as u64,
        events_by_type: by_type
            .into_iter()
            .map(|((event_type, schema_version), count)| TypeCount { event_type, schema_version, count })
            .collect(),
        plans_by_phase_state: plans_by_phase_state
            .into_iter()
            .map(|((phase, state), count)| PhaseStateCount { phase, state, count })
            .collect(),
        slowest_plans: slowest
            .into_iter()
            .map(|(plan_id, cost)| SlowPlan {
                plan_id,
                events: cost.events,
                rebuild_micros: cost.rebuild.as_micros() as u64,
            })
            .collect(),
        plan,
        verify,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// How many of the slowest plans to rebuild the report names.
const SLOWEST: usize = 5;

/// Keeps `plan` among the `SLOWEST` plans to rebuild, slowest first (ties by plan id).
fn keep_slowest(slowest: &mut Vec<(PlanId, PlanCost)>, plan: PlanId, cost: PlanCost) {
    let at = slowest.partition_point(|(id, c)| c.rebuild > cost.rebuild || (c.rebuild == cost.rebuild && *id < plan));
    if at < SLOWEST {
        slowest.insert(at, (plan, cost));
        slowest.truncate(SLOWEST);
    }
}

fn count_phase_state(counts: &mut BTreeMap<(String, String), u64>, view: &PlanView) {
    let key = (view.state.phase.as_str().to_owned(), view.state.state.as_str().to_owned());
    *counts.entry(key).or_default() += 1;
}

/// The plans folded whole and let go: what the report needs of them.
struct Whole {
    /// Each plan's version in the store (about 2.6 bytes a plan). `None`: every plan is kept to
    /// the end.
    versions: Option<PlanVersions>,
    plans: usize,
    by_phase_state: BTreeMap<(String, String), u64>,
    slowest: Vec<(PlanId, PlanCost)>,
}

impl Whole {
    fn new(versions: Option<PlanVersions>) -> Self {
        Self { versions, plans: 0, by_phase_state: BTreeMap::new(), slowest: Vec::new() }
    }

    /// Whether `stored` makes its plan whole: fold it, then [`Self::let_go`]. A plan that the
    /// store's versions cannot vouch for (rarely: see `PlanVersions::is_latest`) is kept to the
    /// end. An event that does not start its plan, of a plan not in flight (none of its events
    /// folded since the plan was let go: `costs` holds every plan in flight), is an error: the
    /// store gave the plan a version the log goes past, so its derived files disagree with the
    /// log (`--verify` says how).
    fn makes_whole(
        &self,
        stored: &StoredEvent,
        located: &inspect::LocatedEvent,
        costs: &HashMap<PlanId, PlanCost>,
    ) -> Result<bool, FileStoreError> {
        let Some(versions) = &self.versions else { return Ok(false) };
        let plan_id = stored.source_id();
        if stored.version() > 1 && !costs.contains_key(plan_id) {
            return Err(FileStoreError::Corrupt {
                path: located.file.to_path_buf(),
                offset: located.offset,
                detail: format!(
                    "plan {plan_id} has events past the version the store's catalog gives it; run `cargo xtask replay --verify`"
                ),
            });
        }
        Ok(versions.is_latest(plan_id, stored.version()))
    }

    /// Counts plan `id`, folded whole, and lets go of it.
    fn let_go(&mut self, id: &PlanId, catalog: &mut Catalog, costs: &mut HashMap<PlanId, PlanCost>) {
        if let Some(view) = catalog.plans.remove(id) {
            self.plans += 1;
            count_phase_state(&mut self.by_phase_state, &view);
        }
        if let Some(cost) = costs.remove(id) {
            keep_slowest(&mut self.slowest, id.clone(), cost);
        }
    }
}

/// Folds one event into the rebuilt catalog and the statistics.
fn fold(
    stored: &StoredEvent,
    schema_version: u16,
    catalog: &mut Catalog,
    by_type: &mut BTreeMap<(String, u16), u64>,
    costs: &mut HashMap<PlanId, PlanCost>,
) {
    *by_type.entry((stored.event.event_type().as_str().to_owned(), schema_version)).or_default() += 1;
    let started = Instant::now();
    catalog.apply(stored);
    let cost = costs.entry(stored.source_id().clone()).or_default();
    cost.events += 1;
    cost.rebuild += started.elapsed();
}

/// A plan's summary and eligibility. In the present, the live run locks and the store's clock (a
/// directory store's is this machine's) say whether a runner is alive; at an instant in the past
/// a lease is judged at that instant, and a plan that was processing under a run lock is shown as
/// running then; at a version, as running.
fn plan_report(live: &FileStore, view: &PlanView, cut: Cut) -> PlanReport {
    let (runner_alive, now) = match cut {
        Cut::Now => (RunLocks::is_held(&live.run_locks(), &view.plan_id), Some(SystemClock.now())),
        Cut::At(at) => (view.state.lease.is_none(), Some(at)),
        Cut::Version(_) => (true, None),
    };
    let inputs = EligibilityInputs {
        runner_alive,
        fingerprint: None,
        snapshot: SnapshotCheck::NotChecked,
        definition: None,
        now,
    };
    let eligibility = evaluate_eligibility(&view.state, &inputs);
    let summary = ResumeSummary::build(&view.plan_id, &view.state, &eligibility, Some(view.last_activity_at));
    PlanReport { version: view.version, summary, eligibility }
}

/// Peak resident set size from /proc/self/status (`VmHWM`), where the OS offers it.
fn peak_rss_bytes() -> Option<u64> {
    crate::proc_status::kib(None, "VmHWM").map(|kib| kib * 1024)
}

/// A progress bar on stderr for long logs: redrawn in place on a terminal, a line per tenth
/// otherwise, silent for small logs.
struct Progress {
    total: u64,
    tty: bool,
    shown: bool,
    last_draw: Instant,
    last_tenth: u64,
}

impl Progress {
    const WORTH_SHOWING: u64 = 32 * 1024 * 1024;

    fn new(total: u64) -> Self {
        let tty = std::io::stderr().is_terminal();
        let shown = total >= Self::WORTH_SHOWING || (tty && total >= Self::WORTH_SHOWING / 8);
        Progress { total, tty, shown, last_draw: Instant::now(), last_tenth: 0 }
    }

    fn update(&mut self, offset: u64) {
        if !self.shown {
            return;
        }
        let percent = offset.saturating_mul(100) / self.total.max(1);
        if self.tty {
            if self.last_draw.elapsed() >= Duration::from_millis(100) {
                self.last_draw = Instant::now();
                let filled = (percent / 4) as usize;
                eprint!("\rreplaying [{:<25}] {percent:>3}%", "#".repeat(filled));
                let _ = std::io::stderr().flush();
            }
        } else if percent / 10 > self.last_tenth {
            self.last_tenth = percent / 10;
            eprintln!("replaying: {}%", self.last_tenth * 10);
        }
    }

    fn finish(&mut self) {
        if self.shown && self.tty {
            eprintln!("\rreplaying [{}] 100%", "#".repeat(25));
        }
    }
}

fn print_rich(report: &Report) {
    println!(
        "Replayed {} events of {} plans from {} ({:.1} MiB) in {} ms ({} events/s)",
        report.events,
        report.plans,
        report.store.display(),
        report.log_bytes as f64 / (1024.0 * 1024.0),
        report.elapsed_ms,
        report.events_per_second
    );
    if let Some(rss) = report.peak_rss_bytes {
        println!("Peak memory: {:.1} MiB", rss as f64 / (1024.0 * 1024.0));
    }
    println!("\nEvents by type");
    for t in &report.events_by_type {
        println!("  {:<18} v{:<3} {:>10}", t.event_type, t.schema_version, t.count);
    }
    println!("\nPlans by phase and state");
    for p in &report.plans_by_phase_state {
        println!("  {:<24} {:>10}", format!("{}/{}", p.phase, p.state), p.count);
    }
    println!("\nSlowest plans to rebuild");
    for s in &report.slowest_plans {
        println!("  {:<40} {:>8} events {:>10} µs", s.plan_id.as_str(), s.events, s.rebuild_micros);
    }
    if let Some(plan) = &report.plan {
        println!("\nPlan {} at version {}", plan.summary.plan_id, plan.version);
        let value = serde_json::to_value(&plan.summary).expect("summary serializes");
        if let Value::Object(fields) = value {
            for (key, value) in fields {
                println!("  {key:<20} {value}");
            }
        }
    }
    if let Some(verify) = &report.verify {
        println!("\n{verify}");
    }
}
