//! Durable workflows for Rust callers: start or continue a plan by a key you choose, and run
//! each step through [`Workflow::step`], which records the step and its output in the log. On a
//! later run with the same key, a completed step returns its recorded output without running;
//! the first step that did not complete runs again, and so does everything after it. A key
//! whose workflow finished replays: every step returns its recorded output and nothing runs,
//! until [`WorkflowOptions::new`] starts it afresh.
//!
//! This module is a closure executor over the step engine ([`crate::engine`]): the engine
//! decides attempts, retries, failures and finishing; this module runs futures and times them.
//!
//! ```
//! # futures::executor::block_on(async {
//! use waypoint_application::{InMemoryStore, PlanResumeService};
//! use waypoint_application::domain::PlanId;
//!
//! let service = PlanResumeService::new(InMemoryStore::new());
//! let key = PlanId::parse("nightly-report")?;
//! let mut run = service.workflow(&key).await?;
//! let rows: u32 = run.step("fetch", |_| async { Ok::<_, String>(42) }).await?;
//! let text: String = run.step("render", |_| async move { Ok::<_, String>(format!("{rows} rows")) }).await?;
//! assert_eq!(text, "42 rows");
//! run.finish().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::Either;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use waypoint_domain::{
    ApprovalDecision, Attempt, Checkpoint, DecisionId, InvalidValue, PlanId, PlanName, ResumeIneligibleReason,
    ResumeSummary, RunnerId, StepName, StepNumber, StepOutput,
};

use crate::engine::{
    EngineError, EngineRun, Gate, Hold, Prepared, Retry, RunDefinition, StepFailure, StepPolicy, StepResult, StepTurn,
    Stopped, WorkflowKey,
};
use crate::error::ServiceError;
use crate::ports::RunLockError;
use crate::service::{LeaseRequest, PlanResumeService};
use crate::store::PlanStore;
use crate::timer::Timer;

/// Why a workflow could not start, continue or record a step. Nothing half-done is left
/// behind: a failed step is recorded as the plan's failure, and the workflow can run again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// Another runner holds the workflow's run lock: it is running now.
    #[error("workflow {plan_id} is running elsewhere (still_running)")]
    StillRunning {
        /// The workflow's key.
        plan_id: PlanId,
    },
    /// The workflow finished before this step was ever recorded: a replay has nothing to give
    /// back. Run the key with [`WorkflowOptions::new`] to start afresh.
    #[error("workflow {plan_id} finished without a step {step}; run it with `new` to start afresh")]
    Finished {
        /// The workflow's key.
        plan_id: PlanId,
        /// The step asked for.
        step: StepNumber,
    },
    /// The workflow exists but cannot resume, for every reason listed.
    #[error("workflow {plan_id} cannot resume: {}", reasons.iter().map(|r| r.code()).collect::<Vec<_>>().join(", "))]
    NotResumable {
        /// The workflow's key.
        plan_id: PlanId,
        /// Every reason, as the eligibility function gives them.
        reasons: Vec<ResumeIneligibleReason>,
    },
    /// The code asks for a step under another name than the one recorded at that position:
    /// the workflow's code changed under a run that had already started.
    #[error("step {step} was recorded as {recorded:?}, but the code now calls it {given:?} (step_mismatch)")]
    StepMismatch {
        /// The step's position.
        step: StepNumber,
        /// The name in the log.
        recorded: StepName,
        /// The name the code gave.
        given: StepName,
    },
    /// The step's last attempt returned an error, panicked, timed out or gave an output that
    /// cannot be recorded; the failure is recorded and the workflow resumes from this step on
    /// its next run.
    #[error("step {step} ({name}) failed: {message}")]
    StepFailed {
        /// The step's position.
        step: StepNumber,
        /// The step's name.
        name: StepName,
        /// What the step said.
        message: String,
    },
    /// A recorded output does not read back as the step's type.
    #[error("the output of step {step} ({name}) {detail}")]
    Output {
        /// The step's position.
        step: StepNumber,
        /// The step's name.
        name: StepName,
        /// What went wrong.
        detail: String,
    },
    /// A shutdown was requested: the interruption is recorded and no further step started.
    #[error("workflow {plan_id} stopped before step {next_step}: {reason}")]
    Interrupted {
        /// The workflow's key.
        plan_id: PlanId,
        /// The step a resume will run first.
        next_step: StepNumber,
        /// Why it stopped.
        reason: String,
    },
    /// The workflow reached an approval step nobody has decided yet: the question is recorded,
    /// the plan is `waiting`, and this run ends. Run it again once someone approved
    /// (`waypoint plan approve KEY`); a rejection fails the plan.
    #[error("workflow {plan_id} waits at step {step} for a person to answer {question:?}")]
    Waiting {
        /// The workflow's key.
        plan_id: PlanId,
        /// The approval step.
        step: StepNumber,
        /// What the person is asked.
        question: String,
    },
    /// A step name or message is not a valid value.
    #[error(transparent)]
    InvalidValue(#[from] InvalidValue),
    /// The run lock was lost (its connection died): no further step starts.
    #[error(transparent)]
    RunLock(RunLockError),
    /// The service or the store failed.
    #[error(transparent)]
    Service(ServiceError),
}

