//! The stores the suite runs against. Adding a store is one line in `stores!` below.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use eventually::store::{EventStore, EventStream, Expected, Select};
use futures::future::BoxFuture;
use waypoint_application::domain::PlanId;
use waypoint_application::{Clock, InMemoryStore, ManualClock, PlanStore, PlanView, RecordedEvent, StoreError};
use waypoint_store_file::FileStore;
use waypoint_store_postgres::PostgresStore;

/// Declares every store once: its name in the output, its variant, and how to open one in a
/// scratch directory. The enum, the list of kinds and the delegation are generated from it.
macro_rules! stores {
    ($($name:literal => $variant:ident($store:ty) = $open:expr),+ $(,)?) => {
        /// One of the stores under test.
        #[derive(Debug, Clone)]
        pub enum Backend {
            $($variant($store)),+
        }

        /// Which store a run uses.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum StoreKind {
            $($variant),+
        }

        impl StoreKind {
            pub const ALL: &'static [StoreKind] = &[$(StoreKind::$variant),+];

            pub fn name(self) -> &'static str {
                match self {
                    $(StoreKind::$variant => $name),+
                }
            }

            /// Opens a fresh, empty store of this kind inside `dir`.
            pub fn open(self, dir: &Path) -> Backend {
                match self {
                    $(StoreKind::$variant => Backend::$variant(($open)(dir))),+
                }
            }
        }

        macro_rules! delegate {
            ($backend:expr, $s:ident => $call:expr) => {
                match $backend {
                    $(Backend::$variant($s) => $call),+
                }
            };
        }
    };
}

stores! {
    "memory" => Memory(InMemoryStore) = |_dir: &Path| InMemoryStore::new(),
    "file" => File(FileStore) = |dir: &Path| FileStore::open(dir).expect("open a file store in the scratch directory"),
    // A fresh database per scenario on the server `cargo xtask test` starts; dropped with the store.
    "postgres" => Postgres(PostgresStore) = |_dir: &Path| waypoint_store_postgres::testing::fresh_store("cucumber"),
}

/// The store handed to the service: a backend plus a gate that can hold plan loads until a
/// given number of callers have loaded, so a race is a real race and not a lucky schedule, and
/// the scenario's clock standing in for the store's, so leases expire when a scenario says.
#[derive(Debug, Clone)]
pub struct TestStore {
    backend: Backend,
    load_gate: Arc<Mutex<Option<Gate>>>,
    clock: Option<ManualClock>,
}

/// The first `callers` loads meet at the barrier; later loads (a loser reloading after its
/// conflict) pass straight through.
#[derive(Debug, Clone)]
struct Gate {
    barrier: Arc<Barrier>,
    waiting: Arc<AtomicUsize>,
}

impl TestStore {
    pub fn new(backend: Backend) -> Self {
        Self { backend, load_gate: Arc::default(), clock: None }
    }

    /// The same store, telling the time by `clock` instead of the backend's own clock.
    pub fn with_clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Until `close_gate`, every plan load waits until `callers` loads are waiting.
    pub fn open_gate(&self, callers: usize) {
        *self.gate() =
            Some(Gate { barrier: Arc::new(Barrier::new(callers)), waiting: Arc::new(AtomicUsize::new(callers)) });
    }

    pub fn close_gate(&self) {
        *self.gate() = None;
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Option<Gate>> {
        self.load_gate.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl EventStore for TestStore {
    type SourceId = PlanId;
    type Event = RecordedEvent;
    type Error = StoreError;

    fn append(
        &mut self,
        source_id: PlanId,
        version: Expected,
        events: Vec<RecordedEvent>,
    ) -> BoxFuture<'_, Result<u32, StoreError>> {
        delegate!(&mut self.backend, s => s.append(source_id, version, events))
    }

    fn stream(&self, source_id: PlanId, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        delegate!(&self.backend, s => s.stream(source_id, select))
    }

    fn stream_all(&self, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        delegate!(&self.backend, s => s.stream_all(select))
    }

    fn remove(&mut self, source_id: PlanId) -> BoxFuture<'_, Result<(), StoreError>> {
        delegate!(&mut self.backend, s => s.remove(source_id))
    }
}

impl PlanStore for TestStore {
    fn run_locks(&self) -> std::sync::Arc<dyn waypoint_application::RunLocks> {
        delegate!(&self.backend, s => PlanStore::run_locks(s))
    }

