//! Retention in the file store: space really given back, a removal at the log's end, and a
//! process that opened before a removal and never writes a removed plan back.

use chrono::Utc;
use eventually::store::Expected;
use waypoint_application::domain::{Message, PlanErrored, PlanEvent};
use waypoint_application::testkit::plan_created;
use waypoint_application::RecordedEvent;
use waypoint_domain::{EventId, PlanId};

use crate::test_support::*;
use crate::{FileStore, StoreOptions};

/// An event of about 4 KiB, so each plan's records fill whole file-system blocks.
fn bulky() -> RecordedEvent {
    let message = Message::parse(&"x".repeat(4000)).unwrap();
    RecordedEvent {
        event_id: EventId::from_uuid(uuid::Uuid::new_v4()),
        recorded_at: Utc::now(),
        event: PlanEvent::PlanErrored(PlanErrored { message }),
    }
}

fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn fill(store: &FileStore, id: &PlanId, events: usize) {
    let mut batch = vec![plan_created()];
    batch.extend((1..events).map(|_| bulky()));
    store.append_events(id, Expected::Exact(0), batch).unwrap();
}

#[test]
fn removing_most_plans_gives_their_space_back_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let ids: Vec<PlanId> = (0..40).map(|i| plan(&format!("bulky-{i}"))).collect();
    for id in &ids {
        fill(&store, id, 8);
    }
    let log = dir.path().join("events.log");
    let (len_before, blocks_before) = (std::fs::metadata(&log).unwrap().len(), allocated(&log));
    let gone: Vec<(PlanId, u32)> = ids[..36].iter().map(|id| (id.clone(), 8)).collect();
    let report = store.remove_plan_events(&gone, Utc::now(), "archive").unwrap();
    assert_eq!(report.removed.len(), 36);
    assert!(report.reclaimed_bytes > 0, "{report:?}");
    let blocks_after = allocated(&log);
    assert_eq!(std::fs::metadata(&log).unwrap().len(), len_before, "the log keeps its length");
    assert!(
        blocks_after * 4 < blocks_before,
        "90% of the plans gone, most of their blocks given back: {blocks_before} -> {blocks_after}"
    );
    for handle in [store.clone(), FileStore::open(dir.path()).unwrap()] {
        for id in &ids[36..] {
            assert_eq!(handle.read_plan(id, 1).unwrap().len(), 8, "kept plan {id} is whole");
        }
        assert_eq!(handle.read_all(1).unwrap().count(), 4 * 8);
    }
}

#[test]
fn a_removal_at_the_end_of_the_log_leaves_room_for_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let (kept, gone) = (plan("kept"), plan("gone-last"));
    fill(&store, &kept, 2);
    fill(&store, &gone, 3);
    store.remove_plan_events(&[(gone.clone(), 3)], Utc::now(), "archive").unwrap();
    let next = plan("next");
    store.append_events(&next, Expected::Exact(0), vec![plan_created()]).unwrap();
    for handle in [store.clone(), FileStore::open(dir.path()).unwrap()] {
        let all: Vec<_> = handle.read_all(1).unwrap().map(Result::unwrap).collect();
        let positions: Vec<u32> = all.iter().map(|e| e.sequence_number()).collect();
        assert_eq!(positions, vec![1, 2, 6], "the removed positions 3-5 stay a gap, never reused");
        assert_eq!(handle.read_plan(&next, 1).unwrap().len(), 1);
    }
    let reopened = FileStore::open(dir.path()).unwrap();
    reopened.append_events(&next, Expected::Exact(1), vec![bulky()]).unwrap();
    assert_eq!(reopened.read_plan(&next, 1).unwrap().len(), 2);
}

