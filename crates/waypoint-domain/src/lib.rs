//! Waypoint's domain: plan lifecycle events, validated value types, lifecycle rules, and the pure
//! projections (state, `ResumeMetadata`, eligibility, summary). No I/O, no clock, no runtime.

mod definition;
mod eligibility;
mod error;
mod events;
mod ids;
mod lifecycle;
mod plan;
mod state;
mod summary;

pub use definition::{
    check_definition, ChangedStep, CurrentDefinition, DefinitionCheck, StepChange, StepDefinition, StepDigest,
};
pub use eligibility::{
    evaluate_eligibility, EligibilityInputs, ResumeEligibility, ResumeIneligibleReason, SnapshotCheck,
};
pub use error::PlanError;
pub use events::{
    AttemptFailure, DecodeError, EventType, Interrupted, PhaseCompleted, PhaseStarted, PlanApplied, PlanCancelled,
    PlanConstrained, PlanCreated, PlanErrored, PlanEvent, PlanForked, Resumed, StepAttemptFailed, StepCompleted,
    StepStarted, TotalStepsSet,
};
pub use ids::{
    Actor, Artifact, Attempt, CheckpointId, DecisionId, EventId, Fingerprint, InvalidValue, Message, PlanId, PlanName,
    RunnerId, SnapshotId, StepName, StepNumber, StepOutput, TotalSteps,
};
pub use lifecycle::{check_phase_transition, Phase, ProcessingState, TransitionKind};
pub use plan::{decide, Plan, PlanCommand};
pub use state::{Checkpoint, CheckpointPayload, Interruption, PlanState, ResumeMetadata};
pub use summary::{ForkedFrom, InterruptionSummary, PlanStatus, ResumeSummary, CRASH_REASON};

#[cfg(test)]
mod tests;
