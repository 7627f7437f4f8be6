//! Every plan lifecycle event, its schema version, and the stable wire form with upcasting.
//!
//! The event log is Waypoint's IPC boundary: type names and field names here are a promise to
//! every stored log. Change a payload only by adding a schema version and an upcaster.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::definition::StepDefinition;
use crate::ids::{
    Actor, Artifact, Attempt, CheckpointId, DecisionId, Fingerprint, Message, PlanId, PlanName, RunnerId, SnapshotId,
    StepName, StepNumber, StepOutput, TotalSteps,
};
use crate::lease::Lease;
use crate::lifecycle::Phase;
use crate::queue::{QueueName, SubmittedDefinition};

mod written;

/// A plan's first event: it exists, in `action`/`queued`. Schema version 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCreated {
    /// A human name for the plan.
    pub name: Option<PlanName>,
    /// How many steps the first phase started after `action` has, when known up front.
    pub total_steps: Option<TotalSteps>,
    /// A digest of the whole plan definition, compared on resume when there is no per-step one.
    pub fingerprint: Option<Fingerprint>,
    /// Where the plan's definition lives (a plan file path), so a resume can find it again.
    pub source: Option<Artifact>,
    /// When the plan was created.
    pub created_at: DateTime<Utc>,
    /// The definition's steps in order, each with its fingerprint; empty when the caller has no
    /// per-step definition. Added in schema version 2; version 1 records are upcast with none.
    pub steps: Vec<StepDefinition>,
}

/// A plan's first event when it is a fork of another: everything the fork needs from its source,
/// copied, so it never reads the source again (the source may later be removed by retention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanForked {
    /// The plan it was taken from.
    pub source: PlanId,
    /// The source's plan-stream version the copy was taken at.
    pub source_version: u32,
    /// The last source step copied; `None` when the fork starts before step 1.
    pub at_step: Option<StepNumber>,
    /// The source's name.
    pub name: Option<PlanName>,
    /// The source's total for its current phase.
    pub total_steps: Option<TotalSteps>,
    /// The source's whole-plan fingerprint.
    pub fingerprint: Option<Fingerprint>,
    /// Where the definition lives (a plan file path).
    pub definition_source: Option<Artifact>,
    /// The definition's steps as the source recorded them.
    pub steps: Vec<StepDefinition>,
    /// The source's phase, which the fork starts in (`queued`).
    pub phase: Phase,
    /// Copies of the source's checkpoints 1..=at_step of that phase, outputs included, in the
    /// wire form of the `step_completed` events that recorded them: the first of them, as many
    /// as fit in [`crate::FORK_EVENT_CHECKPOINT_BYTES`]; the rest follow this event as
    /// `step_completed` events of their own, in the same append.
    pub checkpoints: Vec<StepCompleted>,
    /// When the fork was made.
    pub created_at: DateTime<Utc>,
}

/// The plan entered a phase, in `processing`, with a fresh step count and no last error.
/// Schema version 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseStarted {
    /// The phase entered.
    pub phase: Phase,
    /// The runner that holds the plan's run lock, if the caller took one.
    pub runner: Option<RunnerId>,
    /// The lease the caller holds the plan by, when it holds no run lock for the whole run.
    /// Added in schema version 2; version 1 records are upcast with none.
    pub lease: Option<Lease>,
}

/// The current phase's number of steps became known or changed. Never below the last completed
/// step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotalStepsSet {
    /// The phase's total.
    pub total_steps: TotalSteps,
}

/// Step `step` is about to run: until its checkpoint (or a failed attempt) is recorded, its
/// outcome is unknown and a resume runs it again. Schema version 3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStarted {
    /// The step, always the one after the last completed step.
    pub step: StepNumber,
    /// The decision that produced the step's work.
    pub decision_id: DecisionId,
    /// Added in schema version 2 (with `attempt`); version 1 records are upcast with none.
    pub name: Option<StepName>,
    /// Which attempt at the step this is, when the caller counts attempts.
    pub attempt: Option<Attempt>,
    /// The lease the runner holds the plan by from now on, when it holds one. Added in schema
    /// version 3; older records are upcast with none (the plan's lease does not change).
    pub lease: Option<Lease>,
}

