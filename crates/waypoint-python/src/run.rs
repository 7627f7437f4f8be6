//! One run of a Python workflow, the native half of the executor: it asks the step engine what
//! to do with each step and reports what the Python half saw (a value, an exception, a
//! timeout, an interruption). The engine decides; nothing here is a rule of running steps.
//! The Python half (`python/waypoint/_workflow.py`) calls the function, catches what it
//! raises, and times async steps.
//!
//! Every store call runs with the interpreter detached. The run's state sits behind a mutex
//! that is only ever taken while detached, so a thread waiting for it never holds the
//! interpreter that the thread holding it needs to finish.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures::executor::block_on;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use serde_json::Value;
use waypoint_application::engine::{recorded_step, AttemptTicket, FinishedRun};
use waypoint_application::{EngineError, EngineRun, Gate, Retry, StepFailure, StepPolicy, StepResult, StepTurn};
use waypoint_domain::{Checkpoint, PlanId, StepName, StepNumber, StepOutput};
use waypoint_stores::AnyStore;

use crate::errors::Failure;
use crate::json;

/// How this run works: live under the plan's run lock, or replaying a finished plan.
#[derive(Debug)]
enum Mode {
    Live(Box<EngineRun<AnyStore>>),
    Replay(Vec<Checkpoint>),
}

#[derive(Debug)]
struct RunState {
    plan_id: PlanId,
    /// `None` once the run ended (finished, interrupted, failed or closed): the run lock is
    /// released.
    mode: Option<Mode>,
    /// The step the next `begin_step` asks for.
    next: StepNumber,
    /// The attempt running now, between `begin_step` and its outcome.
    ticket: Option<AttemptTicket>,
    /// The plan's failure is on record (a step's last attempt failed, or the run failed).
    failed: bool,
    /// The completed steps' outputs when the run ended, for `run.outputs` after the block.
    final_outputs: Vec<(String, Option<Value>)>,
}

/// What `begin_step` found.
enum Turn {
    /// The step completed in an earlier run: its recorded output.
    Replay(Option<Value>),
    /// Run it now: this attempt (counted across runs) is recorded as started.
    Run { step: u32, attempt: u32, rerun: bool },
}

/// What became of a failed attempt.
enum AfterFailure {
    /// Wait, then try again.
    Retry(Duration),
    /// That was the last attempt: the plan's failure is recorded with this message.
    Failed(String),
}

/// A running (or replaying) workflow: `waypoint._native.Run`.
#[pyclass(module = "waypoint._native", name = "Run", frozen)]
#[derive(Debug)]
pub struct NativeRun {
    state: Mutex<RunState>,
    plan_id: String,
    resumed_from: Option<u32>,
    replay: bool,
}

impl NativeRun {
    pub fn live(run: EngineRun<AnyStore>) -> Self {
        let plan_id = run.plan_id().clone();
        let resumed_from = run.resumed().map(|point| point.from_step.get());
        Self::with(plan_id, Mode::Live(Box::new(run)), resumed_from)
    }

    pub fn replay(finished: FinishedRun) -> Self {
        let checkpoints = finished.view.state.resume.checkpoints;
        Self::with(finished.view.plan_id, Mode::Replay(checkpoints), None)
    }

    fn with(plan_id: PlanId, mode: Mode, resumed_from: Option<u32>) -> Self {
        let replay = matches!(mode, Mode::Replay(_));
        let state = RunState {
            plan_id: plan_id.clone(),
            mode: Some(mode),
            next: StepNumber::FIRST,
            ticket: None,
            failed: false,
            final_outputs: Vec::new(),
        };
        Self { state: Mutex::new(state), plan_id: plan_id.to_string(), resumed_from, replay }
    }

    /// The run's state. Only ever called while detached from the interpreter.
    fn lock(&self) -> MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[pymethods]
impl NativeRun {
    /// The workflow's plan: its key, or for a fresh start of a finished key, the new plan.
    #[getter]
    fn plan_id(&self) -> &str {
        &self.plan_id
    }

    /// The step this run continues from, when it continues an earlier run.
    #[getter]
    fn resumed_from(&self) -> Option<u32> {
        self.resumed_from
    }

