//! The plan-file executor: runs each attempt of a step as `sh -c` under its supervisor, in its
//! own process group, streams and caps its output, waits for its exit, a signal or its timeout,
//! and tells the step engine what happened. The engine (`waypoint_application::engine`) decides
//! what that means: attempt numbers, retries and their delays, the plan's failure, finishing.
//! This file decides nothing of that; it runs processes and shows progress.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use rustix::process::{kill_process_group, Pid, Signal};
use serde_json::{json, Value};
use signal_hook::consts::SIGTERM;
pub use waypoint_application::engine::{format_duration, signal_name};
use waypoint_application::engine::{
    AttemptTicket, EngineError, EngineRun, Gate, Retry, StepFailure, StepResult, StepTurn, Stopped as EngineStopped,
};
use waypoint_application::{LogStream, PlanStore, ServiceError};
use waypoint_domain::{Artifact, PlanError, PlanId, StepNumber, StepOutput};

use crate::capture::{self, last_line, stderr_tail};
use crate::error::{engine_error, exit, one_line, CliError};
use crate::logs::KeptTail;
use crate::outputs::{digest_outputs, read_step_outputs};
use crate::plan_file::{PlanFile, Step};
use crate::progress::{Progress, StepEnd};
use crate::render::StepReport;
use crate::sidecar::Sidecar;
use crate::signals::{Event, Events};
use crate::store::AnyStore;
use crate::supervise::{self, AttemptSpec, Begun, Ended, ShellEnd, Supervisor, GRACE};
use crate::text::shown_path;
use crate::worker::LeaseKeeper;

/// How often the progress display redraws while a step runs (its clock and spinner move).
const TICK: Duration = Duration::from_millis(100);
/// How long to wait, after a step exits, for output still buffered in its pipes. Output held open
/// by a process the step left behind must not keep the runner forever.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// How a step's shell ended, once its supervisor is gone (and with it every process of the step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepExit {
    Code(i32),
    Signal(i32),
    /// The step could not be run or watched: the text says why.
    Lost(String),
}

impl StepExit {
    fn success(&self) -> bool {
        *self == StepExit::Code(0)
    }

    fn from_supervisor(ended: Ended) -> Self {
        match ended.report {
            Some(ShellEnd::Exited(code)) => StepExit::Code(code),
            Some(ShellEnd::Signalled(signal)) => StepExit::Signal(signal),
            Some(ShellEnd::Failed(text)) => StepExit::Lost(text),
            // Killed (SIGKILL, the OOM killer) before it could report.
            None => {
                match ended.supervisor_died.flatten().and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)) {
                    Some(signal) => StepExit::Lost(format!(
                        "its supervisor was killed ({}) before the step ended",
                        signal_name(signal)
                    )),
                    None => StepExit::Lost("its supervisor ended without saying how the step ended".into()),
                }
            }
        }
    }
}

/// How a run of the plan file ended without an error: every step done (`stopped: None`), or
/// stopped at a step that waits for approval, or paused.
#[derive(Debug)]
pub struct RunEnd {
    pub reports: Vec<StepReport>,
    pub stopped: Option<Stopped>,
}

/// Why a run stopped early, with the plan able to go on later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// At a step that needs a person's approval.
    Waiting,
    /// Someone paused the plan.
    Paused,
}

pub struct Runner<'a> {
    pub run: EngineRun<AnyStore>,
    pub sidecar: &'a Sidecar,
    pub file: &'a PlanFile,
    pub progress: Arc<Progress>,
    pub events: &'a Events,
    /// Every completed step's outputs so far, by step name: `$WAYPOINT_OUTPUTS`.
    pub outputs: serde_json::Map<String, Value>,
    /// The running attempt's output, kept until it reaches the store.
    pub logs: Option<AttemptLogs>,
    /// For a run held by lease (a worker's): when to renew it while a step runs.
    pub lease: Option<LeaseKeeper>,
    /// A drain was asked for while a step ran: no further step starts.
    pub draining: bool,
    /// The step supervisor of this run, started with its first attempt.
    pub supervisor: Option<Supervisor>,
}

/// The output of the attempt that runs now: stdout's and stderr's kept ends, and when the store
/// last got them.
#[derive(Debug)]
pub struct AttemptLogs {
    step: StepNumber,
    attempt: waypoint_domain::Attempt,
    streams: [(LogStream, KeptTail); 2],
    written_at: Instant,
    /// A log the store refused is said once, not on every flush.
    warned: bool,
}

