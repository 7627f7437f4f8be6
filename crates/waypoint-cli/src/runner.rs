//! The plan-file step loop: each step of the file in order through the step engine, attempt
//! after attempt (each run by `attempt.rs`), its outputs handed to the steps that follow, and
//! the run stopped at an approval, a pause or a signal. The engine (`waypoint_application::engine`)
//! decides what an attempt's end means: attempt numbers, retries and their delays, the plan's
//! failure, finishing. This file decides nothing of that; it loops and shows progress.

use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use serde_json::{json, Value};
use signal_hook::consts::SIGTERM;
pub use waypoint_application::engine::{format_duration, signal_name};
use waypoint_application::engine::{
    AttemptTicket, EngineError, EngineRun, Gate, Retry, StepFailure, StepResult, StepTurn, Stopped as EngineStopped,
};
use waypoint_domain::{Artifact, StepNumber, StepOutput};

use crate::attempt::{Attempt, TICK};
use crate::capture::{last_line, stderr_tail};
use crate::error::{engine_error, exit, CliError};
use crate::outputs::{digest_outputs, read_step_outputs};
use crate::plan_file::{PlanFile, Step};
use crate::progress::{Progress, StepEnd};
use crate::render::StepReport;
use crate::sidecar::Sidecar;
use crate::signals::{Event, Events};
use crate::store::AnyStore;
use crate::supervise::Supervisor;
use crate::worker::LeaseKeeper;

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

/// One run of a plan file: its steps in order, each through the step engine.
pub struct Runner<'a> {
    run: EngineRun<AnyStore>,
    sidecar: &'a Sidecar,
    file: &'a PlanFile,
    progress: Arc<Progress>,
    events: &'a Events,
    /// Every completed step's outputs so far, by step name: `$WAYPOINT_OUTPUTS`.
    outputs: serde_json::Map<String, Value>,
    /// For a run held by lease (a worker's): when to renew it while a step runs.
    lease: Option<LeaseKeeper>,
    /// A drain was asked for while a step ran: no further step starts.
    draining: bool,
    /// The step supervisor of this run, started with its first attempt.
    supervisor: Option<Supervisor>,
}

impl<'a> Runner<'a> {
    /// A runner of `file` through `run`, which the caller has started (created the plan or
    /// recorded `Resumed`); `lease` for a run held by lease rather than its run lock.
    pub fn new(
        run: EngineRun<AnyStore>,
        sidecar: &'a Sidecar,
        file: &'a PlanFile,
        progress: Arc<Progress>,
        events: &'a Events,
        lease: Option<LeaseKeeper>,
    ) -> Self {
        let outputs = Default::default();
        Runner { run, sidecar, file, progress, events, outputs, lease, draining: false, supervisor: None }
    }

    /// Runs every step of the plan file in order and finishes the plan. A step that completed
    /// in an earlier run is skipped, its recorded output handed to the steps that follow. The
    /// run also ends, without finishing the plan, at a step that waits for a person's approval,
    /// or at the step boundary after someone paused the plan.
    pub fn run_all(mut self) -> Result<RunEnd, CliError> {
        let mut reports = Vec::with_capacity(self.file.steps.len());
        for (index, step) in self.file.steps.iter().enumerate() {
            let n = index as u32 + 1;
            let number = StepNumber::new(n).expect("steps count from 1");
            if let Some(signal) = self.signal_received() {
                return Err(self.interrupted(signal, n, &format!("before step {n}")));
            }
            if let Some(question) = &step.approval {
                let gate = block_on(self.run.approval_gate(number, &step.step_name, question));
                if gate.map_err(|e| engine_error(self.run.plan_id(), e))? == Gate::Waiting {
                    self.progress.note(&format!("step {n} ({}) waits for approval: {question}", step.name));
                    return Ok(RunEnd { reports, stopped: Some(Stopped::Waiting) });
                }
            }
            match self.run_step(number, step)? {
                Some(report) => reports.push(report),
                None => {
                    self.progress.note(&format!("paused before step {n} ({})", step.name));
                    return Ok(RunEnd { reports, stopped: Some(Stopped::Paused) });
                }
            }
        }
        let id = self.run.plan_id().clone();
        block_on(self.run.finish()).map_err(|e| engine_error(&id, e))?;
        Ok(RunEnd { reports, stopped: None })
    }

