//! `FileStore`: the event-store port over an append-only log file in a directory, safe for many
//! processes at once (OS file locks) and for crashes (fdatasync before an append returns).

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use eventually::store::{EventStore, EventStream, Expected, Persisted, Select};
use futures::future::BoxFuture;
use waypoint_application::{Catalog, PlanStore, PlanView, RecordedEvent, StoreError, StoredEvent};
use waypoint_domain::{EventId, PlanEvent, PlanId};

use crate::error::FileStoreError;
use crate::fsutil;
use crate::log::{self, RecordReader, FIRST_RECORD};
use crate::record::{RawRecord, FILE_HEADER};
use crate::runlock::FileRunLocks;

pub(crate) const LOG_FILE: &str = "events.log";
pub(crate) const STORE_LOCK: &str = "store.lock";
pub(crate) const WRITE_LOCK: &str = "write.lock";
pub(crate) const TORN_DIR: &str = "torn";

/// The embedded durable store. Cheap to clone: clones share one open store.
#[derive(Debug, Clone)]
pub struct FileStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    log_path: PathBuf,
    read_only: bool,
    /// `None` only for a read-only store opened before any event was written.
    log: Option<Arc<File>>,
    /// Held shared for the store's lifetime: `repair` needs it exclusively.
    _store_lock: Option<File>,
    /// Exclusive while appending (or cutting a torn tail), shared while catching up.
    write_lock: Option<File>,
    poisoned: AtomicBool,
    state: Mutex<State>,
}

/// What this process knows of the log, up to `end`.
#[derive(Debug, Default)]
struct State {
    /// Offset just past the last whole record this process has read.
    end: u64,
    position: u32,
    /// Every plan's compact view: for listings and summaries.
    catalog: Catalog,
    /// Every plan's full view: commands decide on it (a retry is matched against any checkpoint).
    views: HashMap<PlanId, PlanView>,
    /// Each plan's current version (a plan without `PlanCreated` has no catalog view).
    versions: HashMap<PlanId, u32>,
    /// Record offsets per plan, in version order.
    offsets: HashMap<PlanId, Vec<u64>>,
    /// Record offsets by global position - 1.
    positions: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Holds the write lock exclusively: a torn tail is a crashed writer's and is cut back.
    Exclusive,
    /// Holds it shared: a torn tail is left as it is and read up to.
    Shared,
}

