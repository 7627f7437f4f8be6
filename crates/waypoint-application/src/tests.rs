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