    /// Runs step `number`, attempt after attempt, until one succeeds, the engine says the retries
    /// are spent, or a signal stops it; a step that completed earlier is only reported. `None`:
    /// the plan was paused, and this step did not start.
    fn run_step(&mut self, number: StepNumber, step: &Step) -> Result<Option<StepReport>, CliError> {
        let n = number.get();
        let policy = step.policy();
        loop {
            let asked_at = Instant::now();
            let turn = block_on(self.run.begin_step(number, &step.step_name));
            let turn = turn.map_err(|e| engine_error(self.run.plan_id(), e))?;
            // A step's start under a lease renews it.
            if let Some(keeper) = self.lease.as_mut() {
                keeper.renewed_at = asked_at;
            }
            let ticket = match turn {
                StepTurn::Replay(done) => {
                    self.progress.skipped(n, &step.name);
                    self.keep_output(step, done.output);
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
            let ran = Attempt {
                run: &self.run,
                sidecar: self.sidecar,
                progress: &self.progress,
                events: self.events,
                outputs: &self.outputs,
                supervisor: &mut self.supervisor,
                lease: self.lease.as_mut(),
                draining: &mut self.draining,
            }
            .run(n, step, &ticket)?;
            // A step that exited 0 did its work, even if a signal came meanwhile: record it.
            let outcome = match ran.failure() {
                None => self.collect(step),
                Some(failure) => Err(failure),
            };
            let report = match outcome {
                Ok(result) => {
                    let recorded = block_on(self.run.completed(&ticket, result));
                    let recorded = recorded.map_err(|e| engine_error(self.run.plan_id(), e))?;
                    self.progress.finished(n, &step.name, StepEnd::Completed);
                    self.keep_output(step, recorded.output);
                    let snapshot_id = recorded.snapshot_id.map(|s| s.to_string());
                    Some(StepReport::completed(n, &step.name, &ticket.decision_id, snapshot_id))
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
                        Err(other) => return Err(engine_error(self.run.plan_id(), other)),
                    }
                }
            };
            if let Some(signal) = ran.signal {
                return Err(self.interrupted(signal, n, &format!("during step {n}")));
            }
            return Ok(report);
        }
    }

    /// Hands a completed step's recorded output to the steps that follow (`{}` when it
    /// recorded none).
    fn keep_output(&mut self, step: &Step, output: Option<StepOutput>) {
        let output = output.map_or(Value::Object(Default::default()), StepOutput::into_value);
        self.outputs.insert(step.name.clone(), output);
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
                Err(self.interrupted(signal, n, &format!("while step {n} waited to retry")))
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
        // The step may have replaced its run folder (or `runs/`) with a link: nothing is read
        // through it (it could lead to a credentials file, recorded for good as the output).
        self.sidecar.check_run_folder(self.run.plan_id()).map_err(|e| StepFailure::Error {
            message: format!("exited 0 but $WAYPOINT_OUTPUT cannot be read: {e}"),
        })?;
        let written = read_step_outputs(&self.sidecar.output_file(self.run.plan_id()))
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
                    if let Some(keeper) = self.lease.as_mut() {
                        keeper.keep(&self.run)?;
                    }
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

    /// The error that ends a run whose step failed for good (exit 1); the engine has recorded
    /// the plan's failure.
    fn failed(&self, n: u32, step: &Step, failure: &StepFailure, tail: &str) -> CliError {
        let id = self.run.plan_id();
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

    /// Stops the run for `signal`, received `when` (`before step 2`), through the engine: the
    /// interruption is recorded, or, when every step had completed, the plan is finished
    /// instead. Either way the run ends with the signal's exit code (130 or 143).
    fn interrupted(&mut self, signal: i32, step: u32, when: &str) -> CliError {
        let reason = format!("{} received {when}", signal_name(signal));
        let stopped = match block_on(self.run.interrupt(&reason)) {
            Ok(stopped) => stopped,
            Err(e) => return engine_error(self.run.plan_id(), e),
        };
        let id = self.run.plan_id();
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