impl FileStore {
    /// Opens the store in `dir` for reading and writing, creating it (mode 0700) if missing and
    /// cutting back a torn last record left by a crash.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileStore, FileStoreError> {
        let dir = dir.as_ref().to_path_buf();
        fsutil::ensure_dir(&dir)?;
        let store_lock = open_lock_file(&dir, STORE_LOCK)?;
        match store_lock.try_lock_shared() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(FileStoreError::Locked { path: dir, detail: "being repaired by another process" })
            }
            Err(TryLockError::Error(e)) => return Err(FileStoreError::io("cannot lock the store", &dir, e)),
        }
        let write_lock = open_lock_file(&dir, WRITE_LOCK)?;
        let log_path = dir.join(LOG_FILE);
        write_lock.lock().map_err(|e| FileStoreError::io("cannot lock the store for writing", &log_path, e))?;
        let log = (|| {
            let (file, created) = fsutil::open_or_create(&log_path)?;
            let len =
                file.metadata().map_err(|e| FileStoreError::io("cannot read the log's size", &log_path, e))?.len();
            if !log::check_file_header(&file, &log_path, len)? {
                file.set_len(0).map_err(|e| FileStoreError::io("cannot reset a torn log header", &log_path, e))?;
                file.write_all_at(&FILE_HEADER, 0)
                    .map_err(|e| FileStoreError::io("cannot write the log header", &log_path, e))?;
                file.sync_all().map_err(|e| FileStoreError::io("cannot sync the log", &log_path, e))?;
            }
            if created {
                fsutil::sync_dir(&dir)?;
            }
            Ok::<_, FileStoreError>(file)
        })();
        let shared = log.map(|log| Shared {
            log_path: log_path.clone(),
            read_only: false,
            log: Some(Arc::new(log)),
            _store_lock: None,
            write_lock: None,
            poisoned: AtomicBool::new(false),
            state: Mutex::new(State { end: FIRST_RECORD, ..State::default() }),
            dir: dir.clone(),
        });
        let loaded = shared.and_then(|shared| {
            {
                let mut state = shared.lock_state();
                shared.catch_up(&mut state, Access::Exclusive)?;
            }
            Ok(shared)
        });
        let _ = write_lock.unlock();
        let mut shared = loaded?;
        shared._store_lock = Some(store_lock);
        shared.write_lock = Some(write_lock);
        Ok(FileStore { shared: Arc::new(shared) })
    }

    /// Opens the store in `dir` without writing a byte or creating anything. A torn last record
    /// is read up to, not cut.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<FileStore, FileStoreError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(FileStoreError::NotFound { path: dir });
        }
        let store_lock = fsutil::open_existing_read_only(&dir.join(STORE_LOCK))?;
        if let Some(lock) = &store_lock {
            match lock.try_lock_shared() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(FileStoreError::Locked { path: dir, detail: "being repaired by another process" })
                }
                Err(TryLockError::Error(e)) => return Err(FileStoreError::io("cannot lock the store", &dir, e)),
            }
        }
        let write_lock = fsutil::open_existing_read_only(&dir.join(WRITE_LOCK))?;
        let log_path = dir.join(LOG_FILE);
        let log = fsutil::open_existing_read_only(&log_path)?;
        let shared = Shared {
            dir,
            log_path,
            read_only: true,
            log: log.map(Arc::new),
            _store_lock: store_lock,
            write_lock,
            poisoned: AtomicBool::new(false),
            state: Mutex::new(State { end: FIRST_RECORD, ..State::default() }),
        };
        if let Some(log) = &shared.log {
            let len =
                log.metadata().map_err(|e| FileStoreError::io("cannot read the log's size", &shared.log_path, e))?;
            log::check_file_header(log, &shared.log_path, len.len())?;
        }
        shared.refresh()?;
        Ok(FileStore { shared: Arc::new(shared) })
    }

    /// The run locks of the plans in this store.
    pub fn run_locks(&self) -> FileRunLocks {
        FileRunLocks::new(&self.shared.dir, self.shared.read_only)
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
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
        self.shared.append(plan_id, expected, events)
    }

    /// One plan's events from version `from` (1: all), in version order.
    pub fn read_plan(&self, plan_id: &PlanId, from: u32) -> Result<Vec<StoredEvent>, FileStoreError> {
        self.shared.read_plan(plan_id, from)
    }

    /// One plan's current view, or `None` if it has no events.
    pub fn plan_view(&self, plan_id: &PlanId) -> Result<Option<PlanView>, FileStoreError> {
        let mut state = self.shared.lock_state();
        self.shared.catch_up_locked(&mut state)?;
        Ok(state.views.get(plan_id).cloned())
    }

    /// One plan's compact view (see `PlanView::compact`), or `None` if it has no events.
    pub fn summary_view(&self, plan_id: &PlanId) -> Result<Option<PlanView>, FileStoreError> {
        let mut state = self.shared.lock_state();
        self.shared.catch_up_locked(&mut state)?;
        Ok(state.catalog.plans.get(plan_id).cloned())
    }

    /// Every plan's view, caught up with the log.
    pub fn catalog_snapshot(&self) -> Result<Catalog, FileStoreError> {
        let mut state = self.shared.lock_state();
        self.shared.catch_up_locked(&mut state)?;
        Ok(state.catalog.clone())
    }

    /// Every event from global position `from` (1: all), read lazily in flat memory.
    pub fn read_all(
        &self,
        from: u32,
    ) -> Result<impl Iterator<Item = Result<StoredEvent, FileStoreError>> + Send + 'static, FileStoreError> {
        let (start, end) = {
            let mut state = self.shared.lock_state();
            self.shared.catch_up_locked(&mut state)?;
            let start = match from {
                0 | 1 => FIRST_RECORD,
                p => state.positions.get(p as usize - 1).copied().unwrap_or(state.end),
            };
            (start, state.end)
        };
        let path = self.shared.log_path.clone();
        let reader = self.shared.log.clone().map(|file| RecordReader::new(file, path.clone(), start, end));
        Ok(reader.into_iter().flatten().map(move |item| match item? {
            Ok((offset, raw)) => to_stored(&path, offset, raw),
            Err(bad) => Err(FileStoreError::corrupt(&path, bad.offset, bad.error.to_string())),
        }))
    }
}