/// The checkpoint: step `step` completed and must never run again in this phase. Schema
/// version 3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCompleted {
    /// Identifies this checkpoint; a retry of it hands back the same id.
    pub checkpoint_id: CheckpointId,
    /// The step, always the one after the last completed step.
    pub step: StepNumber,
    /// The decision that produced the step's work.
    pub decision_id: DecisionId,
    /// The workspace state after the step, which a snapshot probe can check on resume.
    pub snapshot_id: Option<SnapshotId>,
    /// Added in schema version 2; version 1 records are upcast with an empty list.
    pub artifacts: Vec<Artifact>,
    /// Added in schema version 3 (with `output` and `fingerprint`); older records are upcast
    /// with none of the three.
    pub name: Option<StepName>,
    /// What the step produced. A JSON `null` output reads back as no output.
    pub output: Option<StepOutput>,
    /// The fingerprint of the step's definition when it ran, compared on resume to detect drift.
    pub fingerprint: Option<Fingerprint>,
}

/// The plan stopped on purpose (a graceful shutdown, a signal, an operator): `processing`
/// becomes `queued`, the runner is cleared, and the plan can resume at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupted {
    /// Why it stopped.
    pub reason: Message,
    /// When it stopped.
    pub at: DateTime<Utc>,
}

/// The plan was resumed and is `processing` again. Schema version 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    /// The step the resume continues at: the one after the last completed step.
    pub from_step: StepNumber,
    /// Who resumed it.
    pub by: Actor,
    /// The runner that holds the plan's run lock, if the resume took one.
    pub runner: Option<RunnerId>,
    /// When it was resumed.
    pub at: DateTime<Utc>,
    /// The lease the resuming runner holds the plan by; it replaces any earlier runner's lease.
    /// Added in schema version 2; version 1 records are upcast with none.
    pub lease: Option<Lease>,
}

/// The runner holding the plan's lease renewed it (a heartbeat): it is live until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRenewed {
    /// The runner that holds the lease.
    pub runner: RunnerId,
    /// The lease's new expiry, on the store's clock.
    pub expires_at: DateTime<Utc>,
}

/// A step that needs a person's decision before it runs was reached: the run stopped there,
/// holding nothing, and the plan is `waiting` until someone approves or rejects the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    /// The step that waits; the one after the last completed step.
    pub step: StepNumber,
    /// The step's name.
    pub name: Option<StepName>,
    /// What the person is asked.
    pub question: Message,
    /// When the run stopped to ask.
    pub at: DateTime<Utc>,
}

