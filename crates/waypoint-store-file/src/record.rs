//! The on-disk record: framing (magic, length, CRC32C) around the event envelope, and its codec.
//!
//! Layout, little-endian (docs/adr/0004-file-store-format.md is the reference):
//! `magic[4] | payload_len u32 | crc32c(payload_len ++ payload) u32 | payload`, where the payload is
//! `format u8 | position u32 | version u32 | batch_start u32 | event_id [16] | secs i64 | nanos u32 |
//! plan_id_len u8 | plan_id | type_len u8 | type | schema_version u16 | data_len u32 | data`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::crc;

/// Starts every record (see [`crate::format::RECORD_MAGIC`]).
pub const MAGIC: [u8; 4] = crate::format::RECORD_MAGIC;
/// The bytes before the payload.
pub const HEADER_LEN: usize = 12;
/// The largest payload a record may carry; a larger length field is damage, not data.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;
/// The payload layout this code writes.
pub const RECORD_FORMAT: u8 = 1;
/// Opens every log file (see [`crate::format::LOG_FILE_HEADER`]).
pub const FILE_HEADER: [u8; 8] = crate::format::LOG_FILE_HEADER;

/// One record's envelope and data, exactly as stored. The event data is still in its stored
/// schema version: [`crate::FileStore`] upcasts it when it builds a `RecordedEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The record's place in the whole log: 1, 2, 3, … with no gap.
    pub position: u32,
    /// The record's place in its plan's stream: 1, 2, 3, … with no gap.
    pub version: u32,
    /// The position of the first record written by the same write (and fdatasync). Recovery
    /// uses it to tell a torn last write, whose pages may reach the disk in any order, from
    /// damage to a write that was acknowledged.
    pub batch_start: u32,
    /// The event's unique id; the first record's id is also the store's identity, which every
    /// derived file is bound to.
    pub event_id: Uuid,
    /// When the event was recorded, in UTC; stored as seconds and nanoseconds since the epoch.
    pub recorded_at: DateTime<Utc>,
    /// Checked against the plan id allow-list when the record becomes an event.
    pub plan_id: String,
    /// The event type's name (`step_completed`, …), which picks the decoder of `data`.
    pub event_type: String,
    /// The schema version `data` was written in; older ones are upcast when read, never
    /// rewritten.
    pub schema_version: u16,
    /// The event's data as JSON bytes, in `schema_version`'s shape.
    pub data: Vec<u8>,
}

/// One record as it lies in a read buffer: [`RawRecord`]'s fields, the texts and the data
/// borrowed rather than copied. Replay decodes each event straight from here, so reading a
/// record allocates nothing of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// See [`RawRecord::position`].
    pub position: u32,
    /// See [`RawRecord::version`].
    pub version: u32,
    /// See [`RawRecord::batch_start`].
    pub batch_start: u32,
    /// See [`RawRecord::event_id`].
    pub event_id: Uuid,
    /// See [`RawRecord::recorded_at`].
    pub recorded_at: DateTime<Utc>,
    /// See [`RawRecord::plan_id`].
    pub plan_id: &'a str,
    /// See [`RawRecord::event_type`].
    pub event_type: &'a str,
    /// See [`RawRecord::schema_version`].
    pub schema_version: u16,
    /// See [`RawRecord::data`].
    pub data: &'a [u8],
}

impl RecordRef<'_> {
    /// The record with its texts and data copied out of the buffer.
    pub fn to_owned(&self) -> RawRecord {
        RawRecord {
            position: self.position,
            version: self.version,
            batch_start: self.batch_start,
            event_id: self.event_id,
            recorded_at: self.recorded_at,
            plan_id: self.plan_id.to_owned(),
            event_type: self.event_type.to_owned(),
            schema_version: self.schema_version,
            data: self.data.to_vec(),
        }
    }
}

