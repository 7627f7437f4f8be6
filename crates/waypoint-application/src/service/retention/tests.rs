//! Retention in the service: an archive that cannot take a plan, or a plan's step logs, stops
//! the compaction before anything is removed.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use eventually::store::{EventStore, EventStream, Expected, Select};
use futures::executor::block_on;
use futures::future::BoxFuture;
use waypoint_domain::{Attempt, Phase, PlanId, QueueName, StepNumber};

use crate::ports::RunLocks;
use crate::service::{CompactRequest, NewPlan, PlanResumeService};
use crate::store::{
    LogStream, PlanStore, QueueLimit, QueueLock, RecordedEvent, Removal, RemovalReport, StepLog, StoreError,
    StoredEvent,
};
use crate::testkit::plan_created;
use crate::{ErrorKind, InMemoryStore, ManualClock, ServiceError};

#[test]
fn an_archive_holding_another_plan_under_a_due_id_stops_the_compaction_before_any_removal() {
    let store = InMemoryStore::new();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let service = PlanResumeService::new(store.clone()).with_clock(clock.clone());
    let (clash, fine) = (PlanId::parse("clash").unwrap(), PlanId::parse("fine").unwrap());
    block_on(async {
        for id in [&fine, &clash] {
            let new = NewPlan { id: Some(id.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
            service.create_plan(new).await.unwrap();
            service.cancel(id, None).await.unwrap();
        }
    });
    let foreign = InMemoryStore::new();
    block_on(foreign.clone().append(clash.clone(), Expected::Exact(0), vec![plan_created()])).unwrap();
    clock.advance(Duration::days(2));
    let request = CompactRequest { older_than: Duration::days(1), dry_run: false };
    match block_on(service.compact(request, &foreign, "foreign")) {
        Err(error @ ServiceError::ArchiveConflict { .. }) => {
            assert_eq!((error.kind(), error.code()), (ErrorKind::Conflict, "archive_conflict"));
            assert!(error.to_string().contains("nothing was removed"), "{error}");
            let ServiceError::ArchiveConflict { plan_id, archive } = error else { unreachable!() };
            assert_eq!((plan_id, archive.as_str()), (clash.clone(), "foreign"));
        }
        other => panic!("the clash must stop the compaction: {other:?}"),
    }
    for id in [&fine, &clash] {
        assert!(block_on(service.load(id)).is_ok(), "{id} is still in the store");
        assert!(block_on(store.removal(id)).unwrap().is_none());
    }
}

/// A store that misbehaves in one way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Fault {
    /// Takes histories and refuses every step log, as an archive whose disk filled up between
    /// the two would.
    #[default]
    RefusesLogs,
    /// A compaction wins the race with each append: the plan is removed just before the
    /// append reaches the store.
    RemovedBeforeAppend,
}

#[derive(Debug, Clone, Default)]
struct Faulty(InMemoryStore, Fault);

impl EventStore for Faulty {
    type SourceId = PlanId;
    type Event = RecordedEvent;
    type Error = StoreError;

    fn append(
        &mut self,
        source_id: PlanId,
        version: Expected,
        events: Vec<RecordedEvent>,
    ) -> BoxFuture<'_, Result<u32, StoreError>> {
        Box::pin(async move {
            if let (Fault::RemovedBeforeAppend, Expected::Exact(at)) = (self.1, version) {
                self.0.remove_plans(&[(source_id.clone(), at)], Utc::now(), "the-archive").await?;
            }
            self.0.append(source_id, version, events).await
        })
    }

    fn stream(&self, source_id: PlanId, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        Box::pin(async move { Ok(Box::pin(self.0.stream(source_id, select).await?) as EventStream<'_, Self>) })
    }

    fn stream_all(&self, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        Box::pin(async move { Ok(Box::pin(self.0.stream_all(select).await?) as EventStream<'_, Self>) })
    }

    fn remove(&mut self, source_id: PlanId) -> BoxFuture<'_, Result<(), StoreError>> {
        self.0.remove(source_id)
    }
}

impl PlanStore for Faulty {
    fn run_locks(&self) -> Arc<dyn RunLocks> {
        self.0.run_locks()
    }

    fn content_fingerprint(&self) -> BoxFuture<'_, Result<String, StoreError>> {
        self.0.content_fingerprint()
    }

    fn now(&self) -> BoxFuture<'_, Result<DateTime<Utc>, StoreError>> {
        self.0.now()
    }

    fn remove_plans<'a>(
        &'a self,
        plans: &'a [(PlanId, u32)],
        removed_at: DateTime<Utc>,
        archive: &'a str,
    ) -> BoxFuture<'a, Result<RemovalReport, StoreError>> {
        self.0.remove_plans(plans, removed_at, archive)
    }

    fn removal<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<Removal>, StoreError>> {
        self.0.removal(plan_id)
    }

    fn removals_with_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Removal>, StoreError>> {
        self.0.removals_with_prefix(prefix)
    }

    fn import_plans(&self, histories: Vec<Vec<StoredEvent>>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.0.import_plans(histories)
    }

    fn put_step_log<'a>(&'a self, plan_id: &'a PlanId, log: StepLog) -> BoxFuture<'a, Result<(), StoreError>> {
        if self.1 != Fault::RefusesLogs {
            return self.0.put_step_log(plan_id, log);
        }
        let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device");
        Box::pin(futures::future::ready(Err(StoreError::io("cannot write a step log", full))))
    }

    fn step_logs<'a>(
        &'a self,
        plan_id: &'a PlanId,
        step: Option<StepNumber>,
        attempt: Option<Attempt>,
    ) -> BoxFuture<'a, Result<Vec<StepLog>, StoreError>> {
        self.0.step_logs(plan_id, step, attempt)
    }

    fn lock_queue<'a>(&'a self, queue: &'a QueueName) -> BoxFuture<'a, Result<QueueLock, StoreError>> {
        self.0.lock_queue(queue)
    }

    fn queue_limits(&self) -> BoxFuture<'_, Result<Vec<QueueLimit>, StoreError>> {
        self.0.queue_limits()
    }

    fn set_queue_limit<'a>(
        &'a self,
        queue: &'a QueueName,
        limit: Option<u32>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.0.set_queue_limit(queue, limit)
    }
}

