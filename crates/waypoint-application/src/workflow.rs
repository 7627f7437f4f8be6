//! Durable workflows for Rust callers: start or continue a plan by a key you choose, and run
//! each step through [`Workflow::step`], which records the step and its output in the log. On a
//! later run with the same key, a completed step returns its recorded output without running;
//! the first step that did not complete runs again, and so does everything after it.
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

use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use waypoint_domain::{
    Checkpoint, DecisionId, InvalidValue, Message, Phase, PlanError, PlanId, PlanName, ProcessingState,
    ResumeIneligibleReason, ResumeSummary, RunnerId, StepName, StepNumber, StepOutput,
};

use crate::error::ServiceError;
use crate::ports::{RunLockError, RunLockGuard};
use crate::service::{NewPlan, PlanResumeService, ResumeRequest, StepCheckpoint, StepStart};
use crate::store::PlanStore;

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
    /// The workflow already finished; run a new key to start afresh.
    #[error("workflow {plan_id} already finished ({state})")]
    Finished {
        /// The workflow's key.
        plan_id: PlanId,
        /// How it ended.
        state: ProcessingState,
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
    /// The step returned an error or panicked; the failure is recorded and the workflow resumes
    /// from this step on its next run.
    #[error("step {step} ({name}) failed: {message}")]
    StepFailed {
        /// The step's position.
        step: StepNumber,
        /// The step's name.
        name: StepName,
        /// What the step said.
        message: String,
    },
    /// A step's output could not be recorded or read back (too large, not JSON, another type).
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
        match error {
            ServiceError::Plan { source: PlanError::StepMismatch { step, recorded, given }, .. } => {
                WorkflowError::StepMismatch { step, recorded, given }
            }
            ServiceError::RunLock(RunLockError::Busy { plan_id }) => WorkflowError::StillRunning { plan_id },
            ServiceError::RunLock(lost) => WorkflowError::RunLock(lost),
            other => WorkflowError::Service(other),
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

/// How to run one step; [`StepOptions::named`] is what [`Workflow::step`] uses.
#[derive(Debug, Clone)]
pub struct StepOptions {
    /// The step's name: the same name must come at the same position on every run.
    pub name: String,
    /// The decision recorded for the step; derived from its position when absent.
    pub decision_id: Option<DecisionId>,
}

impl StepOptions {
    /// A step with this name and a derived decision id.
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into(), decision_id: None }
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
    /// The decision recorded for this run of the step.
    pub decision_id: DecisionId,
    /// True when an earlier run started this step but did not record its completion: its effects
    /// may be partly done, so make it idempotent.
    pub rerun: bool,
}

/// One run of a durable workflow. Holds the workflow's run lock until it is dropped, so no other
/// runner can continue it meanwhile; dropping it without [`Workflow::finish`] or
/// [`Workflow::interrupt`] leaves a workflow that a later run continues as after a crash.
#[derive(Debug)]
pub struct Workflow<S> {
    service: PlanResumeService<S>,
    plan_id: PlanId,
    guard: RunLockGuard,
    /// The checkpoints recorded before this run, in step order.
    recorded: Vec<Checkpoint>,
    /// The step a crash left started but not completed, if any.
    uncertain: Option<StepNumber>,
    next: StepNumber,
    resumed_from: Option<StepNumber>,
    shutdown: ShutdownToken,
}

impl<S: PlanStore> PlanResumeService<S> {
    /// Starts the workflow keyed `key`, or continues it: created if it does not exist, resumed
    /// from its first incomplete step if it was interrupted, failed or crashed. Refused while
    /// another runner holds it ([`WorkflowError::StillRunning`]) and once it has finished
    /// ([`WorkflowError::Finished`]).
    pub async fn workflow(&self, key: &PlanId) -> Result<Workflow<S>, WorkflowError> {
        let runner = RunnerId::parse(&format!("workflow-{}", std::process::id()))?;
        let guard = self.acquire_run_lock(key, &runner)?;
        let mut resumed_from = None;
        match self.store().load_view(key).await.map_err(ServiceError::from)? {
            None => {
                let new = NewPlan {
                    id: Some(key.clone()),
                    name: Some(PlanName::parse(key.as_str())?),
                    start: Some((Phase::Strategize, Some(runner))),
                    ..NewPlan::default()
                };
                self.create_plan(new).await?;
            }
            Some(view) if view.state.phase == Phase::Action => {
                self.start_phase(key, Phase::Strategize, Some(runner)).await?;
            }
            Some(view) if view.state.state.is_terminal() || view.state.state == ProcessingState::Complete => {
                return Err(WorkflowError::Finished { plan_id: key.clone(), state: view.state.state });
            }
            Some(_) => {
                let request = ResumeRequest { runner: Some(runner), ..ResumeRequest::default() };
                match self.resume_plan(key, request).await {
                    Ok(outcome) => resumed_from = outcome.resumed.map(|point| point.from_step),
                    Err(error) => match error.reasons() {
                        Some(reasons) => {
                            return Err(WorkflowError::NotResumable { plan_id: key.clone(), reasons: reasons.to_vec() })
                        }
                        None => return Err(error.into()),
                    },
                }
            }
        }
        let view = self.load(key).await?;
        Ok(Workflow {
            service: self.clone(),
            plan_id: key.clone(),
            guard,
            recorded: view.state.resume.checkpoints.clone(),
            uncertain: view.state.resume.uncertain_step,
            next: StepNumber::FIRST,
            resumed_from,
            shutdown: ShutdownToken::default(),
        })
    }
}

impl<S: PlanStore> Workflow<S> {
    /// The workflow's key.
    pub fn plan_id(&self) -> &PlanId {
        &self.plan_id
    }

    /// The step this run continues from, when it continues an earlier run.
    pub fn resumed_from(&self) -> Option<StepNumber> {
        self.resumed_from
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
        self.step_with(StepOptions::named(name), run).await
    }

    /// [`Self::step`] with options (a decision id of your own).
    pub async fn step_with<T, E, F, Fut>(&mut self, options: StepOptions, run: F) -> Result<T, WorkflowError>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Display,
        F: FnOnce(StepContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let step = self.next;
        let name = StepName::parse(&options.name)?;
        if let Some(done) = self.recorded.iter().find(|c| c.step == step) {
            if let Some(recorded) = done.name.as_ref().filter(|recorded| **recorded != name) {
                return Err(WorkflowError::StepMismatch { step, recorded: recorded.clone(), given: name });
            }
            let value = done.output.as_ref().map_or(serde_json::Value::Null, |o| o.as_value().clone());
            let output = serde_json::from_value(value).map_err(|e| WorkflowError::Output {
                step,
                name: name.clone(),
                detail: format!("recorded in the log does not read back as this step's type: {e}"),
            })?;
            self.advance();
            return Ok(output);
        }
        if self.shutdown.is_requested() {
            return Err(self.record_interruption("shutdown requested").await);
        }
        self.guard.check().map_err(WorkflowError::RunLock)?;
        let decision_id = match options.decision_id {
            Some(decision) => decision,
            None => DecisionId::parse(&format!("step-{step}"))?,
        };
        let start = StepStart { name: Some(name.clone()), ..StepStart::new(step, decision_id.clone()) };
        self.service.record_step_started(&self.plan_id, start).await?;
        let context = StepContext {
            plan_id: self.plan_id.clone(),
            step,
            name: name.clone(),
            decision_id: decision_id.clone(),
            rerun: self.uncertain == Some(step),
        };
        let value = match AssertUnwindSafe(run(context)).catch_unwind().await {
            Ok(Ok(value)) => value,
            Ok(Err(error)) => return Err(self.record_failure(step, name, error.to_string()).await),
            Err(panic) => {
                let message = panic_message(&*panic);
                // The failure is on record; the panic goes on to the caller as panics do.
                let _ = self.record_failure(step, name, format!("panicked: {message}")).await;
                std::panic::resume_unwind(panic);
            }
        };
        let output = serde_json::to_value(&value)
            .map_err(|e| e.to_string())
            .and_then(|json| StepOutput::new(json).map_err(|e| e.to_string()));
        let output = match output {
            Ok(output) => output,
            Err(detail) => {
                let message = format!("its output cannot be recorded: {detail}");
                let _ = self.record_failure(step, name.clone(), message).await;
                return Err(WorkflowError::Output { step, name, detail: format!("cannot be recorded: {detail}") });
            }
        };
        let checkpoint =
            StepCheckpoint { name: Some(name), output: Some(output), ..StepCheckpoint::new(step, decision_id) };
        self.service.record_step_checkpoint(&self.plan_id, checkpoint).await?;
        self.advance();
        Ok(value)
    }

    /// Marks the workflow complete: a later run with the same key says it finished.
    pub async fn finish(self) -> Result<ResumeSummary, WorkflowError> {
        self.service.complete_phase(&self.plan_id).await?;
        Ok(self.service.build_resume_summary(&self.plan_id, None).await?)
    }

    /// Stops here, recording why; a later run continues with the next step.
    pub async fn interrupt(mut self, reason: &str) -> Result<(), WorkflowError> {
        match self.record_interruption(reason).await {
            WorkflowError::Interrupted { .. } => Ok(()),
            other => Err(other),
        }
    }

    fn advance(&mut self) {
        // Past u32::MAX steps the position stays put; the domain refuses such a step anyway.
        self.next = self.next.next().unwrap_or(self.next);
    }

    async fn record_interruption(&mut self, reason: &str) -> WorkflowError {
        let recorded = match Message::parse(reason) {
            Ok(message) => self.service.record_shutdown(&self.plan_id, message).await.map_err(WorkflowError::from),
            Err(invalid) => Err(invalid.into()),
        };
        match recorded {
            Ok(_) => WorkflowError::Interrupted {
                plan_id: self.plan_id.clone(),
                next_step: self.next,
                reason: reason.to_owned(),
            },
            Err(error) => error,
        }
    }

    async fn record_failure(&self, step: StepNumber, name: StepName, message: String) -> WorkflowError {
        let text: String = format!("step {step} ({name}) failed: {message}").chars().take(Message::MAX_LEN).collect();
        let text = text
            .chars()
            .map(|c| if c.is_control() && c != '\n' && c != '\t' { '\u{fffd}' } else { c })
            .collect::<String>();
        match Message::parse(&text) {
            Ok(text) => {
                if let Err(error) = self.service.fail(&self.plan_id, text).await {
                    return error.into();
                }
            }
            Err(invalid) => return invalid.into(),
        }
        WorkflowError::StepFailed { step, name, message }
    }
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
