//! Validated value types: an invalid id, step or fingerprint cannot be constructed.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Why a value was refused: a textual id or text outside its rules, a zero step, total or
/// attempt, or an output too large to journal. Textual variants carry the value's name so
/// messages can say which one.
///
/// Not `#[non_exhaustive]` on purpose: `tests/integration/domain_coverage.rs` matches it
/// exhaustively, so a new variant does not compile until a test covers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    /// The text was empty; no textual value may be.
    #[error("{kind} is empty")]
    Empty {
        /// Which value was refused, as a message names it (`"plan id"`).
        kind: &'static str,
    },
    /// The text has more characters than the value's `MAX_LEN`.
    #[error("{kind} is {len} characters long; the limit is {max}")]
    TooLong {
        /// Which value was refused.
        kind: &'static str,
        /// Its length, in characters.
        len: usize,
        /// The longest accepted, in characters.
        max: usize,
    },
    /// The text holds a character outside the value's allow-list.
    #[error("{kind} {shown:?} contains {bad:?}; allowed characters are {allowed}")]
    BadCharacter {
        /// Which value was refused.
        kind: &'static str,
        /// The refused text, control characters replaced by U+FFFD so it is safe to print.
        shown: String,
        /// The first character not allowed.
        bad: char,
        /// The allowed characters, described for people.
        allowed: &'static str,
    },
    /// A [`StepNumber`] of 0: steps count from 1, and "no step" is `None`.
    #[error("step number must be 1 or greater (steps are numbered from 1)")]
    ZeroStep,
    /// A [`TotalSteps`] of 0: a phase with a known total has at least one step.
    #[error("total steps must be 1 or greater")]
    ZeroTotal,
    /// An [`Attempt`] of 0: attempts count from 1.
    #[error("attempt number must be 1 or greater (attempts are numbered from 1)")]
    ZeroAttempt,
    /// A [`StepOutput`] whose compact JSON encoding is above [`StepOutput::MAX_ENCODED_LEN`].
    #[error("the step output is {size} bytes when encoded as JSON; the limit is {limit} bytes; store large data elsewhere and record a reference")]
    OutputTooLarge {
        /// The encoded size, in bytes.
        size: usize,
        /// The largest accepted encoded size, in bytes.
        limit: usize,
    },
}

impl InvalidValue {
    /// A stable snake_case code for scripts and JSON error objects.
    pub fn code(&self) -> &'static str {
        match self {
            InvalidValue::OutputTooLarge { .. } => "output_too_large",
            InvalidValue::Empty { .. }
            | InvalidValue::TooLong { .. }
            | InvalidValue::BadCharacter { .. }
            | InvalidValue::ZeroStep
            | InvalidValue::ZeroTotal
            | InvalidValue::ZeroAttempt => "invalid_value",
        }
    }
}

/// Checks `value` against an allow-list. Shared by every textual id so the rules cannot drift.
fn check_allow_list(
    kind: &'static str,
    value: &str,
    max: usize,
    allowed_desc: &'static str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), InvalidValue> {
    if value.is_empty() {
        return Err(InvalidValue::Empty { kind });
    }
    // Ids and names are ASCII almost always: then characters are bytes, and one pass checks all
    // of them (replay validates every id of every event it reads).
    if value.is_ascii() && value.len() <= max && value.bytes().all(|b| allowed(char::from(b))) {
        return Ok(());
    }
    let len = value.chars().count();
    if len > max {
        return Err(InvalidValue::TooLong { kind, len, max });
    }
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        // Never echo a control character back into a terminal.
        let shown: String = value.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
        return Err(InvalidValue::BadCharacter { kind, shown, bad, allowed: allowed_desc });
    }
    Ok(())
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_token_char(c: char) -> bool {
    is_id_char(c) || c == '.' || c == ':'
}

/// Serializes a validated string newtype as its string; deserializing re-validates it, so a
/// stored value that breaks the rules is an error, never a silently accepted id.
///
/// Deserializing reads the text where the decoder holds it (the record's own bytes, for JSON
/// without escapes) and allocates once, for the value kept; a `String` the decoder already
/// built is kept as it is.
macro_rules! string_serde {
    ($name:ident) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visitor;

                impl<'de> serde::de::Visitor<'de> for Visitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a string")
                    }

                    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<$name, E> {
                        $name::parse(value).map_err(E::custom)
                    }

                    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<$name, E> {
                        $name::check(&value).map_err(E::custom)?;
                        Ok($name(value))
                    }

                    fn visit_bytes<E: serde::de::Error>(self, value: &[u8]) -> Result<$name, E> {
                        // As `String`'s own visitor does: UTF-8 bytes are text.
                        match std::str::from_utf8(value) {
                            Ok(text) => self.visit_str(text),
                            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(value), &self)),
                        }
                    }
                }

                d.deserialize_string(Visitor)
            }
        }
    };
}

