//! An async face for stores whose I/O blocks. The embedded stores do their work (a write and an
//! `fdatasync`, a query on a socket) inside futures that are ready at once, which is right for a
//! command-line process and wrong inside an async runtime: every append would stall one of the
//! runtime's worker threads for the length of an fsync. [`OffThreadStore`] runs every store call
//! on threads of its own and hands back a future that waits without blocking, so a tokio (or any
//! other) executor keeps running its other tasks meanwhile. It needs no runtime of its own.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use eventually::store::{EventStore, EventStream, Expected, Select};
use futures::channel::{mpsc as async_mpsc, oneshot};
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use waypoint_domain::{Attempt, PlanId, QueueName, StepNumber};

use crate::ports::RunLocks;
use crate::store::{
    CatalogQuery, PlanStore, PlanView, QueueLimit, QueueLock, RecordedEvent, Removal, RemovalReport, StepLog,
    StoreError, StoredEvent,
};
use crate::verify::{StoreStats, VerifyReport};

type Job = Box<dyn FnOnce() + Send>;

/// How many events a streamed read hands over at a time; the worker waits while the reader is
/// this far behind, so a long log streams in flat memory.
const STREAM_BUFFER: usize = 256;

/// The threads store calls run on. Dropping the last handle lets the threads finish.
#[derive(Debug)]
struct Pool {
    sender: Mutex<mpsc::Sender<Job>>,
}

impl Pool {
    fn new(threads: usize) -> Self {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..threads.max(1) {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("waypoint-store-{n}"))
                .spawn(move || loop {
                    // Hold the lock only to take a job, never while running one.
                    let job = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })
                .expect("the operating system starts a store thread");
        }
        Self { sender: Mutex::new(sender) }
    }

    fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).send(job).map_err(|_| StoreError::Unavailable {
            location: "the store's worker threads".to_owned(),
            detail: "they have stopped".to_owned(),
        })
    }
}

/// Any [`PlanStore`] with every call moved off the caller's thread: use it when you drive
/// [`crate::PlanResumeService`] from an async runtime. Cheap to clone; clones share the threads.
///
/// ```
/// use waypoint_application::{InMemoryStore, OffThreadStore, PlanResumeService};
///
/// let store = OffThreadStore::new(InMemoryStore::new(), 2);
/// let service = PlanResumeService::new(store);
/// # let _ = service;
/// ```
#[derive(Debug, Clone)]
pub struct OffThreadStore<S> {
    inner: S,
    pool: Arc<Pool>,
}

impl<S: PlanStore> OffThreadStore<S> {
    /// Wraps `inner`, with `threads` threads for its calls (at least one). Two suit one process:
    /// the file store commits concurrent appends together in one fsync.
    pub fn new(inner: S, threads: usize) -> Self {
        Self { inner, pool: Arc::new(Pool::new(threads)) }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Runs `call` on a store thread against a clone of the store; the future resolves when it is
    /// done, without blocking the thread that polls it.
    fn offload<T, F>(&self, call: F) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(S) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let store = self.inner.clone();
        let submitted = self.pool.submit(Box::new(move || {
            let _ = done.send(call(store));
        }));
        Box::pin(async move {
            submitted?;
            result.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable {
                    location: "the store's worker threads".to_owned(),
                    detail: "a store call panicked".to_owned(),
                })
            })
        })
    }

    /// Streams what `open` yields from a store thread, at most [`STREAM_BUFFER`] events ahead of
    /// the reader.
    fn offload_stream(
        &self,
        open: impl for<'a> FnOnce(&'a S) -> BoxFuture<'a, Result<EventStream<'a, S>, StoreError>> + Send + 'static,
    ) -> EventStream<'static, Self> {
        let (mut sender, receiver) = async_mpsc::channel(STREAM_BUFFER);
        let store = self.inner.clone();
        let submitted = self.pool.submit(Box::new(move || {
            futures::executor::block_on(async {
                match open(&store).await {
                    Ok(mut stream) => {
                        while let Some(item) = stream.next().await {
                            let stop = item.is_err();
                            // A reader that went away ends the stream early.
                            if sender.send(item).await.is_err() || stop {
                                return;
                            }
                        }
                    }
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                    }
                }
            })
        }));
        match submitted {
            Ok(()) => Box::pin(receiver),
            Err(error) => Box::pin(futures::stream::iter([Err(error)])),
        }
    }
}

fn ready<T>(future: BoxFuture<'_, T>) -> T {
    futures::executor::block_on(future)
}

impl<S: PlanStore> EventStore for OffThreadStore<S> {
    type SourceId = PlanId;
    type Event = RecordedEvent;
    type Error = StoreError;

    fn append(
        &mut self,
        source_id: PlanId,
        version: Expected,
        events: Vec<RecordedEvent>,
    ) -> BoxFuture<'_, Result<u32, StoreError>> {
        self.offload(move |mut store| ready(store.append(source_id, version, events)))
    }

    fn stream(&self, source_id: PlanId, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        let stream = self.offload_stream(move |store| store.stream(source_id, select));
        Box::pin(futures::future::ready(Ok(stream)))
    }

    fn stream_all(&self, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        let stream = self.offload_stream(move |store| store.stream_all(select));
        Box::pin(futures::future::ready(Ok(stream)))
    }

    fn remove(&mut self, source_id: PlanId) -> BoxFuture<'_, Result<(), StoreError>> {
        self.offload(move |mut store| ready(store.remove(source_id)))
    }
}