    /// Whether this run replays a finished workflow: nothing runs.
    #[getter]
    fn is_replay(&self) -> bool {
        self.replay
    }

    /// Starts the next step, named `name`: `(True, output)` for a step that completed in an
    /// earlier run, `(False, (step, attempt, rerun))` for an attempt recorded as started now.
    fn begin_step<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyTuple>> {
        let name = StepName::parse(name).map_err(Failure::from)?;
        let turn = py.detach(|| self.lock().begin(&name))?;
        match turn {
            Turn::Replay(output) => {
                let value = json::to_python(py, output.as_ref().unwrap_or(&Value::Null))?;
                (true, value).into_pyobject(py)
            }
            Turn::Run { step, attempt, rerun } => (false, (step, attempt, rerun)).into_pyobject(py),
        }
    }

    /// An approval step named `name`, asking `question`: the decision (a dict with `approved`,
    /// `by`, `at`, `note`), recorded as this step's output. While nobody has decided, the
    /// question is recorded and `Waiting` is raised: the plan is `waiting` and holds nothing.
    fn approval<'py>(&self, py: Python<'py>, name: &str, question: &str) -> PyResult<Bound<'py, PyAny>> {
        let name = StepName::parse(name).map_err(Failure::from)?;
        let decision = py.detach(|| self.lock().approval(&name, question))?;
        json::to_python(py, &decision)
    }

    /// Records that the running attempt returned `value`. A value that is not JSON is a
    /// `TypeError` (and one over 1 MiB `OutputTooLarge`) and nothing is recorded: the caller
    /// reports it as the attempt's failure.
    fn completed(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let output = match json::to_json(value) {
            Ok(json) => StepOutput::new(json).map_err(Failure::from)?,
            Err(not_json) => {
                let label = py.detach(|| self.lock().running_label());
                return Err(PyTypeError::new_err(format!(
                    "{label} returned {not_json}; a step's output is recorded as JSON, so return a dict (with str \
                     keys), list, str, int, float, bool or None"
                )));
            }
        };
        py.detach(|| self.lock().completed(output))?;
        Ok(())
    }

    /// Reports that the running attempt failed: `kind` is `"error"` (it raised; `message` says
    /// what) or `"timeout"`. Returns `(delay, None)` when the engine retries the step after
    /// `delay` seconds, or `(None, message)` when that was the last attempt and the plan's
    /// failure is recorded with `message`.
    #[pyo3(signature = (kind, message, retries, retry_delay, timeout))]
    fn attempt_failed(
        &self,
        py: Python<'_>,
        kind: &str,
        message: String,
        retries: u32,
        retry_delay: f64,
        timeout: Option<f64>,
    ) -> PyResult<(Option<f64>, Option<String>)> {
        let policy = policy(retries, retry_delay, timeout)?;
        let failure = match kind {
            "error" => StepFailure::Error { message },
            "timeout" => StepFailure::Timeout { limit: policy.timeout.unwrap_or_default() },
            other => return Err(PyValueError::new_err(format!("unknown failure kind {other:?}"))),
        };
        let after = py.detach(|| self.lock().attempt_failed(failure, &policy))?;
        Ok(match after {
            AfterFailure::Retry(delay) => (Some(delay.as_secs_f64()), None),
            AfterFailure::Failed(message) => (None, Some(message)),
        })
    }

    /// Stops the run because of `what` (`KeyboardInterrupt`, …): the interruption is recorded
    /// (or, every step being done, the plan finished) and the run lock released.
    fn interrupt(&self, py: Python<'_>, what: &str) -> PyResult<()> {
        py.detach(|| self.lock().interrupt(what))?;
        Ok(())
    }

    /// Stops the run because the workflow's own code raised `what` outside a step: the plan's
    /// failure is recorded (unless a step's failure already is) and the run lock released.
    fn fail(&self, py: Python<'_>, what: &str) -> PyResult<()> {
        py.detach(|| self.lock().fail(what))?;
        Ok(())
    }

    /// Finishes the run: the plan is complete and its key replays from now on. A replay, or a
    /// run whose plan already failed, only ends.
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.lock().finish())?;
        Ok(())
    }

    /// Ends the run without recording anything, releasing the run lock: a later run continues
    /// as after a crash.
    fn close(&self, py: Python<'_>) {
        let mode = py.detach(|| self.lock().end());
        py.detach(move || drop(mode));
    }

    /// Every completed step's output so far, by step name (or number, for a step recorded
    /// without a name).
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let outputs = py.detach(|| self.lock().outputs());
        let dict = PyDict::new(py);
        for (name, output) in outputs {
            dict.set_item(name, json::to_python(py, output.as_ref().unwrap_or(&Value::Null))?)?;
        }
        Ok(dict)
    }
}

