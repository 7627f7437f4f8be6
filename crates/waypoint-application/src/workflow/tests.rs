//! Workflows: given a store and an earlier run, when the code runs its steps again, then completed
//! steps give back their recorded outputs and only the rest runs.

use std::cell::Cell;

use futures::executor::block_on;
use waypoint_domain::{PlanEvent, PlanId, ProcessingState, ResumeIneligibleReason, StepNumber};

use super::{StepOptions, WorkflowError};
use crate::{InMemoryStore, PlanResumeService};

type Service = PlanResumeService<InMemoryStore>;

fn key(name: &str) -> PlanId {
    PlanId::parse(name).unwrap()
}

/// Runs a three-step workflow, counting the steps that really ran; stops after `stop_after`
/// steps by dropping the run, as a crash would.
fn three_steps(
    service: &Service,
    id: &PlanId,
    ran: &Cell<u32>,
    stop_after: Option<u32>,
) -> Result<String, WorkflowError> {
    block_on(async {
        let mut run = service.workflow(id).await?;
        let count = || ran.set(ran.get() + 1);
        let fetched: Vec<u32> = run
            .step("fetch", |_| async {
                count();
                Ok::<_, String>(vec![1, 2, 3])
            })
            .await?;
        if stop_after == Some(1) {
            return Ok("stopped".into());
        }
        let total: u32 = run
            .step("sum", |_| async {
                count();
                Ok::<_, String>(fetched.iter().sum())
            })
            .await?;
        if stop_after == Some(2) {
            return Ok("stopped".into());
        }
        let text: String = run
            .step("render", |_| async move {
                count();
                Ok::<_, String>(format!("total {total}"))
            })
            .await?;
        run.finish().await?;
        Ok(text)
    })
}

#[test]
fn a_crashed_workflow_continues_with_the_recorded_outputs_and_runs_each_step_once() {
    let service = PlanResumeService::new(InMemoryStore::new());
    let id = key("report");
    let ran = Cell::new(0);
    assert_eq!(three_steps(&service, &id, &ran, Some(2)).unwrap(), "stopped");
    assert_eq!(ran.get(), 2);
    assert_eq!(three_steps(&service, &id, &ran, None).unwrap(), "total 6", "the sum came back from the log");
    assert_eq!(ran.get(), 3, "only the third step ran on the second run");
    let state = block_on(service.load(&id)).unwrap().state;
    assert_eq!(state.state, ProcessingState::Complete);
    let outputs: Vec<String> =
        state.resume.checkpoints.iter().map(|c| c.output.as_ref().unwrap().as_value().to_string()).collect();
    assert_eq!(outputs, ["[1,2,3]", "6", "\"total 6\""]);
    // A finished key replays: every step gives back its recorded output, nothing runs.
    let events = block_on(service.history(&id)).unwrap().len();
    assert_eq!(three_steps(&service, &id, &ran, None).unwrap(), "total 6");
    assert_eq!(ran.get(), 3, "nothing ran on the replay");
    assert_eq!(block_on(service.history(&id)).unwrap().len(), events, "a replay writes nothing");
}

#[test]
fn renaming_a_completed_step_is_a_step_mismatch_naming_both() {
    let service = PlanResumeService::new(InMemoryStore::new());
    let id = key("drift");
    three_steps(&service, &id, &Cell::new(0), Some(1)).unwrap();
    let result = block_on(async {
        let mut run = service.workflow(&id).await?;
        run.step("download", |_| async { Ok::<_, String>(vec![0u32]) }).await
    });
    match result {
        Err(WorkflowError::StepMismatch { step, recorded, given }) => {
            assert_eq!((step.get(), recorded.as_str(), given.as_str()), (1, "fetch", "download"));
        }
        other => panic!("expected step_mismatch, got {other:?}"),
    }
}

