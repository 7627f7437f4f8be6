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
use waypoint_domain::PlanId;

use crate::binding::{self, Check, StoreId};
use crate::catalog;
use crate::record::FILE_HEADER;
use crate::state::StoreOptions;
use crate::state::{file_len, FlockGuard, Folded, Shared, State};

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
        let made = fsutil::ensure_dir_made(layout.dir())?;
        let opened = Self::open_made(layout, options);
        if let (Err(_), Some(made)) = (&opened, made) {
            // A store this call began to create and could not finish leaves nothing behind.
            let _ = std::fs::remove_dir_all(made);
        }
        opened
    }

    fn open_made(layout: Layout, options: StoreOptions) -> Result<Arc<Shared>, FileStoreError> {
        fsutil::refuse_symlinks(&layout.own_entries())?;
        let store_lock = fsutil::open_lock_file(&layout.store_lock())?;
        lock_store_shared(&store_lock, layout.dir())?;
        let write_lock = fsutil::open_lock_file(&layout.write_lock())?;
        let log_path = layout.log();
        fsutil::lock_bounded(&write_lock, &layout.write_lock(), true, options.lock_timeout)?;
        let guard = FlockGuard(&write_lock);
        fsutil::remove_stale_temporaries(&layout.tmp_dir());
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
        // A removal that crashed after its commit is finished before anything else.
        shared.recover_retention()?;
        Ok(Arc::new(shared))
    }

    /// Opens the store in `layout` without writing a byte or creating anything.
    pub(crate) fn open_read_only(layout: Layout, options: StoreOptions) -> Result<Arc<Shared>, FileStoreError> {
        if !layout.dir().is_dir() {
            return Err(FileStoreError::NotFound { path: layout.dir().to_path_buf() });
        }
        fsutil::refuse_symlinks(&layout.own_entries())?;
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
        let shared = Shared::new(layout, log_path, true, options, log, store_lock, write_lock);
        {
            let mut state = shared.lock_state();
            let _guard = shared.lock_shared_flock()?;
            shared.load(&mut state, Access::Shared)?;
        }
        Ok(Arc::new(shared))
    }

    /// Starts from the checkpoint head if it belongs to this log, else from the log's start,
    /// and folds every record after it. A head of this very store that vouches for a record the
    /// log no longer holds is damage: the log lost acknowledged records.
    fn load(&self, state: &mut State, access: Access) -> Result<(), FileStoreError> {
        let Some(file) = &self.log else { return Ok(()) };
        let len = file_len(file, &self.log_path)?;
        state.store = self.store_id(file, len)?;
        if let (Some(head), Some(store)) = (catalog::read_head(&self.layout)?, state.store) {
            if head.store == store && self.layout.index_dir().is_dir() {
                let what = self.layout.checkpoint().display().to_string();
                match binding::check(file, &self.log_path, &head.last, len, &what)? {
                    Check::Holds => {
                        state.end = head.end;
                        state.position = head.position();
                        state.last_offset = head.last.offset;
                        state.last_crc = head.last.crc;
                        state.base = Some(head);
                    }
                    Check::Differs | Check::Newer => {
                        return Err(FileStoreError::corrupt(
                            &self.log_path,
                            head.last.offset,
                            format!(
                                "the record here is not position {} that {what} vouches for; the log was changed",
                                head.position()
                            ),
                        ));
                    }
                }
            }
        }
        if state.base.is_none() {
            self.check_older_head(len)?;
        }
        // A checkpoint file that was not taken (an older layout, another store's, a damaged
        // one) is replaced right away, so the next open does not fold the whole log again.
        let replace = state.base.is_none() && self.layout.checkpoint().exists();
        if replace && !self.read_only {
            // Stores of the older layout wrote temporaries beside their targets; the first
            // writable open in this layout clears those of dead writers, once.
            for dir in [self.layout.dir().to_path_buf(), self.layout.views_dir(), self.layout.index_dir()] {
                fsutil::remove_stale_temporaries(&dir);
            }
        }
        self.catch_up(state, access)?;
        if !self.read_only && (state.tail_len >= self.options.checkpoint_every || (replace && state.tail_len > 0)) {
            self.checkpoint(state)?;
        }
        Ok(())
    }

    /// A checkpoint of the older layout carries no store id, but it still vouched for a prefix
    /// of this log: one that ends past the log's end means the log lost records. One whose last
    /// record is not where it says is not this log's, and is ignored.
    fn check_older_head(&self, len: u64) -> Result<(), FileStoreError> {
        let Some(older) = catalog::read_older_head(&self.layout)? else { return Ok(()) };
        if older.end > len {
            return Err(FileStoreError::corrupt(
                &self.log_path,
                len,
                format!(
                    "the log ends at byte {len}, before position {} (byte {}) that {} vouches for; records were lost",
                    older.position,
                    older.end,
                    self.layout.checkpoint().display()
                ),
            ));
        }
        Ok(())
    }

    /// The store's id, from the log's first record; `None` while it has none (or only a torn one).
    fn store_id(&self, file: &File, len: u64) -> Result<Option<StoreId>, FileStoreError> {
        if len <= FIRST_RECORD {
            return Ok(None);
        }
        Ok(match log::read_record_with_crc(file, &self.log_path, FIRST_RECORD, len) {
            Ok((raw, _, crc)) => Some(StoreId::new(*raw.event_id.as_bytes(), crc)),
            Err(_) => None,
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
        if len < state.end {
            return Err(FileStoreError::corrupt(
                &self.log_path,
                len,
                format!(
                    "the log ends at byte {len}, before byte {} up to which this process read it; records were lost",
                    state.end
                ),
            ));
        }
        // Retention's removals (one `stat` when there is nothing new), and the holes this scan
        // may cross; a record found zeroed where no known hole starts may be one punched a
        // moment ago, so the holes are read again once before calling it damage.
        let mut holes = self.refresh_retention(state.end)?;
        let forgotten = self.lock_retention().take_forgotten();
        if !forgotten.is_empty() {
            state.forget(forgotten.iter());
        }
        if len == state.end {
            return Ok(());
        }
        let flush_at = self.options.checkpoint_every.max(1).saturating_mul(4);
        let mut reread = false;
        let mut reader = RecordReader::new(file.clone(), self.log_path.clone(), state.end, len)
            .skipping(holes.clone())
            .after_position(state.position);
        state.trailing = None;
        while let Some(item) = reader.next() {
            match item? {
                Ok((offset, raw)) => {
                    let plan_id = PlanId::parse(&raw.plan_id).map_err(|e| {
                        FileStoreError::corrupt(&self.log_path, offset, format!("the record's plan id is invalid: {e}"))
                    })?;
                    let (position, version, event_id) = (raw.position, raw.version, *raw.event_id.as_bytes());
                    // Decoded only for a plan whose view this process holds: opening costs
                    // the records' envelopes, not their events. A writer also starts the view
                    // of a plan at its first record, for the checkpoint it will write; a reader
                    // writes none, and reads a tail plan's records only if it is asked for it.
                    let cached = state.views.contains_key(&plan_id) || state.summaries.contains_key(&plan_id);
                    let starts_view = version == 1 && !self.read_only;
                    let stored =
                        if cached || starts_view { Some(log::to_stored(&self.log_path, offset, raw)?) } else { None };
                    let folded = Folded {
                        offset,
                        crc: reader.crc(),
                        plan_id: &plan_id,
                        position,
                        version,
                        event_id,
                        event: stored.as_ref(),
                        skipped: reader.skipped(),
                    };
                    state.apply(&self.log_path, folded)?;
                    state.end = reader.offset();
                    if state.tail_len >= flush_at {
                        // A long catch-up (a lost checkpoint, a long-lived reader) flushes as it
                        // goes, or starts over from a newer checkpoint: flat memory.
                        if self.read_only {
                            self.rebase_onto_disk(state)?;
                        } else {
                            self.checkpoint(state)?;
                        }
                    }
                }
                Err(bad) => {
                    if !reread {
                        reread = true;
                        holes = self.refresh_retention(state.end)?;
                        if crate::retention::covers(&holes, bad.offset) {
                            reader = RecordReader::new(file.clone(), self.log_path.clone(), bad.offset, len)
                                .skipping(holes.clone())
                                .after_position(state.position);
                            continue;
                        }
                    }
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
                    return Ok(());
                }
            }
        }
        if reader.skipped() > 0 {
            state.trailing = Some((reader.offset(), reader.skipped()));
        }
        Ok(())
    }

    /// Starts over from the checkpoint on disk when it is newer than this process's base (a
    /// read-only process cannot write its own).
    fn rebase_onto_disk(&self, state: &mut State) -> Result<(), FileStoreError> {
        let Some(store) = state.store else { return Ok(()) };
        let Some(head) = catalog::read_head(&self.layout)?.filter(|h| h.store == store) else { return Ok(()) };
        let newer = head.position() > state.base.as_ref().map_or(0, |b| b.position());
        if newer && head.position() <= state.position {
            self.rebase(state, head)?;
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
        fsutil::write_atomically(&self.layout.tmp_dir(), &torn_dir, &aside, &bytes)?;
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
