//! `FileStore`: the event-store port over an append-only log file in a directory, safe for many
//! processes at once (OS file locks) and for crashes (fdatasync before an append returns).
//!
//! Cost model: opening loads the checkpointed catalog and folds only the records after it;
//! reading a plan follows its offset index; loading a plan's full view starts from its view
//! snapshot. Concurrent appends in one process share one write and one fdatasync (group commit).

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use eventually::store::{EventStore, EventStream, Expected, Persisted, Select};
use eventually::versioning::Versioned;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use waypoint_application::{Catalog, PlanStore, PlanView, RecordedEvent, StoreError, StoredEvent};
use waypoint_domain::{EventId, PlanEvent, PlanId};

use crate::error::FileStoreError;
use crate::index::{self, IndexEntry, IndexWriter};
use crate::layout::{self, Layout};
use crate::log::{self, RecordReader, FIRST_RECORD};
use crate::record::{self, RawRecord, FILE_HEADER};
use crate::runlock::FileRunLocks;
use crate::storage::{OsStorage, Storage};
use crate::{frame, fsutil};

pub(crate) const CHECKPOINT_MAGIC: [u8; 4] = *b"WPCK";
pub(crate) const VIEW_MAGIC: [u8; 4] = *b"WPVW";
/// Batches one leader commits before handing leadership on.
const MAX_LEADER_ROUNDS: usize = 4;
/// Full views kept in memory at once; past this the cache starts over.
const MAX_CACHED_VIEWS: usize = 1024;

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
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { checkpoint_every: 1024, view_snapshot_every: 64, storage: Arc::new(OsStorage) }
    }
}

/// The catalog checkpoint as stored in `catalog.ckpt`: the catalog folded up to `position`,
/// whose record starts at `last_offset` and ends at `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCatalog {
    pub format: u32,
    pub position: u32,
    pub end: u64,
    pub last_offset: u64,
    pub catalog: Catalog,
    /// Every plan's version at `position` (a plan without `PlanCreated` has no catalog view).
    pub versions: HashMap<PlanId, u32>,
}

/// One append: `events` go to `plan_id` if its version is `expected`.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub plan_id: PlanId,
    pub expected: Expected,
    pub events: Vec<RecordedEvent>,
}

/// The embedded durable store. Cheap to clone: clones share one open store.
#[derive(Debug, Clone)]
pub struct FileStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    layout: Layout,
    log_path: PathBuf,
    read_only: bool,
    options: StoreOptions,
    /// `None` only for a read-only store opened before any event was written.
    log: Option<Arc<File>>,
    /// Held shared for the store's lifetime: `repair` needs it exclusively.
    _store_lock: Option<File>,
    /// Exclusive while appending (or cutting a torn tail), shared while catching up. Every
    /// flock call on it happens under the state mutex, so one thread never converts another's.
    write_lock: Option<File>,
    state: Mutex<State>,
    queue: Mutex<Queue>,
}

/// What this process knows of the log, up to `end`.
#[derive(Debug, Default)]
struct State {
    /// Offset just past the last whole record folded in.
    end: u64,
    position: u32,
    /// Where record `position` starts (the checkpoint checks it on open).
    last_offset: u64,
    /// Every plan's compact view: listings and summaries.
    catalog: Catalog,
    versions: HashMap<PlanId, u32>,
    /// Offsets of the records folded since the last checkpoint: not yet in the index files.
    tail: HashMap<PlanId, Tail>,
    tail_len: u32,
    /// Full views of recently loaded plans: commands decide on them.
    views: HashMap<PlanId, PlanView>,
    index: IndexWriter,
    /// Why appends are refused, after a failed fsync or a failed rollback.
    poisoned: Option<String>,
    /// A commit of this process holds `write.lock` exclusively and is writing past `end`.
    committing: bool,
}

#[derive(Debug)]
struct Tail {
    first_version: u32,
    /// (global position, byte offset) of versions `first_version..`.
    records: Vec<(u32, u64)>,
}

/// A batch checked and encoded, ready to write.
struct Planned {
    results: Vec<(u64, Result<u32, FileStoreError>)>,
    accepted: Vec<(u64, Vec<(StoredEvent, u64)>)>,
    bytes: Vec<u8>,
}