#[test]
fn a_process_that_folded_a_plan_before_its_removal_never_writes_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { checkpoint_every: 1_000_000, ..StoreOptions::default() };
    let early = FileStore::open_with(dir.path(), options).unwrap();
    let gone = plan("folded-early");
    fill(&early, &gone, 3);
    assert!(early.summary_view(&gone).unwrap().is_some(), "the early process holds the plan in its tail");
    let compactor = FileStore::open(dir.path()).unwrap();
    compactor.remove_plan_events(&[(gone.clone(), 3)], Utc::now(), "archive").unwrap();
    let other = plan("written-after");
    early.append_events(&other, Expected::Exact(0), vec![plan_created()]).unwrap();
    early.checkpoint().unwrap();
    match early.append_events(&gone, Expected::Exact(3), vec![bulky()]) {
        Err(crate::FileStoreError::Removed { plan_id, .. }) => assert_eq!(plan_id, gone),
        other => panic!("an append to a removed plan is refused: {other:?}"),
    }
    for handle in [early, FileStore::open(dir.path()).unwrap()] {
        assert!(handle.summary_view(&gone).unwrap().is_none());
        assert!(!handle.catalog_snapshot().unwrap().plans.contains_key(&gone), "not listed again");
        assert!(handle.tombstone(&gone).unwrap().is_some());
        let report = futures::executor::block_on(waypoint_application::PlanStore::verify(&handle)).unwrap();
        assert!(report.ok, "{:?}", report.differences);
    }
}

/// A process that read the first records of a plan before the plan's later records were written
/// and the whole plan removed resumes its catch-up inside the removed range: it steps to the
/// range's end and counts only the positions it had not seen.
#[test]
fn a_catch_up_that_starts_inside_a_removed_range_steps_over_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { checkpoint_every: 1_000_000, ..StoreOptions::default() };
    let early = FileStore::open_with(dir.path(), options).unwrap();
    let gone = plan("read-half");
    fill(&early, &gone, 2);
    let late = FileStore::open(dir.path()).unwrap();
    late.append_events(&gone, Expected::Exact(2), vec![bulky(), bulky()]).unwrap();
    late.remove_plan_events(&[(gone.clone(), 4)], Utc::now(), "archive").unwrap();
    let next = plan("after-the-range");
    early.append_events(&next, Expected::Exact(0), vec![plan_created()]).unwrap();
    for handle in [early, FileStore::open(dir.path()).unwrap()] {
        let positions: Vec<u32> = handle.read_all(1).unwrap().map(|e| e.unwrap().sequence_number()).collect();
        assert_eq!(positions, vec![5], "the new record follows every removed position");
        assert!(handle.summary_view(&gone).unwrap().is_none());
    }
}

/// A removal that died after writing its tombstones but before its commit: while another
/// removal runs those plans take no append (it may be deciding on them), once none runs the
/// tombstones are void, and the next removal takes a new batch number, so they never count.
#[test]
fn tombstones_of_a_removal_that_died_before_its_commit_are_void() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let kept = plan("outlived-a-crash");
    fill(&store, &kept, 2);
    let layout = crate::layout::Layout::new(dir.path());
    let len = super::append_commit(&layout, super::Commit::Started { batch: 1 }, 0).unwrap();
    assert!(len > 0);
    store.shared.write_tombstones(&[super::Tombstone { plan: kept.clone(), batch: 1, version: 2 }]).unwrap();
    drop(store);

    let store = FileStore::open(dir.path()).unwrap();
    assert!(store.tombstone(&kept).unwrap().is_none(), "a tombstone whose batch never committed is void");
    let running = crate::fsutil::open_lock_file(&layout.checkpoint_lock()).unwrap();
    running.lock().unwrap();
    assert!(
        matches!(
            store.append_events(&kept, Expected::Exact(2), vec![bulky()]),
            Err(crate::FileStoreError::Removed { .. })
        ),
        "while a removal may be deciding on the plan, appends wait for its outcome"
    );
    running.unlock().unwrap();
    store
        .append_events(&kept, Expected::Exact(2), vec![bulky()])
        .expect("once no removal runs, the plan takes appends");
    let report = store.remove_plan_events(&[(kept.clone(), 3)], Utc::now(), "archive").unwrap();
    assert_eq!(report.removed, vec![kept.clone()]);
    let commits = super::read_commits(&layout, 0).unwrap().0;
    assert!(
        commits.iter().any(|c| matches!(c, super::Commit::Committed { batch: 2, .. })),
        "the next removal took a new number: {commits:?}"
    );
    assert_eq!(store.tombstone(&kept).unwrap().map(|r| r.version), Some(3));
}

