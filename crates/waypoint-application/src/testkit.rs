//! The store conformance kit: the port contract every store must pass, written once. A store
//! crate calls [`run`] from one test with a [`StoreFixture`] that opens fresh stores; a store that
//! fails it is not a store. Enabled by the `testkit` feature.
//!
//! The kit covers what every store shares. What only a store can stage (a holder's process or
//! connection dying, torn writes, a server going away) is tested by that store's own tests.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use eventually::store::{AppendError, Expected, Select};
use eventually::versioning::Versioned;
use futures::executor::block_on;
use futures::TryStreamExt;
use uuid::Uuid;
use waypoint_domain::{
    Artifact, Attempt, DecisionId, EventId, Message, Phase, PlanError, PlanEvent, PlanId, PlanName, PlanStatus,
    QueueName, ResumeIneligibleReason, RunnerId, StepName, StepNumber, StepOutput, SubmittedDefinition,
    LEASE_EXPIRED_REASON,
};

use crate::engine::{EngineError, RunDefinition, StepTurn};
use crate::error::ServiceError;
use crate::ports::RunLockError;
use crate::queues::{Claimed, Submit};
use crate::service::{CompactRequest, Compaction};
use crate::service::{LeaseRequest, NewPlan, PlanResumeService, ResumeRequest, StepCheckpoint, StepStart};
use crate::store::{
    listing_order, Catalog, CatalogCursor, CatalogQuery, LogStream, PlanStore, PlanView, QueueLimit, RecordedEvent,
    Removal, StepLog, StoreError, StoredEvent, STEP_LOG_CAP,
};

/// How the kit gets stores to test.
pub trait StoreFixture: Sync {
    /// The store under test.
    type Store: PlanStore;

    /// A fresh, empty store of its own.
    fn fresh(&self) -> Self::Store;

    /// Another handle on the same store, opened as a second process would open it.
    fn reopen(&self, store: &Self::Store) -> Self::Store;

    /// Moves what was written recently into the store's long-term form, where a store keeps
    /// one (the file store's checkpoint); nothing by default. Cases call it between writes so
    /// that reads meet both forms at once.
    fn settle(&self, _store: &Self::Store) {}
}

type Case<F> = (&'static str, fn(&F));

/// Every case of the kit, by name.
pub fn cases<F: StoreFixture>() -> Vec<Case<F>> {
    vec![
        ("appends_assign_gapless_versions", appends_assign_gapless_versions::<F>),
        ("a_stale_expected_version_is_a_conflict", a_stale_expected_version_is_a_conflict::<F>),
        ("a_batch_lands_whole_or_not_at_all", a_batch_lands_whole_or_not_at_all::<F>),
        ("plan_reads_see_only_their_plan", plan_reads_see_only_their_plan::<F>),
        ("global_order_is_strictly_increasing", global_order_is_strictly_increasing::<F>),
        ("a_follower_of_the_log_never_skips_an_event", a_follower_of_the_log_never_skips_an_event::<F>),
        ("views_and_catalog_equal_a_replay", views_and_catalog_equal_a_replay::<F>),
        ("another_handle_sees_every_acknowledged_event", another_handle_sees_every_acknowledged_event::<F>),
        ("reads_change_nothing", reads_change_nothing::<F>),
        ("run_locks_exclude_and_release", run_locks_exclude_and_release::<F>),
        ("a_live_run_lock_makes_a_plan_still_running", a_live_run_lock_makes_a_plan_still_running::<F>),
        ("a_live_lease_makes_a_plan_still_running", a_live_lease_makes_a_plan_still_running::<F>),
        ("an_expired_lease_is_a_crash_another_runner_resumes", an_expired_lease_is_a_crash_another_runner_resumes::<F>),
        ("a_runner_taken_over_is_fenced", a_runner_taken_over_is_fenced::<F>),
        ("racing_resumes_have_one_winner", racing_resumes_have_one_winner::<F>),
        ("unknown_plans_are_not_found", unknown_plans_are_not_found::<F>),
        ("large_events_round_trip", large_events_round_trip::<F>),
        ("a_fork_of_large_outputs_fits_every_record", a_fork_of_large_outputs_fits_every_record::<F>),
        ("stats_count_the_log", stats_count_the_log::<F>),
        ("removal_leaves_tombstones_and_keeps_the_rest", removal_leaves_tombstones_and_keeps_the_rest::<F>),
        ("removal_skips_plans_that_moved", removal_skips_plans_that_moved::<F>),
        ("a_removed_id_is_never_reused", a_removed_id_is_never_reused::<F>),
        ("removal_loses_no_concurrent_append", removal_loses_no_concurrent_append::<F>),
        ("import_keeps_histories_and_is_idempotent", import_keeps_histories_and_is_idempotent::<F>),
        ("compaction_removes_only_old_finished_plans", compaction_removes_only_old_finished_plans::<F>),
        ("step_logs_round_trip_per_attempt", step_logs_round_trip_per_attempt::<F>),
        ("a_step_log_over_the_cap_is_refused", a_step_log_over_the_cap_is_refused::<F>),
        ("a_step_log_of_an_unknown_plan_is_refused", a_step_log_of_an_unknown_plan_is_refused::<F>),
        ("compaction_archives_and_removes_step_logs", compaction_archives_and_removes_step_logs::<F>),
        ("racing_claims_have_exactly_one_claimant", racing_claims_have_exactly_one_claimant::<F>),
        ("a_claim_skips_a_plan_whose_lease_is_live", a_claim_skips_a_plan_whose_lease_is_live::<F>),
        ("a_plan_whose_lease_expired_is_claimable", a_plan_whose_lease_expired_is_claimable::<F>),
        ("the_fence_refuses_a_worker_that_lost_its_lease", the_fence_refuses_a_worker_that_lost_its_lease::<F>),
        ("queue_limits_hold_and_are_durable", queue_limits_hold_and_are_durable::<F>),
        ("a_queue_lists_its_own_plans_oldest_first", a_queue_lists_its_own_plans_oldest_first::<F>),
        ("catalog_pages_follow_the_listing_order", catalog_pages_follow_the_listing_order::<F>),
        ("catalog_pages_continue_while_plans_move", catalog_pages_continue_while_plans_move::<F>),
        ("catalog_pages_filter_open_and_text", catalog_pages_filter_open_and_text::<F>),
        ("catalog_pages_never_list_removed_plans", catalog_pages_never_list_removed_plans::<F>),
        (
            "a_walk_of_the_catalog_lists_each_plan_once_in_order",
            a_walk_of_the_catalog_lists_each_plan_once_in_order::<F>,
        ),
    ]
}

/// Runs every case against `fixture`, printing each, and panics naming every case that failed.
pub fn run<F: StoreFixture>(store_name: &str, fixture: &F) {
    let mut failed = Vec::new();
    let cases = cases::<F>();
    for (name, case) in &cases {
        match catch_unwind(AssertUnwindSafe(|| case(fixture))) {
            Ok(()) => println!("conformance [{store_name}] {name} ... ok"),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                println!("conformance [{store_name}] {name} ... FAILED: {message}");
                failed.push(*name);
            }
        }
    }
    assert!(failed.is_empty(), "the {store_name} store fails the conformance kit: {}", failed.join(", "));
    println!("conformance [{store_name}]: {} cases passed", cases.len());
}

fn plan(id: &str) -> PlanId {
    PlanId::parse(id).expect("kit plan ids are valid")
}

fn runner(name: &str) -> RunnerId {
    RunnerId::parse(name).expect("kit runner ids are valid")
}

/// An event decoded from its schema-1 wire form, so the kit keeps compiling as payloads grow new
/// schema versions (the upcaster fills in what is new).
fn event(event_type: &str, data: serde_json::Value) -> RecordedEvent {
    let bytes = serde_json::to_vec(&data).expect("json encodes");
    let event = PlanEvent::decode(event_type, 1, &bytes).expect("kit events decode");
    RecordedEvent { event_id: EventId::from_uuid(Uuid::new_v4()), recorded_at: at(0), event }
}

fn at(seconds: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 0).single().expect("a valid time")
}

fn created(name: &str) -> RecordedEvent {
    event(
        "plan_created",
        serde_json::json!({"name": name, "total_steps": null, "fingerprint": null, "source": null, "created_at": at(0)}),
    )
}

fn errored(message: &str) -> RecordedEvent {
    event("plan_errored", serde_json::json!({ "message": message }))
}

fn phase_started() -> RecordedEvent {
    event("phase_started", serde_json::json!({"phase": "strategize", "runner": null}))
}

fn append(store: &impl PlanStore, id: &PlanId, expected: u32, events: Vec<RecordedEvent>) -> Result<u32, StoreError> {
    block_on(store.clone().append(id.clone(), Expected::Exact(expected), events))
}

fn read(store: &impl PlanStore, id: &PlanId, select: Select) -> Vec<StoredEvent> {
    block_on(async { store.stream(id.clone(), select).await?.try_collect::<Vec<_>>().await }).expect("read a plan")
}

/// A plan's first event, recorded now: for a store's own tests that append by hand.
pub fn plan_created() -> RecordedEvent {
    let now = Utc::now();
    let created = waypoint_domain::PlanCreated {
        name: None,
        total_steps: None,
        fingerprint: None,
        source: None,
        created_at: now,
        steps: Vec::new(),
    };
    RecordedEvent {
        event_id: EventId::from_uuid(Uuid::new_v4()),
        recorded_at: now,
        event: PlanEvent::PlanCreated(created),
    }
}

/// Every event in `store`, in global order.
pub fn all_events(store: &impl PlanStore) -> Vec<StoredEvent> {
    read_all(store, Select::All)
}

fn read_all(store: &impl PlanStore, select: Select) -> Vec<StoredEvent> {
    block_on(async { store.stream_all(select).await?.try_collect::<Vec<_>>().await }).expect("read the log")
}

fn ids(events: &[StoredEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.event_id).collect()
}

fn appends_assign_gapless_versions<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let id = plan("gapless");
    let first = vec![created("p"), phase_started(), errored("one")];
    let second = vec![errored("two"), errored("three")];
    let expected_ids: Vec<EventId> = first.iter().chain(&second).map(|e| e.event_id).collect();
    assert_eq!(append(&store, &id, 0, first).expect("first append"), 3, "append returns the new version");
    assert_eq!(append(&store, &id, 3, second).expect("second append"), 5);
    let events = read(&store, &id, Select::All);
    assert_eq!(events.iter().map(|e| e.version()).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!(ids(&events), expected_ids, "events come back in the order appended");
    assert!(events.iter().all(|e| e.source_id() == &id));
}

