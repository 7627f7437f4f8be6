//! [`WorkflowError`]: every way a workflow can refuse to start, continue or record a step, and
//! how the engine's and the service's errors become one of them.

use waypoint_domain::{InvalidValue, PlanId, ResumeIneligibleReason, StepName, StepNumber};

use crate::engine::{EngineError, StepFailure};
use crate::error::ServiceError;
use crate::ports::RunLockError;

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
    /// back. Run the key with [`WorkflowOptions::new`](super::WorkflowOptions::new) to start
    /// afresh.
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