/// A removal that died after its commit, before it finished: the plan is removed (its logs are
/// not read any more), and the next writable open finishes the batch, deleting its step logs
/// with its other files.
#[test]
fn finishing_a_batch_a_crash_interrupted_deletes_its_plans_step_logs() {
    use waypoint_application::{LogStream, StepLog};
    use waypoint_domain::{Attempt, StepNumber};

    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let (gone, kept) = (plan("removed-by-a-crashed-batch"), plan("kept-beside-it"));
    fill(&store, &gone, 2);
    fill(&store, &kept, 2);
    let log = |bytes: &[u8]| StepLog {
        step: StepNumber::FIRST,
        attempt: Attempt::FIRST,
        stream: LogStream::Stdout,
        bytes: bytes.to_vec(),
        cut: 0,
    };
    store.write_step_log(&gone, &log(b"gone")).unwrap();
    store.write_step_log(&kept, &log(b"kept")).unwrap();

    let layout = crate::layout::Layout::new(dir.path());
    die_after_commit(&store, std::slice::from_ref(&gone));
    assert!(layout.plan_logs(&gone).exists(), "the crash left the removed plan's logs on disk");
    assert!(store.read_step_logs(&gone, None, None).unwrap().is_empty(), "but a removed plan has no logs");
    drop(store);

    let store = FileStore::open(dir.path()).unwrap();
    assert!(!layout.plan_logs(&gone).exists(), "the open that finished the batch deleted them");
    assert!(store.tombstone(&gone).unwrap().is_some());
    assert!(matches!(store.write_step_log(&gone, &log(b"late")), Err(crate::FileStoreError::Removed { .. })));
    assert!(!layout.plan_logs(&gone).exists(), "a refused log leaves nothing");
    assert_eq!(store.read_step_logs(&kept, None, None).unwrap(), vec![log(b"kept")], "the kept plan's logs stay");
    let report = futures::executor::block_on(waypoint_application::PlanStore::verify(&store)).unwrap();
    assert!(report.ok, "{:?}", report.differences);
}

/// Runs `remove_plans` of `gone` up to its commit point, as a process killed right after it
/// would leave the store: the batch committed, nothing of it finished.
fn die_after_commit(store: &FileStore, gone: &[PlanId]) {
    use std::collections::HashSet;

    let layout = crate::layout::Layout::new(store.dir());
    store.checkpoint().unwrap();
    let len = super::append_commit(&layout, super::Commit::Started { batch: 1 }, 0).unwrap();
    let tombstones: Vec<super::Tombstone> =
        gone.iter().map(|plan| super::Tombstone { plan: plan.clone(), batch: 1, version: 2 }).collect();
    store.shared.write_tombstones(&tombstones).unwrap();
    let log_end = store.shared.lock_state().end;
    let keep_last = crate::catalog::read_head(&layout).unwrap().map(|head| head.last.offset);
    let (holes, keep) = store.shared.find_holes(&gone.iter().collect::<HashSet<_>>(), log_end, keep_last).unwrap();
    let batch = super::Batch { batch: 1, plans: gone.iter().map(|plan| (plan.clone(), 2)).collect(), holes, keep };
    crate::fsutil::write_atomically(
        &layout.tmp_dir(),
        &layout.retention_dir(),
        &layout.retention_batch(1),
        &crate::frame::encode(super::BATCH_MAGIC, &batch),
    )
    .unwrap();
    let commit = super::Commit::Committed { batch: 1, log_end, removed_at: Utc::now(), archive: "archive".into() };
    super::append_commit(&layout, commit, len).unwrap();
}

/// `store verify` opens read-only, so it cannot finish a batch a killed compaction committed:
/// it counts the batch's plans as removed, and finds no difference where the next writable open
/// has only work left to do.
#[test]
fn verify_after_a_compaction_killed_past_its_commit_point_finds_nothing_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let kept = plan("kept-beside-it");
    let gone: Vec<PlanId> = (0..20).map(|i| plan(&format!("removed-{i}"))).collect();
    for id in gone.iter().chain([&kept]) {
        fill(&store, id, 2);
    }
    die_after_commit(&store, &gone);
    drop(store);
    let before = crate::fingerprint::of_dir(dir.path()).unwrap();
    let read_only = FileStore::open_read_only(dir.path()).unwrap();
    let report = futures::executor::block_on(waypoint_application::PlanStore::verify(&read_only)).unwrap();
    assert!(report.ok, "{:?}", report.differences);
    assert_eq!(crate::fingerprint::of_dir(dir.path()).unwrap(), before, "verify wrote nothing");
    drop(read_only);
    let store = FileStore::open(dir.path()).unwrap();
    let report = futures::executor::block_on(waypoint_application::PlanStore::verify(&store)).unwrap();
    assert!(report.ok, "{:?}", report.differences);
}