#[test]
fn an_archive_that_cannot_take_a_plans_step_logs_stops_the_compaction_before_any_removal() {
    let store = InMemoryStore::new();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let service = PlanResumeService::new(store.clone()).with_clock(clock.clone());
    let id = PlanId::parse("with-logs").unwrap();
    let log = StepLog {
        step: StepNumber::FIRST,
        attempt: Attempt::FIRST,
        stream: LogStream::Stdout,
        bytes: b"printed\n".to_vec(),
        cut: 0,
    };
    block_on(async {
        let new = NewPlan { id: Some(id.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
        service.create_plan(new).await.unwrap();
        store.put_step_log(&id, log.clone()).await.unwrap();
        service.cancel(&id, None).await.unwrap();
    });
    clock.advance(Duration::days(2));
    let request = CompactRequest { older_than: Duration::days(1), dry_run: false };
    match block_on(service.compact(request, &Faulty::default(), "full")) {
        Err(ServiceError::Store(StoreError::Io { .. })) => {}
        other => panic!("a log the archive refuses stops the compaction: {other:?}"),
    }
    assert!(block_on(service.load(&id)).is_ok(), "the plan is still in the store");
    assert_eq!(block_on(store.step_logs(&id, None, None)).unwrap(), vec![log], "with its logs");
}

/// A writer that loaded a plan before a compaction removed it, and appends after: it hears that
/// the plan was removed (with its archive), as one that came later would, not a conflict.
#[test]
fn an_append_that_loses_the_race_with_a_compaction_says_the_plan_was_removed() {
    let store = Faulty(InMemoryStore::new(), Fault::RemovedBeforeAppend);
    let service = PlanResumeService::new(store.clone());
    let id = PlanId::parse("raced").unwrap();
    let new = NewPlan { id: Some(id.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
    block_on(service.create_plan(new)).expect("nothing to remove at version 0");
    match block_on(service.cancel(&id, None)) {
        Err(error @ ServiceError::Removed(_)) => {
            assert_eq!(error.kind(), ErrorKind::NotFound);
            let ServiceError::Removed(removal) = error else { unreachable!() };
            assert_eq!((removal.plan_id, removal.archive.as_str()), (id, "the-archive"));
        }
        other => panic!("expected the removal, got {other:?}"),
    }
}