/// Appends waiting for a commit, and whether some thread is leading one.
#[derive(Debug, Default)]
struct Queue {
    pending: Vec<Waiter>,
    leader: bool,
}

/// One caller's requests and the slot its results (or the lead) are handed over in.
#[derive(Debug)]
struct Waiter {
    requests: Vec<Prepared>,
    slot: Arc<Slot>,
}

/// A request with its records already framed (numbered 0 until the commit seals them), so the
/// encoding happens in the caller's thread, outside the commit's critical section.
#[derive(Debug)]
struct Prepared {
    request: AppendRequest,
    frames: Result<Vec<Vec<u8>>, FileStoreError>,
}

impl Prepared {
    fn new(request: AppendRequest) -> Self {
        let frames = request
            .events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let raw = RawRecord {
                    position: 0,
                    version: 0,
                    batch_start: 0,
                    event_id: event.event_id.as_uuid(),
                    recorded_at: event.recorded_at,
                    plan_id: request.plan_id.as_str().to_owned(),
                    event_type: event.event.event_type().as_str().to_owned(),
                    schema_version: event.event.schema_version(),
                    data: event.event.encode_data(),
                };
                raw.encode().map_err(|e| {
                    FileStoreError::TooLarge(format!(
                        "event {} of plan {} is too large to store ({e}); store large data elsewhere and record a reference",
                        i + 1,
                        request.plan_id
                    ))
                })
            })
            .collect();
        Prepared { request, frames }
    }
}

/// Each caller waits on its own condition variable, so a finished commit wakes exactly the
/// callers it served (and at most one new leader), not every thread in the queue.
#[derive(Debug, Default)]
struct Slot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

#[derive(Debug, Default)]
enum SlotState {
    #[default]
    Waiting,
    /// The previous leader handed over: this caller leads the next commit.
    Lead,
    Done(Vec<Result<u32, FileStoreError>>),
}

impl Slot {
    fn set(&self, state: SlotState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
        self.ready.notify_one();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Holds the write lock exclusively: a torn tail is a crashed writer's and is cut back.
    Exclusive,
    /// Holds it shared: a torn tail is left as it is and read up to.
    Shared,
}

/// Where one version of a plan lies in the log.
#[derive(Debug, Clone, Copy)]
struct Location {
    version: u32,
    position: u32,
    offset: u64,
}

impl FileStore {
    /// Opens the store in `dir` for reading and writing, creating it (mode 0700) if missing and
    /// cutting back a torn last record left by a crash.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileStore, FileStoreError> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// [`FileStore::open`] with explicit options.
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<FileStore, FileStoreError> {
        let layout = Layout::new(dir.as_ref());
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
        Ok(FileStore { shared: Arc::new(shared) })
    }

    /// Opens the store in `dir` without writing a byte or creating anything. A torn last record
    /// is read up to, not cut; stale projections are rebuilt in memory only.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<FileStore, FileStoreError> {
        let layout = Layout::new(dir.as_ref());
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
        Ok(FileStore { shared: Arc::new(shared) })
    }

    /// The run locks of the plans in this store.
    pub fn run_locks(&self) -> FileRunLocks {
        FileRunLocks::new(self.shared.layout.dir(), self.shared.read_only)
    }

    pub fn dir(&self) -> &Path {
        self.shared.layout.dir()
    }

    pub fn is_read_only(&self) -> bool {
        self.shared.read_only
    }

    /// Appends `events` to `plan_id`'s stream if its version is `expected`; returns the new
    /// version once the records are on disk.
    pub fn append_events(
        &self,
        plan_id: &PlanId,
        expected: Expected,
        events: Vec<RecordedEvent>,
    ) -> Result<u32, FileStoreError> {
        let request = AppendRequest { plan_id: plan_id.clone(), expected, events };
        self.shared.submit(vec![request]).pop().expect("one result per request")
    }

    /// Appends several requests under one write and one fdatasync; each succeeds or fails on its
    /// own (a conflict in one does not stop the others). For bulk loads and benchmarks.
    pub fn append_many(&self, requests: Vec<AppendRequest>) -> Vec<Result<u32, FileStoreError>> {
        self.shared.submit(requests)
    }

