//! `waypoint worker` (ADR 0017): claims the plans of a queue and runs them, several at once, each
//! through the same plan-file executor as `waypoint run` (`runner.rs`) over the step engine,
//! held by a lease the executor renews. This file decides nothing of a step's rules: it claims
//! (the application's `claim`), reads the submitted definition, hands the run to the executor,
//! drains on a signal and prints one line per claim, step and finish.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use waypoint_application::{Claimed, EngineError, EngineRun, LeaseRequest, ServiceError};
use waypoint_domain::{PlanError, PlanId, PlanSubmitted, QueueStanding, RunnerId};

use crate::cli::WorkerArgs;
use crate::commands::PLAN_FILE_FORMAT;
use crate::error::{engine_error, exit, CliError};
use crate::plan_file::PlanFile;
use crate::progress::Progress;
use crate::runner::{signal_name, RunEnd, Runner, Stopped};
use crate::sidecar::Sidecar;
use crate::signals::{Events, Nudge};
use crate::store::{AnyStore, LocationExt, Service, StoreLocation};
use crate::text::{cut, escape_controls};
use crate::ui::Ui;

/// How long a worker waits before asking its queue again when nothing could be claimed.
const POLL: Duration = Duration::from_millis(200);

/// What every slot of one worker shares: whether it drains, and how to reach each slot's run.
struct Shared {
    draining: AtomicBool,
    nudges: Mutex<Vec<Nudge>>,
    ui: Ui,
}

impl Shared {
    fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    fn each_slot(&self, what: impl Fn(&Nudge)) {
        for nudge in self.nudges.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            what(nudge);
        }
    }

    fn say(&self, event: &str, plan: Option<&PlanId>, rich: &str, fields: serde_json::Value) {
        say(&self.ui, event, plan, rich, fields);
    }
}

/// One line on stdout: `rich` for people, one JSON object for `--format json`.
fn say(ui: &Ui, event: &str, plan: Option<&PlanId>, rich: &str, fields: serde_json::Value) {
    if ui.json() {
        let mut line = json!({
            "event": event,
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        if let Some(plan) = plan {
            line["plan_id"] = json!(plan);
        }
        if let (Some(line), Some(extra)) = (line.as_object_mut(), fields.as_object()) {
            line.extend(extra.clone());
        }
        ui.stdout(&line.to_string());
    } else {
        let time = chrono::Local::now().format("%H:%M:%S");
        // One line per event, however long: cut, never wrapped.
        ui.stdout(&cut(&format!("{time} {rich}"), ui.width));
    }
}

/// This machine's name, as far as a runner id may carry it.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String =
        raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(64).collect();
    if name.is_empty() {
        "host".to_owned()
    } else {
        name
    }
}

pub fn work(location: &StoreLocation, ui: &Ui, args: WorkerArgs) -> Result<(), CliError> {
    let service = location.open_for_write()?;
    let workdir = std::fs::canonicalize(&args.workdir).map_err(|e| {
        CliError::usage("invalid_value", format!("--workdir {}: {e}", crate::text::shown_path(&args.workdir)))
    })?;
    let shared = Arc::new(Shared { draining: AtomicBool::new(false), nudges: Mutex::new(Vec::new()), ui: *ui });
    let base = format!("worker-{}-{}", host_name(), std::process::id());
    watch_signals(&shared, args.grace)?;
    shared.say(
        "started",
        None,
        &format!("worker {base} · queue {} · {} at once", args.queue, args.concurrency),
        json!({ "worker": base, "queue": args.queue, "concurrency": args.concurrency }),
    );
    let sidecar = location.sidecar();
    std::thread::scope(|scope| {
        for slot in 1..=args.concurrency {
            let slot = Slot {
                runner: RunnerId::parse(&format!("{base}-{slot}")).expect("a host name and numbers make a runner id"),
                service: service.clone(),
                shared: &shared,
                args: &args,
                workdir: &workdir,
                sidecar: &sidecar,
            };
            scope.spawn(move || slot.run());
        }
    });
    let why = if shared.draining() { "drained" } else { "queue empty" };
    shared.say("stopped", None, &format!("worker {base} stopped: {why}"), json!({ "worker": base, "why": why }));
    Ok(())
}

/// SIGINT or SIGTERM: claim nothing more, let running steps finish for `grace`, then stop them.
/// A second signal stops them at once.
fn watch_signals(shared: &Arc<Shared>, grace: Duration) -> Result<(), CliError> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|e| CliError::unexpected(format!("cannot watch for signals: {e}")))?;
    let shared = Arc::clone(shared);
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if shared.draining.swap(true, Ordering::SeqCst) {
                shared.each_slot(|nudge| nudge.signal(signal));
                continue;
            }
            shared.say(
                "draining",
                None,
                &format!("{} received: draining; running steps may finish", signal_name(signal)),
                json!({ "signal": signal_name(signal), "grace_ms": grace.as_millis() as u64 }),
            );
            shared.each_slot(Nudge::drain);
            let late = Arc::clone(&shared);
            std::thread::spawn(move || {
                std::thread::sleep(grace);
                late.each_slot(|nudge| nudge.signal(SIGTERM));
            });
        }
    });
    Ok(())
}

