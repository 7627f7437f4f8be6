//! An in-memory store, correct under concurrent appends: for tests and for embedding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use eventually::store::{EventStore, EventStream, Expected, Persisted, Select};
use futures::future::BoxFuture;
use waypoint_domain::PlanId;

use crate::ports::{InMemoryRunLocks, RunLocks};
use crate::store::{PlanStore, RecordedEvent, StoreError, StoredEvent};

/// Every append takes one lock, checks the expected version and assigns versions and global
/// positions under it, so racing appends to one plan see exactly one winner.
#[derive(Debug, Clone, Default)]
pub struct InMemoryStore {
    inner: Arc<Mutex<Inner>>,
    locks: InMemoryRunLocks,
}

#[derive(Debug, Default)]
struct Inner {
    log: Vec<StoredEvent>,
    /// Indexes into `log` per plan, in version order.
    streams: HashMap<PlanId, Vec<usize>>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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
        let current = inner.streams.get(&plan_id).map_or(0, Vec::len) as u32;
        if let Expected::Exact(expected) = expected {
            if expected != current {
                return Err(StoreError::Conflict { plan_id, expected, actual: current });
            }
        }
        let mut version = current;
        for event in events {
            version += 1;
            let position = u32::try_from(inner.log.len() + 1)
                .map_err(|_| StoreError::TooLarge("the store holds u32::MAX events".into()))?;
            let stored = Persisted::from(plan_id.clone(), event).version(version).sequence_number(position);
            let index = inner.log.len();
            inner.log.push(stored);
            inner.streams.entry(plan_id.clone()).or_default().push(index);
        }
        Ok(version)
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
            .filter(|e| eventually::versioning::Versioned::version(e) >= from)
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
        // The log is all this store holds; its debug form covers every envelope field.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let inner = self.lock();
        inner.log.len().hash(&mut hasher);
        for stored in &inner.log {
            format!("{stored:?}").hash(&mut hasher);
        }
        Box::pin(futures::future::ready(Ok(format!("memory:{}:{:016x}", inner.log.len(), hasher.finish()))))
    }
}