/// Someone approved the waiting step: the next run of the plan goes past it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepApproved {
    /// The step approved.
    pub step: StepNumber,
    /// Who approved it.
    pub by: Actor,
    /// What they said, if anything.
    pub comment: Option<Message>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Someone rejected the waiting step: the plan fails with `approval_rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRejected {
    /// The step rejected.
    pub step: StepNumber,
    /// Who rejected it.
    pub by: Actor,
    /// Why.
    pub reason: Message,
    /// When.
    pub at: DateTime<Utc>,
}

/// The plan was submitted to a queue with its whole definition, for a worker to claim and run.
/// Recorded with `plan_created`, in the same append; the plan stays `action`/`queued` (status
/// `queued`) until a worker claims it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSubmitted {
    /// The queue it waits in.
    pub queue: QueueName,
    /// What the workers run: the definition, whole.
    pub definition: SubmittedDefinition,
    /// The working folder the definition's folders are relative to, as the submitter named it;
    /// a relative one is taken inside the worker's own working folder.
    pub workdir: Option<String>,
    /// When it was submitted.
    pub at: DateTime<Utc>,
}

/// Someone asked the plan to stop at its next step boundary. A plan nobody runs stops at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseRequested {
    /// Who asked.
    pub by: Actor,
    /// Why, if they said.
    pub reason: Option<Message>,
    /// When.
    pub at: DateTime<Utc>,
}

/// The phase failed: `processing` becomes `errored`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanErrored {
    /// What went wrong, kept as the plan's last error.
    pub message: Message,
}

/// The `apply` phase was refused by a constraint: `processing` becomes `constrained`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanConstrained {
    /// Which constraint refused it, kept as the plan's last error.
    pub message: Message,
}

/// A `strategize` or `execute` phase finished: the plan is `complete` and its next move is a
/// new phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseCompleted {
    /// The phase that finished.
    pub phase: Phase,
}

/// The `apply` phase took effect: the plan is `applied`, which is terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanApplied {}

/// The plan was stopped for good: it is `cancelled`, which is terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCancelled {
    /// Why, if the operator said.
    pub reason: Option<Message>,
}

/// Why one attempt at a step failed. The serde form is tagged by `kind`:
/// `{"kind":"exit","code":3}`, `{"kind":"signal","signal":9}`, `{"kind":"timeout"}`,
/// `{"kind":"error","message":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptFailure {
    /// The step's process exited with a non-zero code.
    Exit {
        /// The exit code.
        code: i32,
    },
    /// The step's process was killed by a signal.
    Signal {
        /// The signal's number.
        signal: i32,
    },
    /// The step ran past its timeout and was stopped.
    Timeout,
    /// The step could not run or failed in some other way.
    Error {
        /// What went wrong.
        message: Message,
    },
}

impl std::fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptFailure::Exit { code } => write!(f, "exit code {code}"),
            AttemptFailure::Signal { signal } => write!(f, "signal {signal}"),
            AttemptFailure::Timeout => f.write_str("timeout"),
            AttemptFailure::Error { message } => write!(f, "error: {message}"),
        }
    }
}

/// An attempt at the uncertain step failed and the step will be tried again; the plan stays
/// `processing`. The last failed attempt is recorded as `PlanErrored` instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepAttemptFailed {
    /// The uncertain step.
    pub step: StepNumber,
    /// The attempt that failed; the one its `step_started` named, when it named one.
    pub attempt: Attempt,
    /// How it failed.
    pub reason: AttemptFailure,
    /// When the next attempt is due, if the caller schedules one.
    pub retry_at: Option<DateTime<Utc>>,
}

/// One fact in a plan's life, already decided: folding it never fails. The serde form is the
/// adjacently tagged `{"type", "data"}` pair; stores keep the type name and the data apart
/// (see [`PlanEvent::encode_data`] and [`PlanEvent::decode`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum PlanEvent {
    /// `plan_created`: see [`PlanCreated`].
    PlanCreated(PlanCreated),
    /// `phase_started`: see [`PhaseStarted`].
    PhaseStarted(PhaseStarted),
    /// `total_steps_set`: see [`TotalStepsSet`].
    TotalStepsSet(TotalStepsSet),
    /// `step_started`: see [`StepStarted`].
    StepStarted(StepStarted),
    /// `step_completed`, the checkpoint: see [`StepCompleted`].
    StepCompleted(StepCompleted),
    /// `interrupted`: see [`Interrupted`].
    Interrupted(Interrupted),
    /// `resumed`: see [`Resumed`].
    Resumed(Resumed),
    /// `plan_errored`: see [`PlanErrored`].
    PlanErrored(PlanErrored),
    /// `plan_constrained`: see [`PlanConstrained`].
    PlanConstrained(PlanConstrained),
    /// `phase_completed`: see [`PhaseCompleted`].
    PhaseCompleted(PhaseCompleted),
    /// `plan_applied`: see [`PlanApplied`].
    PlanApplied(PlanApplied),
    /// `plan_cancelled`: see [`PlanCancelled`].
    PlanCancelled(PlanCancelled),
    /// `step_attempt_failed`: see [`StepAttemptFailed`].
    StepAttemptFailed(StepAttemptFailed),
    /// `plan_forked`: see [`PlanForked`].
    PlanForked(PlanForked),
    /// `lease_renewed`: see [`LeaseRenewed`].
    LeaseRenewed(LeaseRenewed),
    /// `approval_requested`: see [`ApprovalRequested`].
    ApprovalRequested(ApprovalRequested),
    /// `step_approved`: see [`StepApproved`].
    StepApproved(StepApproved),
    /// `step_rejected`: see [`StepRejected`].
    StepRejected(StepRejected),
    /// `pause_requested`: see [`PauseRequested`].
    PauseRequested(PauseRequested),
    /// `plan_submitted`: see [`PlanSubmitted`].
    PlanSubmitted(PlanSubmitted),
}

