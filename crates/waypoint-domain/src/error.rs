//! Every refusal a plan can give, as one typed error.

use crate::definition::{describe_changes, ChangedStep};
use crate::eligibility::ResumeIneligibleReason;
use crate::ids::{Actor, Attempt, CheckpointId, RunnerId, StepName, StepNumber, TotalSteps};
use crate::lifecycle::{Phase, ProcessingState};

/// A command the plan refused. Nothing was recorded. Each variant has a stable code
/// ([`PlanError::code`]) that scripts and JSON error objects use.
///
/// Not `#[non_exhaustive]` on purpose: `tests/integration/domain_coverage.rs` matches it
/// exhaustively, so a new variant does not compile until a test covers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A command other than create or fork on a plan with no events.
    #[error("the plan does not exist yet; create it first")]
    NotCreated,
    /// Create or fork with an id that already has events.
    #[error("the plan already exists")]
    AlreadyExists,
    /// Any command but a resume on an `applied` or `cancelled` plan.
    #[error("the plan is {state}, which is terminal; it accepts no further commands")]
    Terminal {
        /// The terminal state the plan is in.
        state: ProcessingState,
    },
    /// There is no edge between the two phases at all.
    #[error("there is no transition from {from} to {to}; allowed: action→strategize, strategize→execute, execute→apply, execute→strategize, apply→strategize")]
    InvalidPhaseTransition {
        /// The plan's phase.
        from: Phase,
        /// The phase asked for.
        to: Phase,
    },
    /// The edge exists, but not from the plan's current state (advancing needs `complete`).
    #[error("{from}→{to} is not allowed while {from} is {state}")]
    TransitionNotAllowedInState {
        /// The plan's phase.
        from: Phase,
        /// The phase asked for.
        to: Phase,
        /// The plan's state, which does not allow the move.
        state: ProcessingState,
    },
    /// The command needs another phase or state than the plan is in.
    #[error("cannot {command} while the plan is {phase}/{state}; it must be {required}")]
    InvalidState {
        /// The refused command, as a verb phrase ([`PlanCommand::name`](crate::PlanCommand::name)).
        command: &'static str,
        /// The plan's phase.
        phase: Phase,
        /// The plan's state.
        state: ProcessingState,
        /// What the command needs, for people (`"processing"`).
        required: &'static str,
    },
    /// A step that is not the one after the last completed step: steps are recorded in order.
    #[error("step {step} is out of order: the next step to record is {expected}")]
    StepOutOfOrder {
        /// The step given.
        step: StepNumber,
        /// The only step that may be recorded now.
        expected: StepNumber,
    },
    /// A step above the phase's known total. Checked before the order.
    #[error("step {step} is beyond the plan's total of {total} steps")]
    StepBeyondTotal {
        /// The step given.
        step: StepNumber,
        /// The phase's total.
        total: TotalSteps,
    },
    /// A completed step recorded again with a different decision, snapshot, artifacts or
    /// output. The same payload again is an idempotent retry, not this error.
    #[error(
        "step {step} was already recorded as checkpoint {existing} with a different decision, snapshot or artifacts"
    )]
    ConflictingCheckpoint {
        /// The step given.
        step: StepNumber,
        /// The checkpoint already recorded for it.
        existing: CheckpointId,
    },
    /// A step given under another name than its position already recorded: the plan's steps
    /// changed since it ran. Checked before the payload, so it wins over a conflict.
    #[error(
        "step {step} is recorded as {recorded:?} but was given as {given:?}; the plan's steps changed since it ran, so continue it with the definition it was started with or start a new plan"
    )]
    StepMismatch {
        /// The step given.
        step: StepNumber,
        /// The name its checkpoint or its `step_started` recorded.
        recorded: StepName,
        /// The name given now.
        given: StepName,
    },
    /// A failed attempt recorded for a step or attempt that is not the one running.
    #[error("attempt {attempt} of step {step} is not running{}; record a failed attempt after its step started and before it completed", running_text(.uncertain))]
    AttemptNotRunning {
        /// The step given.
        step: StepNumber,
        /// The attempt given.
        attempt: Attempt,
        /// The step that is running (started, not completed), if any.
        uncertain: Option<StepNumber>,
    },
    /// A fork at a step its source has not completed in the current phase.
    #[error("step {step} has not completed (last completed: {}); fork at a completed step", last_completed.map_or("none".to_owned(), |s| s.to_string()))]
    StepNotCompleted {
        /// The step to fork at.
        step: StepNumber,
        /// The source's last completed step, if any.
        last_completed: Option<StepNumber>,
    },
    /// A total below the number of steps already completed in the phase.
    #[error("total steps {total} is below the last completed step {last_completed}")]
    TotalBelowCompleted {
        /// The total given.
        total: TotalSteps,
        /// The phase's last completed step.
        last_completed: StepNumber,
    },
    /// A resume the eligibility verdict refuses (or one with no step left to run).
    #[error("the plan cannot resume: {}", reasons_text(.reasons, .changed_steps))]
    NotEligible {
        /// Every reason that applies, in the stable order of [`evaluate_eligibility`](crate::evaluate_eligibility).
        reasons: Vec<ResumeIneligibleReason>,
        /// The completed steps whose definition changed since they completed (why
        /// `definition_changed`), in step order; empty for every other reason.
        changed_steps: Vec<ChangedStep>,
    },
    /// A runner that does not hold the plan's lease renewed it or started a step under it: its
    /// lease expired and another runner took the plan over, or the plan left `processing`.
    #[error("runner {runner} does not hold the plan's lease{}; stop working on the plan and start no further step (resume it to take it over again)", holder_text(.holder))]
    LeaseLost {
        /// The runner that asked.
        runner: RunnerId,
        /// The runner that holds the plan's lease now, if any.
        holder: Option<RunnerId>,
    },
    /// Someone asked the plan to pause: no further step starts; the runner records the
    /// interruption (reason `paused`) and stops.
    #[error("{by} asked the plan to pause; no further step starts until it is run again")]
    PauseRequested {
        /// Who asked.
        by: Actor,
    },
}

fn holder_text(holder: &Option<RunnerId>) -> String {
    match holder {
        Some(holder) => format!(" (runner {holder} holds it now)"),
        None => " (the plan is not running under a lease)".to_owned(),
    }
}

fn running_text(uncertain: &Option<StepNumber>) -> String {
    match uncertain {
        Some(step) => format!(" (step {step} is running)"),
        None => " (no step is running)".to_owned(),
    }
}

/// Each reason with its explanation; `definition_changed` names the steps that changed.
fn reasons_text(reasons: &[ResumeIneligibleReason], changed: &[ChangedStep]) -> String {
    let explain = |reason: &ResumeIneligibleReason| match reason {
        ResumeIneligibleReason::DefinitionChanged if !changed.is_empty() => {
            let (after, restore) = if changed.len() == 1 { ("it", "it") } else { ("they", "them") };
            let changes = describe_changes(changed);
            format!("{changes} after {after} completed; restore {restore}, or run again from the first changed step")
        }
        _ => reason.explanation().to_owned(),
    };
    reasons.iter().map(|r| format!("{} ({})", r.code(), explain(r))).collect::<Vec<_>>().join("; ")
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
            PlanError::LeaseLost { .. } => "lease_lost",
            PlanError::PauseRequested { .. } => "pause_requested",
        }
    }
}