impl<S: PlanStore> PlanStore for OffThreadStore<S> {
    fn run_locks(&self) -> Arc<dyn RunLocks> {
        // Taking or probing a lock does not wait on the disk's flush: it stays on the caller.
        self.inner.run_locks()
    }

    fn content_fingerprint(&self) -> BoxFuture<'_, Result<String, StoreError>> {
        self.offload(|store| ready(store.content_fingerprint()))
    }

    fn now(&self) -> BoxFuture<'_, Result<DateTime<Utc>, StoreError>> {
        // A server store asks its server: a round trip, so it leaves the caller's thread too.
        self.offload(|store| ready(store.now()))
    }

    fn load_view<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<PlanView>, StoreError>> {
        let plan_id = plan_id.clone();
        self.offload(move |store| ready(store.load_view(&plan_id)))
    }

    fn load_summary_view<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<PlanView>, StoreError>> {
        let plan_id = plan_id.clone();
        self.offload(move |store| ready(store.load_summary_view(&plan_id)))
    }

    fn catalog(&self) -> BoxFuture<'_, Result<Vec<PlanView>, StoreError>> {
        self.offload(|store| ready(store.catalog()))
    }

    fn open_catalog(&self) -> BoxFuture<'_, Result<Vec<PlanView>, StoreError>> {
        self.offload(|store| ready(store.open_catalog()))
    }

    fn open_catalog_parts(&self) -> BoxFuture<'_, Result<Vec<Vec<PlanView>>, StoreError>> {
        self.offload(|store| ready(store.open_catalog_parts()))
    }

    fn catalog_page<'a>(&'a self, query: &'a CatalogQuery) -> BoxFuture<'a, Result<Vec<PlanView>, StoreError>> {
        let query = query.clone();
        self.offload(move |store| ready(store.catalog_page(&query)))
    }

    fn verify(&self) -> BoxFuture<'_, Result<VerifyReport, StoreError>> {
        self.offload(|store| ready(store.verify()))
    }

    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, StoreError>> {
        self.offload(|store| ready(store.stats()))
    }

    fn remove_plans<'a>(
        &'a self,
        plans: &'a [(PlanId, u32)],
        removed_at: DateTime<Utc>,
        archive: &'a str,
    ) -> BoxFuture<'a, Result<RemovalReport, StoreError>> {
        let (plans, archive) = (plans.to_vec(), archive.to_owned());
        self.offload(move |store| ready(store.remove_plans(&plans, removed_at, &archive)))
    }

    fn removal<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<Removal>, StoreError>> {
        let plan_id = plan_id.clone();
        self.offload(move |store| ready(store.removal(&plan_id)))
    }

    fn removals_with_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Removal>, StoreError>> {
        let prefix = prefix.to_owned();
        self.offload(move |store| ready(store.removals_with_prefix(&prefix)))
    }

    fn import_plans(&self, histories: Vec<Vec<StoredEvent>>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.offload(move |store| ready(store.import_plans(histories)))
    }

    fn put_step_log<'a>(&'a self, plan_id: &'a PlanId, log: StepLog) -> BoxFuture<'a, Result<(), StoreError>> {
        let plan_id = plan_id.clone();
        self.offload(move |store| ready(store.put_step_log(&plan_id, log)))
    }

    fn step_logs<'a>(
        &'a self,
        plan_id: &'a PlanId,
        step: Option<StepNumber>,
        attempt: Option<Attempt>,
    ) -> BoxFuture<'a, Result<Vec<StepLog>, StoreError>> {
        let plan_id = plan_id.clone();
        self.offload(move |store| ready(store.step_logs(&plan_id, step, attempt)))
    }

    // Workers and queues (ADR 0017).

    fn queue_plans<'a>(&'a self, queue: &'a QueueName) -> BoxFuture<'a, Result<Vec<PlanView>, StoreError>> {
        let queue = queue.clone();
        self.offload(move |store| ready(store.queue_plans(&queue)))
    }

    fn lock_queue<'a>(&'a self, queue: &'a QueueName) -> BoxFuture<'a, Result<QueueLock, StoreError>> {
        // Waiting for a claim lock stays on the caller, like a run lock: a claimant waiting on a
        // worker thread could take every worker thread while the holder needs one to finish.
        self.inner.lock_queue(queue)
    }

    fn queue_limits(&self) -> BoxFuture<'_, Result<Vec<QueueLimit>, StoreError>> {
        self.offload(|store| ready(store.queue_limits()))
    }

    fn set_queue_limit<'a>(
        &'a self,
        queue: &'a QueueName,
        limit: Option<u32>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let queue = queue.clone();
        self.offload(move |store| ready(store.set_queue_limit(&queue, limit)))
    }
}
