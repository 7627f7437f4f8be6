//! The store as its users see it: given a store and events, when we append, reopen or read,
//! then the log holds exactly what was acknowledged, and read-only opens change nothing.

use eventually::store::{EventStore, Expected};
use futures::executor::block_on;
use waypoint_application::domain::{DecisionId, Message, Phase, StepNumber, TotalSteps};
use waypoint_application::{
    NewPlan, PlanResumeService, PlanStore, ResumeRequest, RunLocks, StepCheckpoint, StoreError,
};

use crate::test_support::*;
use crate::{FileStore, FileStoreError};

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
            service.record_step_checkpoint(&id, StepCheckpoint::new(step, decision_id)).await.unwrap();
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
fn read_only_commands_leave_the_store_bytes_identical() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let plans = [plan("a"), plan("b")];
    fill(&store, &plans, 5);
    let _runner = store.run_locks().acquire(&plans[0], &runner()).unwrap();
    let before = snapshot(dir.path());
    let read_only = FileStore::open_read_only(dir.path()).unwrap();
    let service = PlanResumeService::new(read_only.clone());
    block_on(async {
        service.list_plans().await.unwrap();
        service.history(&plans[1]).await.unwrap();
        service.resume_plan(&plans[1], ResumeRequest { dry_run: true, ..ResumeRequest::default() }).await.unwrap();
    });
    assert!(read_only.run_locks().is_held(&plans[0]), "held by a runner of this very process");
    assert!(read_only.run_locks().acquire(&plans[1], &runner()).is_err());
    drop(read_only);
    assert_eq!(snapshot(dir.path()), before);
}