    fn content_fingerprint(&self) -> BoxFuture<'_, Result<String, StoreError>> {
        delegate!(&self.backend, s => s.content_fingerprint())
    }

    fn now(&self) -> BoxFuture<'_, Result<chrono::DateTime<chrono::Utc>, StoreError>> {
        match &self.clock {
            Some(clock) => Box::pin(futures::future::ready(Ok(clock.now()))),
            None => delegate!(&self.backend, s => s.now()),
        }
    }

    fn verify(&self) -> BoxFuture<'_, Result<waypoint_application::VerifyReport, StoreError>> {
        delegate!(&self.backend, s => s.verify())
    }

    fn stats(&self) -> BoxFuture<'_, Result<waypoint_application::StoreStats, StoreError>> {
        delegate!(&self.backend, s => s.stats())
    }

    fn load_view<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<PlanView>, StoreError>> {
        let gate = self.gate().clone();
        let load = delegate!(&self.backend, s => s.load_view(plan_id));
        Box::pin(async move {
            let view = load.await;
            // Wait after reading, so every racer has read the same version before any appends.
            if let Some(gate) = gate {
                let first = gate.waiting.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                if first {
                    gate.barrier.wait();
                }
            }
            view
        })
    }

    fn load_summary_view<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<PlanView>, StoreError>> {
        delegate!(&self.backend, s => s.load_summary_view(plan_id))
    }

    fn catalog(&self) -> BoxFuture<'_, Result<Vec<PlanView>, StoreError>> {
        delegate!(&self.backend, s => s.catalog())
    }

    fn remove_plans<'a>(
        &'a self,
        plans: &'a [(PlanId, u32)],
        removed_at: chrono::DateTime<chrono::Utc>,
        archive: &'a str,
    ) -> BoxFuture<'a, Result<waypoint_application::RemovalReport, StoreError>> {
        delegate!(&self.backend, s => s.remove_plans(plans, removed_at, archive))
    }

    fn removal<'a>(
        &'a self,
        plan_id: &'a PlanId,
    ) -> BoxFuture<'a, Result<Option<waypoint_application::Removal>, StoreError>> {
        delegate!(&self.backend, s => s.removal(plan_id))
    }

    fn removals_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<waypoint_application::Removal>, StoreError>> {
        delegate!(&self.backend, s => s.removals_with_prefix(prefix))
    }

    fn import_plans(
        &self,
        histories: Vec<Vec<waypoint_application::StoredEvent>>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        delegate!(&self.backend, s => s.import_plans(histories))
    }

    fn put_step_log<'a>(
        &'a self,
        plan_id: &'a PlanId,
        log: waypoint_application::StepLog,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        delegate!(&self.backend, s => s.put_step_log(plan_id, log))
    }

    fn step_logs<'a>(
        &'a self,
        plan_id: &'a PlanId,
        step: Option<waypoint_application::domain::StepNumber>,
        attempt: Option<waypoint_application::domain::Attempt>,
    ) -> BoxFuture<'a, Result<Vec<waypoint_application::StepLog>, StoreError>> {
        delegate!(&self.backend, s => s.step_logs(plan_id, step, attempt))
    }

    fn queue_plans<'a>(
        &'a self,
        queue: &'a waypoint_application::domain::QueueName,
    ) -> BoxFuture<'a, Result<Vec<waypoint_application::PlanView>, StoreError>> {
        delegate!(&self.backend, s => PlanStore::queue_plans(s, queue))
    }

    fn lock_queue<'a>(
        &'a self,
        queue: &'a waypoint_application::domain::QueueName,
    ) -> BoxFuture<'a, Result<waypoint_application::QueueLock, StoreError>> {
        delegate!(&self.backend, s => PlanStore::lock_queue(s, queue))
    }

    fn queue_limits(&self) -> BoxFuture<'_, Result<Vec<waypoint_application::QueueLimit>, StoreError>> {
        delegate!(&self.backend, s => PlanStore::queue_limits(s))
    }

    fn set_queue_limit<'a>(
        &'a self,
        queue: &'a waypoint_application::domain::QueueName,
        limit: Option<u32>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        delegate!(&self.backend, s => PlanStore::set_queue_limit(s, queue, limit))
    }
}

/// A directory of its own for one scenario's store, removed when the scenario ends.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("waypoint-cucumber-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create the scenario's scratch directory");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in the temp dir harms nothing.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
