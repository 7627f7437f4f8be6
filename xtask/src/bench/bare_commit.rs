//! A bare group commit: writers that each wait for their record to be durable, served by one
//! leader at a time that writes every queued record with one `pwrite` and one `fdatasync`, and
//! nothing else (no encoding, no checks, no fold, no index). What 16 such writers reach against
//! one, on this disk and these cores, is the bound the file store's own group commit is
//! measured against: the store cannot share its syncs better than a commit that does no work.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// The batches taken and made durable, and the records waiting for the next one.
#[derive(Default)]
struct Queue {
    waiting: usize,
    /// Batches taken so far, and batches durable (the same, but while one is being written).
    taken: u64,
    durable: u64,
    end: u64,
}

struct BareLog {
    file: File,
    record: Vec<u8>,
    queue: Mutex<Queue>,
    durable: Condvar,
}

impl BareLog {
    /// Appends one record and returns once it is durable.
    fn append(&self) -> std::io::Result<()> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.waiting += 1;
        // The next batch taken carries this record.
        let mine = queue.taken + 1;
        loop {
            if queue.durable >= mine {
                return Ok(());
            }
            if queue.taken == queue.durable && queue.taken < mine {
                // No batch in flight: lead this one, with every record queued by now.
                let records = std::mem::take(&mut queue.waiting);
                queue.taken = mine;
                let at = queue.end;
                queue.end += (records * self.record.len()) as u64;
                drop(queue);
                let written =
                    self.file.write_all_at(&self.record.repeat(records), at).and_then(|()| self.file.sync_data());
                queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                queue.durable = mine;
                self.durable.notify_all();
                return written;
            }
            queue = self.durable.wait(queue).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Records made durable per second by `writers` threads appending `appends` records of
/// `record_len` bytes each to a fresh file at `path` through a bare group commit.
pub(super) fn rate(path: &Path, writers: u32, appends: u32, record_len: usize) -> Result<f64, String> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let log = BareLog { file, record: vec![b'x'; record_len], queue: Mutex::default(), durable: Condvar::new() };
    let started = Instant::now();
    super::in_threads(0..writers, |_| (0..appends).try_for_each(|_| log.append()).map_err(|e| e.to_string()))?;
    Ok(f64::from(writers * appends) / started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_of_every_writer_reaches_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bare.log");
        let per_second = rate(&path, 8, 25, 100).unwrap();
        assert!(per_second > 0.0);
        // Each batch wrote its records where the last one ended: the file is exactly all of them.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 * 25 * 100);
    }
}
