//! Checksummed files for derived data (the catalog checkpoint, plan view snapshots): a bad or
//! torn one is detected and rebuilt from the log, never trusted.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::crc;

/// `magic[4] | len u32 | crc32c(len ++ body) u32 | body (JSON)`.
pub fn encode<T: Serialize>(magic: [u8; 4], value: &T) -> Vec<u8> {
    // Our projections are maps of strings and numbers: serialization cannot fail.
    let body = serde_json::to_vec(value).expect("projection serializes");
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    let crc = crc::extend(crc::checksum(&out[4..8]), &body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// `None` when the bytes are not a whole, intact frame of `magic` holding a `T`.
pub fn decode<T: DeserializeOwned>(magic: [u8; 4], bytes: &[u8]) -> Option<T> {
    if bytes.len() < 12 || bytes[..4] != magic {
        return None;
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize;
    let stored = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    let body = bytes.get(12..12usize.checked_add(len)?)?;
    if bytes.len() != 12 + len || crc::extend(crc::checksum(&bytes[4..8]), body) != stored {
        return None;
    }
    serde_json::from_slice(body).ok()
}