fn a_stale_expected_version_is_a_conflict<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let id = plan("stale");
    append(&store, &id, 0, vec![created("p"), phase_started()]).expect("create");
    for stale in [0, 1, 3] {
        match append(&store, &id, stale, vec![errored("late")]) {
            Err(error @ StoreError::Conflict { .. }) => {
                assert!(error.is_conflict_error());
                let StoreError::Conflict { plan_id, expected, actual } = error else { unreachable!() };
                assert_eq!((plan_id, expected, actual), (id.clone(), stale, 2));
            }
            other => panic!("expected version {stale} against version 2 must be a conflict, got {other:?}"),
        }
    }
    assert_eq!(read(&store, &id, Select::All).len(), 2, "a refused append leaves nothing behind");
}

fn a_batch_lands_whole_or_not_at_all<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let id = plan("batch");
    let handles: Vec<F::Store> = (0..4).map(|_| fixture.reopen(&store)).collect();
    let barrier = Barrier::new(handles.len());
    let batches: Vec<Vec<RecordedEvent>> =
        (0..handles.len()).map(|i| vec![created(&format!("racer {i}")), phase_started(), errored("x")]).collect();
    let results: Vec<Result<u32, StoreError>> = std::thread::scope(|scope| {
        let threads: Vec<_> = handles
            .iter()
            .zip(batches.clone())
            .map(|(handle, batch)| {
                let (barrier, id) = (&barrier, &id);
                scope.spawn(move || {
                    barrier.wait();
                    append(handle, id, 0, batch)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("racer thread")).collect()
    });
    let winners: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "exactly one racing batch wins: {results:?}");
    for result in &results {
        if let Err(e) = result {
            assert!(e.is_conflict_error(), "a losing batch is a conflict, got {e:?}");
        }
    }
    let stored = read(&store, &id, Select::All);
    let winner: Vec<EventId> = batches[winners[0]].iter().map(|e| e.event_id).collect();
    assert_eq!(ids(&stored), winner, "the plan holds the winner's whole batch and nothing of the others");
}

fn plan_reads_see_only_their_plan<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let (a, b) = (plan("reads-a"), plan("reads-b"));
    append(&store, &a, 0, vec![created("a")]).expect("a1");
    append(&store, &b, 0, vec![created("b")]).expect("b1");
    append(&store, &a, 1, vec![phase_started(), errored("a3")]).expect("a2-3");
    append(&store, &b, 1, vec![phase_started()]).expect("b2");
    let all_a = read(&store, &a, Select::All);
    assert_eq!(all_a.iter().map(|e| e.version()).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(all_a.iter().all(|e| e.source_id() == &a));
    let from_2 = read(&store, &a, Select::From(2));
    assert_eq!(from_2.iter().map(|e| e.version()).collect::<Vec<_>>(), vec![2, 3], "Select::From(v) starts at v");
    assert!(read(&store, &a, Select::From(4)).is_empty());
    assert!(read(&store, &plan("reads-none"), Select::All).is_empty(), "an unknown plan has no events");
    assert_eq!(read(&store, &b, Select::All).len(), 2);
}

fn global_order_is_strictly_increasing<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let mut appended = Vec::new();
    for i in 0..5 {
        let id = plan(&format!("order-{i}"));
        let batch = vec![created("p"), phase_started()];
        appended.extend(batch.iter().map(|e| e.event_id));
        append(&store, &id, 0, batch).expect("append");
    }
    let all = read_all(&store, Select::All);
    assert_eq!(ids(&all), appended, "the log reads back in the order it was acknowledged");
    let positions: Vec<u32> = all.iter().map(|e| e.sequence_number()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions strictly increase: {positions:?}");
    assert!(positions[0] >= 1, "positions start at 1 or later");
    let from = positions[4];
    let suffix = read_all(&store, Select::From(from));
    assert_eq!(ids(&suffix), appended[4..].to_vec(), "Select::From(position) starts at that position");
}

fn a_follower_of_the_log_never_skips_an_event<F: StoreFixture>(fixture: &F) {
    const WRITERS: usize = 4;
    const APPENDS: usize = 25;
    let store = fixture.fresh();
    let handles: Vec<F::Store> = (0..WRITERS).map(|_| fixture.reopen(&store)).collect();
    let reader = fixture.reopen(&store);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let mut seen: Vec<StoredEvent> = Vec::new();
    std::thread::scope(|scope| {
        for (w, handle) in handles.iter().enumerate() {
            let done = &done;
            scope.spawn(move || {
                let id = plan(&format!("follow-{w}"));
                append(handle, &id, 0, vec![created("p")]).expect("create");
                for i in 1..APPENDS {
                    append(handle, &id, i as u32, vec![errored("tick")]).expect("append");
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        // Follow the log as a catch-up reader does: from the position after the last one seen.
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst) == WRITERS;
            let from = seen.last().map_or(1, |e| e.sequence_number() + 1);
            let batch = read_all(&reader, Select::From(from));
            seen.extend(batch);
            if finished {
                break;
            }
            std::thread::yield_now();
        }
    });
    let positions: Vec<u32> = seen.iter().map(|e| e.sequence_number()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "the follower saw positions in order");
    let followed: BTreeSet<EventId> = seen.iter().map(|e| e.event_id).collect();
    let everything: BTreeSet<EventId> = ids(&read_all(&store, Select::All)).into_iter().collect();
    assert_eq!(everything.len(), WRITERS * APPENDS);
    let missed = everything.difference(&followed).count();
    assert_eq!(missed, 0, "a follower of the log missed {missed} events that became visible later");
    assert_eq!(seen.len(), followed.len(), "the follower saw no event twice");
}

/// A service over `store` with a fixed clock, so views compare equal.
fn service<S: PlanStore>(store: S) -> PlanResumeService<S> {
    PlanResumeService::new(store).with_clock(crate::ports::ManualClock::new(at(100)))
}

fn step(n: u32) -> StepNumber {
    StepNumber::new(n).expect("kit steps are valid")
}

fn decision(n: u32) -> DecisionId {
    DecisionId::parse(&format!("d-{n}")).expect("kit decisions are valid")
}

/// Drives three plans through a lifecycle: one interrupted mid-way, one resumed, one completed.
fn populate<S: PlanStore>(store: &S) -> Vec<PlanId> {
    let service = service(store.clone());
    let ids: Vec<PlanId> = ["life-a", "life-b", "life-c"].into_iter().map(plan).collect();
    block_on(async {
        for id in &ids {
            let new = NewPlan { id: Some(id.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
            service.create_plan(new).await?;
            service.set_total_steps(id, waypoint_domain::TotalSteps::new(3).expect("valid")).await?;
            for n in 1..=2 {
                service.record_step_started(id, StepStart::new(step(n), decision(n))).await?;
                service.record_step_checkpoint(id, StepCheckpoint::new(step(n), decision(n))).await?;
            }
        }
        service.record_shutdown(&ids[0], Message::parse("deploy").expect("valid")).await?;
        service.record_shutdown(&ids[1], Message::parse("signal").expect("valid")).await?;
        service.resume_plan(&ids[1], ResumeRequest::default()).await?;
        service.record_step_checkpoint(&ids[2], StepCheckpoint::new(step(3), decision(3))).await?;
        service.complete_phase(&ids[2]).await?;
        Ok::<_, ServiceError>(())
    })
    .expect("the kit's lifecycle is accepted");
    ids
}

fn views_and_catalog_equal_a_replay<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let ids = populate(&store);
    let mut rebuilt = Catalog::default();
    for stored in read_all(&store, Select::All) {
        rebuilt.apply(&stored);
    }
    let mut served = block_on(store.catalog()).expect("catalog");
    served.sort_by(|a, b| a.plan_id.cmp(&b.plan_id));
    let mut expected: Vec<PlanView> = rebuilt.plans.into_values().collect();
    expected.sort_by(|a, b| a.plan_id.cmp(&b.plan_id));
    assert_eq!(served, expected, "the catalog equals a fold of the log");
    for id in &ids {
        let replayed = PlanView::replay(&read(&store, id, Select::All));
        assert_eq!(block_on(store.load_view(id)).expect("load"), replayed, "full view of {id}");
        let mut compact = replayed.clone().expect("the plan exists");
        compact.compact();
        assert_eq!(block_on(store.load_summary_view(id)).expect("load"), Some(compact), "summary view of {id}");
    }
    let report = block_on(store.verify()).expect("verify");
    assert!(report.ok, "verify finds no difference on a healthy store: {:?}", report.differences);
    assert!(report.checked.get("events").copied().unwrap_or(0) > 0, "verify read the log: {:?}", report.checked);
}

fn another_handle_sees_every_acknowledged_event<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let ids = populate(&store);
    let other = fixture.reopen(&store);
    for id in &ids {
        assert_eq!(ids_of(&other, id), ids_of(&store, id), "plan {id} through another handle");
        assert_eq!(block_on(other.load_view(id)).expect("load"), block_on(store.load_view(id)).expect("load"));
    }
    // And back: what the second handle writes, the first sees.
    let service = service(other.clone());
    block_on(service.cancel(&ids[0], None)).expect("cancel through the second handle");
    let view = block_on(store.load_view(&ids[0])).expect("load").expect("exists");
    assert_eq!(view.state.state, waypoint_domain::ProcessingState::Cancelled);
}

fn ids_of<S: PlanStore>(store: &S, id: &PlanId) -> Vec<EventId> {
    ids(&read(store, id, Select::All))
}

fn reads_change_nothing<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let ids = populate(&store);
    let service = service(store.clone());
    let before = block_on(store.content_fingerprint()).expect("fingerprint");
    block_on(async {
        service.list_plans().await?;
        service.list_resumable().await?;
        for id in &ids {
            service.build_resume_summary(id, None).await?;
            service.load(id).await?;
            service.history(id).await?;
            let preview = ResumeRequest { dry_run: true, ..ResumeRequest::default() };
            service.resume_plan(id, preview).await?;
            service.validate_eligibility(id, None).await?;
        }
        store.verify().await?;
        store.stats().await?;
        Ok::<_, ServiceError>(())
    })
    .expect("reads succeed");
    let after = block_on(store.content_fingerprint()).expect("fingerprint");
    assert_eq!(before, after, "reads, previews, verify and stats wrote nothing");
    block_on(service.cancel(&ids[0], None)).expect("a write");
    let written = block_on(store.content_fingerprint()).expect("fingerprint");
    assert_ne!(after, written, "the fingerprint changes when something is written");
}

fn run_locks_exclude_and_release<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let other = fixture.reopen(&store);
    let id = plan("locked");
    let (locks, other_locks) = (store.run_locks(), other.run_locks());
    assert!(!locks.probe(&id).expect("probe"), "nobody holds a fresh plan's lock");
    let guard = locks.acquire(&id, &runner("runner-1")).expect("acquire");
    assert_eq!(guard.plan_id(), &id);
    assert_eq!(guard.runner(), &runner("runner-1"));
    guard.check().expect("a held lock checks out");
    assert!(locks.probe(&id).expect("probe"), "the holder's own probe sees it held");
    assert!(other_locks.probe(&id).expect("probe"), "another handle sees it held");
    for (name, locks) in [("the same handle", &locks), ("another handle", &other_locks)] {
        match locks.acquire(&id, &runner("runner-2")) {
            Err(RunLockError::Busy { plan_id }) => assert_eq!(plan_id, id),
            other => panic!("a second acquire through {name} must be busy, got {other:?}"),
        }
    }
    assert!(!other_locks.probe(&plan("unlocked")).expect("probe"), "locks are per plan");
    let unrelated = other_locks.acquire(&plan("unlocked"), &runner("runner-3")).expect("another plan's lock");
    drop(guard);
    assert!(!locks.probe(&id).expect("probe"), "dropping the guard releases the lock");
    assert!(!other_locks.probe(&id).expect("probe"));
    let again = other_locks.acquire(&id, &runner("runner-2")).expect("the released lock can be taken");
    drop((again, unrelated));
}

fn a_live_run_lock_makes_a_plan_still_running<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let runner_service = service(store.clone());
    let id = plan("live");
    let guard = runner_service.acquire_run_lock(&id, &runner("runner-1")).expect("acquire");
    let new = NewPlan {
        id: Some(id.clone()),
        start: Some((Phase::Strategize, Some(guard.runner().clone()))),
        ..NewPlan::default()
    };
    block_on(runner_service.create_plan(new)).expect("create and start under the lock");
    let other = service(fixture.reopen(&store));
    let verdict = block_on(other.validate_eligibility(&id, None)).expect("eligibility");
    assert_eq!(verdict.reasons, vec![ResumeIneligibleReason::StillRunning], "a live runner holds the plan");
    drop(guard);
    let verdict = block_on(other.validate_eligibility(&id, None)).expect("eligibility");
    assert!(verdict.eligible && verdict.crash_inferred, "a runner gone without a word is a crash: {verdict:?}");
}