impl From<ServiceError> for WorkflowError {
    fn from(error: ServiceError) -> Self {
        EngineError::from(error).into()
    }
}

impl From<EngineError> for WorkflowError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::StillRunning { plan_id } => WorkflowError::StillRunning { plan_id },
            // Still waiting for a person: the same answer as when the run stopped to ask.
            EngineError::NotResumable { plan_id, summary, .. } if summary.waiting_for.is_some() => {
                let waiting = summary.waiting_for.expect("checked");
                WorkflowError::Waiting { plan_id, step: waiting.step, question: waiting.question }
            }
            EngineError::NotResumable { plan_id, reasons, .. } => WorkflowError::NotResumable { plan_id, reasons },
            EngineError::StepMismatch { step, recorded, given } => {
                WorkflowError::StepMismatch { step, recorded, given }
            }
            EngineError::StepFailed { step, name, failure, .. } => {
                let message = match failure {
                    StepFailure::Error { message } => message,
                    other => other.to_string(),
                };
                WorkflowError::StepFailed { step, name, message }
            }
            EngineError::RunLock(lost) => WorkflowError::RunLock(lost),
            EngineError::Service(other) => WorkflowError::Service(other),
        }
    }
}

/// A request to stop a running workflow gracefully: the next [`Workflow::step`] records the
/// interruption instead of starting. Cheap to clone; hand one to a signal handler.
#[derive(Debug, Clone, Default)]
pub struct ShutdownToken(Arc<AtomicBool>);

impl ShutdownToken {
    /// Asks the workflow to stop before its next step.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How to start a workflow; [`PlanResumeService::workflow`] uses the defaults.
#[derive(Debug, Clone, Default)]
pub struct WorkflowOptions {
    /// The plan's name, shown by `plan list`; the key when absent.
    pub name: Option<String>,
    /// Start a fresh plan even if the key's workflow finished (its next generation).
    pub new: bool,
    /// Hold the workflow by a lease of this length instead of its run lock: for a runner that
    /// cannot keep a lock for the whole run. Each step's start renews it; a step that runs
    /// longer must call [`Workflow::heartbeat`]. Once it expired, another runner may take the
    /// workflow over, and this one can record nothing more (`lease_lost`).
    pub lease: Option<Duration>,
}

/// How to run one step; [`StepOptions::named`] is what [`Workflow::step`] uses.
#[derive(Debug, Clone)]
pub struct StepOptions {
    /// The step's name: the same name must come at the same position on every run.
    pub name: String,
    /// Retries, their delay (doubled after each failure, capped at 5 minutes) and a timeout;
    /// a step that runs past its timeout is cancelled (its future is dropped).
    pub policy: StepPolicy,
}

impl StepOptions {
    /// A step with this name, no retries and no timeout.
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into(), policy: StepPolicy::default() }
    }

    /// Tries a failed attempt again up to `retries` times.
    pub fn retries(mut self, retries: u32) -> Self {
        self.policy.retries = retries;
        self
    }

    /// Waits `delay` before the first retry, twice that before the next, and so on.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.policy.retry_delay = delay;
        self
    }

    /// Cancels an attempt that runs longer than `timeout`; it counts as a failed attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.policy.timeout = Some(timeout);
        self
    }
}