/// One of a worker's `--concurrency` places: it runs one plan at a time.
struct Slot<'a> {
    runner: RunnerId,
    service: Service,
    shared: &'a Shared,
    args: &'a WorkerArgs,
    workdir: &'a Path,
    sidecar: &'a Sidecar,
}

impl Slot<'_> {
    fn run(self) {
        // One channel for every run of this slot, so a drain asked for between two runs is seen.
        let events = Events::unwatched();
        self.shared.nudges.lock().unwrap_or_else(|p| p.into_inner()).push(events.nudge());
        while !self.shared.draining() {
            let lease = LeaseRequest::new(self.runner.clone(), self.args.lease);
            match block_on(self.service.claim(&self.args.queue, lease)) {
                Ok(Some(claimed)) => self.run_claimed(claimed, &events),
                // Only an empty queue ends a `--once` worker: a queue at its limit still has work.
                Ok(None) if self.args.once && !self.claimable_left() => return,
                Ok(None) => self.pause(),
                Err(e) => {
                    let message = e.to_string();
                    self.shared.say(
                        "error",
                        None,
                        &format!("cannot claim from queue {}: {}", self.args.queue, escape_controls(&message)),
                        json!({ "worker": self.runner, "message": message }),
                    );
                    if self.args.once {
                        return;
                    }
                    self.pause();
                }
            }
        }
    }

    /// Whether the queue still holds a plan a worker could claim once its limit allows.
    fn claimable_left(&self) -> bool {
        let plans = block_on(self.service.queue_plans(&self.args.queue)).unwrap_or_default();
        plans.iter().any(|(_, standing)| *standing == QueueStanding::Claimable)
    }

    /// Waits a moment before asking the queue again; a drain ends the wait.
    fn pause(&self) {
        let until = Instant::now() + POLL;
        while Instant::now() < until && !self.shared.draining() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn run_claimed(&self, claimed: Claimed<AnyStore>, events: &Events) {
        let Claimed { mut run, before } = claimed;
        let id = run.plan_id().clone();
        let from = run.next_step();
        self.shared.say(
            "claimed",
            Some(&id),
            &format!("▶ claimed plan {id} ({}) from step {from}", before.status),
            json!({ "worker": self.runner, "was": before.status, "from_step": from }),
        );
        let file = match self.definition(&id) {
            Ok(file) => file,
            Err(why) => {
                let recorded = block_on(run.fail(&why));
                let message = recorded.map_or_else(|e| e.to_string(), |m| m.to_string());
                self.finished(&id, "failed", &message);
                return;
            }
        };
        if self.shared.draining() {
            // Claimed just as the drain began: hand it back at once.
            let _ = block_on(run.interrupt("the worker drains (it received a signal) before the plan started"));
            self.finished(&id, "interrupted", "the worker drains");
            return;
        }
        let end = self.execute(run, &file, events);
        match end {
            Ok(RunEnd { stopped: None, .. }) => self.finished(&id, "completed", "every step completed"),
            Ok(RunEnd { stopped: Some(Stopped::Waiting), .. }) => {
                self.finished(&id, "waiting", "a step waits for approval")
            }
            Ok(RunEnd { stopped: Some(Stopped::Paused), .. }) => self.finished(&id, "paused", "paused"),
            Err(error) => {
                let outcome = match error.code {
                    "interrupted" => "interrupted",
                    "step_failed" => "failed",
                    "lease_lost" => "lost",
                    _ => "error",
                };
                self.finished(&id, outcome, &error.message);
            }
        }
    }

    fn execute(&self, run: EngineRun<AnyStore>, file: &PlanFile, events: &Events) -> Result<RunEnd, CliError> {
        let total = u32::try_from(file.steps.len()).expect("checked when parsed");
        let steps = SayStep { ui: self.shared.ui, plan: run.plan_id().clone(), worker: self.runner.clone() };
        let progress = Progress::for_worker(total, Box::new(move |step, name, what| steps.say(step, name, what)));
        let lease = Some(LeaseKeeper::new(self.args.lease));
        Runner::new(run, self.sidecar, file, Arc::new(progress), events, lease).run_all()
    }

    fn finished(&self, id: &PlanId, outcome: &str, message: &str) {
        let mark = match outcome {
            "completed" => "✓",
            "failed" | "lost" | "error" => "✗",
            _ => "■",
        };
        self.shared.say(
            "finished",
            Some(id),
            &format!("{mark} plan {id} {outcome}: {}", escape_controls(message)),
            json!({ "worker": self.runner, "outcome": outcome, "message": message }),
        );
    }

    /// The claimed plan's definition as it was submitted, ready to run in this worker's
    /// working folder.
    fn definition(&self, id: &PlanId) -> Result<PlanFile, String> {
        let file = submitted_plan_file(&self.service, id, self.workdir)?;
        file.check_runnable().map_err(|e| e.message)?;
        Ok(file)
    }
}

