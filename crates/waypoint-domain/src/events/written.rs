//! Decoding the two events replay reads most (`step_started`, `step_completed`) straight from
//! the exact form [`PlanEvent::encode_data`] writes, without serde's per-key dispatch.
//!
//! Much of replay's decoding went to JSON keys: serde's derived decoder scans, checks and
//! matches every key of every record. The writer always puts the keys in the struct's order,
//! writes every field (absent ones as `null`) and adds no whitespace, so each key can be checked
//! with one comparison of bytes. A string without escapes is taken from the record's own
//! bytes; any other value (an escaped string, a lease, an output) is read by `serde_json` from
//! where it starts, exactly as the derived decoder would read it.
//!
//! The rule that keeps this correct: the fast path either gives the very event the derived
//! decoder gives for the same bytes, or gives up (`None`) and the derived decoder reads the
//! record. It gives up on anything other than the writer's form: keys in another order, a missing
//! or extra key, whitespace, a value its type refuses. Errors therefore always come from the
//! derived decoder, word for word as before. A new field or a new order of the structs' fields
//! makes every record give up here (slower, still correct); the test
//! `the_writers_form_takes_the_fast_path` fails until this file follows.

use serde::de::DeserializeOwned;

use super::{PlanEvent, StepCompleted, StepStarted};
use crate::ids::{Artifact, Attempt, CheckpointId, DecisionId, Fingerprint, SnapshotId, StepName, StepNumber};

/// The event in `data`, if `data` is exactly in the writer's form of the current schema version
/// of `step_started` or `step_completed`; `None` for anything else.
pub(super) fn step_started(data: &[u8]) -> Option<PlanEvent> {
    let mut r = Reader { bytes: data };
    r.literal(br#"{"step":"#)?;
    let step = StepNumber::new(r.number()?).ok()?;
    r.literal(br#","decision_id":"#)?;
    let decision_id = r.text(DecisionId::parse)?;
    r.literal(br#","name":"#)?;
    let name = r.optional(|r| r.text(StepName::parse))?;
    r.literal(br#","attempt":"#)?;
    let attempt = r.optional(|r| Attempt::new(r.number()?).ok())?;
    r.literal(br#","lease":"#)?;
    let lease = r.optional(Reader::nested)?;
    r.end()?;
    Some(PlanEvent::StepStarted(StepStarted { step, decision_id, name, attempt, lease }))
}

/// See [`step_started`].
pub(super) fn step_completed(data: &[u8]) -> Option<PlanEvent> {
    let mut r = Reader { bytes: data };
    r.literal(br#"{"checkpoint_id":"#)?;
    let checkpoint_id = r.text(|s| s.parse::<uuid::Uuid>().map(CheckpointId::from_uuid))?;
    r.literal(br#","step":"#)?;
    let step = StepNumber::new(r.number()?).ok()?;
    r.literal(br#","decision_id":"#)?;
    let decision_id = r.text(DecisionId::parse)?;
    r.literal(br#","snapshot_id":"#)?;
    let snapshot_id = r.optional(|r| r.text(SnapshotId::parse))?;
    r.literal(br#","artifacts":"#)?;
    let artifacts = r.artifacts()?;
    r.literal(br#","name":"#)?;
    let name = r.optional(|r| r.text(StepName::parse))?;
    r.literal(br#","output":"#)?;
    let output = r.optional(Reader::nested)?;
    r.literal(br#","fingerprint":"#)?;
    let fingerprint = r.optional(|r| r.text(Fingerprint::parse))?;
    r.end()?;
    Some(PlanEvent::StepCompleted(StepCompleted {
        checkpoint_id,
        step,
        decision_id,
        snapshot_id,
        artifacts,
        name,
        output,
        fingerprint,
    }))
}

/// Nested values read through `serde_json` may hold at most this many `[` and `{` bytes. The
/// derived decoder reads them one level deeper than a decoder started at the value, so its
/// nesting limit (128) would be reached one level sooner: below this count neither reaches it,
/// and above it the derived decoder reads the record.
const MAX_NESTED_BRACKETS: usize = 64;

/// What is left of the record's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn literal(&mut self, expected: &[u8]) -> Option<()> {
        self.bytes = self.bytes.strip_prefix(expected)?;
        Some(())
    }

    /// The closing brace, and nothing after it.
    fn end(&mut self) -> Option<()> {
        (self.bytes == b"}").then_some(())
    }

    fn null(&mut self) -> bool {
        self.literal(b"null").is_some()
    }

    /// `null` as `Some(None)`; otherwise `read`'s value.
    fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null() {
            return Some(None);
        }
        read(self).map(Some)
    }

    /// A JSON integer from 0 to `u32::MAX` without sign, fraction, exponent or leading zero.
    fn number(&mut self) -> Option<u32> {
        let digits = self.bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        let (number, rest) = self.bytes.split_at(digits);
        if digits == 0 || (digits > 1 && number[0] == b'0') || matches!(rest.first(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let mut value: u32 = 0;
        for &digit in number {
            value = value.checked_mul(10)?.checked_add(u32::from(digit - b'0'))?;
        }
        self.bytes = rest;
        Some(value)
    }

    /// A string's text, borrowed, when the string has no escapes: the bytes up to the closing
    /// quote, if JSON allows them raw in a string (no control character) and they are UTF-8.
    fn plain_string(&mut self) -> Option<&'a str> {
        let rest = self.bytes.strip_prefix(b"\"")?;
        let len = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        let text = std::str::from_utf8(&rest[..len]).ok()?;
        self.bytes = &rest[len + 1..];
        Some(text)
    }

    /// A string as a `T`: a plain one parsed by `parse`, which must be what `T`'s own
    /// deserializer does with a string; any other through that deserializer.
    fn text<T: DeserializeOwned, E>(&mut self, parse: impl FnOnce(&str) -> Result<T, E>) -> Option<T> {
        match self.plain_string() {
            Some(text) => parse(text).ok(),
            None => self.nested(),
        }
    }

    /// `[]` or a list of plain strings, each an artifact.
    fn artifacts(&mut self) -> Option<Vec<Artifact>> {
        self.literal(b"[")?;
        let mut artifacts = Vec::new();
        if self.literal(b"]").is_some() {
            return Some(artifacts);
        }
        loop {
            artifacts.push(self.text(Artifact::parse)?);
            if self.literal(b"]").is_some() {
                return Some(artifacts);
            }
            self.literal(b",")?;
        }
    }

    /// Any value read by `serde_json` from where it starts, as the derived decoder reads it.
    /// Whitespace first gives up: the writer writes none, and `serde_json` would skip it where
    /// the caller has already looked for `null` without skipping it.
    fn nested<T: DeserializeOwned>(&mut self) -> Option<T> {
        if matches!(self.bytes.first(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            return None;
        }
        let mut values = serde_json::Deserializer::from_slice(self.bytes).into_iter::<T>();
        let value = values.next()?.ok()?;
        let (read, rest) = self.bytes.split_at(values.byte_offset());
        if read.iter().filter(|&&b| b == b'[' || b == b'{').count() > MAX_NESTED_BRACKETS {
            return None;
        }
        self.bytes = rest;
        Some(value)
    }
}

#[cfg(test)]
mod tests;