    /// One plan's events from version `from` (1: all), in version order.
    pub fn read_plan(&self, plan_id: &PlanId, from: u32) -> Result<Vec<StoredEvent>, FileStoreError> {
        let mut state = self.shared.lock_state();
        self.shared.catch_up_shared(&mut state)?;
        let to = state.versions.get(plan_id).copied().unwrap_or(0);
        self.shared.read_range(&mut state, plan_id, from.max(1), to)
    }

    /// One plan's full view, or `None` if it has no events.
    pub fn plan_view(&self, plan_id: &PlanId) -> Result<Option<PlanView>, FileStoreError> {
        let mut state = self.shared.lock_state();
        self.shared.catch_up_shared(&mut state)?;
        self.shared.full_view(&mut state, plan_id)
    }

    /// One plan's compact view (see `PlanView::compact`), or `None` if it has no events.
    pub fn summary_view(&self, plan_id: &PlanId) -> Result<Option<PlanView>, FileStoreError> {
        let mut state = self.shared.lock_state();
        self.shared.catch_up_shared(&mut state)?;
        Ok(state.catalog.plans.get(plan_id).cloned())
    }

    /// Every plan's compact view, caught up with the log.
    pub fn catalog_snapshot(&self) -> Result<Catalog, FileStoreError> {
        let mut state = self.shared.lock_state();
        self.shared.catch_up_shared(&mut state)?;
        Ok(state.catalog.clone())
    }