/// Why bytes are not a whole, intact record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes end before the record does: at the log's end, the sign of a torn last write.
    #[error("the record is cut short: {needed} bytes needed, {available} available")]
    Incomplete {
        /// Bytes the header (or the length field) calls for.
        needed: usize,
        /// Bytes there were.
        available: usize,
    },
    /// The bytes do not open with [`MAGIC`]: no record starts here.
    #[error("no record starts here (bad magic bytes)")]
    BadMagic,
    /// The length field exceeds [`MAX_PAYLOAD`], so it is damage rather than a length.
    #[error("the length field says {0} bytes, more than any record may hold")]
    TooLarge(usize),
    /// The CRC32C over the length and payload does not match: torn or damaged bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum in the record's header.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },
    /// A whole, checksummed record in a payload layout newer than [`RECORD_FORMAT`], written by a
    /// later Waypoint; never taken for a torn write.
    #[error(
        "the record is whole but in format {0}, which this Waypoint cannot read; upgrade Waypoint to read this log"
    )]
    UnknownFormat(u8),
    /// An envelope that does not parse (a field running past the payload, text that is not
    /// UTF-8) or cannot be built (a name over 255 bytes). Found behind a matching checksum, it
    /// was written whole, so it is never taken for a torn write.
    #[error("the envelope is malformed: {0}")]
    Malformed(&'static str),
}

impl RecordError {
    /// Whether the record's checksum matched: its bytes are exactly what a writer wrote, so it
    /// cannot be a torn write, whatever else is wrong with it.
    pub fn is_whole(&self) -> bool {
        matches!(self, RecordError::UnknownFormat(_) | RecordError::Malformed(_))
    }
}

impl RawRecord {
    /// The record as a [`RecordRef`] borrowing this one's texts and data.
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            position: self.position,
            version: self.version,
            batch_start: self.batch_start,
            event_id: self.event_id,
            recorded_at: self.recorded_at,
            plan_id: &self.plan_id,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            data: &self.data,
        }
    }

    /// Frames this record: header and payload, ready to write.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let plan_id = self.plan_id.as_bytes();
        let event_type = self.event_type.as_bytes();
        if plan_id.len() > usize::from(u8::MAX) || event_type.len() > usize::from(u8::MAX) {
            return Err(RecordError::Malformed("plan id or event type longer than 255 bytes"));
        }
        let payload_len =
            1 + 4 + 4 + 4 + 16 + 8 + 4 + 1 + plan_id.len() + 1 + event_type.len() + 2 + 4 + self.data.len();
        if payload_len > MAX_PAYLOAD {
            return Err(RecordError::TooLarge(payload_len));
        }
        let mut out = Vec::with_capacity(HEADER_LEN + payload_len);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&(payload_len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push(RECORD_FORMAT);
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.batch_start.to_le_bytes());
        out.extend_from_slice(self.event_id.as_bytes());
        out.extend_from_slice(&self.recorded_at.timestamp().to_le_bytes());
        out.extend_from_slice(&self.recorded_at.timestamp_subsec_nanos().to_le_bytes());
        out.push(plan_id.len() as u8);
        out.extend_from_slice(plan_id);
        out.push(event_type.len() as u8);
        out.extend_from_slice(event_type);
        out.extend_from_slice(&self.schema_version.to_le_bytes());
        out.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.data);
        let crc = crc::extend(crc::checksum(&out[4..8]), &out[HEADER_LEN..]);
        out[8..12].copy_from_slice(&crc.to_le_bytes());
        Ok(out)
    }
}

/// Where the position, version and batch start fields sit in a framed record.
const POSITION_AT: usize = HEADER_LEN + 1;
const VERSION_AT: usize = HEADER_LEN + 5;
const BATCH_START_AT: usize = HEADER_LEN + 9;

