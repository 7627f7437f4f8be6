//! `Shared`, the one open store behind every `FileStore` clone, and `State`, what this process
//! knows of the log, with the fold of one record into it (checked against the log's invariants).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use eventually::versioning::Versioned;
use waypoint_application::{Catalog, PlanView, StoredEvent};
use waypoint_domain::PlanId;

use crate::commit::Prepared;
use crate::error::FileStoreError;
use crate::group_commit::GroupCommit;
use crate::index::IndexWriter;
use crate::layout::Layout;
use crate::log::FIRST_RECORD;
use crate::store::StoreOptions;

/// The open store: its files, locks and in-memory state.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) layout: Layout,
    pub(crate) log_path: PathBuf,
    pub(crate) read_only: bool,
    pub(crate) options: StoreOptions,
    /// `None` only for a read-only store opened before any event was written.
    pub(crate) log: Option<Arc<File>>,
    /// Held shared for the store's lifetime: `repair` needs it exclusively.
    pub(crate) _store_lock: Option<File>,
    /// Exclusive while appending (or cutting a torn tail), shared while catching up. Every
    /// flock call on it happens under the state mutex, so one thread never converts another's.
    pub(crate) write_lock: Option<File>,
    pub(crate) state: Mutex<State>,
    pub(crate) group: GroupCommit<Prepared, Result<u32, FileStoreError>>,
}

/// What this process knows of the log, up to `end`.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Offset just past the last whole record folded in.
    pub(crate) end: u64,
    pub(crate) position: u32,
    /// Where record `position` starts (the checkpoint checks it on open).
    pub(crate) last_offset: u64,
    /// Every plan's compact view: listings and summaries.
    pub(crate) catalog: Catalog,
    pub(crate) versions: HashMap<PlanId, u32>,
    /// Offsets of the records folded since the last checkpoint: not yet in the index files.
    pub(crate) tail: HashMap<PlanId, Tail>,
    pub(crate) tail_len: u32,
    /// Full views of recently loaded plans: commands decide on them.
    pub(crate) views: HashMap<PlanId, PlanView>,
    pub(crate) index: IndexWriter,
    /// Why appends are refused, after a failed fsync or a failed rollback.
    pub(crate) poisoned: Option<String>,
    /// A commit of this process holds `write.lock` exclusively and is writing past `end`.
    pub(crate) committing: bool,
}

#[derive(Debug)]
pub(crate) struct Tail {
    pub(crate) first_version: u32,
    /// (global position, byte offset) of versions `first_version..`.
    pub(crate) records: Vec<(u32, u64)>,
}

/// Releases an OS lock when dropped, so an early return cannot leave it held.
pub(crate) struct FlockGuard<'a>(pub(crate) &'a File);

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Shared {
    pub(crate) fn new(
        layout: Layout,
        log_path: PathBuf,
        read_only: bool,
        options: StoreOptions,
        log: Option<File>,
        store_lock: Option<File>,
        write_lock: Option<File>,
    ) -> Self {
        Shared {
            layout,
            log_path,
            read_only,
            options,
            log: log.map(Arc::new),
            _store_lock: store_lock,
            write_lock,
            state: Mutex::new(State { end: FIRST_RECORD, ..State::default() }),
            group: GroupCommit::default(),
        }
    }

    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        // Every update of `State` checks before it changes anything, and `end` moves last, so
        // a panic mid-update cannot make a later catch-up skip or double-apply a record.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lock_shared_flock(&self) -> Result<Option<FlockGuard<'_>>, FileStoreError> {
        match &self.write_lock {
            Some(lock) => {
                lock.lock_shared()
                    .map_err(|e| FileStoreError::io("cannot lock the store for reading", &self.log_path, e))?;
                Ok(Some(FlockGuard(lock)))
            }
            None => Ok(None),
        }
    }
}

impl State {
    /// Folds one whole record into this process's view, checking the log's invariants first.
    pub(crate) fn apply(&mut self, path: &Path, offset: u64, stored: &StoredEvent) -> Result<(), FileStoreError> {
        let position = stored.sequence_number();
        if position != self.position + 1 {
            return Err(FileStoreError::corrupt(
                path,
                offset,
                format!("global position {position} follows {}; the log has a gap or a duplicate", self.position),
            ));
        }
        let plan_id = stored.source_id();
        let version = stored.version();
        let current = self.versions.get(plan_id).copied().unwrap_or(0);
        if version != current + 1 {
            return Err(FileStoreError::corrupt(
                path,
                offset,
                format!("plan {plan_id} version {version} follows {current}; the stream has a gap or a duplicate"),
            ));
        }
        self.versions.insert(plan_id.clone(), version);
        self.tail
            .entry(plan_id.clone())
            .or_insert_with(|| Tail { first_version: version, records: Vec::new() })
            .records
            .push((position, offset));
        self.tail_len += 1;
        if let Some(view) = self.views.remove(plan_id) {
            if view.version + 1 == version {
                if let Some(view) = PlanView::fold(Some(view), stored) {
                    self.views.insert(plan_id.clone(), view);
                }
            }
        }
        self.catalog.apply(stored);
        self.position = position;
        self.last_offset = offset;
        Ok(())
    }
}

pub(crate) fn file_len(file: &File, path: &Path) -> Result<u64, FileStoreError> {
    Ok(file.metadata().map_err(|e| FileStoreError::io("cannot read the log's size", path, e))?.len())
}
