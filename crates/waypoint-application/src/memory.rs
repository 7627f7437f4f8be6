//! An in-memory store, correct under concurrent appends: for tests and for embedding.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use eventually::store::{EventStore, EventStream, Expected, Persisted, Select};
use eventually::versioning::Versioned;
use futures::future::BoxFuture;
use waypoint_domain::{Attempt, PlanId, QueueName, StepNumber};

use crate::ports::{Clock, InMemoryRunLocks, RunLocks, SystemClock};
use crate::store::{
    HeldQueueLock, LogStream, PlanStore, QueueLimit, QueueLock, RecordedEvent, Removal, RemovalReport, StepLog,
    StoreError, StoredEvent,
};

/// Every append takes one lock, checks the expected version and assigns versions and global
/// positions under it, so racing appends to one plan see exactly one winner.
#[derive(Debug, Clone, Default)]
pub struct InMemoryStore {
    inner: Arc<Mutex<Inner>>,
    locks: InMemoryRunLocks,
    /// The store's clock ([`PlanStore::now`]); the system clock unless a test sets one.
    clock: Option<Arc<dyn Clock>>,
    /// The queues whose claim lock someone holds, and a wake-up for those waiting.
    claims: Arc<(Mutex<HashSet<QueueName>>, Condvar)>,
}

/// A held claim lock of the in-memory store: released on drop.
#[derive(Debug)]
struct MemoryClaim {
    claims: Arc<(Mutex<HashSet<QueueName>>, Condvar)>,
    queue: QueueName,
}

impl HeldQueueLock for MemoryClaim {}

impl Drop for MemoryClaim {
    fn drop(&mut self) {
        let (held, wake) = &*self.claims;
        held.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.queue);
        wake.notify_all();
    }
}

#[derive(Debug, Default)]
struct Inner {
    log: Vec<StoredEvent>,
    /// Indexes into `log` per plan, in version order.
    streams: HashMap<PlanId, Vec<usize>>,
    /// Tombstones of plans removed by retention.
    removed: HashMap<PlanId, Removal>,
    /// The last global position handed out: removals leave gaps, never reuse a position.
    position: u32,
    /// Step logs, in the order reads return them.
    logs: BTreeMap<(PlanId, StepNumber, Attempt, LogStream), StepLog>,
    /// Queue limits on running plans.
    limits: BTreeMap<QueueName, u32>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same store telling time by `clock`: give it the [`crate::ManualClock`] the service
    /// uses, and a test moves leases to their expiry by advancing that clock.
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied append: we push only after
        // every check, so the data is consistent even if poisoned.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every event in global order (for tests and replay tooling).
    pub fn all_events(&self) -> Vec<StoredEvent> {
        self.lock().log.clone()
    }

    fn append_now(&self, plan_id: PlanId, expected: Expected, events: Vec<RecordedEvent>) -> Result<u32, StoreError> {
        let mut inner = self.lock();
        if let Some(removal) = inner.removed.get(&plan_id) {
            return Err(StoreError::Removed { plan_id, removed_at: removal.removed_at });
        }
        let current = inner.streams.get(&plan_id).map_or(0, Vec::len) as u32;
        if let Expected::Exact(expected) = expected {
            if expected != current {
                return Err(StoreError::Conflict { plan_id, expected, actual: current });
            }
        }
        let mut version = current;
        for event in events {
            version += 1;
            let position = inner
                .position
                .checked_add(1)
                .ok_or_else(|| StoreError::TooLarge("the store holds u32::MAX events".into()))?;
            inner.position = position;
            let stored = Persisted::from(plan_id.clone(), event).version(version).sequence_number(position);
            let index = inner.log.len();
            inner.log.push(stored);
            inner.streams.entry(plan_id.clone()).or_default().push(index);
        }
        Ok(version)
    }

