//! Creating a plan and entering its first phase in one append: both events land together, or
//! neither does.

use futures::executor::block_on;
use waypoint_application::domain::{Phase, PlanError, ProcessingState, RunnerId, CRASH_REASON};
use waypoint_application::{InMemoryStore, NewPlan, PlanResumeService, ServiceError};

#[test]
fn a_plan_created_with_a_start_is_processing_under_its_runner_after_one_append() {
    let store = InMemoryStore::new();
    let service = PlanResumeService::new(store.clone());
    let runner = RunnerId::parse("runner-1").unwrap();
    let new = NewPlan { start: Some((Phase::Strategize, Some(runner.clone()))), ..NewPlan::default() };

    let view = block_on(service.create_plan(new)).expect("created and started");

    assert_eq!(view.version, 2);
    assert_eq!((view.state.phase, view.state.state), (Phase::Strategize, ProcessingState::Processing));
    assert_eq!(view.state.runner, Some(runner));
    let types: Vec<&str> = store.all_events().iter().map(|e| e.event.event_type().as_str()).collect();
    assert_eq!(types, ["plan_created", "phase_started"]);
    // The runner holds no lock any more (none exist here): a crash, and resumable.
    let summary = block_on(service.build_resume_summary(&view.plan_id, None)).unwrap();
    assert!(summary.eligible, "{summary:?}");
    assert_eq!(summary.interruption.map(|i| i.reason), Some(CRASH_REASON.to_owned()));
}

#[test]
fn a_refused_start_creates_nothing() {
    let store = InMemoryStore::new();
    let service = PlanResumeService::new(store.clone());
    let new = NewPlan { start: Some((Phase::Execute, None)), ..NewPlan::default() };

    let error = block_on(service.create_plan(new)).expect_err("action cannot jump to execute");

    assert!(matches!(error, ServiceError::Plan { source: PlanError::InvalidPhaseTransition { .. }, .. }), "{error:?}");
    assert!(store.all_events().is_empty(), "nothing may be appended");
}