/// What a running step knows about itself.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The workflow's key.
    pub plan_id: PlanId,
    /// The step's position, from 1.
    pub step: StepNumber,
    /// The step's name.
    pub name: StepName,
    /// The decision recorded for this attempt of the step.
    pub decision_id: DecisionId,
    /// Which attempt this is, counted across runs.
    pub attempt: Attempt,
    /// True when an earlier run started this step but did not record its completion: its effects
    /// may be partly done, so make it idempotent.
    pub rerun: bool,
}

/// How this run of the workflow works: live under the run lock, or replaying a finished one.
#[derive(Debug)]
enum Mode<S> {
    Live(Box<EngineRun<S>>),
    Replay { checkpoints: Vec<Checkpoint>, summary: Box<ResumeSummary> },
}

/// One run of a durable workflow. A live run holds the workflow's run lock until it is dropped,
/// so no other runner can continue it meanwhile; dropping it without [`Workflow::finish`] or
/// [`Workflow::interrupt`] leaves a workflow that a later run continues as after a crash.
#[derive(Debug)]
pub struct Workflow<S> {
    mode: Mode<S>,
    plan_id: PlanId,
    next: StepNumber,
    resumed_from: Option<StepNumber>,
    shutdown: ShutdownToken,
}

impl<S: PlanStore> PlanResumeService<S> {
    /// Starts the workflow keyed `key`, or continues it: created if it does not exist, resumed
    /// from its first incomplete step if it was interrupted, failed or crashed, replayed if it
    /// finished. Refused while another runner holds it ([`WorkflowError::StillRunning`]).
    pub async fn workflow(&self, key: &PlanId) -> Result<Workflow<S>, WorkflowError> {
        self.workflow_with(key, WorkflowOptions::default()).await
    }

    /// [`Self::workflow`], holding the workflow by a lease of `lease` rather than by its run
    /// lock (see [`WorkflowOptions::lease`]).
    pub async fn workflow_with_lease(&self, key: &PlanId, lease: Duration) -> Result<Workflow<S>, WorkflowError> {
        self.workflow_with(key, WorkflowOptions { lease: Some(lease), ..WorkflowOptions::default() }).await
    }

    /// [`Self::workflow`] with a name, a lease, or a fresh start of a finished key.
    pub async fn workflow_with(&self, key: &PlanId, options: WorkflowOptions) -> Result<Workflow<S>, WorkflowError> {
        let runner = RunnerId::parse(&format!("workflow-{}", std::process::id()))?;
        let key = WorkflowKey::new(key.clone());
        let name = PlanName::lossy(options.name.as_deref().unwrap_or(key.first().as_str()));
        let definition = RunDefinition::unnamed_steps(name, key.source());
        let hold = match options.lease {
            Some(duration) => Hold::Lease(LeaseRequest::new(runner, duration)),
            None => Hold::Lock(runner),
        };
        let (mode, plan_id, resumed_from) = match self.prepare_held(&key, definition, hold, options.new).await? {
            Prepared::Fresh(ready) | Prepared::Continue(ready, _) => {
                let run = ready.start().await?;
                let (plan_id, resumed) = (run.plan_id().clone(), run.resumed().map(|p| p.from_step));
                (Mode::Live(Box::new(run)), plan_id, resumed)
            }
            Prepared::Finished(finished) => {
                let plan_id = finished.view.plan_id.clone();
                let checkpoints = finished.view.state.resume.checkpoints;
                (Mode::Replay { checkpoints, summary: Box::new(finished.summary) }, plan_id, None)
            }
            Prepared::Removed(removal) => return Err(WorkflowError::Service(ServiceError::Removed(removal))),
        };
        Ok(Workflow { mode, plan_id, next: StepNumber::FIRST, resumed_from, shutdown: ShutdownToken::default() })
    }
}

impl<S: PlanStore> Workflow<S> {
    /// The workflow's plan: its key, or for a fresh start of a finished key, the new plan.
    pub fn plan_id(&self) -> &PlanId {
        &self.plan_id
    }

    /// The step this run continues from, when it continues an earlier run.
    pub fn resumed_from(&self) -> Option<StepNumber> {
        self.resumed_from
    }

    /// Whether this run replays a finished workflow: no step runs.
    pub fn is_replay(&self) -> bool {
        matches!(self.mode, Mode::Replay { .. })
    }

    /// A token that stops the workflow gracefully before its next step.
    pub fn shutdown_token(&self) -> ShutdownToken {
        self.shutdown.clone()
    }

