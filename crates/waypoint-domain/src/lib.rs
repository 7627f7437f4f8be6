//! Waypoint's domain: plan lifecycle events, validated value types, lifecycle rules, and the pure
//! projections (state, `ResumeMetadata`, eligibility, summary). No I/O, no clock, no runtime.
//!
//! - Value types ([`PlanId`], [`StepNumber`], [`DecisionId`], [`StepOutput`], …) are validated
//!   newtypes: an invalid one cannot be constructed, and [`InvalidValue`] says why.
//! - [`decide`] turns a [`PlanCommand`] into [`PlanEvent`]s against the plan's [`PlanState`], or
//!   refuses it with a typed [`PlanError`]. The rules of the lifecycle ([`Phase`],
//!   [`ProcessingState`], [`check_phase_transition`]) live here and nowhere else.
//! - [`PlanState::fold`] folds events into the state, with its [`ResumeMetadata`]. The fold is
//!   infallible: an event is a fact already decided.
//! - [`evaluate_eligibility`] is the one answer to "can this plan resume?", with every
//!   [`ResumeIneligibleReason`] that applies; [`ResumeSummary`] is what people see of it. A
//!   runner without a run lock holds a plan by [`Lease`], judged against the store's clock that
//!   the caller passes in ([`EligibilityInputs::now`]).
//! - [`PlanEvent::encode_data`] and [`PlanEvent::decode`] are the stored form of events; old
//!   schema versions are upcast on read ([`DecodeError`] when they cannot be).
//!
//! Decide a few commands, fold their events, and ask whether the plan can resume:
//!
//! ```
//! use chrono::DateTime;
//! use waypoint_domain::{
//!     decide, evaluate_eligibility, CheckpointId, DecisionId, EligibilityInputs, Message, Phase, PlanCommand,
//!     PlanState, ProcessingState, StepNumber,
//! };
//!
//! let at = DateTime::UNIX_EPOCH; // the domain reads no clock: times come in with commands
//! let (first, second) = (StepNumber::FIRST, StepNumber::new(2)?);
//! let commands = [
//!     PlanCommand::Create { name: None, total_steps: None, fingerprint: None, source: None, steps: Vec::new(), at },
//!     PlanCommand::StartPhase { phase: Phase::Strategize, runner: None, lease: None },
//!     PlanCommand::StartStep { step: first, decision_id: DecisionId::parse("fetch")?, name: None, attempt: None, lease: None },
//!     PlanCommand::RecordCheckpoint {
//!         checkpoint_id: CheckpointId::from_uuid(uuid::Uuid::from_u128(1)),
//!         step: first,
//!         decision_id: DecisionId::parse("fetch")?,
//!         snapshot_id: None,
//!         artifacts: Vec::new(),
//!         name: None,
//!         output: None,
//!         fingerprint: None,
//!     },
//!     PlanCommand::StartStep { step: second, decision_id: DecisionId::parse("build")?, name: None, attempt: None, lease: None },
//!     PlanCommand::RecordShutdown { reason: Message::parse("deploy")?, at },
//! ];
//! let (mut plan, mut log) = (None, Vec::new());
//! for command in commands {
//!     let events = decide(plan.as_ref(), command)?;
//!     plan = events.iter().fold(plan, PlanState::fold);
//!     log.extend(events);
//! }
//! let plan = plan.expect("the first event created the plan");
//!
//! // Step 1 completed; step 2 started but its outcome is unknown, so a resume runs it again.
//! assert_eq!(plan.state, ProcessingState::Queued);
//! assert_eq!(plan.resume.last_completed_step, Some(first));
//! assert_eq!(plan.resume.uncertain_step, Some(second));
//! let verdict = evaluate_eligibility(&plan, &EligibilityInputs::default());
//! assert!(verdict.eligible, "{:?}", verdict.reasons);
//!
//! // A projection is a pure fold: replaying the log gives the same state.
//! assert_eq!(log.iter().fold(None, PlanState::fold), Some(plan));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod approval;
mod definition;
mod eligibility;
mod error;
mod events;
mod ids;
mod lease;
mod lifecycle;
mod plan;
mod queue;
mod state;
mod summary;
pub mod timestamp;

pub use approval::{Approval, ApprovalDecision, PauseRequest, PAUSED_REASON, WAITING_REASON};
pub use definition::{
    check_definition, describe_changes, ChangedStep, CurrentDefinition, DefinitionCheck, StepChange, StepDefinition,
    StepDigest,
};
pub use eligibility::{
    evaluate_eligibility, EligibilityInputs, ResumeEligibility, ResumeIneligibleReason, SnapshotCheck,
};
pub use error::PlanError;
pub use events::{
    ApprovalRequested, AttemptFailure, DecodeError, EventType, Interrupted, LeaseRenewed, PauseRequested,
    PhaseCompleted, PhaseStarted, PlanApplied, PlanCancelled, PlanConstrained, PlanCreated, PlanErrored, PlanEvent,
    PlanForked, PlanSubmitted, Resumed, StepApproved, StepAttemptFailed, StepCompleted, StepRejected, StepStarted,
    TotalStepsSet,
};
pub use ids::{
    Actor, Artifact, Attempt, CheckpointId, DecisionId, EventId, Fingerprint, InvalidValue, Message, PlanId, PlanName,
    RunnerId, SnapshotId, StepName, StepNumber, StepOutput, TotalSteps,
};
pub use lease::Lease;
pub use lifecycle::{check_phase_transition, Phase, ProcessingState, TransitionKind};
pub use plan::{decide, Plan, PlanCommand, FORK_EVENT_CHECKPOINT_BYTES};
pub use queue::{QueueName, QueueStanding, Submission, SubmittedDefinition, MAX_DEFINITION_BYTES};
pub use state::{Checkpoint, CheckpointPayload, Interruption, PlanState, ResumeMetadata};
pub use summary::{
    ForkedFrom, InterruptionSummary, PlanStatus, ResumeSummary, WaitingFor, CRASH_REASON, LEASE_EXPIRED_REASON,
};

#[cfg(test)]
mod tests;