/// `runner`'s lease for `duration`.
fn lease(runner_name: &str, duration: Duration) -> LeaseRequest {
    LeaseRequest::new(runner(runner_name), duration)
}

/// The store's clock, which grants and judges leases.
fn store_now(store: &impl PlanStore) -> DateTime<Utc> {
    block_on(store.now()).expect("the store reads its clock")
}

/// Creates `id` and starts it held by `lease`, checking that the lease runs from the store's
/// clock (the kit's service clock stands still, years from the store's). Returns its expiry.
fn start_leased<S: PlanStore>(store: &S, id: &PlanId, lease: LeaseRequest) -> DateTime<Utc> {
    let service = service(store.clone());
    let duration = chrono::Duration::from_std(lease.duration).expect("a kit lease is short");
    block_on(service.create_plan(NewPlan { id: Some(id.clone()), ..NewPlan::default() })).expect("create");
    let before = store_now(store);
    let view = block_on(service.start_phase_leased(id, Phase::Strategize, lease)).expect("start under a lease");
    let after = store_now(store);
    let held = view.state.lease.expect("the plan holds the lease");
    assert!(
        before + duration <= held.expires_at && held.expires_at <= after + duration,
        "the lease runs from the store's clock: {held:?}, store clock between {before} and {after}"
    );
    held.expires_at
}

/// Waits until the store's clock has reached `expires_at`.
fn wait_for_expiry(store: &impl PlanStore, expires_at: DateTime<Utc>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store_now(store) < expires_at {
        assert!(Instant::now() < deadline, "the store's clock never reached {expires_at}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn a_live_lease_makes_a_plan_still_running<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let id = plan("leased-live");
    start_leased(&store, &id, lease("runner-a", Duration::from_secs(3600)));
    let other_store = fixture.reopen(&store);
    let other = service(other_store.clone());
    let verdict = block_on(other.validate_eligibility(&id, None)).expect("eligibility");
    assert_eq!(verdict.reasons, vec![ResumeIneligibleReason::StillRunning], "a live lease holds the plan");
    assert!(!verdict.crash_inferred);
    let summary = block_on(other.build_resume_summary(&id, None)).expect("summary");
    assert_eq!((summary.status, summary.interruption), (PlanStatus::Running, None));
    assert_eq!(summary.lease.map(|l| l.runner), Some(runner("runner-a")));
    assert!(block_on(other.list_resumable()).expect("listing").iter().all(|s| s.plan_id != id));
    let before = block_on(other_store.content_fingerprint()).expect("fingerprint");
    let request = ResumeRequest { lease: Some(lease("runner-b", Duration::from_secs(3600))), ..Default::default() };
    let refused = block_on(other.resume_plan(&id, request)).expect_err("no takeover while the lease is live");
    assert_eq!(refused.reasons(), Some(&[ResumeIneligibleReason::StillRunning][..]), "{refused:?}");
    assert_eq!(block_on(other_store.content_fingerprint()).expect("fingerprint"), before, "a refusal writes nothing");
}

fn an_expired_lease_is_a_crash_another_runner_resumes<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let id = plan("leased-expired");
    let expires_at = start_leased(&store, &id, lease("runner-a", Duration::from_millis(20)));
    let other_store = fixture.reopen(&store);
    wait_for_expiry(&other_store, expires_at);
    let other = service(other_store.clone());
    let summary = block_on(other.build_resume_summary(&id, None)).expect("summary");
    assert!(summary.eligible, "an expired lease leaves the plan resumable: {:?}", summary.reasons);
    assert_eq!(summary.status, PlanStatus::Crashed);
    let interruption = summary.interruption.expect("the interruption is inferred");
    assert_eq!((interruption.reason.as_str(), interruption.inferred), (LEASE_EXPIRED_REASON, true));
    assert_eq!(interruption.at, Some(expires_at), "it stopped when its lease ran out");
    assert!(block_on(other.list_resumable()).expect("listing").iter().any(|s| s.plan_id == id));
    let request = ResumeRequest { lease: Some(lease("runner-b", Duration::from_secs(3600))), ..Default::default() };
    let outcome = block_on(other.resume_plan(&id, request)).expect("another runner takes over");
    assert_eq!(outcome.resumed.map(|p| p.from_step), Some(step(1)));
    assert_eq!(outcome.summary.status, PlanStatus::Running);
    let view = block_on(store.load_view(&id)).expect("load").expect("the plan exists");
    assert_eq!(view.state.lease.map(|l| l.runner), Some(runner("runner-b")), "the new lease replaced the old");
    let verdict = block_on(service(store.clone()).validate_eligibility(&id, None)).expect("eligibility");
    assert_eq!(verdict.reasons, vec![ResumeIneligibleReason::StillRunning], "the new runner holds it");
}

fn a_runner_taken_over_is_fenced<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let id = plan("leased-fenced");
    let expires_at = start_leased(&store, &id, lease("runner-a", Duration::from_millis(20)));
    let old = service(store.clone());
    let start =
        StepStart { lease: Some(lease("runner-a", Duration::from_millis(20))), ..StepStart::new(step(1), decision(1)) };
    block_on(old.record_step_started(&id, start)).expect("the holder starts a step under its lease");
    let expires_at =
        block_on(store.load_view(&id)).expect("load").and_then(|v| v.state.lease).map_or(expires_at, |l| l.expires_at);
    let new_store = fixture.reopen(&store);
    wait_for_expiry(&new_store, expires_at);
    let new = service(new_store.clone());
    let request = ResumeRequest { lease: Some(lease("runner-b", Duration::from_secs(3600))), ..Default::default() };
    let outcome = block_on(new.resume_plan(&id, request)).expect("takeover");
    assert!(outcome.resumed.is_some_and(|p| p.rerun_uncertain), "the old runner's step runs again");
    let before = block_on(store.content_fingerprint()).expect("fingerprint");
    let version = block_on(store.load_view(&id)).expect("load").expect("exists").version;
    let heartbeat = block_on(old.heartbeat(&id, runner("runner-a"), Duration::from_secs(3600)));
    match &heartbeat {
        Err(error @ ServiceError::Plan { source: PlanError::LeaseLost { runner: who, holder }, .. }) => {
            assert_eq!((who, holder), (&runner("runner-a"), &Some(runner("runner-b"))));
            assert_eq!((error.code(), error.kind()), ("lease_lost", crate::error::ErrorKind::Conflict));
        }
        other => panic!("the old runner's heartbeat must be lease_lost, got {other:?}"),
    }
    let start =
        StepStart { lease: Some(lease("runner-a", Duration::from_secs(3600))), ..StepStart::new(step(1), decision(1)) };
    let started = block_on(old.record_step_started(&id, start));
    assert!(
        matches!(started, Err(ServiceError::Plan { source: PlanError::LeaseLost { .. }, .. })),
        "the old runner starts no step: {started:?}"
    );
    assert_eq!(block_on(store.content_fingerprint()).expect("fingerprint"), before, "the fenced runner wrote nothing");
    let renewed =
        block_on(new.heartbeat(&id, runner("runner-b"), Duration::from_secs(7200))).expect("the new holder renews");
    assert_eq!(renewed.version, version + 1, "one lease_renewed");
    let held = renewed.state.lease.expect("still leased");
    assert!(held.runner == runner("runner-b") && held.expires_at > store_now(&store) + chrono::Duration::hours(1));
}