/// Sets the position, version and batch start of a framed record (as [`RawRecord::encode`]
/// made it) and recomputes its checksum. Lets an appender encode outside the store's critical
/// section and number the record inside it.
pub fn seal(frame: &mut [u8], position: u32, version: u32, batch_start: u32) {
    frame[POSITION_AT..POSITION_AT + 4].copy_from_slice(&position.to_le_bytes());
    frame[VERSION_AT..VERSION_AT + 4].copy_from_slice(&version.to_le_bytes());
    frame[BATCH_START_AT..BATCH_START_AT + 4].copy_from_slice(&batch_start.to_le_bytes());
    let crc = crc::extend(crc::checksum(&frame[4..8]), &frame[HEADER_LEN..]);
    frame[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the header at the start of `bytes`: the whole record's length if the magic is right
/// and the length is plausible. Lets a reader learn how much more to read.
pub fn frame_len(header: &[u8]) -> Result<usize, RecordError> {
    if header.len() < HEADER_LEN {
        return Err(RecordError::Incomplete { needed: HEADER_LEN, available: header.len() });
    }
    if header[..4] != MAGIC {
        return Err(RecordError::BadMagic);
    }
    let payload_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if payload_len > MAX_PAYLOAD {
        return Err(RecordError::TooLarge(payload_len));
    }
    Ok(HEADER_LEN + payload_len)
}

/// Decodes the record at the start of `bytes`, returning it and its framed length. Never
/// panics, whatever the bytes: this is the fuzz target's subject.
pub fn decode(bytes: &[u8]) -> Result<(RawRecord, usize), RecordError> {
    decode_ref(bytes).map(|(record, len)| (record.to_owned(), len))
}

/// [`decode`], borrowing the record's texts and data from `bytes` instead of copying them.
pub fn decode_ref(bytes: &[u8]) -> Result<(RecordRef<'_>, usize), RecordError> {
    let total = frame_len(bytes)?;
    if bytes.len() < total {
        return Err(RecordError::Incomplete { needed: total, available: bytes.len() });
    }
    let stored = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let computed = crc::extend(crc::checksum(&bytes[4..8]), &bytes[HEADER_LEN..total]);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    let record = decode_payload(&bytes[HEADER_LEN..total])?;
    Ok((record, total))
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.bytes.len() < n {
            return Err(RecordError::Malformed("a field runs past the end of the payload"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn text(&mut self, len: usize) -> Result<&'a str, RecordError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| RecordError::Malformed("a text field is not UTF-8"))
    }
}

fn decode_payload(payload: &[u8]) -> Result<RecordRef<'_>, RecordError> {
    let mut cursor = Cursor { bytes: payload };
    let format = cursor.u8()?;
    if format != RECORD_FORMAT {
        return Err(RecordError::UnknownFormat(format));
    }
    let position = cursor.u32()?;
    let version = cursor.u32()?;
    let batch_start = cursor.u32()?;
    if position == 0 || version == 0 || batch_start == 0 || batch_start > position {
        return Err(RecordError::Malformed(
            "positions and versions count from 1; a batch starts at or before its records",
        ));
    }
    let event_id = Uuid::from_bytes(cursor.array()?);
    let secs = cursor.i64()?;
    let nanos = cursor.u32()?;
    let recorded_at =
        DateTime::<Utc>::from_timestamp(secs, nanos).ok_or(RecordError::Malformed("the timestamp is out of range"))?;
    let plan_len = usize::from(cursor.u8()?);
    let plan_id = cursor.text(plan_len)?;
    let type_len = usize::from(cursor.u8()?);
    let event_type = cursor.text(type_len)?;
    let schema_version = cursor.u16()?;
    let data_len = cursor.u32()? as usize;
    let data = cursor.take(data_len)?;
    if !cursor.bytes.is_empty() {
        return Err(RecordError::Malformed("bytes left over after the data"));
    }
    Ok(RecordRef { position, version, batch_start, event_id, recorded_at, plan_id, event_type, schema_version, data })
}

#[cfg(test)]
mod tests;