/// A submitted plan's definition as it was submitted, parsed inside `workdir` (joined with the
/// submission's own working folder when it named one): what a worker runs, and what `plan
/// resume` runs in the foreground.
pub fn submitted_plan_file(service: &Service, id: &PlanId, workdir: &Path) -> Result<PlanFile, String> {
    let submitted = block_on(service.submission(id)).map_err(|e| format!("its definition: {e}"))?;
    let Some(PlanSubmitted { definition, workdir: recorded, .. }) = submitted else {
        return Err("it was not submitted with a definition a worker can run".to_owned());
    };
    if definition.format != PLAN_FILE_FORMAT {
        return Err(format!("its definition is of format {:?}, which this build cannot run", definition.format));
    }
    let base = match recorded {
        Some(dir) => workdir.join(dir),
        None => workdir.to_path_buf(),
    };
    let name = Path::new(&definition.file_name).file_name().map_or_else(|| PathBuf::from("plan.toml"), PathBuf::from);
    PlanFile::parse(&base.join(name), definition.text.as_bytes()).map_err(|e| e.message)
}

/// Says each step of one plan, as the executor reports it.
struct SayStep {
    ui: Ui,
    plan: PlanId,
    worker: RunnerId,
}

impl SayStep {
    fn say(&self, step: u32, name: &str, what: &'static str) {
        let rich = match what {
            "rerun" => format!(
                "  ↻ plan {} step {step} ({}) runs again: it did not finish before",
                self.plan,
                escape_controls(name)
            ),
            other => format!("  · plan {} step {step} ({}) {other}", self.plan, escape_controls(name)),
        };
        say(
            &self.ui,
            "step",
            Some(&self.plan),
            &rich,
            json!({ "worker": self.worker, "step": step, "name": name, "status": what }),
        );
    }
}

/// Keeps a worker's lease while its step runs (ADR 0017): renewed every third of its length,
/// and, when renewals fail, the step is killed before the lease can run out, so a taken-over
/// step never runs on two machines at once.
#[derive(Debug)]
pub struct LeaseKeeper {
    length: Duration,
    /// When the last renewal that succeeded was asked for: the lease lasts from no earlier.
    pub(crate) renewed_at: Instant,
}

impl LeaseKeeper {
    /// A keeper for a lease of `length`, granted just now.
    pub fn new(length: Duration) -> Self {
        Self { length, renewed_at: Instant::now() }
    }

    fn renew_due(&self) -> bool {
        self.renewed_at.elapsed() >= self.length / 3
    }

    /// Past this, the lease may have run out: the step must be dead by then. A fifth of the
    /// lease is left for the kill to land.
    fn must_stop(&self) -> bool {
        self.renewed_at.elapsed() >= self.length.mul_f64(0.8)
    }

    /// Renews `run`'s lease when due. An error means the step must stop now: another runner
    /// holds the plan (`lease_lost`), or renewals failed for so long that the lease may run out.
    pub fn keep(&mut self, run: &EngineRun<AnyStore>) -> Result<(), CliError> {
        if !self.renew_due() {
            return Ok(());
        }
        let asked_at = Instant::now();
        match block_on(run.heartbeat()) {
            Ok(()) => {
                self.renewed_at = asked_at;
                Ok(())
            }
            Err(error @ EngineError::Service(ServiceError::Plan { source: PlanError::LeaseLost { .. }, .. })) => {
                Err(engine_error(run.plan_id(), error))
            }
            Err(error) if self.must_stop() => {
                let id = run.plan_id();
                Err(CliError::new(
                    exit::CONFLICT,
                    "lease_lost",
                    format!("plan {id}: the lease could not be renewed in time ({error}); the step was stopped"),
                )
                .with("plan_id", id.as_str()))
            }
            // Not yet at risk: try again at the next tick.
            Err(_) => Ok(()),
        }
    }
}