#[test]
fn a_failing_step_is_recorded_and_the_next_run_starts_there() {
    let service = PlanResumeService::new(InMemoryStore::new());
    let id = key("flaky");
    let failed = block_on(async {
        let mut run = service.workflow(&id).await?;
        run.step("one", |_| async { Ok::<_, String>(1u8) }).await?;
        run.step("two", |_| async { Err::<u8, _>("the network is down") }).await
    });
    assert!(
        matches!(&failed, Err(WorkflowError::StepFailed { message, .. }) if message == "the network is down"),
        "{failed:?}"
    );
    let view = block_on(service.load(&id)).unwrap();
    assert_eq!(view.state.state, ProcessingState::Errored);
    assert!(view.state.last_error.unwrap().as_str().contains("the network is down"));
    let second = block_on(async {
        let mut run = service.workflow(&id).await?;
        assert_eq!(run.resumed_from(), Some(StepNumber::new(2).unwrap()));
        let one: u8 = run.step("one", |_| async { Err::<u8, _>("must not run") }).await?;
        let two: u8 = run.step("two", |ctx| async move { Ok::<_, String>(if ctx.rerun { 2 } else { 0 }) }).await?;
        Ok::<_, WorkflowError>((one, two))
    });
    assert_eq!(second.unwrap(), (1, 2), "step two knows it runs again");
}

#[test]
fn a_panicking_step_is_recorded_as_a_failure_and_the_panic_goes_on() {
    let service = PlanResumeService::new(InMemoryStore::new());
    let id = key("panics");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(async {
            let mut run = service.workflow(&id).await.unwrap();
            let _: Result<u8, _> = run
                .step("boom", |_| async {
                    if true {
                        panic!("the model returned nonsense");
                    }
                    Ok::<u8, String>(0)
                })
                .await;
        })
    }));
    assert!(outcome.is_err(), "the panic reaches the caller");
    let view = block_on(service.load(&id)).unwrap();
    assert_eq!(view.state.state, ProcessingState::Errored);
    assert!(view.state.last_error.unwrap().as_str().contains("the model returned nonsense"));
    assert!(block_on(service.validate_eligibility(&id, None)).unwrap().eligible, "it can run again");
}

#[test]
fn an_oversized_output_is_a_typed_error_and_nothing_is_checkpointed() {
    let service = PlanResumeService::new(InMemoryStore::new());
    let id = key("large");
    let result = block_on(async {
        let mut run = service.workflow(&id).await?;
        run.step("huge", |_| async { Ok::<_, String>("x".repeat(2 * 1024 * 1024)) }).await
    });
    match result {
        Err(WorkflowError::StepFailed { message, .. }) => assert!(message.contains("cannot be recorded"), "{message}"),
        other => panic!("an output that cannot be recorded fails the attempt, got {other:?}"),
    }
    let events = block_on(service.history(&id)).unwrap();
    assert!(!events.iter().any(|e| matches!(e.event, PlanEvent::StepCompleted(_))), "no checkpoint was recorded");
}

#[test]
fn a_running_workflow_cannot_be_continued_elsewhere() {
    let service = PlanResumeService::new(InMemoryStore::new());
    let id = key("busy");
    block_on(async {
        let _first = service.workflow(&id).await.unwrap();
        match service.workflow(&id).await {
            Err(WorkflowError::StillRunning { plan_id }) => assert_eq!(plan_id, id),
            other => panic!("expected still_running, got {other:?}"),
        }
    });
}

#[test]
fn a_shutdown_request_records_the_interruption_before_the_next_step() {
    let service = PlanResumeService::new(InMemoryStore::new());
    let id = key("stop");
    let stopped = block_on(async {
        let mut run = service.workflow(&id).await?;
        let token = run.shutdown_token();
        run.step("one", |_| async move {
            token.request();
            Ok::<_, String>(1u8)
        })
        .await?;
        run.step("two", |_| async { Ok::<_, String>(2u8) }).await
    });
    match stopped {
        Err(WorkflowError::Interrupted { next_step, .. }) => assert_eq!(next_step.get(), 2),
        other => panic!("expected an interruption, got {other:?}"),
    }
    let summary = block_on(service.build_resume_summary(&id, None)).unwrap();
    assert!(summary.interrupted && summary.eligible, "{summary:?}");
    assert_eq!(summary.next_step, StepNumber::new(2).ok());
    assert!(!summary.reasons.contains(&ResumeIneligibleReason::StillRunning));
}

