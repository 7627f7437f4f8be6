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
use crate::lifecycle::Phase;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCreated {
    pub name: Option<PlanName>,
    pub total_steps: Option<TotalSteps>,
    pub fingerprint: Option<Fingerprint>,
    /// Where the plan's definition lives (a plan file path), so a resume can find it again.
    pub source: Option<Artifact>,
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
    pub name: Option<PlanName>,
    pub total_steps: Option<TotalSteps>,
    pub fingerprint: Option<Fingerprint>,
    /// Where the definition lives (a plan file path).
    pub definition_source: Option<Artifact>,
    /// The definition's steps as the source recorded them.
    pub steps: Vec<StepDefinition>,
    /// The source's phase, which the fork starts in (`queued`).
    pub phase: Phase,
    /// Copies of the source's checkpoints 1..=at_step of that phase, outputs included, in the
    /// wire form of the `step_completed` events that recorded them.
    pub checkpoints: Vec<StepCompleted>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseStarted {
    pub phase: Phase,
    /// The runner that holds the plan's run lock, if the caller took one.
    pub runner: Option<RunnerId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotalStepsSet {
    pub total_steps: TotalSteps,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStarted {
    pub step: StepNumber,
    pub decision_id: DecisionId,
    /// Added in schema version 2 (with `attempt`); version 1 records are upcast with none.
    pub name: Option<StepName>,
    /// Which attempt at the step this is, when the caller counts attempts.
    pub attempt: Option<Attempt>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCompleted {
    pub checkpoint_id: CheckpointId,
    pub step: StepNumber,
    pub decision_id: DecisionId,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupted {
    pub reason: Message,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    pub from_step: StepNumber,
    pub by: Actor,
    pub runner: Option<RunnerId>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanErrored {
    pub message: Message,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanConstrained {
    pub message: Message,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseCompleted {
    pub phase: Phase,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanApplied {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCancelled {
    pub reason: Option<Message>,
}

/// Why one attempt at a step failed. The serde form is tagged by `kind`:
/// `{"kind":"exit","code":3}`, `{"kind":"signal","signal":9}`, `{"kind":"timeout"}`,
/// `{"kind":"error","message":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptFailure {
    /// The step's process exited with a non-zero code.
    Exit { code: i32 },
    /// The step's process was killed by a signal.
    Signal { signal: i32 },
    /// The step ran past its timeout and was stopped.
    Timeout,
    /// The step could not run or failed in some other way.
    Error { message: Message },
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
    pub step: StepNumber,
    pub attempt: Attempt,
    pub reason: AttemptFailure,
    /// When the next attempt is due, if the caller schedules one.
    pub retry_at: Option<DateTime<Utc>>,
}

/// One fact in a plan's life. The serde form is the adjacently tagged `{"type", "data"}` pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum PlanEvent {
    PlanCreated(PlanCreated),
    PhaseStarted(PhaseStarted),
    TotalStepsSet(TotalStepsSet),
    StepStarted(StepStarted),
    StepCompleted(StepCompleted),
    Interrupted(Interrupted),
    Resumed(Resumed),
    PlanErrored(PlanErrored),
    PlanConstrained(PlanConstrained),
    PhaseCompleted(PhaseCompleted),
    PlanApplied(PlanApplied),
    PlanCancelled(PlanCancelled),
    StepAttemptFailed(StepAttemptFailed),
    PlanForked(PlanForked),
}

/// The stable name of each event type, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    PlanCreated,
    PhaseStarted,
    TotalStepsSet,
    StepStarted,
    StepCompleted,
    Interrupted,
    Resumed,
    PlanErrored,
    PlanConstrained,
    PhaseCompleted,
    PlanApplied,
    PlanCancelled,
    StepAttemptFailed,
    PlanForked,
}

impl EventType {
    pub const ALL: [EventType; 14] = [
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
    ];

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
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The schema version written today. Older versions are upcast on read.
    pub fn current_schema_version(self) -> u16 {
        match self {
            EventType::StepCompleted => 3,
            EventType::StepStarted => 2,
            EventType::PlanCreated => 2,
            _ => 1,
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why stored bytes could not become a [`PlanEvent`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}; this log was written by a newer Waypoint or is damaged")]
    UnknownType(String),
    #[error("{event_type} has schema version {found}, but this Waypoint knows versions 1 to {known}; upgrade Waypoint to read this log")]
    UnknownSchemaVersion { event_type: EventType, found: u16, known: u16 },
    #[error("{event_type} v{schema_version} data is malformed: {detail}")]
    MalformedData { event_type: EventType, schema_version: u16, detail: String },
}

impl PlanEvent {
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
        }
    }

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
        }
    }

    /// Decodes stored data of `event_type` at `schema_version`, upcasting older versions.
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
        // plan_created v1 -> v2: the definition's steps were added; v1 plans recorded none.
        (EventType::PlanCreated, 1) => (&["steps"], true),
        _ => (&[], false),
    };
    for key in added {
        map.entry(*key).or_insert_with(|| if empty_list { Value::Array(Vec::new()) } else { Value::Null });
    }
}