/// Step `step` of a finished workflow being replayed, through the engine's one lookup (which
/// checks its name); a step the workflow never had is an error, as nothing may run.
fn replayed<'c>(
    checkpoints: &'c [Checkpoint],
    plan_id: &PlanId,
    step: StepNumber,
    name: &StepName,
) -> Result<&'c Checkpoint, Failure> {
    recorded_step(checkpoints, step, name)?.ok_or_else(|| {
        Failure::invalid_state(format!(
            "workflow {plan_id} finished without a step {step}; run it with new=True to start afresh"
        ))
    })
}

impl RunState {
    fn begin(&mut self, name: &StepName) -> Result<Turn, Failure> {
        let step = self.next;
        let plan_id = self.plan_id.clone();
        if let Some(running) = &self.ticket {
            return Err(Failure::invalid_state(format!(
                "step {} ({}) of workflow {plan_id} is still running, so step {name:?} cannot start; a step's \
                 function calls other functions plainly, and one run runs one step at a time",
                running.step, running.name
            )));
        }
        match self.mode.as_mut() {
            None => Err(ended(&plan_id)),
            Some(Mode::Replay(checkpoints)) => {
                let done = replayed(checkpoints, &plan_id, step, name)?;
                let output = done.output.as_ref().map(|o| o.as_value().clone());
                self.next = following(step);
                Ok(Turn::Replay(output))
            }
            Some(Mode::Live(run)) => match block_on(run.begin_step(step, name))? {
                StepTurn::Replay(done) => {
                    self.next = following(step);
                    Ok(Turn::Replay(done.output.map(StepOutput::into_value)))
                }
                StepTurn::Run(ticket) => {
                    let turn = Turn::Run { step: step.get(), attempt: ticket.attempt.get(), rerun: ticket.rerun };
                    self.ticket = Some(ticket);
                    Ok(turn)
                }
                // The engine recorded the interruption (reason `paused`) at this step boundary.
                StepTurn::Paused => {
                    let plan_id = &self.plan_id;
                    Err(Failure::invalid_state(format!(
                        "workflow {plan_id} was paused before step {step}; run it again to continue"
                    )))
                }
            },
        }
    }

    fn approval(&mut self, name: &StepName, question: &str) -> Result<Value, Failure> {
        let step = self.next;
        let plan_id = self.plan_id.clone();
        let decision = match self.mode.as_mut() {
            None => return Err(ended(&plan_id)),
            Some(Mode::Replay(checkpoints)) => {
                let done = replayed(checkpoints, &plan_id, step, name)?;
                done.output.as_ref().map_or(Value::Null, |o| o.as_value().clone())
            }
            Some(Mode::Live(run)) => {
                let decision = match block_on(run.approval_gate(step, name, question))? {
                    Gate::Waiting => return Err(Failure::waiting(&plan_id, step, question)),
                    Gate::Approved(decision) => decision,
                };
                match block_on(run.begin_step(step, name))? {
                    StepTurn::Replay(done) => done.output.map_or(Value::Null, StepOutput::into_value),
                    StepTurn::Run(ticket) => {
                        let value = serde_json::to_value(decision.expect("an approved gate carries its decision"))
                            .map_err(|e| Failure::invalid_state(e.to_string()))?;
                        let output = StepOutput::new(value.clone()).map_err(Failure::from)?;
                        block_on(run.completed(&ticket, StepResult { output: Some(output), ..StepResult::default() }))?;
                        value
                    }
                    StepTurn::Paused => {
                        return Err(Failure::invalid_state(format!(
                            "workflow {plan_id} was paused before step {step}; run it again to continue"
                        )))
                    }
                }
            }
        };
        self.next = following(step);
        Ok(decision)
    }

