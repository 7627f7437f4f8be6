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

/// A plumbing plan of `steps` named steps, run through the service on a fresh store.
fn named_plumbing_plan(steps: u32) -> (crate::PlanResumeService<InMemoryStore>, waypoint_domain::PlanId) {
    use crate::service::{NewPlan, StepCheckpoint};
    use waypoint_domain::{DecisionId, Phase, PlanId, StepName, StepNumber};
    let service = crate::PlanResumeService::new(InMemoryStore::new());
    let id = PlanId::parse("named").unwrap();
    let new = NewPlan { id: Some(id.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
    futures::executor::block_on(service.create_plan(new)).unwrap();
    for n in 1..=steps {
        let step = StepNumber::new(n).unwrap();
        let checkpoint = StepCheckpoint {
            name: Some(StepName::parse(&format!("step number {n}")).unwrap()),
            ..StepCheckpoint::new(step, DecisionId::parse(&format!("d{n}")).unwrap())
        };
        futures::executor::block_on(service.record_step_checkpoint(&id, checkpoint)).unwrap();
    }
    (service, id)
}

/// What every summary reads of a plumbing plan does not grow with its steps (issue 27): the
/// compact view of 2,000 named steps is the size of one of 5, and says the same about the plan;
/// the full view still names every step.
#[test]
fn a_compact_view_of_a_long_plumbing_plan_is_the_size_of_a_short_ones() {
    use waypoint_domain::StepNumber;
    let size = |steps: u32| {
        let (service, id) = named_plumbing_plan(steps);
        let compact = futures::executor::block_on(service.load_summary(&id)).unwrap();
        let full = futures::executor::block_on(service.load(&id)).unwrap();
        let first = full.state.resume.completed_digest(StepNumber::FIRST).and_then(|d| d.name.clone());
        assert_eq!(
            first.map(|n| n.as_str().to_owned()),
            Some("step number 1".to_owned()),
            "the full view names step 1"
        );
        let last = compact.state.resume.completed_digest(StepNumber::new(steps).unwrap()).and_then(|d| d.name.clone());
        assert_eq!(
            last.map(|n| n.as_str().to_owned()),
            Some(format!("step number {steps}")),
            "and the compact the last"
        );
        assert_eq!(compact.state.resume.last_completed_step, StepNumber::new(steps).ok());
        serde_json::to_vec(&compact).unwrap().len()
    };
    let (short, long) = (size(5), size(2_000));
    assert!(long as f64 <= short as f64 * 1.1, "compact views: {long} bytes for 2,000 steps, {short} for 5");
}
