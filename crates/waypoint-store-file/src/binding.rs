//! What ties a derived file to the log it was derived from: the store's id (taken from the
//! log's first record) and the log record the file vouches for (position, offset, checksum).
//! A derived file whose binding does not hold is rebuilt from the log, never trusted; one whose
//! record lies past the end of this very log is damage (the log lost what was vouched for).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::crc;
use crate::error::FileStoreError;
use crate::record::{HEADER_LEN, MAGIC};

/// The store's identity: the first record's event id and checksum. An event id is a random
/// UUID written once, so two stores never share one; a log without records has no derived
/// file worth binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoreId(pub [u8; 20]);

impl StoreId {
    pub fn new(event_id: [u8; 16], crc: u32) -> Self {
        let mut out = [0u8; 20];
        out[..16].copy_from_slice(&event_id);
        out[16..].copy_from_slice(&crc.to_le_bytes());
        StoreId(out)
    }
}

/// The log record a derived file vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Binding {
    pub position: u32,
    pub offset: u64,
    /// The record's CRC32C, as stored in its header.
    pub crc: u32,
}

/// What checking a binding against the log found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The record is there, with that position and checksum.
    Holds,
    /// Something else is there: the file belongs to another store or another history.
    Differs,
    /// The record lies past what this process has read, but within the file: a newer derived
    /// file written by another process. Not usable yet, not damage.
    Newer,
}

/// The bytes of a record's start that a binding is checked against: header, format, position.
const PROBE_LEN: usize = HEADER_LEN + 1 + 4;

/// Reads the checksum and position of the record at `offset` (25 bytes); `None` if no whole
/// record header is there.
pub fn probe(file: &File, path: &Path, offset: u64, file_len: u64) -> Result<Option<(u32, u32)>, FileStoreError> {
    if offset + PROBE_LEN as u64 > file_len {
        return Ok(None);
    }
    let mut bytes = [0u8; PROBE_LEN];
    crate::storage::count_read(PROBE_LEN);
    file.read_exact_at(&mut bytes, offset).map_err(|e| FileStoreError::io("cannot read the log", path, e))?;
    if bytes[..4] != MAGIC {
        return Ok(None);
    }
    let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let position = u32::from_le_bytes(bytes[13..17].try_into().expect("4 bytes"));
    Ok(Some((crc, position)))
}

/// Checks `binding` against the log: `end` is where this process has read up to. A binding
/// past the end of the file itself is damage: the log lost records a derived file vouched for.
pub fn check(file: &File, path: &Path, binding: &Binding, end: u64, what: &str) -> Result<Check, FileStoreError> {
    let file_len = file.metadata().map_err(|e| FileStoreError::io("cannot read the log's size", path, e))?.len();
    if binding.offset >= file_len {
        return Err(FileStoreError::corrupt(
            path,
            file_len,
            format!(
                "the log ends at byte {file_len}, before position {} (byte {}) that {what} vouches for; records were lost",
                binding.position, binding.offset
            ),
        ));
    }
    if binding.offset >= end {
        return Ok(Check::Newer);
    }
    Ok(match probe(file, path, binding.offset, end)? {
        Some((crc, position)) if crc == binding.crc && position == binding.position => Check::Holds,
        _ => Check::Differs,
    })
}

/// The 32-byte header of a binary derived file: `magic[4] | format u32 | store id [20] |
/// crc32c u32` of the 28 bytes before it.
pub const FILE_HEADER_LEN: usize = 32;

pub fn file_header(magic: [u8; 4], format: u32, store: &StoreId) -> [u8; FILE_HEADER_LEN] {
    let mut out = [0u8; FILE_HEADER_LEN];
    out[..4].copy_from_slice(&magic);
    out[4..8].copy_from_slice(&format.to_le_bytes());
    out[8..28].copy_from_slice(&store.0);
    let check = crc::checksum(&out[..28]);
    out[28..].copy_from_slice(&check.to_le_bytes());
    out
}

/// Whether `bytes` start with the header `file_header(magic, format, store)` would write.
pub fn header_matches(bytes: &[u8], magic: [u8; 4], format: u32, store: &StoreId) -> bool {
    bytes.len() >= FILE_HEADER_LEN && bytes[..FILE_HEADER_LEN] == file_header(magic, format, store)
}