/// How often a running step's output is written to the store while it prints.
const LOG_FLUSH_EVERY: Duration = Duration::from_secs(2);

/// How waiting for a step's process ended.
struct Waited {
    /// `None` when a second signal stopped the wait.
    status: Option<StepExit>,
    /// The first signal received while the step ran.
    signal: Option<i32>,
    /// The step ran past its timeout and was stopped.
    timed_out: bool,
}

/// How one attempt ended, with the last lines of its stderr.
struct Ran {
    status: Option<StepExit>,
    signal: Option<i32>,
    timed_out: bool,
    tail: Vec<String>,
}

impl Runner<'_> {
    fn plan_id(&self) -> &PlanId {
        self.run.plan_id()
    }

    /// The run's step supervisor, started now if it is not running (the first attempt, or one
    /// after the last supervisor died).
    fn supervisor(&mut self) -> Result<&mut Supervisor, CliError> {
        if self.supervisor.as_ref().is_none_or(Supervisor::is_gone) {
            let started = Supervisor::start()
                .map_err(|e| CliError::unexpected(format!("cannot start the step supervisor: {e}")))?;
            self.supervisor = Some(started);
        }
        Ok(self.supervisor.as_mut().expect("started above"))
    }

    /// Runs every step of the plan file in order and finishes the plan. A step that completed
    /// in an earlier run is skipped, its recorded output handed to the steps that follow. The
    /// caller has started the engine's run (created the plan or recorded `Resumed`). The run
    /// also ends, without finishing the plan, at a step that waits for a person's approval, or
    /// at the step boundary after someone paused the plan.
    pub fn run_all(mut self) -> Result<RunEnd, CliError> {
        let mut reports = Vec::with_capacity(self.file.steps.len());
        for (index, step) in self.file.steps.iter().enumerate() {
            let n = index as u32 + 1;
            if let Some(signal) = self.signal_received() {
                let reason = format!("{} received before step {n}", signal_name(signal));
                return Err(self.interrupted(signal, n, &reason));
            }
            let id = self.plan_id().clone();
            if let Some(question) = &step.approval {
                let number = StepNumber::new(n).expect("steps count from 1");
                let gate = block_on(self.run.approval_gate(number, &step.step_name, question));
                if gate.map_err(|e| engine_error(&id, e))? == Gate::Waiting {
                    self.progress.note(&format!("step {n} ({}) waits for approval: {question}", step.name));
                    return Ok(RunEnd { reports, stopped: Some(Stopped::Waiting) });
                }
            }
            match self.run_step(n, step)? {
                Some(report) => reports.push(report),
                None => {
                    self.progress.note(&format!("paused before step {n} ({})", step.name));
                    return Ok(RunEnd { reports, stopped: Some(Stopped::Paused) });
                }
            }
        }
        let id = self.plan_id().clone();
        block_on(self.run.finish()).map_err(|e| engine_error(&id, e))?;
        Ok(RunEnd { reports, stopped: None })
    }

    /// Runs step `n`, attempt after attempt, until one succeeds, the engine says the retries
    /// are spent, or a signal stops it; a step that completed earlier is only reported. `None`:
    /// the plan was paused, and this step did not start.
    fn run_step(&mut self, n: u32, step: &Step) -> Result<Option<StepReport>, CliError> {
        let number = StepNumber::new(n).expect("steps count from 1");
        let policy = step.policy();
        loop {
            let id = self.plan_id().clone();
            let asked_at = Instant::now();
            let turn = block_on(self.run.begin_step(number, &step.step_name)).map_err(|e| engine_error(&id, e))?;
            // A step's start under a lease renews it.
            if let Some(keeper) = self.lease.as_mut() {
                keeper.renewed_at = asked_at;
            }
            let ticket = match turn {
                StepTurn::Replay(done) => {
                    self.progress.skipped(n, &step.name);
                    let output = done.output.map_or(Value::Object(Default::default()), StepOutput::into_value);
                    self.outputs.insert(step.name.clone(), output);
                    return Ok(Some(StepReport::skipped(n, &step.name)));
                }
                StepTurn::Run(ticket) => ticket,
                StepTurn::Paused => return Ok(None),
            };
            if ticket.rerun {
                self.progress.rerun(n, &step.name);
            } else if ticket.attempt == waypoint_domain::Attempt::FIRST {
                self.progress.started(n, &step.name);
            } else {
                self.progress.note(&format!("step {n} ({}): attempt {}", step.name, ticket.attempt.get()));
            }
            let ran = self.run_attempt(n, step, &ticket)?;
            // A step that exited 0 did its work, even if a signal came meanwhile: record it.
            let outcome = match &ran.status {
                Some(status) if status.success() && !ran.timed_out => self.collect(step),
                status => Err(failure_of(status.as_ref(), ran.timed_out, step.timeout)),
            };
            let completed = match outcome {
                Ok(result) => {
                    let recorded = block_on(self.run.completed(&ticket, result)).map_err(|e| engine_error(&id, e))?;
                    self.progress.finished(n, &step.name, StepEnd::Completed);
                    let output = recorded.output.map_or(Value::Object(Default::default()), StepOutput::into_value);
                    self.outputs.insert(step.name.clone(), output);
                    Some(StepReport::completed(
                        n,
                        &step.name,
                        &ticket.decision_id,
                        recorded.snapshot_id.map(|s| s.to_string()),
                    ))
                }
                // Stopped by the signal passed on to it: an interruption, not a failure.
                Err(_) if ran.signal.is_some() => {
                    self.progress.finished(n, &step.name, StepEnd::Interrupted);
                    None
                }
                Err(failure) => {
                    let tail = stderr_tail(&ran.tail);
                    match block_on(self.run.attempt_failed(&ticket, failure, &policy, Some(&tail))) {
                        Ok(retry) => {
                            self.retry_later(n, step, &ticket, retry)?;
                            continue;
                        }
                        Err(EngineError::StepFailed { failure, .. }) => {
                            self.progress.finished(n, &step.name, StepEnd::Failed);
                            return Err(self.failed(n, step, &failure, &tail));
                        }
                        Err(other) => return Err(engine_error(&id, other)),
                    }
                }
            };
            return match (ran.signal, completed) {
                (None, Some(report)) => Ok(Some(report)),
                (Some(signal), _) => {
                    Err(self.interrupted(signal, n, &format!("{} received during step {n}", signal_name(signal))))
                }
                (None, None) => unreachable!("a failure without a signal either retried or failed the plan"),
            };
        }
    }

    /// Says that attempt `ticket` failed and waits `delay` before the next; a signal meanwhile
    /// stops the run.
    fn retry_later(&mut self, n: u32, step: &Step, ticket: &AttemptTicket, retry: Retry) -> Result<(), CliError> {
        let left = match retry.retries_left {
            1 => "1 retry left".to_owned(),
            more => format!("{more} retries left"),
        };
        self.progress.note(&format!(
            "step {n} ({}) attempt {} failed; retrying in {} ({left})",
            step.name,
            ticket.attempt.get(),
            format_duration(retry.delay),
        ));
        match self.sleep_unless_signalled(retry.delay)? {
            Some(signal) => {
                self.progress.finished(n, &step.name, StepEnd::Interrupted);
                let reason = format!("{} received while step {n} waited to retry", signal_name(signal));
                Err(self.interrupted(signal, n, &reason))
            }
            None => Ok(()),
        }
    }

    /// What a step that exited 0 produced: its declared outputs must be files, and what it
    /// wrote to `$WAYPOINT_OUTPUT` must parse; otherwise the attempt failed like any other.
    fn collect(&self, step: &Step) -> Result<StepResult, StepFailure> {
        let snapshot_id = if step.outputs.is_empty() {
            None
        } else {
            let digest = digest_outputs(&step.outputs)
                .map_err(|e| StepFailure::Error { message: format!("exited 0 but its declared {e}") })?;
            Some(digest)
        };
        let written = read_step_outputs(&self.sidecar.output_file(self.plan_id()))
            .map_err(|e| StepFailure::Error { message: format!("exited 0 but {e}") })?;
        let output = if written.is_empty() {
            None
        } else {
            let output = StepOutput::new(Value::Object(written))
                .map_err(|e| StepFailure::Error { message: format!("exited 0 but its outputs are unusable: {e}") })?;
            Some(output)
        };
        let artifacts = step
            .outputs
            .iter()
            .map(|p| Artifact::parse(&p.display().to_string()).expect("checked when the plan file was parsed"))
            .collect();
        Ok(StepResult { output, snapshot_id, artifacts, fingerprint: Some(step.fingerprint.clone()) })
    }

    /// Runs one attempt of step `n` under its supervisor, with its logs and output files.
    fn run_attempt(&mut self, n: u32, step: &Step, ticket: &AttemptTicket) -> Result<Ran, CliError> {
        let (attempt, decision_id) = (ticket.attempt, &ticket.decision_id);
        let plan_id = self.plan_id().clone();
        let plan_id = &plan_id;
        self.sidecar
            .prepare(plan_id)
            .map_err(|e| CliError::unexpected(format!("cannot create the plan's run folder beside the store: {e}")))?;
        let output_file = self.sidecar.output_file(plan_id);
        let outputs_file = self.sidecar.outputs_file(plan_id);
        crate::sidecar::write_private(&output_file, b"")
            .and_then(|()| {
                crate::sidecar::write_private(
                    &outputs_file,
                    &serde_json::to_vec_pretty(&self.outputs).unwrap_or_default(),
                )
            })
            .map_err(|e| {
                CliError::unexpected(format!("cannot prepare the step's output files beside the store: {e}"))
            })?;
        let pipes =
            |what| move |e: std::io::Error| CliError::unexpected(format!("cannot create the step's {what} pipe: {e}"));
        let (stdout, stdout_end) = std::io::pipe().map_err(pipes("stdout"))?;
        let (stderr, stderr_end) = std::io::pipe().map_err(pipes("stderr"))?;
        // The runner's environment, without the store's location (it may carry a password: no
        // step needs it, none gets it), with the step's own and Waypoint's variables.
        let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        env.remove(OsStr::new("WAYPOINT_STORE"));
        env.extend(step.env.iter().map(|(k, v)| (k.into(), v.into())));
        let ours = [
            ("WAYPOINT_PLAN_ID", plan_id.as_str().into()),
            ("WAYPOINT_STEP", n.to_string().into()),
            ("WAYPOINT_STEP_NAME", step.name.as_str().into()),
            ("WAYPOINT_DECISION_ID", decision_id.as_str().into()),
            ("WAYPOINT_ATTEMPT", attempt.get().to_string().into()),
            ("WAYPOINT_OUTPUT", output_file.clone().into_os_string()),
            ("WAYPOINT_OUTPUTS", outputs_file.into_os_string()),
        ];
        env.extend(ours.into_iter().map(|(k, v): (&str, OsString)| (k.into(), v)));
        // The attempt's span, so that the step's own spans nest under it.
        env.extend(self.run.step_trace_environment().into_iter().map(|(k, v)| (k.into(), v.into())));
        let spec = AttemptSpec {
            lock: self.sidecar.attempt_lock(plan_id),
            program: supervise::shell().into(),
            args: vec!["-c".into(), step.run.as_str().into()],
            dir: step.workdir.clone(),
            env,
            stdout: stdout_end.into(),
            stderr: stderr_end.into(),
        };
        let begun = self.supervisor()?.begin(spec);
        let (group, ending) = match begun {
            Ok(Begun::Started(group, ending)) => (group, ending),
            Ok(Begun::Refused(text)) => {
                return Ok(Ran { status: Some(StepExit::Lost(text)), signal: None, timed_out: false, tail: Vec::new() })
            }
            Err(e) => {
                self.supervisor = None;
                let status = StepExit::Lost(format!("could not be started in {}: {e}", shown_path(&step.workdir)));
                return Ok(Ran { status: Some(status), signal: None, timed_out: false, tail: Vec::new() });
            }
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let logs = [KeptTail::default(), KeptTail::default()];
        self.logs = Some(AttemptLogs {
            step: ticket.step,
            attempt,
            streams: [(LogStream::Stdout, logs[0].clone()), (LogStream::Stderr, logs[1].clone())],
            written_at: Instant::now(),
            warned: false,
        });
        let drained = capture::forward(&self.progress, [Box::new(stdout), Box::new(stderr)], &tail, logs);
        let exited = self.events.sender.clone();
        std::thread::spawn(move || {
            let end = StepExit::from_supervisor(ending.wait());
            let _ = exited.send(Event::Exited { step: n, end });
        });
        let waited = self.wait(group, n, step.timeout)?;
        if waited.status.is_some() {
            // Let the output still in the pipes reach the display, the logs and the stderr tail.
            let deadline = Instant::now() + OUTPUT_DRAIN;
            for _ in 0..2 {
                if drained.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
                    break;
                }
            }
        }
        self.write_logs(true);
        self.logs = None;
        let tail = tail.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        Ok(Ran { status: waited.status, signal: waited.signal, timed_out: waited.timed_out, tail })
    }

    /// Writes the running attempt's new output to the store: `done`, every stream that printed
    /// anything; otherwise only streams that printed since the last write, at most every
    /// [`LOG_FLUSH_EVERY`]. A log the store refuses is said once and does not stop the step:
    /// the step matters more than its log.
    fn write_logs(&mut self, done: bool) {
        let Some(logs) = self.logs.as_mut() else { return };
        if !done && logs.written_at.elapsed() < LOG_FLUSH_EVERY {
            return;
        }
        logs.written_at = Instant::now();
        for (stream, tail) in &logs.streams {
            let Some(log) = tail.take_log(logs.step, logs.attempt, *stream, done) else { continue };
            let written = block_on(self.run.service().store().put_step_log(self.run.plan_id(), log));
            if let (Err(e), false) = (written, logs.warned) {
                logs.warned = true;
                self.progress.note(&format!("the step's {stream} could not be kept in the store: {e}"));
            }
        }
    }

    /// Waits `delay` before a retry; a signal meanwhile ends the wait and is returned.
    /// A lease that cannot be kept ends the wait with its error: the plan is someone else's, or
    /// soon may be, so nothing more is recorded.
    fn sleep_unless_signalled(&mut self, delay: Duration) -> Result<Option<i32>, CliError> {
        let until = Instant::now() + delay;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.events.receiver.recv_timeout(left.min(TICK)) {
                Ok(Event::Signal(signal)) => return Ok(Some(signal)),
                Ok(Event::Drain) => {
                    self.draining = true;
                    return Ok(Some(SIGTERM));
                }
                Ok(Event::Exited { .. }) | Err(RecvTimeoutError::Timeout) => {
                    self.progress.tick();
                    self.keep_lease()?;
                }
                Err(RecvTimeoutError::Disconnected) => unreachable!("the runner holds a sender"),
            }
        }
    }

    /// A signal that arrived while no step was running, if any.
    fn signal_received(&mut self) -> Option<i32> {
        let mut drained = self.draining;
        let signal = self.events.receiver.try_iter().find_map(|event| match event {
            Event::Signal(signal) => Some(signal),
            Event::Drain => {
                drained = true;
                None
            }
            Event::Exited { .. } => None,
        });
        self.draining = drained;
        signal.or(drained.then_some(SIGTERM))
    }

    /// Renews a worker's lease when due. An error means the step must stop now: another runner
    /// holds the plan (`lease_lost`), or renewals failed for so long that the lease may run out.
    fn keep_lease(&mut self) -> Result<(), CliError> {
        let Some(keeper) = self.lease.as_mut() else { return Ok(()) };
        if !keeper.renew_due() {
            return Ok(());
        }
        let asked_at = Instant::now();
        match block_on(self.run.heartbeat()) {
            Ok(()) => {
                keeper.renewed_at = asked_at;
                Ok(())
            }
            Err(error @ EngineError::Service(ServiceError::Plan { source: PlanError::LeaseLost { .. }, .. })) => {
                Err(engine_error(self.run.plan_id(), error))
            }
            Err(error) if keeper.must_stop() => {
                let id = self.run.plan_id().clone();
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

    /// Waits for step `n`'s process, passing the first SIGINT/SIGTERM on to its process group. A
    /// second signal kills the group and stops waiting. Past `timeout`, the group gets SIGTERM,
    /// then SIGKILL after the grace period.
    fn wait(&mut self, group: Pid, n: u32, timeout: Option<Duration>) -> Result<Waited, CliError> {
        let mut first = None;
        let started = Instant::now();
        let mut kill_at: Option<Instant> = None;
        loop {
            match self.events.receiver.recv_timeout(TICK) {
                Ok(Event::Exited { step, end }) if step == n => {
                    return Ok(Waited { status: Some(end), signal: first, timed_out: kill_at.is_some() });
                }
                // A step that a second signal stopped waiting for, exiting late.
                Ok(Event::Exited { .. }) => {}
                Ok(Event::Signal(signal)) if first.is_none() => {
                    first = Some(signal);
                    let _ = kill_process_group(group, rustix_signal(signal));
                    self.progress.note(&format!(
                        "{} received: waiting for step {n} to stop; Ctrl-C again stops waiting",
                        signal_name(signal)
                    ));
                }
                Ok(Event::Signal(_)) => {
                    let _ = kill_process_group(group, Signal::KILL);
                    return Ok(Waited { status: None, signal: first, timed_out: kill_at.is_some() });
                }
                // The step may finish; the run stops at the next step boundary.
                Ok(Event::Drain) => self.draining = true,
                Err(RecvTimeoutError::Timeout) => {
                    self.progress.tick();
                    self.write_logs(false);
                    if let Err(lost) = self.keep_lease() {
                        let _ = kill_process_group(group, Signal::KILL);
                        return Err(lost);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => unreachable!("the runner holds a sender"),
            }
            match (timeout, kill_at) {
                (Some(limit), None) if started.elapsed() >= limit => {
                    let _ = kill_process_group(group, Signal::TERM);
                    kill_at = Some(Instant::now() + GRACE);
                    self.progress
                        .note(&format!("step {n} ran past its timeout of {}: stopping it", format_duration(limit)));
                }
                (_, Some(at)) if Instant::now() >= at => {
                    let _ = kill_process_group(group, Signal::KILL);
                }
                _ => {}
            }
        }
    }

    /// The error that ends a run whose step failed for good (exit 1); the engine has recorded
    /// the plan's failure.
    fn failed(&self, n: u32, step: &Step, failure: &StepFailure, tail: &str) -> CliError {
        let id = self.plan_id();
        let mut error = CliError::new(
            exit::UNEXPECTED,
            "step_failed",
            format!(
                "step {n} ({}) {failure}{}; fix the cause, then run the plan file again (or `waypoint resume {id}`)",
                step.name,
                last_line(tail).map_or(String::new(), |l| format!(": {l}")),
            ),
        );
        if matches!(failure, StepFailure::Timeout { .. }) {
            error = error.with("reason", "timeout");
        }
        error
            .with("plan_id", id.as_str())
            .with("step", n)
            .with("step_name", step.name.as_str())
            .with("exit_code", failure.exit_code().map_or(Value::Null, |code| json!(code)))
            .with("stderr_tail", tail)
    }

    /// Stops the run for `signal`, through the engine: the interruption is recorded, or, when
    /// every step had completed, the plan is finished instead. Either way the run ends with the
    /// signal's exit code (130 or 143).
    fn interrupted(&mut self, signal: i32, step: u32, reason: &str) -> CliError {
        let id = self.plan_id().clone();
        let stopped = match block_on(self.run.interrupt(reason)) {
            Ok(stopped) => stopped,
            Err(e) => return engine_error(&id, e),
        };
        let code = if signal == SIGTERM { exit::SIGTERM } else { exit::SIGINT };
        let message = match stopped {
            EngineStopped::Finished => format!("{reason}, the last step; the step completed, so plan {id} completed"),
            EngineStopped::Interrupted => {
                format!("{reason}; plan {id} stopped; run the plan file again to continue (or `waypoint resume {id}`)")
            }
        };
        CliError::new(code, "interrupted", message)
            .with("plan_id", id.as_str())
            .with("step", step)
            .with("signal", signal_name(signal))
    }
}

/// How an attempt that did not exit 0 failed.
fn failure_of(status: Option<&StepExit>, timed_out: bool, timeout: Option<Duration>) -> StepFailure {
    if timed_out {
        return StepFailure::Timeout { limit: timeout.unwrap_or_default() };
    }
    match status {
        Some(StepExit::Code(code)) => StepFailure::Exit { code: *code },
        Some(StepExit::Signal(signal)) => StepFailure::Signal { signal: *signal },
        Some(StepExit::Lost(text)) => StepFailure::Error { message: format!("could not be run: {}", one_line(text)) },
        None => StepFailure::Error { message: "ended in an unknown way".to_owned() },
    }
}

fn rustix_signal(signal: i32) -> Signal {
    if signal == SIGTERM {
        Signal::TERM
    } else {
        Signal::INT
    }
}