macro_rules! validated_string {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:expr, $desc:literal, $pred:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_LEN: usize = $max;

            /// Validates `value` against the allow-list.
            pub fn parse(value: &str) -> Result<Self, InvalidValue> {
                Self::check(value)?;
                Ok(Self(value.to_owned()))
            }

            /// Whether `value` is a valid one, without making one (no allocation).
            pub fn check(value: &str) -> Result<(), InvalidValue> {
                check_allow_list($kind, value, $max, $desc, $pred)
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        string_serde!($name);
    };
}

validated_string!(
    /// Identifies a plan. It reaches file names and queries, so it is held to `[A-Za-z0-9_-]{1,64}`.
    PlanId, "plan id", 64, "A-Z a-z 0-9 _ -", is_id_char
);
validated_string!(
    /// The decision that produced a step's work (an agent's decision, a pipeline job id).
    DecisionId, "decision id", 128, "A-Z a-z 0-9 _ - . :", is_token_char
);
impl DecisionId {
    /// The decision id of attempt `attempt` of step `step`, as the step engine records it:
    /// `step-3-a2`. Attempt numbers never repeat for a plan's step, so neither does this id,
    /// and a retried checkpoint of the same attempt carries the same one.
    pub fn for_attempt(step: StepNumber, attempt: Attempt) -> Self {
        Self(format!("step-{step}-a{}", attempt.get()))
    }
}

validated_string!(
    /// A reference to the workspace state after a step, such as `sha256:…`.
    SnapshotId, "snapshot id", 128, "A-Z a-z 0-9 _ - . :", is_token_char
);
validated_string!(
    /// Names the process that holds a plan's run lock while it works on it.
    RunnerId, "runner id", 128, "A-Z a-z 0-9 _ - . :", is_token_char
);
validated_string!(
    /// A digest of the plan definition, recorded at creation and compared on resume.
    Fingerprint, "fingerprint", 128, "hexadecimal digits", |c: char| c.is_ascii_hexdigit()
);

validated_string!(
    /// A step's name within its plan definition, such as a plan file's `name = "build"`.
    StepName, "step name", 200, "any character but control characters", |c: char| !c.is_control()
);

impl PlanId {
    /// The plan id spelled as `uuid` in its hyphenated form, which the allow-list accepts: how a
    /// plan created without a chosen id is named. The caller draws the UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid.hyphenated().to_string())
    }
}

/// A path or name of something a step produced. Free text, but bounded and free of NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Artifact(String);

impl Artifact {
    /// Longest accepted value, in characters.
    pub const MAX_LEN: usize = 4096;

    /// Accepts any non-empty text up to [`Self::MAX_LEN`] characters without control
    /// characters (NUL included), so a stored path is safe to print.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        Self::check(value)?;
        Ok(Self(value.to_owned()))
    }

    fn check(value: &str) -> Result<(), InvalidValue> {
        check_allow_list("artifact", value, Self::MAX_LEN, "any character but NUL and control characters", |c| {
            !c.is_control()
        })
    }

    /// The validated text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(Artifact);

/// A step number within the current phase. Steps count from 1; "no step yet" is `None`, never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepNumber(NonZeroU32);

impl StepNumber {
    /// Step 1, the first step of every phase.
    pub const FIRST: StepNumber = StepNumber(NonZeroU32::MIN);

    /// Step `n`; refuses 0 with [`InvalidValue::ZeroStep`].
    pub fn new(n: u32) -> Result<Self, InvalidValue> {
        NonZeroU32::new(n).map(Self).ok_or(InvalidValue::ZeroStep)
    }

    /// The step's number, at least 1.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The step after this one, or `None` past `u32::MAX`.
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }
}

impl fmt::Display for StepNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How many steps the current phase has. At least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TotalSteps(NonZeroU32);

impl TotalSteps {
    /// A total of `n` steps; refuses 0 with [`InvalidValue::ZeroTotal`].
    pub fn new(n: u32) -> Result<Self, InvalidValue> {
        NonZeroU32::new(n).map(Self).ok_or(InvalidValue::ZeroTotal)
    }

