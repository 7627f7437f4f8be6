//! `Shared`, the one open store behind every `FileStore` clone, and `State`, what this process
//! knows of the log, with the fold of one record into it (checked against the log's invariants).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use waypoint_application::{PlanView, StoredEvent};
use waypoint_domain::PlanId;

use crate::binding::StoreId;
use crate::catalog::Head;
use crate::commit::Prepared;
use crate::error::FileStoreError;
use crate::group_commit::GroupCommit;
use crate::index::IndexWriter;
use crate::layout::Layout;
use crate::log::FIRST_RECORD;
use crate::storage::{OsStorage, Storage};

/// Tuning and test hooks for [`FileStore::open_with`]. `Default` is what `open` uses.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Records folded since the last catalog checkpoint before this process writes a new one.
    /// Bounds both the catch-up work of the next open and this process's tail memory.
    pub checkpoint_every: u32,
    /// Events folded on top of a plan's view snapshot before a fresh snapshot is written.
    pub view_snapshot_every: u32,
    /// How the log's bytes reach the disk; tests inject failures here.
    pub storage: Arc<dyn Storage>,
    /// The longest wait for a store lock held by another process before a typed error names
    /// the lock and its holder (a stopped or hung process must not block everyone silently).
    pub lock_timeout: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: 1024,
            view_snapshot_every: 64,
            storage: Arc::new(OsStorage),
            lock_timeout: std::time::Duration::from_secs(10),
        }
    }
}

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
    /// What this process knows of retention's removals (holes, committed batches).
    pub(crate) retention: Mutex<crate::retention::Retention>,
}

/// What this process knows of the log, up to `end`: where it started (the checkpoint head) and
/// the records after it. Nothing here grows with the number of plans or events in the store:
/// the tail is flushed by checkpoints, and the caches are bounded.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Offset just past the last whole record folded in.
    pub(crate) end: u64,
    pub(crate) position: u32,
    /// Where record `position` starts, and its checksum.
    pub(crate) last_offset: u64,
    pub(crate) last_crc: u32,
    /// The store's id, once the log has a first record.
    pub(crate) store: Option<StoreId>,
    /// The checkpoint head this state starts from; `None`: the log's start.
    pub(crate) base: Option<Head>,
    /// Offsets of the records after `base`: not yet in the index files.
    pub(crate) tail: HashMap<PlanId, Tail>,
    pub(crate) tail_len: u32,
    /// Versions at `base` of plans outside the tail, as read from their indexes (bounded).
    pub(crate) known: HashMap<PlanId, u32>,
    /// Compact views, current or at a version the tail can be folded onto (bounded, except
    /// for plans in the tail, which a checkpoint needs).
    pub(crate) summaries: HashMap<PlanId, PlanView>,
    /// Full views of recently loaded plans: commands decide on them.
    pub(crate) views: HashMap<PlanId, PlanView>,
    pub(crate) index: IndexWriter,
    /// Why appends are refused, after a failed fsync or a failed rollback.
    pub(crate) poisoned: Option<String>,
    /// A commit of this process holds `write.lock` exclusively and is writing past `end`.
    pub(crate) committing: bool,
    /// Removed records (retention's holes) after the last record folded: where the log really
    /// ends, and how many positions they took. The next append goes after them.
    pub(crate) trailing: Option<(u64, u32)>,
    /// The runs of the catalog's order files read whole and found sound (a few per file).
    pub(crate) checked_runs: crate::order::CheckedRuns,
    /// The claim index (`queue_index.rs`), once this process has polled a queue: the one thing
    /// here that grows with the store, with the plans in its queues, and only in a worker.
    pub(crate) queues: Option<crate::queue_index::QueueIndex>,
}

#[derive(Debug)]
pub(crate) struct Tail {
    pub(crate) first_version: u32,
    /// Versions `first_version..` of the plan: where each record lies.
    pub(crate) records: Vec<TailRecord>,
}

impl Tail {
    pub(crate) fn last_version(&self) -> u32 {
        self.first_version + self.records.len() as u32 - 1
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct TailRecord {
    pub(crate) position: u32,
    pub(crate) offset: u64,
    pub(crate) crc: u32,
}

/// One record as the fold needs it: where it lies and what it is; the decoded event only when
/// it was at hand (a commit's own records) or needed (a cached view).
pub(crate) struct Folded<'a> {
    pub(crate) offset: u64,
    pub(crate) crc: u32,
    pub(crate) plan_id: &'a PlanId,
    pub(crate) position: u32,
    pub(crate) version: u32,
    pub(crate) event_id: [u8; 16],
    pub(crate) event: Option<&'a StoredEvent>,
    /// Positions of removed records (retention's holes) between the previous record and this.
    pub(crate) skipped: u32,
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
            retention: Mutex::default(),
        }
    }

    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        // Every update of `State` checks before it changes anything, and `end` moves last, so
        // a panic mid-update cannot make a later catch-up skip or double-apply a record.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A reader's shared hold on the write lock, when it can be had at once. A reader never
    /// waits for a writer (one stopped mid-append, by SIGSTOP or a debugger, would block every
    /// listing): without the lock it reads the log up to its last whole record, as every catch-up
    /// does, and a record a writer has not finished yet is left for the next catch-up, never cut.
    pub(crate) fn lock_shared_flock(&self) -> Result<Option<FlockGuard<'_>>, FileStoreError> {
        let Some(lock) = &self.write_lock else { return Ok(None) };
        match lock.try_lock_shared() {
            Ok(()) => Ok(Some(FlockGuard(lock))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(FileStoreError::io("cannot lock the store", self.layout.write_lock(), e))
            }
        }
    }
}

