//! `FileStore`: the event-store port over an append-only log file in a directory, safe for many
//! processes at once (OS file locks) and for crashes (fdatasync before an append returns).
//!
//! Cost model: opening loads the checkpointed catalog and folds only the records after it;
//! reading a plan follows its offset index; loading a plan's full view starts from its view
//! snapshot. Concurrent appends in one process share one write and one fdatasync (group commit).
//!
//! This file is the public face; the work is done by `state` (the shared core and the fold of
//! one record), `recovery` (open, catch-up, torn tails), `group_commit` and `commit` (appends),
//! and `projections` (catalog checkpoint, plan indexes, view snapshots).

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventually::store::{EventStore, EventStream, Expected, Select};
use futures::future::BoxFuture;
use waypoint_application::{
    Catalog, CatalogQuery, Clock, PlanStore, PlanView, QueueLimit, QueueLock, RecordedEvent, Removal, RemovalReport,
    RunLocks, StepLog, StoreError, StoreStats, StoredEvent, SystemClock, VerifyReport,
};
use waypoint_domain::{Attempt, PlanId, QueueName, StepNumber};

use crate::commit::AppendRequest;
use crate::error::FileStoreError;
use crate::layout::Layout;
use crate::log::{self, RecordReader, FIRST_RECORD};
use crate::projections::PlanVersions;
use crate::runlock::FileRunLocks;
use crate::state::{Shared, StoreOptions};

/// The embedded durable store. Cheap to clone: clones share one open store.
#[derive(Debug, Clone)]
pub struct FileStore {
    pub(crate) shared: Arc<Shared>,
}

impl FileStore {
    /// Opens the store in `dir` for reading and writing, creating it (mode 0700) if missing and
    /// cutting back a torn last record left by a crash.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileStore, FileStoreError> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// [`FileStore::open`] with explicit options.
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<FileStore, FileStoreError> {
        Ok(FileStore { shared: Shared::open(Layout::new(dir.as_ref()), options)? })
    }