    fn remove_now(&self, plans: &[(PlanId, u32)], removed_at: DateTime<Utc>, archive: &str) -> RemovalReport {
        let mut inner = self.lock();
        let mut report = RemovalReport::default();
        for (plan_id, version) in plans {
            let current = inner.streams.get(plan_id).map_or(0, Vec::len) as u32;
            if current == 0 || current != *version || inner.removed.contains_key(plan_id) {
                report.skipped.push(plan_id.clone());
                continue;
            }
            inner.streams.remove(plan_id);
            let removal =
                Removal { plan_id: plan_id.clone(), version: *version, removed_at, archive: archive.to_owned() };
            inner.removed.insert(plan_id.clone(), removal);
            report.removed.push(plan_id.clone());
        }
        if !report.removed.is_empty() {
            let Inner { log, streams, removed, logs, .. } = &mut *inner;
            log.retain(|stored| !removed.contains_key(stored.source_id()));
            logs.retain(|(plan_id, ..), _| !removed.contains_key(plan_id));
            streams.clear();
            for (index, stored) in log.iter().enumerate() {
                streams.entry(stored.source_id().clone()).or_default().push(index);
            }
        }
        report
    }

    fn put_step_log_now(&self, plan_id: &PlanId, log: StepLog) -> Result<(), StoreError> {
        log.check_limits(plan_id)?;
        let mut inner = self.lock();
        if let Some(removal) = inner.removed.get(plan_id) {
            return Err(StoreError::Removed { plan_id: plan_id.clone(), removed_at: removal.removed_at });
        }
        if !inner.streams.contains_key(plan_id) {
            return Err(StoreError::PlanNotFound { plan_id: plan_id.clone() });
        }
        inner.logs.insert((plan_id.clone(), log.step, log.attempt, log.stream), log);
        Ok(())
    }

    fn step_logs_now(&self, plan_id: &PlanId, step: Option<StepNumber>, attempt: Option<Attempt>) -> Vec<StepLog> {
        let inner = self.lock();
        let from = (plan_id.clone(), StepNumber::FIRST, Attempt::FIRST, LogStream::Stdout);
        inner
            .logs
            .range(from..)
            .take_while(|((plan, ..), _)| plan == plan_id)
            .map(|(_, log)| log)
            .filter(|log| log.matches(step, attempt))
            .cloned()
            .collect()
    }
}

impl EventStore for InMemoryStore {
    type SourceId = PlanId;
    type Event = RecordedEvent;
    type Error = StoreError;

    fn append(
        &mut self,
        source_id: PlanId,
        version: Expected,
        events: Vec<RecordedEvent>,
    ) -> BoxFuture<'_, Result<u32, StoreError>> {
        Box::pin(futures::future::ready(self.append_now(source_id, version, events)))
    }

    fn stream(&self, source_id: PlanId, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        let from = match select {
            Select::All => 1,
            Select::From(v) => v,
        };
        let inner = self.lock();
        let events: Vec<StoredEvent> = inner
            .streams
            .get(&source_id)
            .into_iter()
            .flatten()
            .map(|&i| inner.log[i].clone())
            .filter(|e| e.version() >= from)
            .collect();
        let stream: EventStream<'_, Self> = Box::pin(futures::stream::iter(events.into_iter().map(Ok)));
        Box::pin(futures::future::ready(Ok(stream)))
    }

    fn stream_all(&self, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        let from = match select {
            Select::All => 1,
            Select::From(p) => p,
        };
        let events: Vec<StoredEvent> =
            self.lock().log.iter().filter(|e| e.sequence_number() >= from).cloned().collect();
        debug_assert!(events.windows(2).all(|w| w[0].sequence_number() < w[1].sequence_number()));
        let stream: EventStream<'_, Self> = Box::pin(futures::stream::iter(events.into_iter().map(Ok)));
        Box::pin(futures::future::ready(Ok(stream)))
    }

    fn remove(&mut self, _source_id: PlanId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(futures::future::ready(Err(StoreError::Unsupported(
            "the log is append-only; events are never removed",
        ))))
    }
}