    /// Runs the next step, or returns its recorded output if an earlier run completed it. The
    /// output must serialize to JSON of at most 1 MiB; it is what later runs get back.
    pub async fn step<T, E, F, Fut>(&mut self, name: &str, run: F) -> Result<T, WorkflowError>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Display,
        F: FnOnce(StepContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // Without retries the step is called at most once.
        let mut once = Some(run);
        self.step_with(StepOptions::named(name), move |context| {
            once.take().expect("a step without retries is called once")(context)
        })
        .await
    }

    /// [`Self::step`] with options: retries with a growing delay, and a timeout. The step is
    /// called once per attempt.
    pub async fn step_with<T, E, F, Fut>(&mut self, options: StepOptions, mut run: F) -> Result<T, WorkflowError>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Display,
        F: FnMut(StepContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let step = self.next;
        let name = StepName::parse(&options.name)?;
        let live = match &mut self.mode {
            Mode::Replay { checkpoints, .. } => {
                let Some(done) = checkpoints.iter().find(|c| c.step == step) else {
                    return Err(WorkflowError::Finished { plan_id: self.plan_id.clone(), step });
                };
                let value = read_back(done, step, &name)?;
                self.next = following(step);
                return Ok(value);
            }
            Mode::Live(live) => live,
        };
        loop {
            if self.shutdown.is_requested() {
                return Err(interrupted(live, self.next, "shutdown requested").await);
            }
            let ticket = match live.begin_step(step, &name).await? {
                StepTurn::Replay(done) => {
                    let value = read_back(&done, step, &name)?;
                    self.next = following(step);
                    return Ok(value);
                }
                StepTurn::Run(ticket) => ticket,
                StepTurn::Paused => {
                    return Err(WorkflowError::Interrupted {
                        plan_id: self.plan_id.clone(),
                        next_step: step,
                        reason: waypoint_domain::PAUSED_REASON.to_owned(),
                    })
                }
            };
            let context = StepContext {
                plan_id: self.plan_id.clone(),
                step,
                name: name.clone(),
                decision_id: ticket.decision_id.clone(),
                attempt: ticket.attempt,
                rerun: ticket.rerun,
            };
            let attempt = AssertUnwindSafe(run(context)).catch_unwind();
            let ran = match options.policy.timeout {
                None => Some(attempt.await),
                Some(limit) => match futures::future::select(Box::pin(attempt), Timer::after(limit)).await {
                    Either::Left((ran, _)) => Some(ran),
                    Either::Right(((), _)) => None,
                },
            };
            let mut panic = None;
            let failure = match ran {
                Some(Ok(Ok(value))) => match to_output(&value) {
                    Ok(output) => {
                        live.completed(&ticket, StepResult { output: Some(output), ..StepResult::default() }).await?;
                        self.next = following(step);
                        return Ok(value);
                    }
                    Err(detail) => StepFailure::Error { message: format!("its output cannot be recorded: {detail}") },
                },
                Some(Ok(Err(error))) => StepFailure::Error { message: error.to_string() },
                Some(Err(payload)) => {
                    let message = panic_message(&*payload);
                    panic = Some(payload);
                    StepFailure::Panic { message }
                }
                None => StepFailure::Timeout { limit: options.policy.timeout.unwrap_or_default() },
            };
            match live.attempt_failed(&ticket, failure, &options.policy, None).await {
                Ok(Retry { delay, .. }) => Timer::after(delay).await,
                Err(error) => {
                    // The failure is on record; a panic goes on to the caller as panics do.
                    if let (Some(payload), EngineError::StepFailed { .. }) = (panic, &error) {
                        std::panic::resume_unwind(payload);
                    }
                    return Err(error.into());
                }
            }
        }
    }

