//! Turning stored records into events: an old schema version is upcast on read.

use eventually::store::Expected;
use waypoint_domain::PlanEvent;

use crate::test_support::*;
use crate::FileStore;

#[test]
fn an_old_schema_version_is_upcast_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    store.append_events(&plan("old"), Expected::Exact(0), vec![created()]).unwrap();
    drop(store);
    let v1 =
        br#"{"checkpoint_id":"6f1c1d4e-8f7a-4a55-9b43-2d1f0f4c8a11","step":1,"decision_id":"d-1","snapshot_id":null}"#;
    append_raw(dir.path(), crate::record::RawRecord { version: 2, ..raw(2, "old", "step_completed", 1, v1) });
    let store = FileStore::open(dir.path()).unwrap();
    let events = store.read_plan(&plan("old"), 1).unwrap();
    match &events[1].event {
        PlanEvent::StepCompleted(step) => assert!(step.artifacts.is_empty()),
        other => panic!("expected a step_completed, got {other:?}"),
    }
}