    /// `step 2 (classify)`: the attempt running now, for messages.
    fn running_label(&self) -> String {
        match &self.ticket {
            Some(ticket) => format!("step {} ({})", ticket.step, ticket.name),
            None => format!("step {}", self.next),
        }
    }

    fn live(&mut self) -> Result<(&mut EngineRun<AnyStore>, AttemptTicket), Failure> {
        let plan_id = self.plan_id.clone();
        let Some(ticket) = self.ticket.take() else {
            return Err(Failure::invalid_state(format!("no step of workflow {plan_id} is running")));
        };
        match self.mode.as_mut() {
            Some(Mode::Live(run)) => Ok((run, ticket)),
            _ => Err(ended(&plan_id)),
        }
    }

    fn completed(&mut self, output: StepOutput) -> Result<(), Failure> {
        let (run, ticket) = self.live()?;
        block_on(run.completed(&ticket, StepResult { output: Some(output), ..StepResult::default() }))?;
        self.next = following(ticket.step);
        Ok(())
    }

    fn attempt_failed(&mut self, failure: StepFailure, policy: &StepPolicy) -> Result<AfterFailure, Failure> {
        let (run, ticket) = self.live()?;
        match block_on(run.attempt_failed(&ticket, failure, policy, None)) {
            Ok(Retry { delay, .. }) => Ok(AfterFailure::Retry(delay)),
            Err(EngineError::StepFailed { message, .. }) => {
                self.failed = true;
                Ok(AfterFailure::Failed(message.to_string()))
            }
            Err(other) => Err(other.into()),
        }
    }

    fn interrupt(&mut self, what: &str) -> Result<(), Failure> {
        let reason = match &self.ticket {
            Some(ticket) => format!("{what} during step {} ({})", ticket.step, ticket.name),
            None => format!("{what} before step {}", self.next),
        };
        if let Some(Mode::Live(mut run)) = self.end() {
            if !self.failed {
                block_on(run.interrupt(&reason))?;
            }
        }
        Ok(())
    }

    fn fail(&mut self, what: &str) -> Result<(), Failure> {
        if let Some(Mode::Live(mut run)) = self.end() {
            if !self.failed {
                block_on(run.fail(what))?;
                self.failed = true;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Failure> {
        match self.end() {
            Some(Mode::Live(run)) if !self.failed => {
                block_on(run.finish())?;
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(ended(&self.plan_id)),
        }
    }

    /// Ends the run: what it holds is handed back to be recorded or dropped (which releases
    /// the run lock), and its outputs so far are kept for `run.outputs`.
    fn end(&mut self) -> Option<Mode> {
        if self.mode.is_some() {
            self.final_outputs = self.outputs();
        }
        self.mode.take()
    }

    fn outputs(&self) -> Vec<(String, Option<Value>)> {
        let checkpoints = match &self.mode {
            Some(Mode::Live(run)) => run.checkpoints(),
            Some(Mode::Replay(checkpoints)) => checkpoints.as_slice(),
            None => return self.final_outputs.clone(),
        };
        checkpoints
            .iter()
            .map(|c| {
                let name = c.name.as_ref().map_or_else(|| c.step.to_string(), ToString::to_string);
                (name, c.output.as_ref().map(|o| o.as_value().clone()))
            })
            .collect()
    }
}

/// The run is over: its `with` block ended.
fn ended(plan_id: &PlanId) -> Failure {
    Failure::invalid_state(format!(
        "this run of workflow {plan_id} has ended; open it again with store.workflow(key) to run more steps"
    ))
}

/// The position after `step`. Past u32::MAX steps it stays put; the domain refuses such a step.
fn following(step: StepNumber) -> StepNumber {
    step.next().unwrap_or(step)
}

/// A step's policy from its keyword arguments.
fn policy(retries: u32, retry_delay: f64, timeout: Option<f64>) -> PyResult<StepPolicy> {
    let seconds = |name: &str, value: f64| {
        Duration::try_from_secs_f64(value).map_err(|_| {
            PyValueError::new_err(format!("{name} must be a number of seconds of at least 0, got {value}"))
        })
    };
    let retry_delay = seconds("retry_delay", retry_delay)?;
    let timeout = timeout.map(|t| seconds("timeout", t)).transpose()?;
    Ok(StepPolicy { retries, retry_delay, timeout })
}