    /// An approval step: the workflow asks a person `question` before going on. The first run
    /// that reaches it records the question and ends with [`WorkflowError::Waiting`] (the plan
    /// is `waiting`, holding nothing); once someone approved it (`waypoint plan approve`), the
    /// next run records the decision as this step's output and returns it, and later runs get
    /// it back. A rejection fails the plan (`approval_rejected`).
    pub async fn approval(&mut self, name: &str, question: &str) -> Result<ApprovalDecision, WorkflowError> {
        let step = self.next;
        let name = StepName::parse(name)?;
        let live = match &mut self.mode {
            Mode::Replay { checkpoints, .. } => {
                let Some(done) = checkpoints.iter().find(|c| c.step == step) else {
                    return Err(WorkflowError::Finished { plan_id: self.plan_id.clone(), step });
                };
                let decision = read_back(done, step, &name)?;
                self.next = following(step);
                return Ok(decision);
            }
            Mode::Live(live) => live,
        };
        let decision = match live.approval_gate(step, &name, question).await? {
            Gate::Waiting => {
                return Err(WorkflowError::Waiting {
                    plan_id: self.plan_id.clone(),
                    step,
                    question: question.to_owned(),
                })
            }
            Gate::Approved(decision) => decision,
        };
        let ticket = match live.begin_step(step, &name).await? {
            StepTurn::Replay(done) => {
                let decision = read_back(&done, step, &name)?;
                self.next = following(step);
                return Ok(decision);
            }
            StepTurn::Run(ticket) => ticket,
            StepTurn::Paused => {
                let reason = waypoint_domain::PAUSED_REASON.to_owned();
                return Err(WorkflowError::Interrupted { plan_id: self.plan_id.clone(), next_step: step, reason });
            }
        };
        let decision = decision.expect("an approved gate carries its decision");
        let output = to_output(&decision).map_err(|detail| WorkflowError::Output {
            step,
            name: name.clone(),
            detail: format!("cannot be recorded: {detail}"),
        })?;
        live.completed(&ticket, StepResult { output: Some(output), ..StepResult::default() }).await?;
        self.next = following(step);
        Ok(decision)
    }

    /// Renews the workflow's lease ([`WorkflowOptions::lease`]), or checks its run lock. Call it
    /// from a step that runs longer than the lease.
    pub async fn heartbeat(&self) -> Result<(), WorkflowError> {
        match &self.mode {
            Mode::Live(run) => Ok(run.heartbeat().await?),
            Mode::Replay { .. } => Ok(()),
        }
    }

    /// Marks the workflow complete: a later run with the same key replays it. For a replay,
    /// nothing is written.
    pub async fn finish(self) -> Result<ResumeSummary, WorkflowError> {
        match self.mode {
            Mode::Live(run) => Ok(run.finish().await?),
            Mode::Replay { summary, .. } => Ok(*summary),
        }
    }

    /// Stops here, recording why; a later run continues with the next step. For a replay,
    /// nothing is written.
    pub async fn interrupt(mut self, reason: &str) -> Result<(), WorkflowError> {
        let next = self.next;
        match &mut self.mode {
            Mode::Live(run) => match interrupted(run, next, reason).await {
                WorkflowError::Interrupted { .. } => Ok(()),
                other => Err(other),
            },
            Mode::Replay { .. } => Ok(()),
        }
    }
}

/// The position after `step`. Past u32::MAX steps it stays put; the domain refuses such a step.
fn following(step: StepNumber) -> StepNumber {
    step.next().unwrap_or(step)
}

/// Records the interruption and gives the error that ends the run (or what went wrong).
async fn interrupted<S: PlanStore>(run: &mut EngineRun<S>, next_step: StepNumber, reason: &str) -> WorkflowError {
    match run.interrupt(reason).await {
        Ok(Stopped::Interrupted | Stopped::Finished) => {
            WorkflowError::Interrupted { plan_id: run.plan_id().clone(), next_step, reason: reason.to_owned() }
        }
        Err(error) => error.into(),
    }
}

/// A completed step's recorded output, as the step's type.
fn read_back<T: DeserializeOwned>(done: &Checkpoint, step: StepNumber, name: &StepName) -> Result<T, WorkflowError> {
    if let Some(recorded) = done.name.as_ref().filter(|recorded| *recorded != name) {
        return Err(WorkflowError::StepMismatch { step, recorded: recorded.clone(), given: name.clone() });
    }
    let value = done.output.as_ref().map_or(serde_json::Value::Null, |o| o.as_value().clone());
    serde_json::from_value(value).map_err(|e| WorkflowError::Output {
        step,
        name: name.clone(),
        detail: format!("recorded in the log does not read back as this step's type: {e}"),
    })
}

fn to_output<T: Serialize>(value: &T) -> Result<StepOutput, String> {
    let json = serde_json::to_value(value).map_err(|e| e.to_string())?;
    StepOutput::new(json).map_err(|e| e.to_string())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests;
