//! The step-log file: a small fixed header, then the kept bytes of the stream.
//!
//! ```text
//! magic "WPSL" | cut u64 LE | len u64 LE | crc32c(cut ++ len ++ bytes) u32 LE | bytes[len]
//! ```
//!
//! `cut` counts the stream's earlier bytes that were dropped to keep `bytes` within the cap. A
//! file is replaced whole by a rename, so one that does not match its header is damage, never a
//! write in progress.

use waypoint_application::STEP_LOG_CAP;

use crate::crc;

use crate::format::STEP_LOG_MAGIC as MAGIC;
/// Bytes before the log's own: magic, cut, length, checksum.
pub(crate) const HEADER_LEN: usize = 4 + 8 + 8 + 4;

/// Where and why a step-log file does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Byte offset in the file.
    pub(crate) offset: u64,
    pub(crate) detail: String,
}

/// The file of a log that keeps `bytes` and dropped `cut` earlier bytes.
pub(crate) fn encode(cut: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + bytes.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&cut.to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    let checksum = crc::extend(crc::checksum(&out[4..20]), bytes);
    out.extend_from_slice(&checksum.to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// The cut count and the kept bytes of a step-log file.
/// The cut and the kept bytes of a stored step log. A file that does not start with the magic
/// was written by the runner of the second round straight into `logs/` (raw bytes, with a
/// first line `[waypoint: N earlier bytes cut; …]` when it was cut): it is read as such, its
/// end kept within [`STEP_LOG_CAP`], so stores from before the port keep their logs.
pub(crate) fn decode(file: &[u8]) -> Result<(u64, Vec<u8>), Damage> {
    if !file.starts_with(&MAGIC) {
        return Ok(legacy(file));
    }
    decode_framed(file).map(|(cut, bytes)| (cut, bytes.to_vec()))
}

const LEGACY_PREFIX: &[u8] = b"[waypoint: ";
const LEGACY_SUFFIX: &[u8] = b" earlier bytes cut";

fn legacy(file: &[u8]) -> (u64, Vec<u8>) {
    let (mut cut, mut bytes) = (0u64, file);
    if let (Some(rest), Some(end)) = (file.strip_prefix(LEGACY_PREFIX), file.iter().position(|&b| b == b'\n')) {
        let digits: Vec<u8> = rest.iter().copied().take_while(u8::is_ascii_digit).collect();
        let marked = rest[digits.len()..].starts_with(LEGACY_SUFFIX);
        if let (true, Ok(n)) = (marked, String::from_utf8_lossy(&digits).parse::<u64>()) {
            cut = n;
            bytes = &file[end + 1..];
        }
    }
    let over = bytes.len().saturating_sub(STEP_LOG_CAP);
    (cut.saturating_add(over as u64), bytes[over..].to_vec())
}

fn decode_framed(file: &[u8]) -> Result<(u64, &[u8]), Damage> {
    let damage = |offset: usize, detail: String| Damage { offset: offset as u64, detail };
    if file.len() < HEADER_LEN {
        return Err(damage(0, format!("a step log is at least {HEADER_LEN} bytes, this file holds {}", file.len())));
    }
    if file[..4] != MAGIC {
        return Err(damage(0, "this is not a step log (its first bytes are not \"WPSL\")".into()));
    }
    let number = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().expect("eight bytes"));
    let (cut, len) = (number(4), number(12));
    let stored = u32::from_le_bytes(file[20..24].try_into().expect("four bytes"));
    let bytes = &file[HEADER_LEN..];
    if len != bytes.len() as u64 {
        return Err(damage(12, format!("the header says the log holds {len} bytes, the file holds {}", bytes.len())));
    }
    if crc::extend(crc::checksum(&file[4..20]), bytes) != stored {
        return Err(damage(20, "the checksum does not match the log's bytes".into()));
    }
    Ok((cut, bytes))
}
