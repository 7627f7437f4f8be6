//! Queues: a submitted plan carries its whole definition and the queue it waits in, so that any
//! worker that shares the store can run it without a copy of the file; and the one rule that
//! says which plans of a queue a worker may claim, which run, and which are settled.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::InvalidValue;
use crate::summary::{PlanStatus, ResumeSummary};

/// The name of a queue. It reaches file names and queries, so it is held to the plan-id rules:
/// `[A-Za-z0-9_-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(String);

impl QueueName {
    /// The queue a plan is submitted to, and a worker claims from, when none is named.
    pub const DEFAULT: &'static str = "default";
    /// Longest accepted name, in characters.
    pub const MAX_LEN: usize = 64;

    /// Validates `value` against the allow-list.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        // The plan-id rules, checked by the one allow-list they share.
        crate::ids::PlanId::parse(value).map_err(|e| match e {
            InvalidValue::Empty { .. } => InvalidValue::Empty { kind: "queue name" },
            InvalidValue::TooLong { len, max, .. } => InvalidValue::TooLong { kind: "queue name", len, max },
            InvalidValue::BadCharacter { shown, bad, allowed, .. } => {
                InvalidValue::BadCharacter { kind: "queue name", shown, bad, allowed }
            }
            other => other,
        })?;
        Ok(Self(value.to_owned()))
    }

    /// The `default` queue.
    pub fn default_queue() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// The validated text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for QueueName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for QueueName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The longest definition a submission may carry, in bytes: the limit of a plan file.
pub const MAX_DEFINITION_BYTES: usize = 1024 * 1024;

/// A submitted plan's definition, whole: what a worker on any machine runs. Opaque to the
/// domain: the surface that submits it (the CLI: a plan file's TOML text) reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedDefinition {
    /// What `text` is: `plan_file` (a plan file's TOML).
    pub format: String,
    /// The definition's text, at most [`MAX_DEFINITION_BYTES`].
    pub text: String,
    /// The file name it was submitted from (no folder): shown to people, and the name a worker
    /// gives the definition when it parses it inside its working folder.
    pub file_name: String,
}

impl SubmittedDefinition {
    /// A definition of `format`, refused when larger than [`MAX_DEFINITION_BYTES`].
    pub fn new(format: &str, text: String, file_name: String) -> Result<Self, InvalidValue> {
        if text.len() > MAX_DEFINITION_BYTES {
            return Err(InvalidValue::TooLong { kind: "definition", len: text.len(), max: MAX_DEFINITION_BYTES });
        }
        Ok(Self { format: format.to_owned(), text, file_name })
    }
}

/// Where a plan waits and what runs it, as its submission recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The queue it waits in.
    pub queue: QueueName,
    /// When it was submitted: workers claim the oldest first.
    #[serde(with = "crate::timestamp")]
    pub at: DateTime<Utc>,
}

/// Where a plan of a queue stands for the workers of that queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueStanding {
    /// A worker may claim it now: never started, interrupted (a drained worker), or crashed (its
    /// worker's lease expired).
    Claimable,
    /// A runner holds it: it counts against the queue's limit.
    Running,
    /// Nobody claims it: it finished, failed, was cancelled, waits for a person, or was paused.
    Settled,
}

impl QueueStanding {
    /// Where the plan `summary` describes stands (its verdict judged on the store's clock).
    /// Failed plans are not claimed again: a failure is for a person to look at, and a worker
    /// that retried it forever would hide it.
    pub fn of(summary: &ResumeSummary) -> Self {
        match summary.status {
            PlanStatus::Queued => QueueStanding::Claimable,
            PlanStatus::Running => QueueStanding::Running,
            PlanStatus::Crashed | PlanStatus::Interrupted if summary.eligible => QueueStanding::Claimable,
            _ => QueueStanding::Settled,
        }
    }
}

#[cfg(test)]
mod tests;
