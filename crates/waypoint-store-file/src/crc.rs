//! CRC32C (Castagnoli): the checksum that frames every record.
//!
//! Replay checks every record's checksum, so this is on its hot path. The `crc32c` crate uses
//! the processor's CRC32C instruction when it has one (SSE 4.2 on x86-64, the CRC extension on
//! ARMv8), detected at run time, and a table-driven fallback otherwise; a table-driven loop in
//! safe Rust (slicing-by-8 or by-16) cost 15 to 18% of a replay, the instruction 7% of one that
//! runs nearly three times faster (ADR 0005). The known-answer tests pin the values either way:
//! the on-disk format does not depend on which.

/// Extends `crc` (0 for a fresh checksum) with `bytes`.
pub fn extend(crc: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, bytes)
}

pub fn checksum(bytes: &[u8]) -> u32 {
    extend(0, bytes)
}

#[cfg(test)]
mod tests;