#[test]
fn a_failed_attempt_is_retried_with_the_same_options_as_a_plan_file_step() {
    let service = PlanResumeService::new(InMemoryStore::new());
    let id = key("retried");
    let attempts = Cell::new(0u32);
    let value = block_on(async {
        let mut run = service.workflow(&id).await?;
        let options = StepOptions::named("flaky").retries(2).retry_delay(std::time::Duration::from_millis(1));
        let value: u32 = run
            .step_with(options, |ctx| {
                attempts.set(attempts.get() + 1);
                async move {
                    if ctx.attempt.get() < 3 {
                        Err(format!("attempt {} failed", ctx.attempt.get()))
                    } else {
                        Ok(ctx.attempt.get())
                    }
                }
            })
            .await?;
        run.finish().await?;
        Ok::<_, WorkflowError>(value)
    });
    assert_eq!(value.unwrap(), 3, "the third attempt succeeded");
    assert_eq!(attempts.get(), 3);
    let failed: Vec<u32> = block_on(service.history(&id))
        .unwrap()
        .iter()
        .filter_map(|e| match &e.event {
            PlanEvent::StepAttemptFailed(failed) => Some(failed.attempt.get()),
            _ => None,
        })
        .collect();
    assert_eq!(failed, [1, 2], "each failed attempt is on record");
}

#[test]
fn an_async_step_past_its_timeout_is_cancelled_and_fails_the_attempt() {
    let service = PlanResumeService::new(InMemoryStore::new());
    let id = key("slow");
    let started = std::time::Instant::now();
    let result = block_on(async {
        let mut run = service.workflow(&id).await?;
        let options = StepOptions::named("wait").timeout(std::time::Duration::from_millis(50));
        run.step_with(options, |_| futures::future::pending::<Result<u8, String>>()).await
    });
    match result {
        Err(WorkflowError::StepFailed { message, .. }) => assert!(message.contains("timed out"), "{message}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "the pending step was cancelled");
    let state = block_on(service.load(&id)).unwrap().state;
    assert_eq!(state.state, ProcessingState::Errored);
}

#[test]
fn an_approval_step_waits_for_a_person_then_gives_back_the_decision() {
    let service = PlanResumeService::new(InMemoryStore::new());
    let id = key("release");
    let ran = Cell::new(0u32);
    let run_it = || {
        block_on(async {
            let mut run = service.workflow(&id).await?;
            run.step("build", |_| async {
                ran.set(ran.get() + 1);
                Ok::<_, String>(1u8)
            })
            .await?;
            let decision = run.approval("deploy", "Deploy to production?").await?;
            run.finish().await?;
            Ok::<_, WorkflowError>(decision)
        })
    };
    match run_it() {
        Err(WorkflowError::Waiting { step, question, .. }) => {
            assert_eq!((step.get(), question.as_str()), (2, "Deploy to production?"))
        }
        other => panic!("the first run stops to ask: {other:?}"),
    }
    let summary = block_on(service.build_resume_summary(&id, None)).unwrap();
    assert_eq!(summary.status, waypoint_domain::PlanStatus::Waiting);
    assert!(matches!(run_it(), Err(WorkflowError::Waiting { .. })), "still waiting until someone decides");
    let alice = waypoint_domain::Actor::parse("alice").unwrap();
    block_on(service.approve(&id, None, alice.clone(), None)).unwrap();
    // The same approval again is idempotent; a rejection now is refused.
    block_on(service.approve(&id, None, alice.clone(), None)).unwrap();
    let reason = waypoint_domain::Message::parse("too late").unwrap();
    assert!(block_on(service.reject(&id, None, alice, reason)).is_err());
    let decision = run_it().unwrap();
    assert!(decision.approved);
    assert_eq!(decision.by.as_str(), "alice");
    assert_eq!(ran.get(), 1, "the build ran once");
    assert_eq!(run_it().unwrap(), decision, "a finished workflow gives the decision back");
}

#[test]
fn a_pause_stops_the_workflow_at_its_next_step() {
    let service = PlanResumeService::new(InMemoryStore::new());
    let id = key("pausable");
    let stopped = block_on(async {
        let mut run = service.workflow(&id).await?;
        let by = waypoint_domain::Actor::parse("ops").unwrap();
        run.step("one", |_| async { Ok::<_, String>(1u8) }).await?;
        service.pause(&id, by, None).await?;
        run.step("two", |_| async { Ok::<_, String>(2u8) }).await
    });
    match stopped {
        Err(WorkflowError::Interrupted { next_step, reason, .. }) => {
            assert_eq!((next_step.get(), reason.as_str()), (2, "paused"))
        }
        other => panic!("the pause stops the run before step 2: {other:?}"),
    }
    let summary = block_on(service.build_resume_summary(&id, None)).unwrap();
    assert_eq!(summary.status, waypoint_domain::PlanStatus::Paused);
    assert!(summary.eligible, "a paused plan continues when run again");
}
