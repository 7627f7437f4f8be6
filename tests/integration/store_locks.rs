//! OS locks across processes: a plan's run lock is busy while another process holds it and free
//! once that process dies; `repair` refuses a store another process has open.

use waypoint_application::domain::PlanId;
use waypoint_application::domain::RunnerId;
use waypoint_application::{RunLockError, RunLocks};
use waypoint_store_file::{FileStore, FileStoreError};

use super::store_child::spawn;

#[test]
fn store_run_lock_is_held_by_a_live_runner_and_released_by_its_death() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let locks = store.run_locks();
    let plan = PlanId::parse("locked").unwrap();
    let runner = spawn(&["hold-lock", dir.path().to_str().unwrap(), "locked"]);
    runner.wait_ready();
    assert!(locks.is_held(&plan));
    assert!(FileStore::open_read_only(dir.path()).unwrap().run_locks().is_held(&plan));
    let me = RunnerId::parse("test-runner").unwrap();
    assert!(matches!(locks.acquire(&plan, &me), Err(RunLockError::Busy { .. })));
    runner.kill_and_collect();
    assert!(!locks.is_held(&plan), "the OS released the dead runner's lock");
    let _guard = locks.acquire(&plan, &me).unwrap();
}

#[test]
fn store_repair_refuses_a_store_open_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let holder = spawn(&["hold-open", dir.path().to_str().unwrap()]);
    holder.wait_ready();
    let error = waypoint_store_file::repair(dir.path()).unwrap_err();
    assert!(matches!(error, FileStoreError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("repair again"), "{error}");
    holder.kill_and_collect();
    let report = waypoint_store_file::repair(dir.path()).unwrap();
    assert_eq!(report.damage_at, None);
}
