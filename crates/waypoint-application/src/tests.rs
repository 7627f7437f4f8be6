//! Unit tests of the application crate: the in-memory store passes the store conformance kit.

use crate::testkit::{self, StoreFixture};
use crate::InMemoryStore;

struct Memory;

impl StoreFixture for Memory {
    type Store = InMemoryStore;

    fn fresh(&self) -> InMemoryStore {
        InMemoryStore::new()
    }

    fn reopen(&self, store: &InMemoryStore) -> InMemoryStore {
        // One process, one store: another handle is a clone sharing the same log and locks.
        store.clone()
    }
}

#[test]
fn the_in_memory_store_passes_the_conformance_kit() {
    testkit::run("memory", &Memory);
}

struct OffThreadMemory;

impl StoreFixture for OffThreadMemory {
    type Store = crate::OffThreadStore<InMemoryStore>;

    fn fresh(&self) -> Self::Store {
        crate::OffThreadStore::new(InMemoryStore::new(), 2)
    }

    fn reopen(&self, store: &Self::Store) -> Self::Store {
        store.clone()
    }
}

#[test]
fn the_off_thread_face_of_a_store_passes_the_conformance_kit() {
    testkit::run("off-thread memory", &OffThreadMemory);
}

/// A definition probe that always finds the definition unreadable.
#[derive(Debug)]
struct Unreadable;

impl crate::DefinitionProbe for Unreadable {
    fn current(
        &self,
        _plan_id: &waypoint_domain::PlanId,
        _plan: &waypoint_domain::PlanState,
    ) -> Option<waypoint_domain::CurrentDefinition> {
        Some(waypoint_domain::CurrentDefinition::Unreadable("gone".into()))
    }
}

#[test]
fn the_definition_probe_decides_drift_on_every_surface() {
    use futures::executor::block_on;
    use waypoint_domain::{Message, Phase, PlanId, ResumeIneligibleReason};

    let store = InMemoryStore::new();
    let id = PlanId::parse("probed").unwrap();
    let plain = crate::PlanResumeService::new(store.clone());
    let new = crate::NewPlan { id: Some(id.clone()), start: Some((Phase::Strategize, None)), ..Default::default() };
    block_on(plain.create_plan(new)).unwrap();
    block_on(plain.record_shutdown(&id, Message::parse("stop").unwrap())).unwrap();
    assert!(block_on(plain.build_resume_summary(&id, None)).unwrap().eligible);

    let probed = crate::PlanResumeService::new(store).with_definition_probe(Unreadable);
    let changed = vec![ResumeIneligibleReason::DefinitionChanged];
    assert_eq!(block_on(probed.build_resume_summary(&id, None)).unwrap().reasons, changed);
    assert_eq!(block_on(probed.validate_eligibility(&id, None)).unwrap().reasons, changed);
    assert!(block_on(probed.list_resumable()).unwrap().is_empty());
    let request = crate::ResumeRequest { dry_run: true, ..Default::default() };
    assert_eq!(block_on(probed.resume_plan(&id, request)).unwrap().summary.reasons, changed);
    let request = crate::ResumeRequest { dry_run: false, ..Default::default() };
    assert!(block_on(probed.resume_plan(&id, request)).is_err(), "a real resume is refused alike");
}

/// A store whose clock counts how often it is read, over the in-memory store.
#[derive(Debug, Clone, Default)]
struct CountedClock(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl crate::Clock for CountedClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        crate::SystemClock.now()
    }
}

#[test]
fn a_manual_clock_shared_by_service_and_store_moves_a_lease_to_its_expiry() {
    use std::time::Duration;

    use futures::executor::block_on;
    use waypoint_domain::{Phase, PlanId, PlanStatus, RunnerId, LEASE_EXPIRED_REASON};

    let clock = crate::ManualClock::new(chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(20_000));
    let store = InMemoryStore::new().with_clock(clock.clone());
    let service = crate::PlanResumeService::new(store).with_clock(clock.clone());
    let id = PlanId::parse("leased").unwrap();
    block_on(service.create_plan(crate::NewPlan { id: Some(id.clone()), ..Default::default() })).unwrap();
    let lease = crate::LeaseRequest::new(RunnerId::parse("orchestrator").unwrap(), Duration::from_secs(30));
    block_on(service.start_phase_leased(&id, Phase::Strategize, lease)).unwrap();
    clock.advance(chrono::Duration::seconds(29));
    assert_eq!(block_on(service.build_resume_summary(&id, None)).unwrap().status, PlanStatus::Running);
    clock.advance(chrono::Duration::seconds(1));
    let summary = block_on(service.build_resume_summary(&id, None)).unwrap();
    assert_eq!(summary.status, PlanStatus::Crashed);
    assert_eq!(summary.interruption.map(|i| i.reason), Some(LEASE_EXPIRED_REASON.to_owned()));
}

#[test]
fn the_store_clock_is_read_only_for_plans_held_by_lease() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;

    use futures::executor::block_on;
    use waypoint_domain::{Phase, PlanId, RunnerId};

    let reads = CountedClock::default();
    let store = InMemoryStore::new().with_clock(reads.clone());
    let service = crate::PlanResumeService::new(store);
    let plain = PlanId::parse("plain").unwrap();
    let new = crate::NewPlan { id: Some(plain.clone()), start: Some((Phase::Strategize, None)), ..Default::default() };
    block_on(service.create_plan(new)).unwrap();
    block_on(service.build_resume_summary(&plain, None)).unwrap();
    block_on(service.list_plans()).unwrap();
    assert_eq!(reads.0.load(SeqCst), 0, "no lease, no reading of the store's clock");

    let leased = PlanId::parse("leased").unwrap();
    block_on(service.create_plan(crate::NewPlan { id: Some(leased.clone()), ..Default::default() })).unwrap();
    let lease = crate::LeaseRequest::new(RunnerId::parse("orchestrator").unwrap(), Duration::from_secs(30));
    block_on(service.start_phase_leased(&leased, Phase::Strategize, lease)).unwrap();
    assert_eq!(reads.0.load(SeqCst), 1, "the lease runs from the store's clock");
    block_on(service.list_plans()).unwrap();
    assert_eq!(reads.0.load(SeqCst), 2, "a listing reads it once, however many plans it shows");
}

#[test]
fn a_lease_past_the_calendar_is_a_typed_error() {
    use futures::executor::block_on;
    use waypoint_domain::{Phase, PlanId, RunnerId};

    let service = crate::PlanResumeService::new(InMemoryStore::new());
    let id = PlanId::parse("forever").unwrap();
    block_on(service.create_plan(crate::NewPlan { id: Some(id.clone()), ..Default::default() })).unwrap();
    let lease = crate::LeaseRequest::new(RunnerId::parse("orchestrator").unwrap(), std::time::Duration::MAX);
    let error = block_on(service.start_phase_leased(&id, Phase::Strategize, lease)).unwrap_err();
    assert_eq!((error.code(), error.kind()), ("lease_too_long", crate::ErrorKind::InvalidCommand));
    assert_eq!(block_on(service.history(&id)).unwrap().len(), 1, "nothing was written");
}
