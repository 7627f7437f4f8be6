//! The service under an async runtime: through `OffThreadStore`, a store's blocking I/O never
//! stalls the runtime's threads, so other tasks keep running while appends wait on the disk.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use eventually::store::{EventStore, EventStream, Expected, Select};
use futures::future::BoxFuture;
use waypoint_application::domain::{DecisionId, Phase, PlanId, StepNumber};
use waypoint_application::{
    InMemoryStore, NewPlan, OffThreadStore, PlanResumeService, PlanStore, RecordedEvent, RunLocks, StepCheckpoint,
    StepStart, StoreError,
};
use waypoint_store_file::FileStore;

/// A store whose appends block their thread until the gate opens: a stand-in for a slow disk.
#[derive(Debug, Clone)]
struct GatedStore {
    inner: InMemoryStore,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl GatedStore {
    fn open(&self) {
        let (open, changed) = &*self.gate;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }
}

impl EventStore for GatedStore {
    type SourceId = PlanId;
    type Event = RecordedEvent;
    type Error = StoreError;

    fn append(
        &mut self,
        source_id: PlanId,
        version: Expected,
        events: Vec<RecordedEvent>,
    ) -> BoxFuture<'_, Result<u32, StoreError>> {
        let (open, changed) = &*self.gate;
        let _open = changed.wait_while(open.lock().unwrap(), |open| !*open).unwrap();
        self.inner.append(source_id, version, events)
    }

    fn stream(&self, source_id: PlanId, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        Box::pin(async move { Ok(Box::pin(self.inner.stream(source_id, select).await?) as EventStream<'_, Self>) })
    }

    fn stream_all(&self, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        Box::pin(async move { Ok(Box::pin(self.inner.stream_all(select).await?) as EventStream<'_, Self>) })
    }

    fn remove(&mut self, source_id: PlanId) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.remove(source_id)
    }
}

impl PlanStore for GatedStore {
    fn run_locks(&self) -> Arc<dyn RunLocks> {
        self.inner.run_locks()
    }

    fn content_fingerprint(&self) -> BoxFuture<'_, Result<String, StoreError>> {
        self.inner.content_fingerprint()
    }

    fn now(&self) -> BoxFuture<'_, Result<chrono::DateTime<chrono::Utc>, StoreError>> {
        self.inner.now()
    }

    fn remove_plans<'a>(
        &'a self,
        plans: &'a [(PlanId, u32)],
        removed_at: chrono::DateTime<chrono::Utc>,
        archive: &'a str,
    ) -> BoxFuture<'a, Result<waypoint_application::RemovalReport, StoreError>> {
        self.inner.remove_plans(plans, removed_at, archive)
    }

    fn removal<'a>(
        &'a self,
        plan_id: &'a PlanId,
    ) -> BoxFuture<'a, Result<Option<waypoint_application::Removal>, StoreError>> {
        self.inner.removal(plan_id)
    }

    fn removals_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<waypoint_application::Removal>, StoreError>> {
        self.inner.removals_with_prefix(prefix)
    }

    fn put_step_log<'a>(
        &'a self,
        plan_id: &'a PlanId,
        log: waypoint_application::StepLog,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.put_step_log(plan_id, log)
    }

    fn step_logs<'a>(
        &'a self,
        plan_id: &'a PlanId,
        step: Option<StepNumber>,
        attempt: Option<waypoint_application::domain::Attempt>,
    ) -> BoxFuture<'a, Result<Vec<waypoint_application::StepLog>, StoreError>> {
        self.inner.step_logs(plan_id, step, attempt)
    }

    fn queue_plans<'a>(
        &'a self,
        queue: &'a waypoint_application::domain::QueueName,
    ) -> BoxFuture<'a, Result<Vec<waypoint_application::PlanView>, StoreError>> {
        self.inner.queue_plans(queue)
    }

    fn lock_queue<'a>(
        &'a self,
        queue: &'a waypoint_application::domain::QueueName,
    ) -> BoxFuture<'a, Result<waypoint_application::QueueLock, StoreError>> {
        self.inner.lock_queue(queue)
    }

    fn queue_limits(&self) -> BoxFuture<'_, Result<Vec<waypoint_application::QueueLimit>, StoreError>> {
        self.inner.queue_limits()
    }

    fn set_queue_limit<'a>(
        &'a self,
        queue: &'a waypoint_application::domain::QueueName,
        limit: Option<u32>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.set_queue_limit(queue, limit)
    }
}

/// On a runtime with a single thread, an append that blocks for a slow disk would freeze every
/// task; through `OffThreadStore` the task that opens the gate runs while the append waits.
#[test]
fn a_blocked_append_leaves_a_single_threaded_runtime_free_to_run_other_tasks() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(async {
        let gated = GatedStore { inner: InMemoryStore::new(), gate: Arc::default() };
        let service = PlanResumeService::new(OffThreadStore::new(gated.clone(), 1));
        let opener = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            gated.open();
        });
        let created = tokio::time::timeout(Duration::from_secs(10), service.create_plan(NewPlan::default())).await;
        let view = created.expect("the append finished: the runtime ran the task that opened the gate").unwrap();
        assert_eq!(view.version, 1);
        opener.await.unwrap();
    });
}

/// 1,000 durable appends to a file store from a task on a single-threaded runtime, while another
/// task ticks every 2 ms: the ticker keeps running throughout, because no append holds the thread.
#[test]
fn a_ticking_task_keeps_running_during_1000_file_store_appends() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let (ticks, elapsed) = runtime.block_on(async {
        let store = OffThreadStore::new(FileStore::open(dir.path()).unwrap(), 2);
        let service = PlanResumeService::new(store);
        let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(Duration::from_millis(2));
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    interval.tick().await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        let started = std::time::Instant::now();
        let new = NewPlan { start: Some((Phase::Strategize, None)), ..NewPlan::default() };
        let id = service.create_plan(new).await.unwrap().plan_id;
        let at_start = ticks.load(std::sync::atomic::Ordering::Relaxed);
        for n in 1..=499 {
            let step = StepNumber::new(n).unwrap();
            let decision_id = DecisionId::parse(&format!("d-{n}")).unwrap();
            service.record_step_started(&id, StepStart::new(step, decision_id.clone())).await.unwrap();
            service.record_step_checkpoint(&id, StepCheckpoint::new(step, decision_id)).await.unwrap();
        }
        service.fail(&id, waypoint_application::domain::Message::parse("done").unwrap()).await.unwrap();
        let elapsed = started.elapsed();
        ticker.abort();
        // 1,000 appends: the create carries two events, the rest one each.
        assert_eq!(service.load(&id).await.unwrap().version, 1001, "every append landed");
        (ticks.load(std::sync::atomic::Ordering::Relaxed) - at_start, elapsed)
    });
    // A blocking store would leave the ticker no turn at all until the appends end; allow the
    // ticker to miss most of its ticks on a loaded machine, but not to stop.
    let expected = elapsed.as_millis() as u64 / 2;
    println!("{ticks} ticks of at most {expected} in {elapsed:?} of appends");
    assert!(ticks >= 50.min(expected / 10).max(1), "{ticks} ticks in {elapsed:?} of appends (at most {expected})");
}