fn racing_resumes_have_one_winner<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let ids = populate(&store);
    let id = &ids[0];
    let services: Vec<_> = (0..4).map(|_| service(fixture.reopen(&store))).collect();
    let barrier = Barrier::new(services.len());
    let results: Vec<Result<(), ServiceError>> = std::thread::scope(|scope| {
        let threads: Vec<_> = services
            .iter()
            .map(|service| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    block_on(service.resume_plan(id, ResumeRequest::default())).map(|_| ())
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("resumer thread")).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "exactly one resume wins: {results:?}");
    for error in results.iter().filter_map(|r| r.as_ref().err()) {
        let lost_race = matches!(error, ServiceError::Store(StoreError::Conflict { .. }))
            || error.reasons() == Some(&[ResumeIneligibleReason::StillRunning][..]);
        assert!(lost_race, "a losing resume is a conflict or still_running, got {error:?}");
    }
    let resumed = read(&store, id, Select::All).iter().filter(|e| matches!(e.event, PlanEvent::Resumed(_))).count();
    assert_eq!(resumed, 1, "one Resumed event");
}

fn unknown_plans_are_not_found<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let service = service(store.clone());
    let id = plan("nobody");
    assert!(block_on(store.load_view(&id)).expect("load").is_none());
    assert!(block_on(store.load_summary_view(&id)).expect("load").is_none());
    assert!(matches!(block_on(service.history(&id)), Err(ServiceError::NotFound(_))));
    assert!(matches!(block_on(service.build_resume_summary(&id, None)), Err(ServiceError::NotFound(_))));
    let started = block_on(service.record_step_started(&id, StepStart::new(step(1), decision(1))));
    assert!(matches!(started, Err(ServiceError::NotFound(_))), "a command on an unknown plan: {started:?}");
    assert!(read_all(&store, Select::All).is_empty(), "nothing was written for an unknown plan");
}

fn large_events_round_trip<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let id = plan("large");
    // The longest message a plan accepts, with characters that need escaping and more than one byte.
    let long: String = "é\"\\\t✓ line\n".chars().cycle().take(Message::MAX_LEN).collect();
    let message = Message::parse(&long).expect("the longest valid message");
    let event = RecordedEvent {
        event_id: EventId::from_uuid(Uuid::new_v4()),
        recorded_at: at(1),
        event: PlanEvent::PlanErrored(waypoint_domain::PlanErrored { message }),
    };
    append(&store, &id, 0, vec![created("large"), event.clone()]).expect("append");
    let stored = read(&store, &id, Select::All);
    assert_eq!(stored[1].event, event.event, "the payload comes back exactly");
    assert_eq!(stored[1].recorded_at, event.recorded_at, "the recording time comes back exactly");
    assert_eq!(stored[1].event_id, event.event_id);
}

/// Steps of about 1 MiB of output each, more of them than one fork event carries: the fork
/// copies the rest in events of their own (a fork of 17 such steps would pass the file store's
/// 16 MiB record limit in one event). It succeeds, no event is larger than the source's largest
/// plus the fork's own budget, and the fork holds every output.
fn a_fork_of_large_outputs_fits_every_record<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let service = PlanResumeService::new(store.clone());
    let source = plan("large-outputs");
    let new = NewPlan { id: Some(source.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
    block_on(service.create_plan(new)).expect("create");
    let steps = (waypoint_domain::FORK_EVENT_CHECKPOINT_BYTES / StepOutput::MAX_ENCODED_LEN + 1) as u32;
    for n in 1..=steps {
        let text: String = format!("step {n} ").chars().cycle().take(StepOutput::MAX_ENCODED_LEN - 64).collect();
        let output = StepOutput::new(serde_json::json!({ "text": text })).expect("an output within the bound");
        let checkpoint = StepCheckpoint { output: Some(output), ..StepCheckpoint::new(step(n), decision(n)) };
        block_on(service.record_step_checkpoint(&source, checkpoint)).expect("checkpoint");
    }
    let fork = plan("large-outputs-fork");
    let forked = block_on(service.fork_plan(&source, Some(step(steps)), Some(fork.clone()))).expect("the fork fits");
    let events = read(&store, &fork, Select::All);
    assert!(events.len() > 1, "the checkpoints past the budget follow the fork event");
    for stored in &events {
        let size = stored.event.encode_data().len();
        let bound = waypoint_domain::FORK_EVENT_CHECKPOINT_BYTES + StepOutput::MAX_ENCODED_LEN + 64 * 1024;
        assert!(size <= bound, "a fork event of {size} bytes, more than {bound}");
    }
    let source_view = block_on(service.load(&source)).expect("source");
    let outputs = |view: &PlanView| view.state.resume.checkpoints.iter().map(|c| c.output.clone()).collect::<Vec<_>>();
    assert_eq!(outputs(&forked), outputs(&source_view), "the fork holds every output");
    let again = PlanResumeService::new(fixture.reopen(&store));
    let reread = block_on(again.load(&fork)).expect("the fork reads back");
    assert_eq!(outputs(&reread), outputs(&source_view));
    assert_eq!(reread.state.resume.last_completed_step, Some(step(steps)));
}

fn stats_count_the_log<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let ids = populate(&store);
    let stats = block_on(store.stats()).expect("stats");
    assert_eq!(stats.plans, ids.len() as u64);
    assert_eq!(stats.events, read_all(&store, Select::All).len() as u64);
    assert_eq!(stats.plans_by_state.values().sum::<u64>(), ids.len() as u64);
    assert!(stats.oldest_activity <= stats.newest_activity && stats.newest_activity.is_some());
}

fn remove(store: &impl PlanStore, plans: &[(PlanId, u32)]) -> crate::store::RemovalReport {
    block_on(store.remove_plans(plans, at(500), "kit-archive")).expect("remove_plans")
}

fn removal(store: &impl PlanStore, id: &PlanId) -> Option<Removal> {
    block_on(store.removal(id)).expect("removal")
}

fn removal_leaves_tombstones_and_keeps_the_rest<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let (a, b, c) = (plan("gone-a"), plan("kept-b"), plan("gone-c"));
    append(&store, &a, 0, vec![created("a"), phase_started()]).expect("a");
    append(&store, &b, 0, vec![created("b")]).expect("b");
    append(&store, &a, 2, vec![errored("a3")]).expect("a3");
    append(&store, &c, 0, vec![created("c")]).expect("c");
    append(&store, &b, 1, vec![phase_started()]).expect("b2");
    let b_before = read(&store, &b, Select::All);
    let before = block_on(store.content_fingerprint()).expect("fingerprint");
    let report = remove(&store, &[(a.clone(), 3), (c.clone(), 1)]);
    assert_eq!(report.removed, vec![a.clone(), c.clone()], "both plans removed, in the order asked");
    assert!(report.skipped.is_empty());
    assert_ne!(block_on(store.content_fingerprint()).expect("fingerprint"), before, "a removal writes");
    for handle in [store.clone(), fixture.reopen(&store)] {
        for gone in [&a, &c] {
            assert!(read(&handle, gone, Select::All).is_empty(), "a removed plan has no events");
            assert!(block_on(handle.load_view(gone)).expect("view").is_none());
            assert!(block_on(handle.load_summary_view(gone)).expect("summary").is_none());
        }
        let tombstone = removal(&handle, &a).expect("a tombstone for a removed plan");
        assert_eq!(
            tombstone,
            Removal { plan_id: a.clone(), version: 3, removed_at: at(500), archive: "kit-archive".into() }
        );
        assert_eq!(removal(&handle, &c).map(|r| r.version), Some(1));
        assert_eq!(removal(&handle, &b), None, "a kept plan has no tombstone");
        assert_eq!(removal(&handle, &plan("never")), None, "nor has a plan that never existed");
        let prefixed = |prefix: &str| -> Vec<PlanId> {
            let found = block_on(handle.removals_with_prefix(prefix)).expect("removals by prefix");
            found.into_iter().map(|r| r.plan_id).collect()
        };
        assert_eq!(prefixed("gone-"), vec![a.clone(), c.clone()], "every removed plan of a prefix, in id order");
        assert_eq!(prefixed("gone-c"), vec![c.clone()]);
        assert_eq!(prefixed("kept"), Vec::<PlanId>::new(), "a kept plan is no removal");
        assert_eq!(prefixed("gone_"), Vec::<PlanId>::new(), "`_` is a character, not a wildcard");
        assert_eq!(ids(&read(&handle, &b, Select::All)), ids(&b_before), "the kept plan is untouched");
        let catalog: Vec<PlanId> =
            block_on(handle.catalog()).expect("catalog").into_iter().map(|v| v.plan_id).collect();
        assert_eq!(catalog, vec![b.clone()], "the catalog lists only the kept plan");
        assert!(block_on(handle.open_catalog()).expect("open").iter().all(|v| v.plan_id == b));
        let all = read_all(&handle, Select::All);
        assert_eq!(ids(&all), ids(&b_before), "the log holds only the kept plan's events");
        assert!(all.windows(2).all(|w| w[0].sequence_number() < w[1].sequence_number()));
        let report = block_on(handle.verify()).expect("verify");
        assert!(report.ok, "verify passes after a removal: {report:?}");
        assert_eq!(block_on(handle.stats()).expect("stats").events, 2, "stats count what is left");
    }
    let last = read_all(&store, Select::All).last().map(|e| e.sequence_number()).expect("b's events");
    append(&store, &b, 2, vec![errored("after")]).expect("the kept plan still takes appends");
    let after = read_all(&store, Select::All);
    assert!(after.last().expect("events").sequence_number() > last, "new positions follow every earlier one");
}

fn removal_skips_plans_that_moved<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let a = plan("moved-a");
    append(&store, &a, 0, vec![created("a"), phase_started()]).expect("a");
    let report = remove(&store, &[(a.clone(), 1), (plan("moved-never"), 1), (plan("moved-none"), 0)]);
    assert!(report.removed.is_empty(), "nothing removed at a stale version or for unknown plans: {report:?}");
    assert_eq!(report.skipped, vec![a.clone(), plan("moved-never"), plan("moved-none")]);
    assert_eq!(read(&store, &a, Select::All).len(), 2, "the moved plan is whole");
    assert_eq!(removal(&store, &a), None);
    assert!(block_on(store.removals_with_prefix("moved")).expect("removals by prefix").is_empty(), "none removed");
    let again = remove(&store, &[(a.clone(), 2)]);
    assert_eq!(again.removed, vec![a.clone()]);
    let twice = remove(&store, &[(a.clone(), 2)]);
    assert_eq!(twice.skipped, vec![a.clone()], "a removed plan is not removed twice");
    assert_eq!(removal(&store, &a).map(|r| r.removed_at), Some(at(500)));
}

