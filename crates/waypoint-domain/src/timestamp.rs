//! How a time is written by serde: as chrono writes it (RFC 3339 text) for a human-readable
//! format (JSON, what people and other programs read), and as two integers, seconds and
//! nanoseconds since the Unix epoch, for a binary one (the file store's catalog rows, ADR 0009):
//! a listing decodes thousands of times, and integers need no parsing. Used as
//! `#[serde(with = "waypoint_domain::timestamp")]` on the times a plan's view carries.

use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Writes `at`: text for a human-readable format, `(seconds, nanoseconds)` otherwise.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        at.serialize(serializer)
    } else {
        (at.timestamp(), at.timestamp_subsec_nanos()).serialize(serializer)
    }
}

/// Reads what [`serialize`] wrote in the same format.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    if deserializer.is_human_readable() {
        DateTime::<Utc>::deserialize(deserializer)
    } else {
        let (seconds, nanos) = <(i64, u32)>::deserialize(deserializer)?;
        DateTime::from_timestamp(seconds, nanos)
            .ok_or_else(|| D::Error::custom(format!("a time out of range: {seconds} s and {nanos} ns")))
    }
}