/// The stable name of each event type, as stored. One variant per [`PlanEvent`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// `plan_created`.
    PlanCreated,
    /// `phase_started`.
    PhaseStarted,
    /// `total_steps_set`.
    TotalStepsSet,
    /// `step_started`.
    StepStarted,
    /// `step_completed`.
    StepCompleted,
    /// `interrupted`.
    Interrupted,
    /// `resumed`.
    Resumed,
    /// `plan_errored`.
    PlanErrored,
    /// `plan_constrained`.
    PlanConstrained,
    /// `phase_completed`.
    PhaseCompleted,
    /// `plan_applied`.
    PlanApplied,
    /// `plan_cancelled`.
    PlanCancelled,
    /// `step_attempt_failed`.
    StepAttemptFailed,
    /// `plan_forked`.
    PlanForked,
    /// `lease_renewed`.
    LeaseRenewed,
    /// `approval_requested`.
    ApprovalRequested,
    /// `step_approved`.
    StepApproved,
    /// `step_rejected`.
    StepRejected,
    /// `pause_requested`.
    PauseRequested,
    /// `plan_submitted`.
    PlanSubmitted,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 20] = [
        EventType::PlanCreated,
        EventType::PhaseStarted,
        EventType::TotalStepsSet,
        EventType::StepStarted,
        EventType::StepCompleted,
        EventType::Interrupted,
        EventType::Resumed,
        EventType::PlanErrored,
        EventType::PlanConstrained,
        EventType::PhaseCompleted,
        EventType::PlanApplied,
        EventType::PlanCancelled,
        EventType::StepAttemptFailed,
        EventType::PlanForked,
        EventType::LeaseRenewed,
        EventType::ApprovalRequested,
        EventType::StepApproved,
        EventType::StepRejected,
        EventType::PauseRequested,
        EventType::PlanSubmitted,
    ];

    /// The stable snake_case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PlanCreated => "plan_created",
            EventType::PhaseStarted => "phase_started",
            EventType::TotalStepsSet => "total_steps_set",
            EventType::StepStarted => "step_started",
            EventType::StepCompleted => "step_completed",
            EventType::Interrupted => "interrupted",
            EventType::Resumed => "resumed",
            EventType::PlanErrored => "plan_errored",
            EventType::PlanConstrained => "plan_constrained",
            EventType::PhaseCompleted => "phase_completed",
            EventType::PlanApplied => "plan_applied",
            EventType::PlanCancelled => "plan_cancelled",
            EventType::StepAttemptFailed => "step_attempt_failed",
            EventType::PlanForked => "plan_forked",
            EventType::LeaseRenewed => "lease_renewed",
            EventType::ApprovalRequested => "approval_requested",
            EventType::StepApproved => "step_approved",
            EventType::StepRejected => "step_rejected",
            EventType::PauseRequested => "pause_requested",
            EventType::PlanSubmitted => "plan_submitted",
        }
    }

    /// The event type stored under `name`; `None` for a name this build does not know.
    pub fn parse(name: &str) -> Option<Self> {
        // One `match` on the name (every record's type is looked up on replay); the test
        // `every_event_type_round_trips_by_name` keeps it in step with `as_str`.
        Some(match name {
            "plan_created" => EventType::PlanCreated,
            "phase_started" => EventType::PhaseStarted,
            "total_steps_set" => EventType::TotalStepsSet,
            "step_started" => EventType::StepStarted,
            "step_completed" => EventType::StepCompleted,
            "interrupted" => EventType::Interrupted,
            "resumed" => EventType::Resumed,
            "plan_errored" => EventType::PlanErrored,
            "plan_constrained" => EventType::PlanConstrained,
            "phase_completed" => EventType::PhaseCompleted,
            "plan_applied" => EventType::PlanApplied,
            "plan_cancelled" => EventType::PlanCancelled,
            "step_attempt_failed" => EventType::StepAttemptFailed,
            "plan_forked" => EventType::PlanForked,
            "lease_renewed" => EventType::LeaseRenewed,
            "approval_requested" => EventType::ApprovalRequested,
            "step_approved" => EventType::StepApproved,
            "step_rejected" => EventType::StepRejected,
            "pause_requested" => EventType::PauseRequested,
            "plan_submitted" => EventType::PlanSubmitted,
            _ => return None,
        })
    }

    /// The schema version written today. Older versions are upcast on read.
    pub fn current_schema_version(self) -> u16 {
        match self {
            EventType::StepCompleted => 3,
            EventType::StepStarted => 3,
            EventType::PlanCreated => 2,
            EventType::PhaseStarted => 2,
            EventType::Resumed => 2,
            _ => 1,
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why stored bytes could not become a [`PlanEvent`]. A record that fails to decode is always
/// reported, never skipped.
///
/// Not `#[non_exhaustive]` on purpose: `tests/integration/domain_coverage.rs` matches it
/// exhaustively, so a new variant does not compile until a test covers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The stored type name is not one this build knows (the name is carried).
    #[error("unknown event type {0:?}; this log was written by a newer Waypoint or is damaged")]
    UnknownType(String),
    /// The schema version is 0 or newer than this build writes.
    #[error("{event_type} has schema version {found}, but this Waypoint knows versions 1 to {known}; upgrade Waypoint to read this log")]
    UnknownSchemaVersion {
        /// The event's type.
        event_type: EventType,
        /// The stored schema version.
        found: u16,
        /// The newest version this build knows ([`EventType::current_schema_version`]).
        known: u16,
    },
    /// The data is not JSON of the type's shape at that version, or holds a value that breaks
    /// a value type's rules (an empty id, an output above the limit).
    #[error("{event_type} v{schema_version} data is malformed: {detail}")]
    MalformedData {
        /// The event's type.
        event_type: EventType,
        /// The stored schema version.
        schema_version: u16,
        /// What the JSON decoder said.
        detail: String,
    },
}

impl PlanEvent {
    /// The event's type, whose name is stored beside the data.
    pub fn event_type(&self) -> EventType {
        match self {
            PlanEvent::PlanCreated(_) => EventType::PlanCreated,
            PlanEvent::PhaseStarted(_) => EventType::PhaseStarted,
            PlanEvent::TotalStepsSet(_) => EventType::TotalStepsSet,
            PlanEvent::StepStarted(_) => EventType::StepStarted,
            PlanEvent::StepCompleted(_) => EventType::StepCompleted,
            PlanEvent::Interrupted(_) => EventType::Interrupted,
            PlanEvent::Resumed(_) => EventType::Resumed,
            PlanEvent::PlanErrored(_) => EventType::PlanErrored,
            PlanEvent::PlanConstrained(_) => EventType::PlanConstrained,
            PlanEvent::PhaseCompleted(_) => EventType::PhaseCompleted,
            PlanEvent::PlanApplied(_) => EventType::PlanApplied,
            PlanEvent::PlanCancelled(_) => EventType::PlanCancelled,
            PlanEvent::StepAttemptFailed(_) => EventType::StepAttemptFailed,
            PlanEvent::PlanForked(_) => EventType::PlanForked,
            PlanEvent::LeaseRenewed(_) => EventType::LeaseRenewed,
            PlanEvent::ApprovalRequested(_) => EventType::ApprovalRequested,
            PlanEvent::StepApproved(_) => EventType::StepApproved,
            PlanEvent::StepRejected(_) => EventType::StepRejected,
            PlanEvent::PauseRequested(_) => EventType::PauseRequested,
            PlanEvent::PlanSubmitted(_) => EventType::PlanSubmitted,
        }
    }

    /// The schema version [`PlanEvent::encode_data`] writes: always the type's current one.
    pub fn schema_version(&self) -> u16 {
        self.event_type().current_schema_version()
    }

    /// The event's data as JSON bytes, in the current schema version.
    pub fn encode_data(&self) -> Vec<u8> {
        fn to_vec<T: Serialize>(data: &T) -> Vec<u8> {
            // Our payloads are plain structs of strings and numbers: serialization cannot fail.
            serde_json::to_vec(data).expect("event data serializes")
        }
        match self {
            PlanEvent::PlanCreated(d) => to_vec(d),
            PlanEvent::PhaseStarted(d) => to_vec(d),
            PlanEvent::TotalStepsSet(d) => to_vec(d),
            PlanEvent::StepStarted(d) => to_vec(d),
            PlanEvent::StepCompleted(d) => to_vec(d),
            PlanEvent::Interrupted(d) => to_vec(d),
            PlanEvent::Resumed(d) => to_vec(d),
            PlanEvent::PlanErrored(d) => to_vec(d),
            PlanEvent::PlanConstrained(d) => to_vec(d),
            PlanEvent::PhaseCompleted(d) => to_vec(d),
            PlanEvent::PlanApplied(d) => to_vec(d),
            PlanEvent::PlanCancelled(d) => to_vec(d),
            PlanEvent::StepAttemptFailed(d) => to_vec(d),
            PlanEvent::PlanForked(d) => to_vec(d),
            PlanEvent::LeaseRenewed(d) => to_vec(d),
            PlanEvent::ApprovalRequested(d) => to_vec(d),
            PlanEvent::StepApproved(d) => to_vec(d),
            PlanEvent::StepRejected(d) => to_vec(d),
            PlanEvent::PauseRequested(d) => to_vec(d),
            PlanEvent::PlanSubmitted(d) => to_vec(d),
        }
    }

    /// Decodes stored data of `event_type` at `schema_version`, upcasting older versions one
    /// step at a time to the current shape.
    ///
    /// ```
    /// use waypoint_domain::{PlanEvent, StepNumber};
    ///
    /// // A version 1 checkpoint, from before artifacts, names, outputs and step fingerprints.
    /// let v1 = br#"{"checkpoint_id":"4cf0e88e-5d39-42dd-b3be-d31215de0374","step":1,"decision_id":"d-1","snapshot_id":null}"#;
    /// let PlanEvent::StepCompleted(checkpoint) = PlanEvent::decode("step_completed", 1, v1)? else {
    ///     unreachable!("decode returns the stored type");
    /// };
    /// assert_eq!(checkpoint.step, StepNumber::FIRST);
    /// assert!(checkpoint.artifacts.is_empty() && checkpoint.output.is_none());
    /// # Ok::<(), waypoint_domain::DecodeError>(())
    /// ```
    pub fn decode(event_type: &str, schema_version: u16, data: &[u8]) -> Result<Self, DecodeError> {
        let ty = EventType::parse(event_type).ok_or_else(|| DecodeError::UnknownType(event_type.to_owned()))?;
        let known = ty.current_schema_version();
        if schema_version == 0 || schema_version > known {
            return Err(DecodeError::UnknownSchemaVersion { event_type: ty, found: schema_version, known });
        }
        let malformed =
            |e: serde_json::Error| DecodeError::MalformedData { event_type: ty, schema_version, detail: e.to_string() };
        if schema_version < known {
            let mut value: serde_json::Value = serde_json::from_slice(data).map_err(malformed)?;
            for from in schema_version..known {
                upcast(ty, from, &mut value);
            }
            let bytes = serde_json::to_vec(&value).map_err(malformed)?;
            return Self::decode_current(ty, &bytes).map_err(malformed);
        }
        Self::decode_current(ty, data).map_err(malformed)
    }

    fn decode_current(ty: EventType, data: &[u8]) -> Result<Self, serde_json::Error> {
        use serde_json::from_slice as parse;
        // The events replay reads most, in the writer's exact form: no per-key dispatch. Any
        // other form (and every error) is the derived decoder's, below.
        let written = match ty {
            EventType::StepStarted => written::step_started(data),
            EventType::StepCompleted => written::step_completed(data),
            _ => None,
        };
        if let Some(event) = written {
            return Ok(event);
        }
        Ok(match ty {
            EventType::PlanCreated => PlanEvent::PlanCreated(parse(data)?),
            EventType::PhaseStarted => PlanEvent::PhaseStarted(parse(data)?),
            EventType::TotalStepsSet => PlanEvent::TotalStepsSet(parse(data)?),
            EventType::StepStarted => PlanEvent::StepStarted(parse(data)?),
            EventType::StepCompleted => PlanEvent::StepCompleted(parse(data)?),
            EventType::Interrupted => PlanEvent::Interrupted(parse(data)?),
            EventType::Resumed => PlanEvent::Resumed(parse(data)?),
            EventType::PlanErrored => PlanEvent::PlanErrored(parse(data)?),
            EventType::PlanConstrained => PlanEvent::PlanConstrained(parse(data)?),
            EventType::PhaseCompleted => PlanEvent::PhaseCompleted(parse(data)?),
            EventType::PlanApplied => PlanEvent::PlanApplied(parse(data)?),
            EventType::PlanCancelled => PlanEvent::PlanCancelled(parse(data)?),
            EventType::StepAttemptFailed => PlanEvent::StepAttemptFailed(parse(data)?),
            EventType::PlanForked => PlanEvent::PlanForked(parse(data)?),
            EventType::LeaseRenewed => PlanEvent::LeaseRenewed(parse(data)?),
            EventType::ApprovalRequested => PlanEvent::ApprovalRequested(parse(data)?),
            EventType::StepApproved => PlanEvent::StepApproved(parse(data)?),
            EventType::StepRejected => PlanEvent::StepRejected(parse(data)?),
            EventType::PauseRequested => PlanEvent::PauseRequested(parse(data)?),
            EventType::PlanSubmitted => PlanEvent::PlanSubmitted(parse(data)?),
        })
    }
}

/// Rewrites `value` from schema version `from` of `ty` to `from + 1`. The one place old shapes live.
fn upcast(ty: EventType, from: u16, value: &mut serde_json::Value) {
    use serde_json::Value;
    let Value::Object(map) = value else {
        // Not an object: leave it for decoding to report as malformed.
        return;
    };
    // The fields each version added, and whether older records implicitly had an empty list of
    // them (rather than none).
    let (added, empty_list): (&[&str], bool) = match (ty, from) {
        // step_completed v1 -> v2: artifacts were added; v1 checkpoints had none.
        (EventType::StepCompleted, 1) => (&["artifacts"], true),
        // step_completed v2 -> v3: the step's name, output and definition fingerprint were added.
        (EventType::StepCompleted, 2) => (&["name", "output", "fingerprint"], false),
        // step_started v1 -> v2: the step's name and attempt number were added.
        (EventType::StepStarted, 1) => (&["name", "attempt"], false),
        // step_started v2 -> v3, phase_started and resumed v1 -> v2: the lease was added.
        (EventType::StepStarted, 2) | (EventType::PhaseStarted, 1) | (EventType::Resumed, 1) => (&["lease"], false),
        // plan_created v1 -> v2: the definition's steps were added; v1 plans recorded none.
        (EventType::PlanCreated, 1) => (&["steps"], true),
        _ => (&[], false),
    };
    for key in added {
        map.entry(*key).or_insert_with(|| if empty_list { Value::Array(Vec::new()) } else { Value::Null });
    }
}

#[cfg(test)]
mod tests;