    /// Every event from global position `from` (1: all), read lazily in flat memory up to the
    /// end of the log as it is now.
    pub fn read_all(
        &self,
        from: u32,
    ) -> Result<impl Iterator<Item = Result<StoredEvent, FileStoreError>> + Send + 'static, FileStoreError> {
        let end = {
            let mut state = self.shared.lock_state();
            self.shared.catch_up_shared(&mut state)?;
            state.end
        };
        let path = self.shared.log_path.clone();
        let reader = self.shared.log.clone().map(|file| RecordReader::new(file, path.clone(), FIRST_RECORD, end));
        Ok(reader.into_iter().flatten().filter_map(move |item| {
            let result = match item {
                Err(e) => Err(e),
                Ok(Err(bad)) => Err(FileStoreError::corrupt(&path, bad.offset, bad.error.to_string())),
                Ok(Ok((_, raw))) if raw.position < from => return None,
                Ok(Ok((offset, raw))) => to_stored(&path, offset, raw),
            };
            Some(result)
        }))
    }

    /// Writes the catalog checkpoint now (it is also written every `checkpoint_every` records).
    pub fn checkpoint(&self) -> Result<(), FileStoreError> {
        if self.shared.read_only {
            return Err(FileStoreError::ReadOnly { path: self.shared.layout.dir().to_path_buf() });
        }
        let mut state = self.shared.lock_state();
        self.shared.catch_up_shared(&mut state)?;
        self.shared.checkpoint(&mut state)
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

fn file_len(file: &File, path: &Path) -> Result<u64, FileStoreError> {
    Ok(file.metadata().map_err(|e| FileStoreError::io("cannot read the log's size", path, e))?.len())
}

/// Turns a stored record into the port's event, upcasting old schema versions.
pub(crate) fn to_stored(path: &Path, offset: u64, raw: RawRecord) -> Result<StoredEvent, FileStoreError> {
    let plan_id = PlanId::parse(&raw.plan_id)
        .map_err(|e| FileStoreError::corrupt(path, offset, format!("the record's plan id is invalid: {e}")))?;
    let event =
        PlanEvent::decode(&raw.event_type, raw.schema_version, &raw.data).map_err(|source| FileStoreError::Decode {
            path: path.to_path_buf(),
            offset,
            plan_id: raw.plan_id.clone(),
            version: raw.version,
            source,
        })?;
    let recorded = RecordedEvent { event_id: EventId::from_uuid(raw.event_id), recorded_at: raw.recorded_at, event };
    Ok(Persisted::from(plan_id, recorded).version(raw.version).sequence_number(raw.position))
}

/// Reads and checks a catalog checkpoint file; `None` if missing or damaged.
pub(crate) fn read_checkpoint(layout: &Layout) -> Result<Option<StoredCatalog>, FileStoreError> {
    let path = layout.checkpoint();
    match std::fs::read(&path) {
        Ok(bytes) => Ok(frame::decode(CHECKPOINT_MAGIC, &bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileStoreError::io("cannot read the catalog checkpoint", &path, e)),
    }
}

/// Releases an OS lock when dropped, so an early return cannot leave it held.
struct FlockGuard<'a>(&'a File);

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Shared {
    fn new(
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
            queue: Mutex::new(Queue::default()),
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // Every update of `State` checks before it changes anything, and `end` moves last, so
        // a panic mid-update cannot make a later catch-up skip or double-apply a record.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_shared_flock(&self) -> Result<Option<FlockGuard<'_>>, FileStoreError> {
        match &self.write_lock {
            Some(lock) => {
                lock.lock_shared()
                    .map_err(|e| FileStoreError::io("cannot lock the store for reading", &self.log_path, e))?;
                Ok(Some(FlockGuard(lock)))
            }
            None => Ok(None),
        }
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

    fn catch_up_shared(&self, state: &mut State) -> Result<(), FileStoreError> {
        if state.committing {
            // This process's own commit holds the write lock and caught up a moment ago; a
            // shared flock on the same descriptor would silently downgrade its exclusive one.
            return Ok(());
        }
        let _guard = self.lock_shared_flock()?;
        self.catch_up(state, Access::Shared)
    }

    /// Folds every whole record past `state.end` into `state`.
    fn catch_up(&self, state: &mut State, access: Access) -> Result<(), FileStoreError> {
        let Some(file) = &self.log else { return Ok(()) };
        let len = file_len(file, &self.log_path)?;
        if len <= state.end {
            return Ok(());
        }
        let mut reader = RecordReader::new(file.clone(), self.log_path.clone(), state.end, len);
        while let Some(item) = reader.next() {
            match item? {
                Ok((offset, raw)) => {
                    let stored = to_stored(&self.log_path, offset, raw)?;
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

    /// Writes the tail's index entries, syncs them, then the catalog checkpoint that vouches
    /// for them. Derived data only: a failure here loses no event.
    fn checkpoint(&self, state: &mut State) -> Result<(), FileStoreError> {
        let State { tail, index, .. } = state;
        for (plan_id, plan_tail) in tail.iter() {
            for (i, &(position, offset)) in plan_tail.records.iter().enumerate() {
                let entry = IndexEntry { version: plan_tail.first_version + i as u32, position, offset };
                index.write(&self.layout, plan_id, entry)?;
            }
        }
        index.sync()?;
        let stored = StoredCatalog {
            format: 1,
            position: state.position,
            end: state.end,
            last_offset: state.last_offset,
            catalog: state.catalog.clone(),
            versions: state.versions.clone(),
        };
        let path = self.layout.checkpoint();
        fsutil::write_atomically(self.layout.dir(), &path, &frame::encode(CHECKPOINT_MAGIC, &stored))?;
        state.tail.clear();
        state.tail_len = 0;
        Ok(())
    }

    /// Queues `requests` and waits for them. Whoever finds no commit running leads the next one,
    /// taking every queued caller's requests into one write and one fdatasync.
    fn submit(&self, requests: Vec<AppendRequest>) -> Vec<Result<u32, FileStoreError>> {
        let requests: Vec<Prepared> = requests.into_iter().map(Prepared::new).collect();
        let slot = Arc::new(Slot::default());
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.pending.push(Waiter { requests, slot: slot.clone() });
        if queue.leader {
            drop(queue);
            let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match std::mem::take(&mut *state) {
                    SlotState::Done(results) => return results,
                    SlotState::Lead => break,
                    SlotState::Waiting => state = slot.ready.wait(state).unwrap_or_else(|p| p.into_inner()),
                }
            }
            drop(state);
            queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        } else {
            queue.leader = true;
        }
        // Leading. Keep leading while callers queued up during the commit (a few rounds at most,
        // so this caller is not kept waiting long): a caller that comes back with its next
        // append then joins a full batch instead of starting a batch of one.
        let mut own = None;
        let mut last_batch = 0;
        for _round in 0..MAX_LEADER_ROUNDS {
            if last_batch > 1 && queue.pending.len() < last_batch / 2 {
                // The callers just served are still waking up to append again: let them reach
                // the queue so the next fdatasync serves them all, not one or two.
                drop(queue);
                std::thread::yield_now();
                queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            }
            let waiters = std::mem::take(&mut queue.pending);
            if waiters.is_empty() {
                break;
            }
            last_batch = waiters.len();
            drop(queue);
            let mut batch = Vec::new();
            let mut owners = Vec::with_capacity(waiters.len());
            for waiter in waiters {
                owners.push((waiter.slot, waiter.requests.len()));
                batch.extend(waiter.requests);
            }
            let mut results = self.commit_catching_panics(batch).into_iter();
            for (owner, count) in owners {
                let mine: Vec<_> = results.by_ref().take(count).collect();
                if Arc::ptr_eq(&owner, &slot) {
                    own = Some(mine);
                } else {
                    owner.set(SlotState::Done(mine));
                }
            }
            self.checkpoint_if_due();
            queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if own.is_some() && queue.pending.len() < 2 {
                break;
            }
        }
        match queue.pending.first() {
            Some(next) => next.slot.set(SlotState::Lead),
            None => queue.leader = false,
        }
        drop(queue);
        own.expect("a leader commits its own requests in its first round")
    }

    /// Commits `batch`; a panic inside fails its requests and poisons the store instead of
    /// leaving the queue without a leader and the write lock held.
    fn commit_catching_panics(&self, batch: Vec<Prepared>) -> Vec<Result<u32, FileStoreError>> {
        let count = batch.len();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit(batch))).unwrap_or_else(|_| {
            let mut state = self.lock_state();
            state.poisoned = Some("an append panicked".into());
            if state.committing {
                if let Some(lock) = &self.write_lock {
                    let _ = lock.unlock();
                }
                state.committing = false;
            }
            drop(state);
            let error = FileStoreError::Poisoned { path: self.log_path.clone(), detail: "an append panicked".into() };
            (0..count).map(|_| Err(error.duplicate())).collect()
        })
    }

    /// One group commit: check every request against the log as it is now, write the accepted
    /// ones together, fdatasync once, then fold them in. The state mutex is released during the
    /// write and the fdatasync, so this process's readers are not held up by the disk; they see
    /// `committing` and read the state as it is rather than touching `write.lock`.
    fn commit(&self, batch: Vec<Prepared>) -> Vec<Result<u32, FileStoreError>> {
        let numbered = batch.into_iter().enumerate().map(|(i, request)| (i as u64, request)).collect();
        let mut results = self.commit_numbered(numbered);
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, result)| result).collect()
    }

    fn commit_numbered(&self, batch: Vec<(u64, Prepared)>) -> Vec<(u64, Result<u32, FileStoreError>)> {
        let fail_all = |batch: &[(u64, Prepared)], error: &FileStoreError| {
            batch.iter().map(|(t, _)| (*t, Err(error.duplicate()))).collect::<Vec<_>>()
        };
        let (Some(file), Some(lock), false) = (&self.log, &self.write_lock, self.read_only) else {
            return fail_all(&batch, &FileStoreError::ReadOnly { path: self.layout.dir().to_path_buf() });
        };
        let mut state = self.lock_state();
        if let Some(detail) = &state.poisoned {
            return fail_all(&batch, &FileStoreError::Poisoned { path: self.log_path.clone(), detail: detail.clone() });
        }
        if let Err(e) = lock.lock() {
            return fail_all(&batch, &FileStoreError::io("cannot lock the store for writing", &self.log_path, e));
        }
        state.committing = true;
        let planned = match self.catch_up(&mut state, Access::Exclusive) {
            Ok(()) => Ok(Self::plan_batch(&state, batch)),
            Err(e) => Err(fail_all(&batch, &e)),
        };
        let (mut results, accepted, bytes) = match planned {
            Ok(Planned { results, accepted, bytes }) if !accepted.is_empty() => (results, accepted, bytes),
            Ok(Planned { results, .. }) | Err(results) => {
                let _ = lock.unlock();
                state.committing = false;
                return results;
            }
        };
        let start = state.end;
        drop(state);

        let storage = &self.options.storage;
        let written = storage
            .write_all_at(file, &bytes, start)
            .map_err(|e| (FileStoreError::io("cannot append to the log", &self.log_path, e), false))
            .and_then(|()| {
                storage.sync_data(file).map_err(|e| {
                    let error = FileStoreError::io("cannot make the append durable (fsync failed)", &self.log_path, e);
                    (error, true)
                })
            });

        let mut state = self.lock_state();
        match written {
            Ok(()) => {
                for (ticket, records) in accepted {
                    let mut version = 0;
                    for (stored, offset) in &records {
                        // These records passed the same checks a moment ago under the same lock.
                        if let Err(e) = state.apply(&self.log_path, *offset, stored) {
                            state.poisoned = Some(format!("the in-memory state diverged from the log: {e}"));
                        }
                        version = stored.version();
                    }
                    results.push((ticket, Ok(version)));
                }
                state.end = start + bytes.len() as u64;
            }
            Err((error, sync_failed)) => {
                // Take back whatever part reached the file, so no half record outlives the error.
                // After a failed fsync the kernel may have dropped the dirty pages: what is on
                // disk is unknown, so refuse further writes until a reopen reads the log again.
                let undone = storage.truncate(file, start);
                if sync_failed {
                    state.poisoned = Some(format!("fsync failed: {error}"));
                } else if let Err(undo) = undone {
                    state.poisoned = Some(format!("a failed append could not be taken back: {undo}"));
                }
                results.extend(accepted.iter().map(|(t, _)| (*t, Err(error.duplicate()))));
            }
        }
        let _ = lock.unlock();
        state.committing = false;
        results
    }

    /// Writes a checkpoint if enough records were folded since the last one. The leader calls it
    /// after handing out a commit's results, so callers do not wait for it.
    fn checkpoint_if_due(&self) {
        let mut state = self.lock_state();
        if state.tail_len >= self.options.checkpoint_every && state.poisoned.is_none() {
            // The events are durable already; a failed checkpoint only means a longer catch-up
            // next time, and it is retried after the next commit.
            let _ = self.checkpoint(&mut state);
        }
    }

    /// Checks each request against the current versions (and the batch's earlier requests) and
    /// encodes the accepted ones. A refused request does not stop the others.
    fn plan_batch(state: &State, batch: Vec<(u64, Prepared)>) -> Planned {
        let mut results = Vec::with_capacity(batch.len());
        let mut accepted: Vec<(u64, Vec<(StoredEvent, u64)>)> = Vec::new();
        let mut bytes = Vec::new();
        let mut batch_versions: HashMap<PlanId, u32> = HashMap::new();
        let mut position = state.position;
        for (ticket, Prepared { request, frames }) in batch {
            let plan_id = request.plan_id;
            let current = batch_versions.get(&plan_id).or(state.versions.get(&plan_id)).copied().unwrap_or(0);
            if let Expected::Exact(expected) = request.expected {
                if expected != current {
                    results.push((ticket, Err(FileStoreError::Conflict { plan_id, expected, actual: current })));
                    continue;
                }
            }
            if request.events.is_empty() {
                results.push((ticket, Ok(current)));
                continue;
            }
            let frames = match frames {
                Ok(frames) => frames,
                Err(error) => {
                    results.push((ticket, Err(error)));
                    continue;
                }
            };
            let count = frames.len() as u32;
            if position.checked_add(count).is_none() || current.checked_add(count).is_none() {
                let error = FileStoreError::TooLarge("the store holds u32::MAX events; start a new store".into());
                results.push((ticket, Err(error)));
                continue;
            }
            let mut records = Vec::with_capacity(frames.len());
            for (i, (event, mut frame)) in request.events.into_iter().zip(frames).enumerate() {
                let (next_position, version) = (position + i as u32 + 1, current + i as u32 + 1);
                record::seal(&mut frame, next_position, version, state.position + 1);
                let offset = state.end + bytes.len() as u64;
                bytes.extend_from_slice(&frame);
                records.push((
                    Persisted::from(plan_id.clone(), event).version(version).sequence_number(next_position),
                    offset,
                ));
            }
            position += count;
            batch_versions.insert(plan_id, current + count);
            accepted.push((ticket, records));
        }
        Planned { results, accepted, bytes }
    }

    /// Where versions `from..=to` of `plan_id` lie: the tail in memory, older ones from the
    /// index file. `None` if an index entry is missing.
    fn locate(
        &self,
        state: &State,
        plan_id: &PlanId,
        from: u32,
        to: u32,
    ) -> Result<Option<Vec<Location>>, FileStoreError> {
        if from > to {
            return Ok(Some(Vec::new()));
        }
        let tail = state.tail.get(plan_id);
        let tail_first = tail.map_or(to + 1, |t| t.first_version.clamp(from, to + 1));
        let mut out = Vec::with_capacity((to - from + 1) as usize);
        if from < tail_first {
            for (i, entry) in index::read_entries(&self.layout, plan_id, from, tail_first - 1)?.into_iter().enumerate() {
                match entry {
                    Some(entry) => {
                        out.push(Location { version: from + i as u32, position: entry.position, offset: entry.offset })
                    }
                    None => return Ok(None),
                }
            }
        }
        if let Some(tail) = tail {
            for version in tail_first..=to {
                let (position, offset) = tail.records[(version - tail.first_version) as usize];
                out.push(Location { version, position, offset });
            }
        }
        Ok(Some(out))
    }

    /// Reads the records at `locations`; `None` if one is not the record the index promised.
    fn read_located(
        &self,
        plan_id: &PlanId,
        locations: &[Location],
        end: u64,
    ) -> Result<Option<Vec<StoredEvent>>, FileStoreError> {
        let Some(file) = &self.log else { return Ok(Some(Vec::new())) };
        let mut out = Vec::with_capacity(locations.len());
        for location in locations {
            let Ok((raw, _)) = log::read_record_at(file, &self.log_path, location.offset, end) else { return Ok(None) };
            if raw.plan_id != plan_id.as_str() || raw.version != location.version || raw.position != location.position {
                return Ok(None);
            }
            out.push(to_stored(&self.log_path, location.offset, raw)?);
        }
        Ok(Some(out))
    }

    /// Versions `from..=to` of `plan_id`, through the index; a stale index is rebuilt from the log.
    fn read_range(
        &self,
        state: &mut State,
        plan_id: &PlanId,
        from: u32,
        to: u32,
    ) -> Result<Vec<StoredEvent>, FileStoreError> {
        if let Some(locations) = self.locate(state, plan_id, from, to)? {
            if let Some(events) = self.read_located(plan_id, &locations, state.end)? {
                return Ok(events);
            }
        }
        let locations = self.rescan(state, plan_id, from, to)?;
        match self.read_located(plan_id, &locations, state.end)? {
            Some(events) => Ok(events),
            None => Err(FileStoreError::corrupt(
                &self.log_path,
                0,
                format!("plan {plan_id}'s records changed while being read; try again"),
            )),
        }
    }

    /// Scans the log for `plan_id`'s records, rewriting every plan's index entries on the way
    /// (unless read-only). Reports damage anywhere before `state.end` with its offset.
    fn rescan(&self, state: &mut State, plan_id: &PlanId, from: u32, to: u32) -> Result<Vec<Location>, FileStoreError> {
        let Some(file) = &self.log else { return Ok(Vec::new()) };
        let mut found = Vec::new();
        for item in RecordReader::new(file.clone(), self.log_path.clone(), FIRST_RECORD, state.end) {
            let (offset, raw) = match item? {
                Ok(record) => record,
                Err(bad) => return Err(FileStoreError::corrupt(&self.log_path, bad.offset, bad.error.to_string())),
            };
            if !self.read_only {
                if let Ok(id) = PlanId::parse(&raw.plan_id) {
                    let entry = IndexEntry { version: raw.version, position: raw.position, offset };
                    state.index.write(&self.layout, &id, entry)?;
                }
            }
            if raw.plan_id == plan_id.as_str() && (from..=to).contains(&raw.version) {
                found.push(Location { version: raw.version, position: raw.position, offset });
            }
        }
        Ok(found)
    }

    /// The full view: the cached one, or the plan's view snapshot plus only the events after it.
    fn full_view(&self, state: &mut State, plan_id: &PlanId) -> Result<Option<PlanView>, FileStoreError> {
        let Some(&version) = state.versions.get(plan_id) else { return Ok(None) };
        if let Some(view) = state.views.get(plan_id).filter(|v| v.version == version) {
            return Ok(Some(view.clone()));
        }
        let base = state.views.remove(plan_id).or_else(|| self.read_view_snapshot(plan_id, version));
        let from = base.as_ref().map_or(1, |v| v.version + 1);
        let events = self.read_range(state, plan_id, from, version)?;
        let folded = events.len();
        let view = events.iter().fold(base, PlanView::fold);
        if let Some(view) = &view {
            if !self.read_only && folded as u32 >= self.options.view_snapshot_every {
                // A snapshot only saves work later; failing to write one loses nothing.
                let _ = self.write_view_snapshot(view);
            }
            if state.views.len() >= MAX_CACHED_VIEWS {
                state.views.clear();
            }
            state.views.insert(plan_id.clone(), view.clone());
        }
        Ok(view)
    }

    fn read_view_snapshot(&self, plan_id: &PlanId, version: u32) -> Option<PlanView> {
        let bytes = std::fs::read(self.layout.view(plan_id)).ok()?;
        let view: PlanView = frame::decode(VIEW_MAGIC, &bytes)?;
        (view.plan_id == *plan_id && view.version <= version).then_some(view)
    }

    fn write_view_snapshot(&self, view: &PlanView) -> Result<(), FileStoreError> {
        let views = self.layout.views_dir();
        fsutil::ensure_dir(&views)?;
        fsutil::write_atomically(&views, &self.layout.view(&view.plan_id), &frame::encode(VIEW_MAGIC, view))
    }
}

impl State {
    /// Folds one whole record into this process's view, checking the log's invariants first.
    fn apply(&mut self, path: &Path, offset: u64, stored: &StoredEvent) -> Result<(), FileStoreError> {
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

impl EventStore for FileStore {
    type SourceId = PlanId;
    type Event = RecordedEvent;
    type Error = StoreError;

    fn append(
        &mut self,
        source_id: PlanId,
        version: Expected,
        events: Vec<RecordedEvent>,
    ) -> BoxFuture<'_, Result<u32, StoreError>> {
        let result = self.append_events(&source_id, version, events).map_err(StoreError::from);
        Box::pin(futures::future::ready(result))
    }

    fn stream(&self, source_id: PlanId, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        let from = match select {
            Select::All => 1,
            Select::From(v) => v,
        };
        let result = self.read_plan(&source_id, from).map_err(StoreError::from).map(|events| {
            let stream: EventStream<'_, Self> = Box::pin(futures::stream::iter(events.into_iter().map(Ok)));
            stream
        });
        Box::pin(futures::future::ready(result))
    }

    fn stream_all(&self, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        let from = match select {
            Select::All => 1,
            Select::From(p) => p,
        };
        let result = self.read_all(from).map_err(StoreError::from).map(|events| {
            let stream: EventStream<'_, Self> =
                Box::pin(futures::stream::iter(events.map(|event| event.map_err(StoreError::from))));
            stream
        });
        Box::pin(futures::future::ready(result))
    }

    fn remove(&mut self, _source_id: PlanId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(futures::future::ready(Err(StoreError::Unsupported(
            "the log is append-only; events are never removed",
        ))))
    }
}

impl PlanStore for FileStore {
    fn load_view<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<PlanView>, StoreError>> {
        Box::pin(futures::future::ready(self.plan_view(plan_id).map_err(StoreError::from)))
    }

    fn load_summary_view<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<PlanView>, StoreError>> {
        Box::pin(futures::future::ready(self.summary_view(plan_id).map_err(StoreError::from)))
    }

    fn catalog(&self) -> BoxFuture<'_, Result<Vec<PlanView>, StoreError>> {
        let result = self.catalog_snapshot().map(|c| c.plans.into_values().collect()).map_err(StoreError::from);
        Box::pin(futures::future::ready(result))
    }
}
