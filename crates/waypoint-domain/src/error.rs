//! Every refusal a plan can give, as one typed error.

use crate::eligibility::ResumeIneligibleReason;
use crate::ids::{Attempt, CheckpointId, StepName, StepNumber, TotalSteps};
use crate::lifecycle::{Phase, ProcessingState};

/// A command the plan refused. Nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the plan does not exist yet; create it first")]
    NotCreated,
    #[error("the plan already exists")]
    AlreadyExists,
    #[error("the plan is {state}, which is terminal; it accepts no further commands")]
    Terminal { state: ProcessingState },
    #[error("there is no transition from {from} to {to}; allowed: action→strategize, strategize→execute, execute→apply, execute→strategize, apply→strategize")]
    InvalidPhaseTransition { from: Phase, to: Phase },
    #[error("{from}→{to} is not allowed while {from} is {state}")]
    TransitionNotAllowedInState { from: Phase, to: Phase, state: ProcessingState },
    #[error("cannot {command} while the plan is {phase}/{state}; it must be {required}")]
    InvalidState { command: &'static str, phase: Phase, state: ProcessingState, required: &'static str },
    #[error("step {step} is out of order: the next step to record is {expected}")]
    StepOutOfOrder { step: StepNumber, expected: StepNumber },
    #[error("step {step} is beyond the plan's total of {total} steps")]
    StepBeyondTotal { step: StepNumber, total: TotalSteps },
    #[error(
        "step {step} was already recorded as checkpoint {existing} with a different decision, snapshot or artifacts"
    )]
    ConflictingCheckpoint { step: StepNumber, existing: CheckpointId },
    #[error(
        "step {step} is recorded as {recorded:?} but was given as {given:?}; the plan's steps changed since it ran, so continue it with the definition it was started with or start a new plan"
    )]
    StepMismatch { step: StepNumber, recorded: StepName, given: StepName },
    #[error("attempt {attempt} of step {step} is not running{}; record a failed attempt after its step started and before it completed", running_text(.uncertain))]
    AttemptNotRunning { step: StepNumber, attempt: Attempt, uncertain: Option<StepNumber> },
    #[error("step {step} has not completed (last completed: {}); fork at a completed step", last_completed.map_or("none".to_owned(), |s| s.to_string()))]
    StepNotCompleted { step: StepNumber, last_completed: Option<StepNumber> },
    #[error("total steps {total} is below the last completed step {last_completed}")]
    TotalBelowCompleted { total: TotalSteps, last_completed: StepNumber },
    #[error("the plan cannot resume: {}", reasons_text(.reasons))]
    NotEligible { reasons: Vec<ResumeIneligibleReason> },
}

fn running_text(uncertain: &Option<StepNumber>) -> String {
    match uncertain {
        Some(step) => format!(" (step {step} is running)"),
        None => " (no step is running)".to_owned(),
    }
}

fn reasons_text(reasons: &[ResumeIneligibleReason]) -> String {
    reasons.iter().map(|r| format!("{} ({})", r.code(), r.explanation())).collect::<Vec<_>>().join("; ")
}

impl PlanError {
    /// A stable snake_case code for scripts and JSON error objects.
    pub fn code(&self) -> &'static str {
        match self {
            PlanError::NotCreated => "plan_not_found",
            PlanError::AlreadyExists => "plan_exists",
            PlanError::Terminal { .. } => "terminal_state",
            PlanError::InvalidPhaseTransition { .. } => "invalid_transition",
            PlanError::TransitionNotAllowedInState { .. } => "invalid_transition",
            PlanError::InvalidState { .. } => "invalid_state",
            PlanError::StepOutOfOrder { .. } => "step_out_of_order",
            PlanError::StepBeyondTotal { .. } => "step_beyond_total",
            PlanError::ConflictingCheckpoint { .. } => "conflicting_checkpoint",
            PlanError::StepMismatch { .. } => "step_mismatch",
            PlanError::StepNotCompleted { .. } => "step_not_completed",
            PlanError::AttemptNotRunning { .. } => "attempt_not_running",
            PlanError::TotalBelowCompleted { .. } => "total_below_completed",
            PlanError::NotEligible { .. } => "not_eligible",
        }
    }
}