fn a_removed_id_is_never_reused<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let a = plan("reuse-a");
    append(&store, &a, 0, vec![created("a")]).expect("a");
    remove(&store, &[(a.clone(), 1)]);
    for handle in [store.clone(), fixture.reopen(&store)] {
        for expected in [0, 1] {
            match append(&handle, &a, expected, vec![created("again")]) {
                Err(StoreError::Removed { plan_id, removed_at }) => {
                    assert_eq!((plan_id, removed_at), (a.clone(), at(500)))
                }
                other => panic!("an append to a removed plan must be refused as removed, got {other:?}"),
            }
        }
        assert!(read(&handle, &a, Select::All).is_empty(), "the refused append left nothing");
    }
    let service = service(store.clone());
    let new = NewPlan { id: Some(a.clone()), ..NewPlan::default() };
    let created = block_on(service.create_plan(new));
    assert!(matches!(created, Err(ServiceError::Store(StoreError::Removed { .. }))), "{created:?}");
    match block_on(service.build_resume_summary(&a, None)) {
        Err(error @ ServiceError::Removed(_)) => {
            assert_eq!(error.code(), "plan_not_found");
            assert!(error.to_string().contains("removed by retention"), "{error}");
            assert!(error.to_string().contains("kit-archive"), "{error}");
        }
        other => panic!("a removed plan is not found, saying it was removed: {other:?}"),
    }
    assert!(matches!(block_on(service.history(&a)), Err(ServiceError::Removed(_))));
    let cancelled = block_on(service.cancel(&a, None));
    assert!(matches!(cancelled, Err(ServiceError::Removed(_))), "a command on a removed plan: {cancelled:?}");
}

fn removal_loses_no_concurrent_append<F: StoreFixture>(fixture: &F) {
    const APPENDS: u32 = 40;
    let store = fixture.fresh();
    let gone: Vec<PlanId> = (0..20).map(|i| plan(&format!("busy-gone-{i}"))).collect();
    let busy = plan("busy-writer");
    for id in &gone {
        append(&store, id, 0, vec![created("g"), phase_started(), errored("done")]).expect("gone");
    }
    append(&store, &busy, 0, vec![created("busy")]).expect("busy");
    let writer = fixture.reopen(&store);
    let targets: Vec<(PlanId, u32)> = gone.iter().map(|id| (id.clone(), 3)).collect();
    let report = std::thread::scope(|scope| {
        let appends = scope.spawn(|| {
            for v in 1..=APPENDS {
                append(&writer, &busy, v, vec![errored(&format!("e{v}"))]).expect("a concurrent append");
            }
        });
        let report = remove(&store, &targets);
        appends.join().expect("writer thread");
        report
    });
    assert_eq!(report.removed.len(), gone.len(), "{report:?}");
    for handle in [store.clone(), fixture.reopen(&store)] {
        let events = read(&handle, &busy, Select::All);
        assert_eq!(events.iter().map(|e| e.version()).collect::<Vec<_>>(), (1..=APPENDS + 1).collect::<Vec<_>>());
        assert_eq!(read_all(&handle, Select::All).len() as u32, APPENDS + 1, "only the writer's plan is left");
        assert!(block_on(handle.verify()).expect("verify").ok);
    }
}

fn import_keeps_histories_and_is_idempotent<F: StoreFixture>(fixture: &F) {
    let (source, target) = (fixture.fresh(), fixture.fresh());
    let (a, b) = (plan("import-a"), plan("import-b"));
    append(&source, &a, 0, vec![created("a"), phase_started(), errored("x")]).expect("a");
    append(&source, &b, 0, vec![created("b")]).expect("b");
    let histories = vec![read(&source, &a, Select::All), read(&source, &b, Select::All)];
    block_on(target.import_plans(histories.clone())).expect("import");
    for (id, history) in [(&a, &histories[0]), (&b, &histories[1])] {
        let held = read(&target, id, Select::All);
        assert_eq!(ids(&held), ids(history), "event ids kept");
        assert_eq!(
            held.iter().map(|e| e.recorded_at).collect::<Vec<_>>(),
            history.iter().map(|e| e.recorded_at).collect::<Vec<_>>()
        );
        assert_eq!(
            held.iter().map(|e| e.version()).collect::<Vec<_>>(),
            history.iter().map(|e| e.version()).collect::<Vec<_>>()
        );
    }
    let before = block_on(target.content_fingerprint()).expect("fingerprint");
    block_on(target.import_plans(histories)).expect("an import written again is skipped");
    assert_eq!(block_on(target.content_fingerprint()).expect("fingerprint"), before, "and writes nothing");
    let other = vec![vec![StoredEvent::from(a.clone(), created("other")).version(1).sequence_number(1)]];
    let clash = block_on(target.import_plans(other));
    assert!(matches!(clash, Err(StoreError::Conflict { .. })), "another history under a held id: {clash:?}");
    assert!(block_on(target.verify()).expect("verify").ok);
}

