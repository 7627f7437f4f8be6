//! `repair`: it refuses an open store, backs the log up, and cuts damage with what follows it.

use crate::test_support::*;
use crate::{FileStore, FileStoreError, StoreOptions};

#[test]
fn damage_behind_a_checkpoint_is_reported_when_read_and_repair_cuts_it_with_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { checkpoint_every: 2, ..Default::default() };
    let store = FileStore::open_with(dir.path(), options).unwrap();
    fill(&store, &[plan("r1")], 6);
    drop(store);
    let records = records(dir.path());
    let (offset, _) = records[2];
    let log = log_of(dir.path());
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[offset as usize + 30] ^= 0xFF;
    std::fs::write(&log, &bytes).unwrap();

    let store = FileStore::open(dir.path()).unwrap();
    let error = store.read_all(1).unwrap().find_map(Result::err).expect("the damage is reported");
    assert!(matches!(error, FileStoreError::Corrupt { offset: o, .. } if o == offset), "{error}");
    let error = store.read_plan(&plan("r1"), 1).unwrap_err();
    assert!(matches!(error, FileStoreError::Corrupt { offset: o, .. } if o == offset), "{error}");
    assert!(matches!(crate::repair(dir.path()), Err(FileStoreError::Locked { .. })), "repair needs the store closed");
    drop(store);

    let report = crate::repair(dir.path()).unwrap();
    assert_eq!(report.damage_at, Some(offset));
    assert_eq!(report.records_kept, 2);
    assert_eq!(report.intact_records_removed, 3);
    assert_eq!(std::fs::read(report.backup.unwrap()).unwrap(), bytes, "the backup is the log as it was");
    assert_eq!(std::fs::read(report.quarantined.unwrap()).unwrap(), bytes[offset as usize..]);
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.read_plan(&plan("r1"), 1).unwrap().len(), 2);
    assert_eq!(store.summary_view(&plan("r1")).unwrap().unwrap().version, 2);

    let clean = crate::repair(tempfile::tempdir().unwrap().path()).unwrap();
    assert_eq!(clean.damage_at, None);
}

/// Ranges that retention removed read as zeros: repair steps over them like every reader, finds
/// nothing to cut, and the removed plans stay removed.
#[test]
fn repair_after_a_removal_finds_no_damage_and_keeps_the_removal() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let plans: Vec<_> = (0..6).map(|i| plan(&format!("r{i}"))).collect();
    for id in &plans {
        fill(&store, std::slice::from_ref(id), 3);
    }
    let gone: Vec<_> = plans.iter().step_by(2).map(|id| (id.clone(), 3)).collect();
    store.remove_plan_events(&gone, chrono::Utc::now(), "archive").unwrap();
    drop(store);

    let report = crate::repair(dir.path()).unwrap();
    assert_eq!(report.damage_at, None, "{report:?}");
    assert_eq!(report.records_kept, 9, "the kept plans' records");
    let store = FileStore::open(dir.path()).unwrap();
    for (i, id) in plans.iter().enumerate() {
        let events = store.read_plan(id, 1).unwrap().len();
        assert_eq!(events, if i % 2 == 0 { 0 } else { 3 }, "plan {id}");
        assert_eq!(store.tombstone(id).unwrap().is_some(), i % 2 == 0);
    }
    let report = futures::executor::block_on(waypoint_application::PlanStore::verify(&store)).unwrap();
    assert!(report.ok, "{:?}", report.differences);
}