/// Cached views of plans outside the tail kept at once; past this the cache starts over.
pub(crate) const MAX_CACHED: usize = 1024;

impl State {
    /// Folds one whole record into this process's view, checking the log's invariants first.
    pub(crate) fn apply(&mut self, path: &Path, record: Folded<'_>) -> Result<(), FileStoreError> {
        let Folded { offset, crc, plan_id, position, version, event_id, event, skipped } = record;
        if position != self.position + 1 + skipped {
            return Err(FileStoreError::corrupt(
                path,
                offset,
                format!("global position {position} follows {}; the log has a gap or a duplicate", self.position),
            ));
        }
        // A plan first met in the tail is checked against its index when it is next read.
        let current = match self.tail.get(plan_id) {
            Some(tail) => Some(tail.last_version()),
            None => self.known.get(plan_id).copied(),
        };
        if let Some(current) = current.filter(|&c| version != c + 1) {
            return Err(FileStoreError::corrupt(
                path,
                offset,
                format!("plan {plan_id} version {version} follows {current}; the stream has a gap or a duplicate"),
            ));
        }
        if position == 1 {
            self.store = Some(StoreId::new(event_id, crc));
        }
        self.known.remove(plan_id);
        let entry = TailRecord { position, offset, crc };
        match self.tail.get_mut(plan_id) {
            Some(tail) => tail.records.push(entry),
            None => {
                self.tail.insert(plan_id.clone(), Tail { first_version: version, records: vec![entry] });
            }
        }
        self.tail_len += 1;
        for cache in [&mut self.views, &mut self.summaries] {
            if let Some(view) = cache.remove(plan_id) {
                if let (true, Some(stored)) = (view.version + 1 == version, event) {
                    if let Some(view) = PlanView::fold(Some(view), stored) {
                        cache.insert(plan_id.clone(), view);
                    }
                }
            }
        }
        if let Some(view) = self.summaries.get_mut(plan_id) {
            view.compact();
        }
        if version == 1 {
            // A plan's first record: its compact view starts here, so a checkpoint of a bulk
            // load never has to read the records back.
            if let Some(mut view) = event.and_then(|stored| PlanView::fold(None, stored)) {
                view.compact();
                self.summaries.insert(plan_id.clone(), view);
            }
        }
        self.position = position;
        self.last_offset = offset;
        self.last_crc = crc;
        self.trailing = None;
        self.touch_queued(plan_id);
        Ok(())
    }

    /// Tells the claim index, if there is one, that `plan_id` changed: the next poll places it
    /// again. An index that would grow past its bound is dropped instead (the next poll
    /// rebuilds it).
    fn touch_queued(&mut self, plan_id: &PlanId) {
        if self.queues.as_mut().is_some_and(|index| !index.touch(plan_id)) {
            self.queues = None;
        }
    }

    /// Forgets everything this process holds of `plans` (retention removed them): tail records,
    /// versions, cached views, open index files. A checkpoint then cannot write them back.
    pub(crate) fn forget<'a>(&mut self, plans: impl IntoIterator<Item = &'a PlanId>) {
        for plan_id in plans {
            self.tail.remove(plan_id);
            self.known.remove(plan_id);
            self.views.remove(plan_id);
            self.summaries.remove(plan_id);
            self.index.forget(plan_id);
            self.touch_queued(plan_id);
        }
        self.tail_len = self.tail.values().map(|t| t.records.len() as u32).sum();
    }

    /// Forgets the caches of plans outside the tail when they grow past their bound.
    pub(crate) fn trim_caches(&mut self) {
        if self.views.len() > MAX_CACHED {
            self.views.clear();
        }
        if self.known.len() > MAX_CACHED * 4 {
            self.known.clear();
        }
        if self.summaries.len() > MAX_CACHED + self.tail.len() {
            let tail = &self.tail;
            self.summaries.retain(|id, _| tail.contains_key(id));
        }
    }
}

pub(crate) fn file_len(file: &File, path: &Path) -> Result<u64, FileStoreError> {
    Ok(file.metadata().map_err(|e| FileStoreError::io("cannot read the log's size", path, e))?.len())
}