fn compaction_removes_only_old_finished_plans<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let archive = crate::InMemoryStore::new();
    // Interrupted, processing, and a plumbing plan whose phase completed: it is between phases
    // (the next one may still start), so it is not finished.
    let life = populate(&store);
    let service = service(store.clone());
    let (cancelled, errored, queued) = (plan("old-cancelled"), plan("old-errored"), plan("old-queued"));
    // A plan run from a definition (a plan file) runs one phase: its completed phase finishes it.
    let from_file = plan("old-plan-file");
    block_on(async {
        for id in [&cancelled, &errored, &queued] {
            let new = NewPlan { id: Some(id.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
            service.create_plan(new).await?;
        }
        service.cancel(&cancelled, None).await?;
        service.fail(&errored, Message::parse("boom").expect("valid")).await?;
        let new = NewPlan {
            id: Some(from_file.clone()),
            source: Some(Artifact::parse("/plans/nightly.toml").expect("valid")),
            start: Some((Phase::Strategize, None)),
            ..NewPlan::default()
        };
        service.create_plan(new).await?;
        service.complete_phase(&from_file).await?;
        Ok::<_, ServiceError>(())
    })
    .expect("setup");
    let clock = crate::ports::ManualClock::new(at(100));
    let late = PlanResumeService::new(store.clone()).with_clock(clock.clone());
    clock.advance(chrono::Duration::days(2));
    let recent = plan("recent-cancelled");
    let new = NewPlan { id: Some(recent.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
    block_on(late.create_plan(new)).expect("recent");
    block_on(late.cancel(&recent, None)).expect("recent cancelled");
    clock.advance(chrono::Duration::minutes(5));
    let request = CompactRequest { older_than: chrono::Duration::days(1), dry_run: true };
    let before = block_on(store.content_fingerprint()).expect("fingerprint");
    let preview: Compaction = block_on(late.compact(request, &archive, "kit-archive")).expect("dry run");
    assert_eq!(preview.removed, vec![cancelled.clone(), from_file.clone()], "only old finished plans, oldest first");
    assert_eq!(block_on(store.content_fingerprint()).expect("fingerprint"), before, "a dry run writes nothing");
    assert!(archive.all_events().is_empty(), "not even to the archive");
    let histories: Vec<Vec<StoredEvent>> = preview.removed.iter().map(|id| read(&store, id, Select::All)).collect();
    let done =
        block_on(late.compact(CompactRequest { dry_run: false, ..request }, &archive, "kit-archive")).expect("compact");
    assert_eq!(done.removed, preview.removed);
    for (id, history) in preview.removed.iter().zip(&histories) {
        assert_eq!(ids(&read(&archive, id, Select::All)), ids(history), "the archive holds {id}'s whole history");
        assert!(matches!(block_on(late.load(id)), Err(ServiceError::Removed(_))));
    }
    for kept in [&life[0], &life[1], &life[2], &errored, &queued, &recent] {
        assert!(block_on(late.load(kept)).is_ok(), "{kept} is kept");
    }
    let again =
        block_on(late.compact(CompactRequest { dry_run: false, ..request }, &archive, "kit-archive")).expect("again");
    assert!(again.removed.is_empty(), "nothing left to remove: {again:?}");
    assert!(block_on(store.verify()).expect("verify").ok);
}

fn step_log(step: u32, attempt: u32, stream: LogStream, bytes: &[u8], cut: u64) -> StepLog {
    let attempt = Attempt::new(attempt).expect("kit attempts are valid");
    StepLog { step: self::step(step), attempt, stream, bytes: bytes.to_vec(), cut }
}

fn put_log(store: &impl PlanStore, id: &PlanId, log: &StepLog) -> Result<(), StoreError> {
    block_on(store.put_step_log(id, log.clone()))
}

fn logs_of(store: &impl PlanStore, id: &PlanId, step: Option<u32>, attempt: Option<u32>) -> Vec<StepLog> {
    let step = step.map(self::step);
    let attempt = attempt.map(|n| Attempt::new(n).expect("kit attempts are valid"));
    block_on(store.step_logs(id, step, attempt)).expect("read step logs")
}

fn fingerprint(store: &impl PlanStore) -> String {
    block_on(store.content_fingerprint()).expect("fingerprint")
}

/// The longest log a store keeps, with every byte value (a log is bytes, not text).
fn longest_log() -> Vec<u8> {
    (0..STEP_LOG_CAP).map(|i| (i % 251) as u8).collect()
}

fn step_logs_round_trip_per_attempt<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let (id, neighbour) = (plan("logs"), plan("logs-neighbour"));
    append(&store, &id, 0, vec![created("logs")]).expect("the plan");
    append(&store, &neighbour, 0, vec![created("neighbour")]).expect("another plan");
    let (out, err) = (LogStream::Stdout, LogStream::Stderr);
    let written = vec![
        step_log(2, 1, err, b"two: warning\n", 0),
        step_log(1, 2, out, &longest_log(), 5 * 1024 * 1024 * 1024),
        step_log(1, 1, out, b"one: first try\n", 0),
        step_log(2, 1, out, b"two\n\0\xff not text\n", 0),
        step_log(1, 1, err, b"one: failed\n", 0),
        step_log(1, 2, err, b"", 0),
    ];
    let before = fingerprint(&store);
    for log in &written {
        put_log(&store, &id, log).expect("put a step log");
    }
    assert_ne!(fingerprint(&store), before, "a step log is written to the store");
    let mut expected = written.clone();
    expected.sort_by_key(StepLog::key);
    let keys = |logs: &[StepLog]| logs.iter().map(StepLog::key).collect::<Vec<_>>();
    for handle in [store.clone(), fixture.reopen(&store)] {
        assert_eq!(logs_of(&handle, &id, None, None), expected, "every log, by step, attempt and stream");
        let step_one = logs_of(&handle, &id, Some(1), None);
        assert_eq!(step_one, expected[..4].to_vec(), "filtered by step");
        assert_eq!(logs_of(&handle, &id, Some(1), Some(2)), expected[2..4].to_vec(), "by step and attempt");
        assert_eq!(keys(&logs_of(&handle, &id, None, Some(1))), keys(&[&expected[..2], &expected[4..]].concat()));
        assert!(logs_of(&handle, &id, Some(3), None).is_empty(), "a step without logs has none");
        assert!(logs_of(&handle, &neighbour, None, None).is_empty(), "logs are per plan");
        assert!(logs_of(&handle, &plan("logs-nobody"), None, None).is_empty(), "an unknown plan has none");
    }
    let fingerprint_before_reads = fingerprint(&store);
    logs_of(&store, &id, None, None);
    logs_of(&store, &id, Some(1), Some(1));
    assert_eq!(fingerprint(&store), fingerprint_before_reads, "reading logs writes nothing");

    // A later attempt adds its own logs; the earlier attempts' stay as they were.
    let third = step_log(1, 3, out, b"one: third try\n", 0);
    put_log(&store, &id, &third).expect("a later attempt");
    let step_one = logs_of(&store, &id, Some(1), None);
    assert_eq!(step_one[..4].to_vec(), expected[..4].to_vec(), "earlier attempts untouched");
    assert_eq!(step_one[4], third);

    // A runner puts the whole kept tail again as the step prints: the newest replaces the last.
    let grown = step_log(1, 1, out, b"one: first try\nand more\n", 7);
    put_log(&store, &id, &grown).expect("replace a log");
    let other = fixture.reopen(&store);
    assert_eq!(logs_of(&other, &id, Some(1), Some(1)), vec![grown.clone(), expected[1].clone()]);
    let emptied = step_log(1, 1, out, b"", 30);
    put_log(&other, &id, &emptied).expect("replace through another handle");
    assert_eq!(logs_of(&store, &id, Some(1), Some(1)), vec![emptied, expected[1].clone()]);
    assert_eq!(logs_of(&store, &id, Some(2), None), expected[4..].to_vec(), "other steps untouched");

    // Logs are not events: the plan's history, the catalog and verify do not see them.
    assert_eq!(read(&store, &id, Select::All).len(), 1, "no event was appended");
    assert_eq!(read_all(&store, Select::All).len(), 2);
    let report = block_on(store.verify()).expect("verify");
    assert!(report.ok, "verify passes with step logs in the store: {:?}", report.differences);
}

fn a_step_log_over_the_cap_is_refused<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let id = plan("logs-large");
    append(&store, &id, 0, vec![created("large")]).expect("the plan");
    let kept = step_log(1, 1, LogStream::Stdout, b"kept\n", 0);
    put_log(&store, &id, &kept).expect("a log within the cap");
    let before = fingerprint(&store);
    let mut too_long = longest_log();
    too_long.push(b'!');
    let refused = [
        step_log(1, 1, LogStream::Stdout, &too_long, 0),
        step_log(1, 2, LogStream::Stderr, &too_long, 0),
        step_log(1, 2, LogStream::Stderr, b"", StepLog::MAX_CUT + 1),
    ];
    for log in &refused {
        match put_log(&store, &id, log) {
            Err(StoreError::TooLarge(message)) => {
                assert!(message.contains("step 1 attempt"), "the message names the log: {message}")
            }
            other => panic!("a log over the limits must be too large, got {other:?}"),
        }
    }
    assert_eq!(fingerprint(&store), before, "a refused log writes nothing");
    assert_eq!(logs_of(&store, &id, None, None), vec![kept], "and leaves the stored log as it was");
    let at_the_cap = step_log(1, 2, LogStream::Stderr, &longest_log(), StepLog::MAX_CUT);
    put_log(&store, &id, &at_the_cap).expect("a log of exactly the cap with the largest cut");
    assert_eq!(logs_of(&store, &id, Some(1), Some(2)), vec![at_the_cap]);
}

fn a_step_log_of_an_unknown_plan_is_refused<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    append(&store, &plan("logs-someone"), 0, vec![created("someone")]).expect("another plan");
    let id = plan("logs-nobody");
    let before = fingerprint(&store);
    for handle in [store.clone(), fixture.reopen(&store)] {
        match put_log(&handle, &id, &step_log(1, 1, LogStream::Stdout, b"orphan\n", 0)) {
            Err(StoreError::PlanNotFound { plan_id }) => assert_eq!(plan_id, id),
            other => panic!("a log of a plan the store does not hold is refused, got {other:?}"),
        }
    }
    assert_eq!(fingerprint(&store), before, "nothing was written");
    assert!(logs_of(&store, &id, None, None).is_empty());
    let error = ServiceError::Store(StoreError::PlanNotFound { plan_id: id });
    assert_eq!((error.kind(), error.code()), (crate::ErrorKind::NotFound, "plan_not_found"));
}

fn compaction_archives_and_removes_step_logs<F: StoreFixture>(fixture: &F) {
    let (store, archive) = (fixture.fresh(), fixture.fresh());
    let service = service(store.clone());
    let (done, running) = (plan("logs-done"), plan("logs-running"));
    block_on(async {
        for id in [&done, &running] {
            let new = NewPlan { id: Some(id.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
            service.create_plan(new).await?;
        }
        Ok::<_, ServiceError>(())
    })
    .expect("setup");
    let done_logs = vec![
        step_log(1, 1, LogStream::Stdout, b"built\n", 0),
        step_log(1, 1, LogStream::Stderr, b"flaky\n", 0),
        step_log(1, 2, LogStream::Stdout, &longest_log(), 42),
        step_log(2, 1, LogStream::Stderr, b"", 0),
    ];
    for log in &done_logs {
        put_log(&store, &done, log).expect("a finished plan's log");
    }
    let running_log = step_log(1, 1, LogStream::Stdout, b"still going\n", 0);
    put_log(&store, &running, &running_log).expect("a running plan's log");
    block_on(service.cancel(&done, None)).expect("finish the plan");
    let history = ids_of(&store, &done);

    let clock = crate::ports::ManualClock::new(at(100));
    let late = PlanResumeService::new(store.clone()).with_clock(clock.clone());
    clock.advance(chrono::Duration::days(2));
    let request = CompactRequest { older_than: chrono::Duration::days(1), dry_run: true };
    let preview = block_on(late.compact(request, &archive, "kit-archive")).expect("dry run");
    assert_eq!(preview.removed, vec![done.clone()]);
    assert!(logs_of(&archive, &done, None, None).is_empty(), "a dry run copies no log");
    assert_eq!(logs_of(&store, &done, None, None), done_logs, "nor removes one");

    let request = CompactRequest { dry_run: false, ..request };
    let compacted = block_on(late.compact(request, &archive, "kit-archive")).expect("compact");
    assert_eq!(compacted.removed, vec![done.clone()]);
    for handle in [archive.clone(), fixture.reopen(&archive)] {
        assert_eq!(logs_of(&handle, &done, None, None), done_logs, "the archive holds every log of the plan");
        assert!(logs_of(&handle, &running, None, None).is_empty(), "and only the removed plan's");
    }
    assert_eq!(ids_of(&archive, &done), history, "next to its history");
    for handle in [store.clone(), fixture.reopen(&store)] {
        assert!(logs_of(&handle, &done, None, None).is_empty(), "a removed plan's logs are gone from the store");
        assert_eq!(logs_of(&handle, &running, None, None), vec![running_log.clone()], "a kept plan's stay");
        match put_log(&handle, &done, &step_log(3, 1, LogStream::Stdout, b"late\n", 0)) {
            Err(StoreError::Removed { plan_id, removed_at }) => {
                assert_eq!((plan_id, removed_at), (done.clone(), at(100) + chrono::Duration::days(2)))
            }
            other => panic!("a log of a removed plan is refused as removed, got {other:?}"),
        }
        assert!(logs_of(&handle, &done, None, None).is_empty(), "the refused log left nothing");
        assert!(block_on(handle.verify()).expect("verify").ok);
    }
    // Archived logs can be written again (an interrupted compaction runs again): they replace.
    put_log(&archive, &done, &done_logs[0]).expect("the archive takes a log of a plan it holds");
    assert_eq!(logs_of(&archive, &done, None, None), done_logs);
    let again = block_on(late.compact(request, &archive, "kit-archive")).expect("compact again");
    assert!(again.removed.is_empty(), "{again:?}");
    assert_eq!(logs_of(&archive, &done, None, None), done_logs, "a second compaction leaves the archive as it was");
}

// ---------------------------------------------------------------------------------------------
// Workers and queues (ADR 0017): claims, their fence, and queue limits.
// ---------------------------------------------------------------------------------------------

fn queue(name: &str) -> QueueName {
    QueueName::parse(name).expect("kit queue names are valid")
}

/// Submits plan `id` (two steps) to `queue_name`, waiting a moment first so submissions are
/// ordered in time.
fn submit_to<S: PlanStore>(store: &S, id: &str, queue_name: &str) -> PlanId {
    std::thread::sleep(Duration::from_millis(2));
    let service = PlanResumeService::new(store.clone());
    let definition = RunDefinition {
        name: PlanName::parse(id).expect("a name"),
        source: Artifact::parse(&format!("submitted:{id}.toml")).expect("a source"),
        fingerprint: None,
        steps: Vec::new(),
    };
    let submit = Submit {
        plan_id: plan(id),
        definition,
        submitted: SubmittedDefinition::new("plan_file", format!("name = {id:?}"), format!("{id}.toml"))
            .expect("a small definition"),
        queue: queue(queue_name),
        workdir: None,
    };
    let (view, created) = block_on(service.submit(submit)).expect("submit");
    assert!(created, "a new key makes a plan");
    view.plan_id
}

/// A worker's service: the system clock, as a worker has.
fn worker<S: PlanStore>(store: S) -> PlanResumeService<S> {
    PlanResumeService::new(store)
}

fn claim<S: PlanStore>(
    service: &PlanResumeService<S>,
    queue_name: &str,
    runner_name: &str,
    lease_for: Duration,
) -> Option<Claimed<S>> {
    block_on(service.claim(&queue(queue_name), lease(runner_name, lease_for))).expect("a claim answers")
}

fn racing_claims_have_exactly_one_claimant<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let id = submit_to(&store, "claim-race", "race");
    let services: Vec<_> = (0..4).map(|_| worker(fixture.reopen(&store))).collect();
    let barrier = Barrier::new(services.len());
    let claimed: Vec<Option<String>> = std::thread::scope(|scope| {
        let threads: Vec<_> = services
            .iter()
            .enumerate()
            .map(|(n, service)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let got = claim(service, "race", &format!("worker-{n}"), Duration::from_secs(3600));
                    got.map(|c| c.run.plan_id().to_string())
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("claimant thread")).collect()
    });
    let winners: Vec<_> = claimed.iter().flatten().collect();
    assert_eq!(winners, [&id.to_string()], "exactly one claimant: {claimed:?}");
    let starts =
        read(&store, &id, Select::All).iter().filter(|e| matches!(e.event, PlanEvent::PhaseStarted(_))).count();
    assert_eq!(starts, 1, "one phase_started");
}

fn a_claim_skips_a_plan_whose_lease_is_live<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let first = submit_to(&store, "live-first", "live");
    let second = submit_to(&store, "live-second", "live");
    let a = worker(store.clone());
    let held = claim(&a, "live", "worker-a", Duration::from_secs(3600)).expect("the oldest plan");
    assert_eq!(held.run.plan_id(), &first, "oldest submission first");
    let b = worker(fixture.reopen(&store));
    let next = claim(&b, "live", "worker-b", Duration::from_secs(3600)).expect("the next plan");
    assert_eq!(next.run.plan_id(), &second, "a live lease keeps its plan from other workers");
    assert!(claim(&b, "live", "worker-c", Duration::from_secs(3600)).is_none(), "nothing more to claim");
    assert!(claim(&b, "elsewhere", "worker-c", Duration::from_secs(3600)).is_none(), "another queue is empty");
}

