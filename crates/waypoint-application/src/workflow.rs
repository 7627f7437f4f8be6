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
use std::time::Duration;

use futures::future::Either;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use waypoint_domain::{
    ApprovalDecision, Checkpoint, PlanId, PlanName, ResumeSummary, RunnerId, StepName, StepNumber, StepOutput,
    PAUSED_REASON,
};

use crate::engine::{
    recorded_step, AttemptTicket, EngineError, EngineRun, Gate, Hold, Prepared, Retry, RunDefinition, StepFailure,
    StepPolicy, StepResult, StepTurn, Stopped, WorkflowKey,
};
use crate::error::ServiceError;
use crate::service::{LeaseRequest, PlanResumeService};
use crate::store::PlanStore;
use crate::timer::Timer;

mod error;
mod options;

pub use error::WorkflowError;
pub use options::{ShutdownToken, StepContext, StepOptions, WorkflowOptions};

/// How this run of the workflow works: live under the run lock, or replaying a finished one.
#[derive(Debug)]
enum Mode<S> {
    Live(Box<EngineRun<S>>),
    Replay { checkpoints: Vec<Checkpoint>, summary: Box<ResumeSummary> },
}

/// Where the value of a step comes from: something to run (the live run, the attempt), or
/// the step's recorded output.
enum Next<R, T> {
    Run(R),
    Recorded(T),
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
    pub async fn step_with<T, E, F, Fut>(&mut self, options: StepOptions, run: F) -> Result<T, WorkflowError>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Display,
        F: FnMut(StepContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let step = self.next;
        let name = StepName::parse(&options.name)?;
        let value = match self.mode.next(&self.plan_id, step, &name)? {
            Next::Recorded(value) => value,
            Next::Run(live) => attempts(live, &self.shutdown, step, &name, &options.policy, run).await?,
        };
        self.next = following(step);
        Ok(value)
    }

    /// An approval step: the workflow asks a person `question` before going on. The first run
    /// that reaches it records the question and ends with [`WorkflowError::Waiting`] (the plan
    /// is `waiting`, holding nothing); once someone approved it (`waypoint plan approve`), the
    /// next run records the decision as this step's output and returns it, and later runs get
    /// it back. A rejection fails the plan (`approval_rejected`).
    pub async fn approval(&mut self, name: &str, question: &str) -> Result<ApprovalDecision, WorkflowError> {
        let step = self.next;
        let name = StepName::parse(name)?;
        let decision = match self.mode.next(&self.plan_id, step, &name)? {
            Next::Recorded(decision) => decision,
            Next::Run(live) => approve(live, step, &name, question).await?,
        };
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

impl<S: PlanStore> Mode<S> {
    /// The live run, which runs step `step` named `name`; or, replaying a finished workflow,
    /// the step's recorded output.
    fn next<T: DeserializeOwned>(
        &mut self,
        plan_id: &PlanId,
        step: StepNumber,
        name: &StepName,
    ) -> Result<Next<&mut EngineRun<S>, T>, WorkflowError> {
        match self {
            Mode::Live(live) => Ok(Next::Run(live)),
            Mode::Replay { checkpoints, .. } => match recorded_step(checkpoints, step, name)? {
                Some(done) => Ok(Next::Recorded(read_back(done, step, name)?)),
                None => Err(WorkflowError::Finished { plan_id: plan_id.clone(), step }),
            },
        }
    }
}

/// Runs step `step` on the live run, attempt after attempt, until one succeeds or the engine
/// says the retries are spent.
async fn attempts<S, T, E, F, Fut>(
    live: &mut EngineRun<S>,
    shutdown: &ShutdownToken,
    step: StepNumber,
    name: &StepName,
    policy: &StepPolicy,
    mut run: F,
) -> Result<T, WorkflowError>
where
    S: PlanStore,
    T: Serialize + DeserializeOwned,
    E: fmt::Display,
    F: FnMut(StepContext) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        if shutdown.is_requested() {
            return Err(interrupted(live, step, "shutdown requested").await);
        }
        let ticket = match begin(live, step, name).await? {
            Next::Recorded(value) => return Ok(value),
            Next::Run(ticket) => ticket,
        };
        let context = StepContext {
            plan_id: live.plan_id().clone(),
            step,
            name: name.clone(),
            decision_id: ticket.decision_id.clone(),
            attempt: ticket.attempt,
            rerun: ticket.rerun,
        };
        let attempt = AssertUnwindSafe(run(context)).catch_unwind();
        let ran = match policy.timeout {
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
            None => StepFailure::Timeout { limit: policy.timeout.unwrap_or_default() },
        };
        match live.attempt_failed(&ticket, failure, policy, None).await {
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

/// Passes approval step `step` on the live run once someone approved it, recording the
/// decision as the step's output.
async fn approve<S: PlanStore>(
    live: &mut EngineRun<S>,
    step: StepNumber,
    name: &StepName,
    question: &str,
) -> Result<ApprovalDecision, WorkflowError> {
    let decision = match live.approval_gate(step, name, question).await? {
        Gate::Waiting => {
            let plan_id = live.plan_id().clone();
            return Err(WorkflowError::Waiting { plan_id, step, question: question.to_owned() });
        }
        Gate::Approved(decision) => decision,
    };
    let ticket = match begin(live, step, name).await? {
        Next::Recorded(decision) => return Ok(decision),
        Next::Run(ticket) => ticket,
    };
    let decision = decision.expect("an approved gate carries its decision");
    let output = to_output(&decision).map_err(|detail| WorkflowError::Output {
        step,
        name: name.clone(),
        detail: format!("cannot be recorded: {detail}"),
    })?;
    live.completed(&ticket, StepResult { output: Some(output), ..StepResult::default() }).await?;
    Ok(decision)
}

/// Starts step `step` on the live run: its attempt, or the output it recorded when it
/// completed earlier. A paused plan ends the run here: the engine recorded the interruption.
async fn begin<S: PlanStore, T: DeserializeOwned>(
    live: &mut EngineRun<S>,
    step: StepNumber,
    name: &StepName,
) -> Result<Next<AttemptTicket, T>, WorkflowError> {
    match live.begin_step(step, name).await? {
        StepTurn::Run(ticket) => Ok(Next::Run(ticket)),
        StepTurn::Replay(done) => Ok(Next::Recorded(read_back(&done, step, name)?)),
        StepTurn::Paused => Err(WorkflowError::Interrupted {
            plan_id: live.plan_id().clone(),
            next_step: step,
            reason: PAUSED_REASON.to_owned(),
        }),
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
