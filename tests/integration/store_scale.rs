//! Cost does not grow with the store: a command about one plan reads that plan's data and a
//! fixed amount besides, however many other plans the store holds (counted through the store's
//! read meter, `waypoint_store_file::storage`), and a listing of resumable plans does not read
//! the finished ones.

use std::path::Path;

use chrono::Utc;
use eventually::store::Expected;
use waypoint_application::domain::{
    CheckpointId, DecisionId, EventId, Message, Phase, PhaseStarted, PlanCancelled, PlanCreated, PlanEvent, PlanId,
    StepCompleted, StepNumber,
};
use waypoint_application::RecordedEvent;
use waypoint_store_file::storage::bytes_read_on_this_thread;
use waypoint_store_file::{AppendRequest, FileStore, StoreOptions};

fn recorded(event: PlanEvent) -> RecordedEvent {
    RecordedEvent { event_id: EventId::from_uuid(uuid::Uuid::new_v4()), recorded_at: Utc::now(), event }
}

/// A plan's events: created, started, `steps` checkpoints, and cancelled when `finished`.
fn events(steps: u32, finished: bool) -> Vec<RecordedEvent> {
    let now = Utc::now();
    let mut out = vec![
        recorded(PlanEvent::PlanCreated(PlanCreated {
            name: None,
            total_steps: None,
            fingerprint: None,
            source: None,
            created_at: now,
            steps: vec![],
        })),
        recorded(PlanEvent::PhaseStarted(PhaseStarted { phase: Phase::Strategize, runner: None, lease: None })),
    ];
    for n in 1..=steps {
        out.push(recorded(PlanEvent::StepCompleted(StepCompleted {
            checkpoint_id: CheckpointId::from_uuid(uuid::Uuid::new_v4()),
            step: StepNumber::new(n).unwrap(),
            decision_id: DecisionId::parse(&format!("d-{n}")).unwrap(),
            snapshot_id: None,
            artifacts: vec![],
            name: None,
            output: None,
            fingerprint: None,
        })));
    }
    if finished {
        out.push(recorded(PlanEvent::PlanCancelled(PlanCancelled { reason: Some(Message::parse("done").unwrap()) })));
    }
    out
}

/// A store holding plan `mine` (20 steps) and `others` other plans, half of them finished,
/// checkpointed so that nothing lies after the checkpoint.
fn build(dir: &Path, others: u32) {
    let options = StoreOptions { checkpoint_every: u32::MAX, ..StoreOptions::default() };
    let store = FileStore::open_with(dir, options).unwrap();
    let mine = AppendRequest {
        plan_id: PlanId::parse("mine").unwrap(),
        expected: Expected::Exact(0),
        events: events(20, false),
    };
    let mut requests = vec![mine];
    for i in 0..others {
        requests.push(AppendRequest {
            plan_id: PlanId::parse(&format!("other-{i}")).unwrap(),
            expected: Expected::Exact(0),
            events: events(5, i % 2 == 0),
        });
    }
    for result in store.append_many(requests) {
        result.unwrap();
    }
    store.checkpoint().unwrap();
}

/// Bytes read by opening the store read-only and loading `mine` every way a command does.
fn bytes_for_one_plan(dir: &Path) -> u64 {
    let before = bytes_read_on_this_thread();
    let store = FileStore::open_read_only(dir).unwrap();
    let id = PlanId::parse("mine").unwrap();
    assert_eq!(store.summary_view(&id).unwrap().unwrap().version, 22);
    assert_eq!(store.plan_view(&id).unwrap().unwrap().version, 22);
    assert_eq!(store.read_plan(&id, 1).unwrap().len(), 22);
    bytes_read_on_this_thread() - before
}

#[test]
fn a_single_plan_command_reads_nothing_of_other_plans() {
    let alone = tempfile::tempdir().unwrap();
    let crowded = tempfile::tempdir().unwrap();
    build(alone.path(), 0);
    build(crowded.path(), 3_000);

    let read_alone = bytes_for_one_plan(alone.path());
    let read_crowded = bytes_for_one_plan(crowded.path());
    // The checkpoint head names longer rows files in the crowded store: a few digits more.
    assert!(
        read_crowded <= read_alone + 64,
        "one plan's reads grew with the store: {read_alone} bytes alone, {read_crowded} among 3,000 plans"
    );
}

#[test]
fn listing_resumable_plans_does_not_read_finished_ones() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 2_000);
    let store = FileStore::open_read_only(dir.path()).unwrap();

    let before = bytes_read_on_this_thread();
    let open = store.open_plans().unwrap();
    let read_open = bytes_read_on_this_thread() - before;
    let before = bytes_read_on_this_thread();
    let all = store.catalog_snapshot().unwrap();
    let read_all = bytes_read_on_this_thread() - before;

    assert_eq!(open.len(), 1_001, "mine and the 1,000 unfinished others");
    assert_eq!(all.plans.len(), 2_001);
    assert!(open.iter().all(|view| !view.state.state.is_terminal()));
    // The finished half is never read: the open listing reads about half of the whole one.
    assert!(read_open * 10 < read_all * 6, "open listing read {read_open} bytes, the whole listing {read_all}");
}