/// A plan claimed by `worker-a` under a 20 ms lease, with its first step started, then taken over
/// by `worker-b` once the lease expired: (the old run, the new claim).
fn taken_over<F: StoreFixture>(fixture: &F, store: &F::Store, id: &str) -> (Claimed<F::Store>, Claimed<F::Store>) {
    let id = submit_to(store, id, "takeover");
    let a = worker(store.clone());
    let mut old = claim(&a, "takeover", "worker-a", Duration::from_millis(20)).expect("claimed");
    let turn = block_on(old.run.begin_step(step(1), &StepName::parse("one").expect("a name"))).expect("a step starts");
    assert!(matches!(turn, StepTurn::Run(_)), "the step runs");
    let expires_at =
        block_on(store.load_view(&id)).expect("load").and_then(|v| v.state.lease).expect("a lease").expires_at;
    let other = fixture.reopen(store);
    wait_for_expiry(&other, expires_at);
    let b = worker(other);
    let new = claim(&b, "takeover", "worker-b", Duration::from_secs(3600)).expect("the expired plan is claimable");
    (old, new)
}

fn a_plan_whose_lease_expired_is_claimable<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let (_old, mut new) = taken_over(fixture, &store, "expired-claim");
    assert_eq!(new.before.status, PlanStatus::Crashed, "it was claimed as crashed");
    assert_eq!(new.before.interruption.as_ref().map(|i| i.reason.as_str()), Some(LEASE_EXPIRED_REASON));
    let turn = block_on(new.run.begin_step(step(1), &StepName::parse("one").expect("a name"))).expect("step 1 again");
    match turn {
        StepTurn::Run(ticket) => {
            assert!(ticket.rerun, "the uncertain step runs again, named as such");
            assert_eq!(ticket.attempt.get(), 2, "attempts count on");
        }
        other => panic!("step 1 must run again, got {other:?}"),
    }
}

fn the_fence_refuses_a_worker_that_lost_its_lease<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let (mut old, _new) = taken_over(fixture, &store, "fenced-claim");
    let before = block_on(store.content_fingerprint()).expect("fingerprint");
    let heartbeat = block_on(old.run.heartbeat());
    assert!(
        matches!(heartbeat, Err(EngineError::Service(ServiceError::Plan { source: PlanError::LeaseLost { .. }, .. }))),
        "the old worker's heartbeat is lease_lost: {heartbeat:?}"
    );
    let step = block_on(old.run.begin_step(step(2), &StepName::parse("two").expect("a name")));
    assert!(step.is_err(), "the old worker starts no step: {step:?}");
    assert_eq!(block_on(store.content_fingerprint()).expect("fingerprint"), before, "the fenced worker wrote nothing");
}

fn queue_limits_hold_and_are_durable<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    for n in 0..3 {
        submit_to(&store, &format!("limited-{n}"), "limited");
    }
    let service = worker(store.clone());
    block_on(service.set_queue_limit(&queue("limited"), Some(2))).expect("set the limit");
    let reopened = fixture.reopen(&store);
    let limits = block_on(reopened.queue_limits()).expect("limits");
    assert_eq!(limits, [QueueLimit { queue: queue("limited"), limit: 2 }], "another handle sees the limit");
    let other = worker(reopened);
    let mut held = Vec::new();
    for n in 0..3 {
        if let Some(claimed) = claim(&other, "limited", &format!("worker-{n}"), Duration::from_secs(3600)) {
            held.push(claimed);
        }
    }
    assert_eq!(held.len(), 2, "at most two plans of the queue run");
    block_on(service.set_queue_limit(&queue("limited"), None)).expect("clear the limit");
    assert!(block_on(store.queue_limits()).expect("limits").is_empty());
    assert!(claim(&other, "limited", "worker-9", Duration::from_secs(3600)).is_some(), "no limit: the third runs");
}

/// The ids `queue_plans` answers for `queue_name`, in its order.
fn queued_ids(store: &impl PlanStore, queue_name: &str) -> Vec<String> {
    let views = block_on(store.queue_plans(&queue(queue_name))).expect("queue plans");
    views.iter().map(|v| v.plan_id.to_string()).collect()
}

fn a_queue_lists_its_own_plans_oldest_first<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    // Another handle that polls before, between and after the changes, as a worker does.
    let watcher = fixture.reopen(&store);
    assert!(queued_ids(&watcher, "alpha").is_empty(), "an empty store has empty queues");
    let clock = crate::ports::ManualClock::new(at(100));
    let submitter = PlanResumeService::new(store.clone()).with_clock(clock.clone());
    let submit = |id: &str, queue_name: &str| {
        let definition = RunDefinition::unnamed_steps(
            PlanName::parse(id).expect("a name"),
            Artifact::parse(&format!("submitted:{id}.toml")).expect("a source"),
        );
        let submitted = SubmittedDefinition::new("plan_file", format!("name = {id:?}"), format!("{id}.toml"))
            .expect("a small definition");
        let submit = Submit { plan_id: plan(id), definition, submitted, queue: queue(queue_name), workdir: None };
        assert!(block_on(submitter.submit(submit)).expect("submit").1, "a new key makes a plan");
    };
    submit("late", "alpha");
    clock.advance(chrono::Duration::seconds(-50));
    // Two submissions at one instant: ordered by plan id, not by arrival.
    submit("tie-z", "alpha");
    submit("tie-a", "alpha");
    fixture.settle(&store);
    submit("other", "beta");
    append(&store, &plan("plain"), 0, vec![created("plain")]).expect("a plan not submitted");
    for handle in [&store, &watcher] {
        assert_eq!(queued_ids(handle, "alpha"), ["tie-a", "tie-z", "late"], "oldest submission first, ties by id");
        assert_eq!(queued_ids(handle, "beta"), ["other"], "a queue holds only the plans submitted to it");
        assert!(queued_ids(handle, "gamma").is_empty(), "a queue nobody submitted to is empty");
    }

    let service = worker(store.clone());
    let first = claim(&service, "alpha", "worker-a", Duration::from_secs(3600)).expect("the oldest plan");
    assert_eq!(first.run.plan_id(), &plan("tie-a"));
    let second = claim(&service, "alpha", "worker-b", Duration::from_secs(3600)).expect("the next plan");
    assert_eq!(queued_ids(&watcher, "alpha"), ["tie-a", "tie-z", "late"], "running plans stay in their queue");
    block_on(service.fail(first.run.plan_id(), Message::parse("it failed").expect("a message"))).expect("fail");
    fixture.settle(&store);
    block_on(service.cancel(second.run.plan_id(), None)).expect("cancel");
    for handle in [&store, &watcher] {
        assert_eq!(queued_ids(handle, "alpha"), ["late"], "failed and cancelled plans leave their queue");
        assert_eq!(queued_ids(handle, "beta"), ["other"]);
    }
    let reopened = fixture.reopen(&store);
    assert_eq!(queued_ids(&reopened, "alpha"), ["late"], "a new handle sees the same queue");
}

// ---- the catalog a page at a time ----

fn recorded_at(mut event: RecordedEvent, seconds: i64) -> RecordedEvent {
    event.recorded_at = at(seconds);
    event
}

/// Every page of `query` at `limit` plans a page, until a short page ends the listing.
fn every_page(store: &impl PlanStore, query: &CatalogQuery, limit: usize) -> Vec<Vec<PlanView>> {
    let mut pages = Vec::new();
    let mut ask = query.clone().with_limit(limit);
    loop {
        let page = block_on(store.catalog_page(&ask)).expect("a catalog page");
        assert!(page.len() <= limit, "a page holds at most its limit: {} > {limit}", page.len());
        let end = page.len() < limit;
        ask = ask.after(page.last().map(CatalogCursor::after));
        pages.push(page);
        if end {
            return pages;
        }
        assert!(pages.len() < 1000, "the listing ends");
    }
}

fn ids_in(views: &[PlanView]) -> Vec<PlanId> {
    views.iter().map(|v| v.plan_id.clone()).collect()
}

