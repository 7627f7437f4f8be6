//! Run locks: exclusive between runners, invisible to their own holder, released on drop.

use waypoint_application::RunLockProbe;

use crate::test_support::*;
use crate::{FileStore, FileStoreError};

#[test]
fn run_locks_are_exclusive_and_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let locks = store.run_locks();
    let id = plan("p1");
    assert!(!locks.is_held(&id));
    let guard = locks.acquire(&id).unwrap();
    // Held by this process: not "someone else".
    assert!(!locks.is_held(&id));
    assert!(matches!(locks.acquire(&id), Err(FileStoreError::RunLockBusy { .. })));
    drop(guard);
    let _again = locks.acquire(&id).unwrap();
}