fn open_lock_file(dir: &Path, name: &str) -> Result<File, FileStoreError> {
    let path = dir.join(name);
    let (file, created) = fsutil::open_or_create(&path)?;
    if created {
        fsutil::sync_dir(dir)?;
    }
    Ok(file)
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

/// Releases an OS lock when dropped, so an early return cannot leave it held.
struct FlockGuard<'a>(&'a File);

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic mid-update leaves `end` behind the applied records at worst; the next catch-up
        // would then report damage rather than silently double-apply, so the data stays safe.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refresh(&self) -> Result<(), FileStoreError> {
        let mut state = self.lock_state();
        self.catch_up_locked(&mut state)
    }

    /// Catches up with other processes' appends under a shared write lock. All flock calls on
    /// `write_lock` happen under the state mutex, so one thread's lock is never converted by another's.
    fn catch_up_locked(&self, state: &mut State) -> Result<(), FileStoreError> {
        let _guard = match &self.write_lock {
            Some(lock) => {
                lock.lock_shared()
                    .map_err(|e| FileStoreError::io("cannot lock the store for reading", &self.log_path, e))?;
                Some(FlockGuard(lock))
            }
            None => None,
        };
        self.catch_up(state, Access::Shared)
    }

    /// Reads every whole record past `state.end` into `state`.
    fn catch_up(&self, state: &mut State, access: Access) -> Result<(), FileStoreError> {
        let Some(file) = &self.log else { return Ok(()) };
        let len =
            file.metadata().map_err(|e| FileStoreError::io("cannot read the log's size", &self.log_path, e))?.len();
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
                }
                Err(bad) => {
                    if let Some(intact) = log::next_intact_record(file, &self.log_path, bad.offset + 1, len)? {
                        return Err(FileStoreError::corrupt(
                            &self.log_path,
                            bad.offset,
                            format!("{}; an intact record follows at byte offset {intact}", bad.error),
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
        let torn_dir = self.dir.join(TORN_DIR);
        fsutil::ensure_dir(&torn_dir)?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.9fZ");
        let aside = torn_dir.join(format!("{LOG_FILE}.at-{offset}.{stamp}.torn"));
        fsutil::write_atomically(&torn_dir, &aside, &bytes)?;
        file.set_len(offset).map_err(|e| FileStoreError::io("cannot cut the torn tail", &self.log_path, e))?;
        file.sync_all().map_err(|e| FileStoreError::io("cannot sync the log after cutting its tail", &self.log_path, e))
    }

    fn append(&self, plan_id: &PlanId, expected: Expected, events: Vec<RecordedEvent>) -> Result<u32, FileStoreError> {
        if self.read_only {
            return Err(FileStoreError::ReadOnly { path: self.dir.clone() });
        }
        let mut state = self.lock_state();
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(FileStoreError::Poisoned { path: self.log_path.clone(), detail: "an fsync failed".into() });
        }
        let (Some(file), Some(lock)) = (&self.log, &self.write_lock) else {
            return Err(FileStoreError::ReadOnly { path: self.dir.clone() });
        };
        lock.lock().map_err(|e| FileStoreError::io("cannot lock the store for writing", &self.log_path, e))?;
        let _guard = FlockGuard(lock);
        self.catch_up(&mut state, Access::Exclusive)?;
        let current = state.versions.get(plan_id).copied().unwrap_or(0);
        if let Expected::Exact(expected) = expected {
            if expected != current {
                return Err(FileStoreError::Conflict { plan_id: plan_id.clone(), expected, actual: current });
            }
        }
        if events.is_empty() {
            return Ok(current);
        }
        let mut bytes = Vec::new();
        let mut stored = Vec::with_capacity(events.len());
        let mut offsets = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            let position = state
                .position
                .checked_add(i as u32 + 1)
                .ok_or_else(|| FileStoreError::TooLarge("the store holds u32::MAX events; start a new store".into()))?;
            let version = current + i as u32 + 1;
            let raw = RawRecord {
                position,
                version,
                event_id: event.event_id.as_uuid(),
                recorded_at: event.recorded_at,
                plan_id: plan_id.as_str().to_owned(),
                event_type: event.event.event_type().as_str().to_owned(),
                schema_version: event.event.schema_version(),
                data: event.event.encode_data(),
            };
            offsets.push(state.end + bytes.len() as u64);
            bytes.extend(raw.encode().map_err(|e| FileStoreError::TooLarge(format!("event too large to store: {e}")))?);
            stored.push(Persisted::from(plan_id.clone(), event).version(version).sequence_number(position));
        }
        if let Err(e) = file.write_all_at(&bytes, state.end) {
            // Take back whatever part reached the file, so no half record outlives the error.
            if file.set_len(state.end).is_err() {
                self.poisoned.store(true, Ordering::SeqCst);
            }
            return Err(FileStoreError::io("cannot append to the log", &self.log_path, e));
        }
        if let Err(e) = file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: what is on disk
            // is unknown, so refuse further writes until a reopen reads the log again.
            self.poisoned.store(true, Ordering::SeqCst);
            let _ = file.set_len(state.end);
            return Err(FileStoreError::io("cannot make the append durable (fsync failed)", &self.log_path, e));
        }
        for (event, offset) in stored.iter().zip(offsets) {
            state.apply(&self.log_path, offset, event)?;
        }
        state.end += bytes.len() as u64;
        Ok(current + stored.len() as u32)
    }

    fn read_plan(&self, plan_id: &PlanId, from: u32) -> Result<Vec<StoredEvent>, FileStoreError> {
        let (offsets, end) = {
            let mut state = self.lock_state();
            self.catch_up_locked(&mut state)?;
            let offsets = state.offsets.get(plan_id).map(|o| o[(from.max(1) as usize - 1).min(o.len())..].to_vec());
            (offsets.unwrap_or_default(), state.end)
        };
        let Some(file) = &self.log else { return Ok(Vec::new()) };
        offsets
            .into_iter()
            .map(|offset| {
                let (raw, _) = log::read_record_at(file, &self.log_path, offset, end)?;
                if raw.plan_id != plan_id.as_str() {
                    return Err(FileStoreError::corrupt(&self.log_path, offset, "the record belongs to another plan"));
                }
                to_stored(&self.log_path, offset, raw)
            })
            .collect()
    }
}

impl State {
    /// Folds one whole record into this process's view, checking the log's invariants.
    fn apply(&mut self, path: &Path, offset: u64, stored: &StoredEvent) -> Result<(), FileStoreError> {
        use eventually::versioning::Versioned;
        let position = stored.sequence_number();
        if position != self.position + 1 {
            return Err(FileStoreError::corrupt(
                path,
                offset,
                format!("global position {position} follows {}; the log has a gap or a duplicate", self.position),
            ));
        }
        let plan_id = stored.source_id();
        let current = self.versions.get(plan_id).copied().unwrap_or(0);
        if stored.version() != current + 1 {
            return Err(FileStoreError::corrupt(
                path,
                offset,
                format!(
                    "plan {plan_id} version {} follows {current}; the stream has a gap or a duplicate",
                    stored.version()
                ),
            ));
        }
        self.versions.insert(plan_id.clone(), stored.version());
        self.offsets.entry(plan_id.clone()).or_default().push(offset);
        self.positions.push(offset);
        let previous = self.views.remove(plan_id);
        if let Some(view) = PlanView::fold(previous, stored) {
            self.views.insert(plan_id.clone(), view);
        }
        self.catalog.apply(stored);
        self.position = position;
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
