//! Run locks: exclusive between runners (also within one process), seen by every probe, released
//! on drop.

use waypoint_application::{RunLockError, RunLocks};

use crate::test_support::*;
use crate::FileStore;

#[test]
fn run_locks_are_exclusive_and_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let locks = store.run_locks();
    let id = plan("p1");
    assert!(!locks.is_held(&id));
    let guard = locks.acquire(&id, &runner()).unwrap();
    // An OS lock belongs to its open file: this process's own probe sees it held too.
    assert!(locks.is_held(&id));
    assert!(matches!(locks.acquire(&id, &runner()), Err(RunLockError::Busy { .. })));
    drop(guard);
    assert!(!locks.is_held(&id));
    let _again = locks.acquire(&id, &runner()).unwrap();
}
