//! Waypoint's embedded durable store: an append-only, checksummed event log in a local
//! directory, shared safely by many processes. See docs/adr/0004-file-store-format.md.
//!
//! ```text
//! <store>/events.log     the log: a file header, then framed records (length, CRC32C, envelope)
//! <store>/store.lock     held shared by every open store, exclusively by `repair`
//! <store>/write.lock     held exclusively while appending, shared while catching up
//! <store>/locks/<plan>.lock  run locks, one per plan
//! <store>/torn/          bytes of torn last records cut off on open, kept for inspection
//! ```

mod crc;
mod error;
mod fsutil;
mod log;
pub mod record;
mod runlock;
mod store;

pub use error::FileStoreError;
pub use runlock::{FileRunLocks, RunLockGuard};
pub use store::FileStore;

#[cfg(test)]
mod tests;