impl PlanStore for InMemoryStore {
    fn run_locks(&self) -> Arc<dyn RunLocks> {
        Arc::new(self.locks.clone())
    }

    fn content_fingerprint(&self) -> BoxFuture<'_, Result<String, StoreError>> {
        use std::hash::{Hash, Hasher};
        // The log and the step logs are all this store holds; the log's debug form covers every
        // envelope field.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let inner = self.lock();
        inner.log.len().hash(&mut hasher);
        for stored in &inner.log {
            format!("{stored:?}").hash(&mut hasher);
        }
        for (key, log) in &inner.logs {
            (key, &log.bytes, log.cut).hash(&mut hasher);
        }
        inner.limits.hash(&mut hasher);
        Box::pin(futures::future::ready(Ok(format!("memory:{}:{:016x}", inner.log.len(), hasher.finish()))))
    }

    fn now(&self) -> BoxFuture<'_, Result<DateTime<Utc>, StoreError>> {
        let now = self.clock.as_ref().map_or_else(|| SystemClock.now(), |clock| clock.now());
        Box::pin(futures::future::ready(Ok(now)))
    }

    fn remove_plans<'a>(
        &'a self,
        plans: &'a [(PlanId, u32)],
        removed_at: DateTime<Utc>,
        archive: &'a str,
    ) -> BoxFuture<'a, Result<RemovalReport, StoreError>> {
        Box::pin(futures::future::ready(Ok(self.remove_now(plans, removed_at, archive))))
    }

    fn removal<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<Removal>, StoreError>> {
        Box::pin(futures::future::ready(Ok(self.lock().removed.get(plan_id).cloned())))
    }

    fn removals_with_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Removal>, StoreError>> {
        let mut found: Vec<Removal> =
            self.lock().removed.values().filter(|r| r.plan_id.as_str().starts_with(prefix)).cloned().collect();
        found.sort_by(|a, b| a.plan_id.cmp(&b.plan_id));
        Box::pin(futures::future::ready(Ok(found)))
    }

    fn put_step_log<'a>(&'a self, plan_id: &'a PlanId, log: StepLog) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(futures::future::ready(self.put_step_log_now(plan_id, log)))
    }

    fn step_logs<'a>(
        &'a self,
        plan_id: &'a PlanId,
        step: Option<StepNumber>,
        attempt: Option<Attempt>,
    ) -> BoxFuture<'a, Result<Vec<StepLog>, StoreError>> {
        Box::pin(futures::future::ready(Ok(self.step_logs_now(plan_id, step, attempt))))
    }

    // Workers and queues (ADR 0017): the claim index is the default, over the catalog.

    fn lock_queue<'a>(&'a self, queue: &'a QueueName) -> BoxFuture<'a, Result<QueueLock, StoreError>> {
        let (held, wake) = &*self.claims;
        let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
        while held.contains(queue) {
            held = wake.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        held.insert(queue.clone());
        let claim = MemoryClaim { claims: Arc::clone(&self.claims), queue: queue.clone() };
        Box::pin(futures::future::ready(Ok(QueueLock::new(queue.clone(), claim))))
    }

    fn queue_limits(&self) -> BoxFuture<'_, Result<Vec<QueueLimit>, StoreError>> {
        let limits: Vec<QueueLimit> = self
            .lock()
            .limits
            .iter()
            .map(|(queue, limit)| QueueLimit { queue: queue.clone(), limit: *limit })
            .collect();
        Box::pin(futures::future::ready(Ok(limits)))
    }

    fn set_queue_limit<'a>(
        &'a self,
        queue: &'a QueueName,
        limit: Option<u32>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut inner = self.lock();
        match limit {
            Some(limit) => inner.limits.insert(queue.clone(), limit),
            None => inner.limits.remove(queue),
        };
        Box::pin(futures::future::ready(Ok(())))
    }
}
