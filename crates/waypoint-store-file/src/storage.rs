//! The storage seam: the few calls through which the log's bytes reach the disk, so tests can
//! inject ENOSPC, short writes and failing fsyncs without touching the rest of the store; and
//! the read meter every read of the store's files goes through, so tests can prove what a
//! command reads (a single-plan command reads nothing of other plans).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// How the store writes, syncs and truncates its log. [`OsStorage`] is the real thing.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Writes all of `bytes` at `offset`, or fails (possibly after writing a prefix).
    fn write_all_at(&self, file: &File, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every written byte durable (`fdatasync`).
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// Truncates the file to `len` bytes and makes the new length durable.
    fn truncate(&self, file: &File, len: u64) -> io::Result<()>;
}

/// The operating system's calls, unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsStorage;

impl Storage for OsStorage {
    fn write_all_at(&self, file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(bytes, offset)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)?;
        file.sync_all()
    }
}

std::thread_local! {
    static BYTES_READ: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Bytes this thread has read from the store's files (log and derived files alike) so far. A
/// read-only store reads on its caller's thread, so the difference across a call is what that
/// call read.
pub fn bytes_read_on_this_thread() -> u64 {
    BYTES_READ.with(std::cell::Cell::get)
}

/// Counts `n` bytes read; every read path of the store calls it.
pub(crate) fn count_read(n: usize) {
    BYTES_READ.with(|c| c.set(c.get() + n as u64));
}
