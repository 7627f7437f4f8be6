//! Unit tests for the file store: given a store and events, when we append/reopen/read, then
//! the log holds exactly what was acknowledged.

use std::os::unix::fs::PermissionsExt;

use eventually::store::{EventStore, Expected, Select};
use futures::executor::block_on;
use futures::TryStreamExt;
use waypoint_application::domain::{DecisionId, Message, Phase, StepNumber, TotalSteps};
use waypoint_application::{
    NewPlan, PlanResumeService, PlanStore, RecordedEvent, ResumeRequest, RunLockProbe, StepCheckpoint, StoreError,
    StoredEvent,
};
use waypoint_domain::{EventId, PlanCreated, PlanEvent, PlanId};

use crate::{FileStore, FileStoreError};

pub(crate) fn plan(id: &str) -> PlanId {
    PlanId::parse(id).expect("valid plan id")
}

pub(crate) fn created() -> RecordedEvent {
    let at = chrono::Utc::now();
    RecordedEvent {
        event_id: EventId::from_uuid(uuid::Uuid::new_v4()),
        recorded_at: at,
        event: PlanEvent::PlanCreated(PlanCreated {
            name: None,
            total_steps: None,
            fingerprint: None,
            source: None,
            created_at: at,
        }),
    }
}

fn all_events(store: &FileStore) -> Vec<StoredEvent> {
    block_on(async { store.stream_all(Select::All).await?.try_collect::<Vec<_>>().await }).expect("stream all")
}

#[test]
fn a_plan_lives_through_interruption_and_resume_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let service = PlanResumeService::new(FileStore::open(dir.path()).unwrap());
        block_on(async {
            let plan = service
                .create_plan(NewPlan { total_steps: Some(TotalSteps::new(3).unwrap()), ..NewPlan::default() })
                .await
                .unwrap();
            let id = plan.plan_id;
            service.start_phase(&id, Phase::Strategize, None).await.unwrap();
            let step = StepNumber::new(1).unwrap();
            let decision_id = DecisionId::parse("d-1").unwrap();
            service
                .record_step_checkpoint(&id, StepCheckpoint { step, decision_id, snapshot_id: None, artifacts: vec![] })
                .await
                .unwrap();
            service.record_shutdown(&id, Message::parse("Ctrl-C").unwrap()).await.unwrap();
            id
        })
    };
    let store = FileStore::open(dir.path()).unwrap();
    let service = PlanResumeService::new(store.clone());
    let outcome = block_on(service.resume_plan(&id, ResumeRequest::default())).unwrap();
    assert_eq!(outcome.resumed.unwrap().from_step, StepNumber::new(2).unwrap());
    let history = block_on(service.history(&id)).unwrap();
    let versions: Vec<u32> = history.iter().map(eventually::versioning::Versioned::version).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
    let reopened = FileStore::open_read_only(dir.path()).unwrap();
    assert_eq!(block_on(reopened.load_view(&id)).unwrap(), block_on(store.load_view(&id)).unwrap());
    assert_eq!(block_on(reopened.catalog()).unwrap().len(), 1);
}

#[test]
fn an_append_at_a_stale_version_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = FileStore::open(dir.path()).unwrap();
    let mut second = FileStore::open(dir.path()).unwrap();
    let id = plan("p1");
    assert_eq!(block_on(first.append(id.clone(), Expected::Exact(0), vec![created()])).unwrap(), 1);
    let error = block_on(second.append(id.clone(), Expected::Exact(0), vec![created()])).unwrap_err();
    assert!(matches!(error, StoreError::Conflict { expected: 0, actual: 1, .. }), "{error}");
    assert_eq!(all_events(&second).len(), 1);
}

#[test]
fn files_and_directories_are_private_whatever_the_umask() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    let mut store = FileStore::open(&dir).unwrap();
    block_on(store.append(plan("p1"), Expected::Exact(0), vec![created()])).unwrap();
    let _guard = store.run_locks().acquire(&plan("p1")).unwrap();
    for entry in walk(&dir) {
        let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
        let want = if entry.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{}", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_read_only_open_of_a_missing_store_is_not_found_and_creates_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("absent");
    assert!(matches!(FileStore::open_read_only(&dir), Err(FileStoreError::NotFound { .. })));
    assert!(!dir.exists());
}

#[test]
fn a_read_only_store_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    drop(FileStore::open(dir.path()).unwrap());
    let mut store = FileStore::open_read_only(dir.path()).unwrap();
    let error = block_on(store.append(plan("p1"), Expected::Any, vec![created()])).unwrap_err();
    assert!(matches!(error, StoreError::Unsupported(_)), "{error}");
}

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

#[test]
fn load_view_keeps_every_checkpoint_so_a_retry_of_an_older_step_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let service = PlanResumeService::new(FileStore::open(dir.path()).unwrap());
    block_on(async {
        let id = service.create_plan(NewPlan::default()).await.unwrap().plan_id;
        service.start_phase(&id, Phase::Strategize, None).await.unwrap();
        let checkpoint = |n: u32| StepCheckpoint {
            step: StepNumber::new(n).unwrap(),
            decision_id: DecisionId::parse(&format!("d-{n}")).unwrap(),
            snapshot_id: None,
            artifacts: vec![],
        };
        for n in 1..=3 {
            service.record_step_checkpoint(&id, checkpoint(n)).await.unwrap();
        }
        let retry = service.record_step_checkpoint(&id, checkpoint(1)).await.unwrap();
        assert!(!retry.appended);
        let full = service.store().load_view(&id).await.unwrap().unwrap();
        assert_eq!(full.state.resume.checkpoints.len(), 3);
        let summary = service.store().load_summary_view(&id).await.unwrap().unwrap();
        assert_eq!(summary.state.resume.checkpoints.len(), 1);
    });
}
