//! Opening a store and keeping up with the log: the open (writable or read-only), the catalog
//! checkpoint check, the catch-up fold of records other processes wrote, and cutting back a
//! torn last record (damage anywhere else is a typed error, never cut).

use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::Arc;

use crate::error::FileStoreError;
use crate::fsutil;
use crate::layout::{self, Layout};
use crate::log::{self, RecordReader, FIRST_RECORD};
use crate::projections::{read_checkpoint, StoredCatalog};
use crate::record::FILE_HEADER;
use crate::state::{file_len, FlockGuard, Shared, State};
use crate::store::StoreOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Holds the write lock exclusively: a torn tail is a crashed writer's and is cut back.
    Exclusive,
    /// Holds it shared: a torn tail is left as it is and read up to.
    Shared,
}

impl Shared {
    /// Opens the store in `layout` for reading and writing, creating it if missing and cutting
    /// back a torn last record left by a crash.
    pub(crate) fn open(layout: Layout, options: StoreOptions) -> Result<Arc<Shared>, FileStoreError> {
        fsutil::ensure_dir(layout.dir())?;
        let store_lock = fsutil::open_lock_file(&layout.store_lock())?;
        lock_store_shared(&store_lock, layout.dir())?;
        let write_lock = fsutil::open_lock_file(&layout.write_lock())?;
        let log_path = layout.log();
        write_lock.lock().map_err(|e| FileStoreError::io("cannot lock the store for writing", &log_path, e))?;
        let guard = FlockGuard(&write_lock);
        let (file, created) = fsutil::open_or_create(&log_path)?;
        let len = file_len(&file, &log_path)?;
        if !log::check_file_header(&file, &log_path, len)? {
            options
                .storage
                .truncate(&file, 0)
                .and_then(|()| options.storage.write_all_at(&file, &FILE_HEADER, 0))
                .and_then(|()| options.storage.sync_data(&file))
                .map_err(|e| FileStoreError::io("cannot write the log header", &log_path, e))?;
        }
        if created {
            fsutil::sync_dir(layout.dir())?;
        }
        let shared = Shared::new(layout, log_path, false, options, Some(file), Some(store_lock), None);
        {
            let mut state = shared.lock_state();
            shared.load(&mut state, Access::Exclusive)?;
        }
        drop(guard);
        let shared = Shared { write_lock: Some(write_lock), ..shared };
        Ok(Arc::new(shared))
    }

    /// Opens the store in `layout` without writing a byte or creating anything.
    pub(crate) fn open_read_only(layout: Layout) -> Result<Arc<Shared>, FileStoreError> {
        if !layout.dir().is_dir() {
            return Err(FileStoreError::NotFound { path: layout.dir().to_path_buf() });
        }
        let store_lock = fsutil::open_existing_read_only(&layout.store_lock())?;
        if let Some(lock) = &store_lock {
            lock_store_shared(lock, layout.dir())?;
        }
        let write_lock = fsutil::open_existing_read_only(&layout.write_lock())?;
        let log_path = layout.log();
        let log = fsutil::open_existing_read_only(&log_path)?;
        if let Some(file) = &log {
            log::check_file_header(file, &log_path, file_len(file, &log_path)?)?;
        }
        let shared = Shared::new(layout, log_path, true, StoreOptions::default(), log, store_lock, write_lock);
        {
            let mut state = shared.lock_state();
            let _guard = shared.lock_shared_flock()?;
            shared.load(&mut state, Access::Shared)?;
        }
        Ok(Arc::new(shared))
    }

    /// Starts from the catalog checkpoint if it matches the log, else from the log's start, and
    /// folds every record after it.
    fn load(&self, state: &mut State, access: Access) -> Result<(), FileStoreError> {
        if let (Some(checkpoint), Some(file)) = (read_checkpoint(&self.layout)?, &self.log) {
            if self.checkpoint_matches(file, &checkpoint)? {
                state.end = checkpoint.end;
                state.position = checkpoint.position;
                state.last_offset = checkpoint.last_offset;
                state.catalog = checkpoint.catalog;
                state.versions = checkpoint.versions;
            }
        }
        self.catch_up(state, access)?;
        if !self.read_only && state.tail_len >= self.options.checkpoint_every {
            self.checkpoint(state)?;
        }
        Ok(())
    }