    /// Opens the store in `dir` without writing a byte or creating anything. A torn last record
    /// is read up to, not cut; stale projections are rebuilt in memory only.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<FileStore, FileStoreError> {
        Self::open_read_only_with(dir, StoreOptions::default())
    }

    /// [`FileStore::open_read_only`] with explicit options (the lock timeout, the checkpoint
    /// interval its catch-up bounds its memory by).
    pub fn open_read_only_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<FileStore, FileStoreError> {
        Ok(FileStore { shared: Shared::open_read_only(Layout::new(dir.as_ref()), options)? })
    }

    /// The run locks of the plans in this store.
    pub fn run_locks(&self) -> FileRunLocks {
        FileRunLocks::new(self.shared.layout.dir(), self.shared.read_only)
    }

    /// The store directory, as given to `open`.
    pub fn dir(&self) -> &Path {
        self.shared.layout.dir()
    }

    /// Whether this store was opened with `open_read_only`: it then writes nothing, and every
    /// append or checkpoint fails with `ReadOnly`.
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
        let to = self.shared.current_version(&mut state, plan_id)?;
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
        self.shared.summary(&mut state, plan_id)
    }

    /// Every plan's compact view, caught up with the log.
    pub fn catalog_snapshot(&self) -> Result<Catalog, FileStoreError> {
        let mut state = self.shared.lock_state();
        self.shared.catch_up_shared(&mut state)?;
        let views = self.shared.list(&mut state, false)?;
        Ok(Catalog { plans: views.into_iter().map(|v| (v.plan_id.clone(), v)).collect(), position: state.position })
    }

    /// The compact views of the plans that are not finished (applied or cancelled), without
    /// reading the finished ones: cost in the plans returned.
    pub fn open_plans(&self) -> Result<Vec<PlanView>, FileStoreError> {
        Ok(self.open_plan_parts()?.into_iter().flatten().collect())
    }

    /// [`Self::open_plans`] in parts, in no particular order: each part the views one thread
    /// decoded, not moved into one vector.
    pub fn open_plan_parts(&self) -> Result<Vec<Vec<PlanView>>, FileStoreError> {
        let mut state = self.shared.lock_state();
        self.shared.catch_up_shared(&mut state)?;
        self.shared.list_parts(&mut state, true)
    }

    /// `queue`'s plans (see `PlanStore::queue_plans`), caught up with the log: oldest submission
    /// first, from this process's claim index, so the cost is the queue's plans and the plans
    /// that changed since the last call, never the catalog (but at the first call, which builds
    /// the index from the open catalog).
    pub fn queue_views(&self, queue: &QueueName) -> Result<Vec<PlanView>, FileStoreError> {
        let mut state = self.shared.lock_state();
        self.shared.catch_up_shared(&mut state)?;
        self.shared.queue_plans(&mut state, queue)
    }

    /// Every plan's version, caught up with the log, without reading any plan's view: whether
    /// an event is its plan's last as the log stands now, for a reader that folds the log itself
    /// (replay) and lets go of each plan it has folded whole. Costs the catalog's rows files, and
    /// about 2.6 bytes a plan.
    pub fn plan_versions(&self) -> Result<PlanVersions, FileStoreError> {
        let mut state = self.shared.lock_state();
        self.shared.catch_up_shared(&mut state)?;
        self.shared.plan_versions(&state)
    }

    /// A page of the listing (see `PlanStore::catalog_page`), caught up with the log: cost in
    /// the rows it reads, through the catalog's order by activity.
    pub fn catalog_page_views(&self, query: &CatalogQuery) -> Result<Vec<PlanView>, FileStoreError> {
        let mut state = self.shared.lock_state();
        self.shared.catch_up_shared(&mut state)?;
        self.shared.page(&mut state, query)
    }

    /// The whole listing `query` admits, a batch at a time (see `PlanStore::walk_catalog`),
    /// caught up with the log once: every plan of that state is listed once, and the store is
    /// not caught up again until the walk ends.
    pub fn walk_catalog_views(
        &self,
        query: CatalogQuery,
        visit: &mut dyn FnMut(Vec<PlanView>) -> bool,
    ) -> Result<(), FileStoreError> {
        let mut state = self.shared.lock_state();
        self.shared.catch_up_shared(&mut state)?;
        self.shared.walk(&mut state, query, visit)
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
        let holes = self.shared.holes_from_start()?;
        let reader = self
            .shared
            .log
            .clone()
            .map(|file| RecordReader::new(file, path.clone(), FIRST_RECORD, end).skipping(holes));
        let mut reader = reader;
        // Each event is decoded straight from the read buffer; records before `from` are skipped
        // undecoded.
        let events = std::iter::from_fn(move || {
            let reader = reader.as_mut()?;
            let path = &path;
            reader.next_with(|offset, raw| (raw.position >= from).then(|| log::to_stored_ref(path, offset, raw))).map(
                |item| match item {
                    Err(e) => Some(Err(e)),
                    Ok(Err(bad)) => Some(Err(FileStoreError::corrupt(path, bad.offset, bad.error.to_string()))),
                    Ok(Ok(event)) => event,
                },
            )
        });
        Ok(events.flatten())
    }

    /// Retention: removes each `(plan, version)` whose current version is exactly that, leaving a
    /// tombstone; the records' bytes are punched out of the log (ADR 0010). Other plans, and
    /// writers appending meanwhile, are untouched. Finished plans only, archived first: the
    /// service's `compact` chooses them.
    pub fn remove_plan_events(
        &self,
        plans: &[(PlanId, u32)],
        removed_at: DateTime<Utc>,
        archive: &str,
    ) -> Result<RemovalReport, FileStoreError> {
        self.shared.remove_plans(plans, removed_at, archive)
    }

    /// The tombstone of a plan retention removed, if it was.
    pub fn tombstone(&self, plan_id: &PlanId) -> Result<Option<Removal>, FileStoreError> {
        self.shared.removal(plan_id)
    }

    /// The tombstones of the removed plans whose id starts with `prefix`, in id order.
    pub fn tombstones_with_prefix(&self, prefix: &str) -> Result<Vec<Removal>, FileStoreError> {
        self.shared.removals_with_prefix(prefix)
    }

    /// Writes whole plan histories from another store (an archive) keeping their event ids and
    /// times, many plans per durable write; a plan already held with the same events is skipped.
    pub fn import_histories(&self, histories: Vec<Vec<StoredEvent>>) -> Result<(), FileStoreError> {
        let mut requests = Vec::with_capacity(histories.len());
        for history in histories {
            let Some(first) = history.first() else { continue };
            let plan_id = first.source_id().clone();
            let held = self.read_plan(&plan_id, 1)?;
            if held.is_empty() {
                let events = history.into_iter().map(|stored| stored.take()).collect();
                requests.push(AppendRequest { plan_id, expected: Expected::Exact(0), events });
            } else if !waypoint_application::same_history(&held, &history) {
                let actual = held.len() as u32;
                return Err(FileStoreError::Conflict { plan_id, expected: 0, actual });
            }
        }
        for result in self.append_many(requests) {
            result?;
        }
        Ok(())
    }

    /// Stores `log`, replacing what was stored for its (step, attempt, stream) of `plan_id`, in
    /// `logs/<plan>/` (0600 files, 0700 directories); durable and whole when it returns. Refused,
    /// with nothing written, for a log over the port's limits (`TooLarge`), a plan retention
    /// removed (`Removed`) or a plan the store does not hold (`PlanNotFound`).
    pub fn write_step_log(&self, plan_id: &PlanId, log: &StepLog) -> Result<(), FileStoreError> {
        self.shared.put_step_log(plan_id, log)
    }

    /// `plan_id`'s step logs, only those of `step` and `attempt` where given, ordered by step,
    /// attempt and stream; none for an unknown or removed plan.
    pub fn read_step_logs(
        &self,
        plan_id: &PlanId,
        step: Option<StepNumber>,
        attempt: Option<Attempt>,
    ) -> Result<Vec<StepLog>, FileStoreError> {
        self.shared.step_logs(plan_id, step, attempt)
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
    fn run_locks(&self) -> Arc<dyn RunLocks> {
        Arc::new(self.run_locks())
    }

    fn content_fingerprint(&self) -> BoxFuture<'_, Result<String, StoreError>> {
        Box::pin(futures::future::ready(crate::fingerprint::of_dir(self.dir()).map_err(StoreError::from)))
    }

    fn now(&self) -> BoxFuture<'_, Result<DateTime<Utc>, StoreError>> {
        // Every process that opens this directory runs on this machine: its clock is the store's.
        Box::pin(futures::future::ready(Ok(SystemClock.now())))
    }

    fn verify(&self) -> BoxFuture<'_, Result<VerifyReport, StoreError>> {
        Box::pin(async move {
            // The file store's own projections first, then the checks every store shares.
            let mut report = crate::verify::verify_store(self)?;
            report.merge(waypoint_application::verify::verify_folds(self).await?);
            Ok(report.finish())
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, StoreError>> {
        let result = (|| {
            let views: Vec<PlanView> = self.catalog_snapshot()?.plans.into_values().collect();
            let bytes = crate::fingerprint::disk_usage(self.dir())?;
            Ok::<_, FileStoreError>(StoreStats::from_views(&views, Some(bytes)))
        })();
        Box::pin(futures::future::ready(result.map_err(StoreError::from)))
    }
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

    fn open_catalog(&self) -> BoxFuture<'_, Result<Vec<PlanView>, StoreError>> {
        Box::pin(futures::future::ready(self.open_plans().map_err(StoreError::from)))
    }

    fn open_catalog_parts(&self) -> BoxFuture<'_, Result<Vec<Vec<PlanView>>, StoreError>> {
        Box::pin(futures::future::ready(self.open_plan_parts().map_err(StoreError::from)))
    }

    fn catalog_page<'a>(&'a self, query: &'a CatalogQuery) -> BoxFuture<'a, Result<Vec<PlanView>, StoreError>> {
        Box::pin(futures::future::ready(self.catalog_page_views(query).map_err(StoreError::from)))
    }

    fn walk_catalog<'a>(
        &'a self,
        query: CatalogQuery,
        visit: &'a mut (dyn FnMut(Vec<PlanView>) -> bool + Send),
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(futures::future::ready(self.walk_catalog_views(query, visit).map_err(StoreError::from)))
    }

    fn remove_plans<'a>(
        &'a self,
        plans: &'a [(PlanId, u32)],
        removed_at: DateTime<Utc>,
        archive: &'a str,
    ) -> BoxFuture<'a, Result<RemovalReport, StoreError>> {
        Box::pin(futures::future::ready(self.remove_plan_events(plans, removed_at, archive).map_err(StoreError::from)))
    }

    fn removal<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<Removal>, StoreError>> {
        Box::pin(futures::future::ready(self.tombstone(plan_id).map_err(StoreError::from)))
    }

    fn removals_with_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Removal>, StoreError>> {
        Box::pin(futures::future::ready(self.tombstones_with_prefix(prefix).map_err(StoreError::from)))
    }

    fn import_plans(&self, histories: Vec<Vec<StoredEvent>>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(futures::future::ready(self.import_histories(histories).map_err(StoreError::from)))
    }

    fn put_step_log<'a>(&'a self, plan_id: &'a PlanId, log: StepLog) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(futures::future::ready(self.write_step_log(plan_id, &log).map_err(StoreError::from)))
    }

    fn step_logs<'a>(
        &'a self,
        plan_id: &'a PlanId,
        step: Option<StepNumber>,
        attempt: Option<Attempt>,
    ) -> BoxFuture<'a, Result<Vec<StepLog>, StoreError>> {
        Box::pin(futures::future::ready(self.read_step_logs(plan_id, step, attempt).map_err(StoreError::from)))
    }

    // Workers and queues (ADR 0017): the claim index is kept in memory by the processes that
    // poll (`queue_index.rs`), the claim lock is an OS file lock.

    fn queue_plans<'a>(&'a self, queue: &'a QueueName) -> BoxFuture<'a, Result<Vec<PlanView>, StoreError>> {
        Box::pin(futures::future::ready(self.queue_views(queue).map_err(StoreError::from)))
    }

    fn lock_queue<'a>(&'a self, queue: &'a QueueName) -> BoxFuture<'a, Result<QueueLock, StoreError>> {
        let result = if self.is_read_only() {
            Err(FileStoreError::ReadOnly { path: self.shared.layout.queues_dir() })
        } else {
            crate::queues::lock_claims(&self.shared.layout, queue, self.shared.options.lock_timeout)
        };
        Box::pin(futures::future::ready(result.map_err(StoreError::from)))
    }

    fn queue_limits(&self) -> BoxFuture<'_, Result<Vec<QueueLimit>, StoreError>> {
        Box::pin(futures::future::ready(crate::queues::read_limits(&self.shared.layout).map_err(StoreError::from)))
    }

    fn set_queue_limit<'a>(
        &'a self,
        queue: &'a QueueName,
        limit: Option<u32>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = if self.is_read_only() {
            Err(FileStoreError::ReadOnly { path: self.shared.layout.queues_dir() })
        } else {
            crate::queues::write_limit(&self.shared.layout, queue, limit, self.shared.options.lock_timeout)
        };
        Box::pin(futures::future::ready(result.map_err(StoreError::from)))
    }
}

#[cfg(test)]
mod tests;