/// What the listing of `query` is: the catalog filtered and sorted.
fn expected_listing(store: &impl PlanStore, query: &CatalogQuery) -> Vec<PlanView> {
    let mut views = block_on(store.catalog()).expect("catalog");
    views.retain(|v| query.admits(v));
    views.sort_by(listing_order);
    views
}

/// Twelve plans created at times with ties, half of them moved on later.
fn populate_listing<F: StoreFixture>(fixture: &F, store: &F::Store) -> Vec<PlanId> {
    let times = [5, 3, 3, 9, 1, 7, 7, 7, 2, 8, 4, 6];
    let ids: Vec<PlanId> = (0..times.len()).map(|i| plan(&format!("pg-{i:02}"))).collect();
    for (id, &t) in ids.iter().zip(&times) {
        append(store, id, 0, vec![recorded_at(created(&format!("Listing {id}")), t)]).expect("create");
    }
    // A nanosecond after two plans of equal time: before both, whatever their ids (a store
    // keeping microseconds would tie it with them).
    let mut later = recorded_at(phase_started(), 7);
    later.recorded_at += chrono::Duration::nanoseconds(1);
    append(store, &ids[9], 1, vec![later]).expect("a nanosecond later");
    fixture.settle(store);
    // Moved after the settle: their settled rows are older than what they are now.
    for (n, id) in ids.iter().enumerate().filter(|(n, _)| n % 2 == 0) {
        let t = if n % 4 == 0 { 20 } else { 10 + n as i64 };
        append(store, id, 1, vec![recorded_at(phase_started(), t)]).expect("move");
    }
    fixture.settle(store);
    append(store, &ids[1], 1, vec![recorded_at(phase_started(), 20)]).expect("a tie with the settled ones");
    append(store, &ids[4], 2, vec![recorded_at(errored("later"), 30)]).expect("a plan moved twice");
    ids
}

fn catalog_pages_follow_the_listing_order<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    assert!(block_on(store.catalog_page(&CatalogQuery::first(5))).expect("page").is_empty(), "an empty store");
    let ids = populate_listing(fixture, &store);
    let expected = expected_listing(&store, &CatalogQuery::first(1));
    assert_eq!(expected.len(), ids.len());
    for handle in [store.clone(), fixture.reopen(&store)] {
        for limit in [1, 3, 5, 12, 50] {
            let pages = every_page(&handle, &CatalogQuery::first(limit), limit);
            let listed: Vec<PlanView> = pages.into_iter().flatten().collect();
            assert_eq!(ids_in(&listed), ids_in(&expected), "pages of {limit}: newest activity first, ties by id");
            assert_eq!(listed, expected, "pages of {limit} hold the catalog's views");
        }
        let at_seven: Vec<PlanId> = expected
            .iter()
            .filter(|v| v.last_activity_at.timestamp() == at(7).timestamp())
            .map(|v| v.plan_id.clone())
            .collect();
        assert_eq!(at_seven, vec![ids[9].clone(), ids[5].clone(), ids[7].clone()], "nanoseconds before ids");
        let first = block_on(handle.catalog_page(&CatalogQuery::first(3))).expect("page");
        assert_eq!(ids_in(&first), vec![ids[4].clone(), ids[0].clone(), ids[1].clone()]);
        // A cursor between two plans of equal time.
        let cursor = CatalogCursor { last_activity_at: at(7), plan_id: ids[5].clone() };
        let after = block_on(handle.catalog_page(&CatalogQuery::first(2).after(Some(cursor)))).expect("page");
        assert_eq!(ids_in(&after), vec![ids[7].clone(), ids[11].clone()]);
    }
}

fn catalog_pages_continue_while_plans_move<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    populate_listing(fixture, &store);
    let before = ids_in(&expected_listing(&store, &CatalogQuery::first(1)));
    let mut seen: Vec<PlanId> = Vec::new();
    let mut moved: BTreeSet<PlanId> = BTreeSet::new();
    let mut ask = CatalogQuery::first(2);
    let mut round = 0;
    loop {
        let page = block_on(store.catalog_page(&ask)).expect("page");
        seen.extend(ids_in(&page));
        if page.len() < 2 {
            break;
        }
        ask = ask.after(page.last().map(CatalogCursor::after));
        // Between pages: a plan already listed moves, one not listed yet moves, a new one comes.
        round += 1;
        let listed = &page[0].plan_id;
        let ahead = before.iter().rev().find(|id| !seen.contains(id) && !moved.contains(*id)).cloned();
        for id in [Some(listed.clone()), ahead].into_iter().flatten() {
            let version = block_on(store.load_summary_view(&id)).expect("view").expect("exists").version;
            append(&store, &id, version, vec![recorded_at(errored("moved"), 100 + round)]).expect("move");
            moved.insert(id);
        }
        append(&store, &plan(&format!("pg-new-{round}")), 0, vec![recorded_at(created("new"), 100 + round)])
            .expect("a new plan");
        if round % 2 == 0 {
            fixture.settle(&store);
        }
    }
    let unique: BTreeSet<&PlanId> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no plan repeated across pages: {seen:?}");
    for id in before.iter().filter(|id| !moved.contains(*id)) {
        assert!(seen.contains(id), "plan {id}, which did not move, is listed: {seen:?}");
    }
    assert!(seen.iter().all(|id| !id.as_str().starts_with("pg-new")), "plans newer than the cursor are not listed");
}

fn catalog_pages_filter_open_and_text<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let ids = populate_listing(fixture, &store);
    let service = service(store.clone());
    block_on(service.cancel(&ids[2], None)).expect("cancel a settled plan");
    block_on(service.cancel(&ids[6], None)).expect("cancel another");
    fixture.settle(&store);
    block_on(service.cancel(&ids[8], None)).expect("cancel one after the settle");
    for handle in [store.clone(), fixture.reopen(&store)] {
        let open = CatalogQuery::first(1).only_open(true);
        let listed: Vec<PlanView> = every_page(&handle, &open, 4).into_iter().flatten().collect();
        assert_eq!(listed, expected_listing(&handle, &open), "open plans only");
        assert_eq!(listed.len(), ids.len() - 3);
        assert!(listed.iter().all(|v| ![&ids[2], &ids[6], &ids[8]].contains(&&v.plan_id)));
        let text = CatalogQuery::first(1).containing(Some("LISTING PG-1"));
        let listed: Vec<PlanView> = every_page(&handle, &text, 1).into_iter().flatten().collect();
        assert_eq!(ids_in(&listed), ids_in(&expected_listing(&handle, &text)), "by name, ignoring case");
        assert_eq!(listed.len(), 2, "pg-10 and pg-11: {:?}", ids_in(&listed));
        let by_id = CatalogQuery::first(1).containing(Some("g-0")).only_open(true);
        let listed: Vec<PlanView> = every_page(&handle, &by_id, 3).into_iter().flatten().collect();
        assert_eq!(ids_in(&listed), ids_in(&expected_listing(&handle, &by_id)), "by id, open only");
        assert_eq!(listed.len(), 7);
        let blank = CatalogQuery::first(50).containing(Some("  "));
        assert_eq!(block_on(handle.catalog_page(&blank)).expect("page").len(), ids.len(), "a blank text admits all");
    }
}

fn catalog_pages_never_list_removed_plans<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    let ids = populate_listing(fixture, &store);
    let version = |id: &PlanId| block_on(store.load_summary_view(id)).expect("view").expect("exists").version;
    let report = remove(&store, &[(ids[0].clone(), version(&ids[0])), (ids[9].clone(), version(&ids[9]))]);
    assert_eq!(report.removed.len(), 2);
    for settled in [false, true] {
        if settled {
            append(&store, &ids[2], version(&ids[2]), vec![recorded_at(errored("after"), 40)]).expect("append");
            fixture.settle(&store);
        }
        for handle in [store.clone(), fixture.reopen(&store)] {
            let listed: Vec<PlanView> = every_page(&handle, &CatalogQuery::first(1), 5).into_iter().flatten().collect();
            assert_eq!(ids_in(&listed).len(), ids.len() - 2, "settled: {settled}");
            assert!(!ids_in(&listed).contains(&ids[0]) && !ids_in(&listed).contains(&ids[9]));
            assert_eq!(listed, expected_listing(&handle, &CatalogQuery::first(1)));
        }
    }
}

/// Every batch a walk of the catalog hands over.
fn walk(store: &impl PlanStore, query: CatalogQuery) -> Vec<Vec<PlanView>> {
    let mut batches = Vec::new();
    block_on(store.walk_catalog(query, &mut |batch| {
        batches.push(batch);
        true
    }))
    .expect("a walk of the catalog");
    batches
}

fn a_walk_of_the_catalog_lists_each_plan_once_in_order<F: StoreFixture>(fixture: &F) {
    let store = fixture.fresh();
    assert!(walk(&store, CatalogQuery::first(3)).into_iter().flatten().next().is_none(), "an empty store");
    let ids = populate_listing(fixture, &store);
    let version = |id: &PlanId| block_on(store.load_summary_view(id)).expect("view").expect("exists").version;
    remove(&store, &[(ids[3].clone(), version(&ids[3]))]);
    for settled in [false, true] {
        if settled {
            append(&store, &ids[2], version(&ids[2]), vec![recorded_at(errored("after"), 40)]).expect("append");
            fixture.settle(&store);
        }
        for handle in [store.clone(), fixture.reopen(&store)] {
            for open_only in [false, true] {
                for batch in [1, 3, 50] {
                    let query = CatalogQuery::first(batch).only_open(open_only);
                    let batches = walk(&handle, query.clone());
                    assert!(batches.iter().all(|b| b.len() <= batch), "batches of at most {batch}");
                    let listed: Vec<PlanView> = batches.into_iter().flatten().collect();
                    let expected = expected_listing(&handle, &query);
                    assert_eq!(ids_in(&listed), ids_in(&expected), "batches of {batch}, open only {open_only}");
                    assert_eq!(listed, expected, "the walk holds the catalog's views");
                    assert!(!ids_in(&listed).contains(&ids[3]), "a removed plan is never listed");
                }
            }
            let mut visits = 0;
            block_on(handle.walk_catalog(CatalogQuery::first(2), &mut |_| {
                visits += 1;
                false
            }))
            .expect("a walk");
            assert_eq!(visits, 1, "a visitor that says stop gets no more batches");
        }
    }
}