    /// A checkpoint is used only if its last record is where it says, with the position it says.
    fn checkpoint_matches(&self, file: &File, checkpoint: &StoredCatalog) -> Result<bool, FileStoreError> {
        if checkpoint.format != 1 || checkpoint.end > file_len(file, &self.log_path)? {
            return Ok(false);
        }
        if checkpoint.position == 0 {
            return Ok(checkpoint.end == FIRST_RECORD);
        }
        Ok(match log::read_record_at(file, &self.log_path, checkpoint.last_offset, checkpoint.end) {
            Ok((raw, len)) => raw.position == checkpoint.position && checkpoint.last_offset + len == checkpoint.end,
            Err(_) => false,
        })
    }

    pub(crate) fn catch_up_shared(&self, state: &mut State) -> Result<(), FileStoreError> {
        if state.committing {
            // This process's own commit holds the write lock and caught up a moment ago; a
            // shared flock on the same descriptor would silently downgrade its exclusive one.
            return Ok(());
        }
        let _guard = self.lock_shared_flock()?;
        self.catch_up(state, Access::Shared)
    }

    /// Folds every whole record past `state.end` into `state`.
    pub(crate) fn catch_up(&self, state: &mut State, access: Access) -> Result<(), FileStoreError> {
        let Some(file) = &self.log else { return Ok(()) };
        let len = file_len(file, &self.log_path)?;
        if len <= state.end {
            return Ok(());
        }
        let mut reader = RecordReader::new(file.clone(), self.log_path.clone(), state.end, len);
        while let Some(item) = reader.next() {
            match item? {
                Ok((offset, raw)) => {
                    let stored = log::to_stored(&self.log_path, offset, raw)?;
                    state.apply(&self.log_path, offset, &stored)?;
                    state.end = reader.offset();
                    if !self.read_only && state.tail_len >= self.options.checkpoint_every.max(1) * 4 {
                        // A long catch-up (a lost checkpoint) flushes as it goes: flat memory.
                        self.checkpoint(state)?;
                    }
                }
                Err(bad) => {
                    if bad.error.is_whole() {
                        // Written whole by some writer (a newer Waypoint, say): never a torn
                        // write, so never cut.
                        return Err(FileStoreError::corrupt(&self.log_path, bad.offset, bad.error.to_string()));
                    }
                    let expected = state.position + 1;
                    if let Some(later) = log::later_write_follows(file, &self.log_path, bad.offset, len, expected)? {
                        return Err(FileStoreError::corrupt(
                            &self.log_path,
                            bad.offset,
                            format!("{}; a record written after it follows at byte offset {later}", bad.error),
                        ));
                    }
                    if access == Access::Exclusive && !self.read_only {
                        self.cut_torn_tail(file, bad.offset, len)?;
                    }
                    break;
                }
            }
        }
        Ok(())
    }

    /// Moves the bytes of a torn last record aside (for inspection) and truncates the log there.
    fn cut_torn_tail(&self, file: &File, offset: u64, len: u64) -> Result<(), FileStoreError> {
        let mut bytes = vec![0u8; (len - offset) as usize];
        log::read_exact_at(file, &self.log_path, &mut bytes, offset)?;
        let torn_dir = self.layout.torn_dir();
        fsutil::ensure_dir(&torn_dir)?;
        let aside = self.layout.torn_tail(offset, &layout::stamp_now());
        fsutil::write_atomically(&torn_dir, &aside, &bytes)?;
        self.options
            .storage
            .truncate(file, offset)
            .map_err(|e| FileStoreError::io("cannot cut the torn tail", &self.log_path, e))
    }
}

fn lock_store_shared(lock: &File, dir: &Path) -> Result<(), FileStoreError> {
    match lock.try_lock_shared() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => {
            Err(FileStoreError::Locked { path: dir.to_path_buf(), detail: "being repaired by another process" })
        }
        Err(TryLockError::Error(e)) => Err(FileStoreError::io("cannot lock the store", dir, e)),
    }
}

#[cfg(test)]
mod tests;