    /// The number of steps, at least 1.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for TotalSteps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which attempt at a step this is. Attempts count from 1; a retry is attempt 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attempt(NonZeroU32);

impl Attempt {
    /// Attempt 1, a step's first try.
    pub const FIRST: Attempt = Attempt(NonZeroU32::MIN);

    /// Attempt `n`; refuses 0 with [`InvalidValue::ZeroAttempt`].
    pub fn new(n: u32) -> Result<Self, InvalidValue> {
        NonZeroU32::new(n).map(Self).ok_or(InvalidValue::ZeroAttempt)
    }

    /// The attempt's number, at least 1.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The attempt after this one, or `None` past `u32::MAX`.
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a step produced, as a JSON value, journalled with its checkpoint so a resumed run gets
/// it back without running the step again. Bounded so one step cannot bloat the log.
///
/// Shared, not copied: an output of up to 1 MiB travels from the command into its event, the
/// folded checkpoint and every view, and a clone must not copy it each time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutput(std::sync::Arc<serde_json::Value>);

impl StepOutput {
    /// The largest output, in bytes of its compact JSON encoding: 1 MiB.
    pub const MAX_ENCODED_LEN: usize = 1024 * 1024;

    /// Accepts `value` if its compact JSON encoding is at most [`Self::MAX_ENCODED_LEN`] bytes.
    pub fn new(value: serde_json::Value) -> Result<Self, InvalidValue> {
        let size = encoded_len(&value);
        if size > Self::MAX_ENCODED_LEN {
            return Err(InvalidValue::OutputTooLarge { size, limit: Self::MAX_ENCODED_LEN });
        }
        Ok(Self(std::sync::Arc::new(value)))
    }

    /// The output as recorded.
    pub fn as_value(&self) -> &serde_json::Value {
        &self.0
    }

    /// The output as recorded, taken out of its bound.
    pub fn into_value(self) -> serde_json::Value {
        std::sync::Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Bytes of the compact JSON encoding, as stored.
    pub fn encoded_len(&self) -> usize {
        encoded_len(&self.0)
    }
}

/// Counts the bytes of `value`'s compact JSON encoding without building it. Counting stops
/// being exact only past `usize::MAX`, which no value in memory reaches.
fn encoded_len(value: &serde_json::Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // A `Value` always serializes (its map keys are strings) and the counter never fails.
    serde_json::to_writer(&mut counter, value).expect("a JSON value serializes");
    counter.0
}

impl Serialize for StepOutput {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for StepOutput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Self::new(value).map_err(serde::de::Error::custom)
    }
}

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps `uuid`. The domain draws no random numbers: callers bring a fresh one.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// Identifies one checkpoint (one `StepCompleted`).
    CheckpointId
);
uuid_id!(
    /// Identifies one stored event, unique across the store.
    EventId
);

macro_rules! bounded_text {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_LEN: usize = $max;

            /// Accepts any non-empty text up to the limit; control characters other than
            /// newline and tab are refused so stored text is safe to print.
            pub fn parse(value: &str) -> Result<Self, InvalidValue> {
                Self::check(value)?;
                Ok(Self(value.to_owned()))
            }

            fn check(value: &str) -> Result<(), InvalidValue> {
                check_allow_list($kind, value, $max, "printable text", |c| {
                    !c.is_control() || c == '\n' || c == '\t'
                })
            }

            /// Any text made acceptable, for text that comes from outside (a step's error, a
            /// panic's message): control characters other than newline and tab become U+FFFD,
            /// the text is cut to [`Self::MAX_LEN`] characters, and empty text becomes `(none)`.
            /// The one place such text is cleaned, so every surface records it alike.
            pub fn lossy(value: &str) -> Self {
                let cleaned: String = value
                    .chars()
                    .map(|c| if c.is_control() && c != '\n' && c != '\t' { '\u{fffd}' } else { c })
                    .take($max)
                    .collect();
                if cleaned.trim().is_empty() {
                    Self("(none)".to_owned())
                } else {
                    Self(cleaned)
                }
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        string_serde!($name);
    };
}

bounded_text!(
    /// A human name for a plan.
    PlanName, "plan name", 256
);
bounded_text!(
    /// A reason or error message: why a plan stopped, failed or was constrained.
    Message, "message", 8192
);
bounded_text!(
    /// Who did something: a user, a host and process, a service.
    Actor, "actor", 256
);
