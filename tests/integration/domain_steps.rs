//! Named steps, outputs and attempts, as given(events) / when(command) / then(events or error).

use chrono::Duration;
use serde_json::json;
use waypoint_domain::{Attempt, AttemptFailure, Phase, PlanCommand, PlanError, PlanEvent, ProcessingState, StepName};

use crate::domain_history::{epoch, start_command, step, step_name, History};

fn working(total: u32) -> History {
    History::new().created(Some(total)).started(Phase::Strategize, Some("runner-1"))
}

/// Runs `when` against `given` and checks that it was refused with nothing recorded.
fn refused(mut given: History, when: PlanCommand) -> PlanError {
    let before = given.events.len();
    let error = given.try_run(when).expect_err("the command is refused");
    assert_eq!(given.events.len(), before, "a refused command records nothing");
    error
}

fn mismatch(step_number: u32, recorded: &str, given: &str) -> PlanError {
    PlanError::StepMismatch { step: step(step_number), recorded: step_name(recorded), given: step_name(given) }
}

#[test]
fn a_checkpoint_carries_its_name_output_and_fingerprint_into_the_state() {
    let mut given = working(3);
    let when = given.named_checkpoint_command(1, "build", Some(json!({"version": "1.4.0"})), Some("b1"));
    let then = given.try_run(when).expect("accepted");
    let [PlanEvent::StepCompleted(completed)] = then.as_slice() else { panic!("got {then:?}") };
    assert_eq!(completed.name.as_ref().map(StepName::as_str), Some("build"));
    assert_eq!(completed.output.as_ref().map(|o| o.as_value().clone()), Some(json!({"version": "1.4.0"})));
    let checkpoint = given.state().resume.checkpoint(step(1)).expect("step 1 is recorded").clone();
    assert_eq!((checkpoint.name, checkpoint.output), (completed.name.clone(), completed.output.clone()));
    assert_eq!(checkpoint.fingerprint.map(|f| f.to_string()), Some("b1".to_owned()));
}

#[test]
fn an_exact_retry_with_name_and_output_appends_nothing() {
    let mut given = working(3);
    let first = given.named_checkpoint_command(1, "build", Some(json!([1, 2])), Some("b1"));
    given = given.run(first);
    // The fingerprint is not part of the payload: the same work reported again is a retry.
    let retry = given.named_checkpoint_command(1, "build", Some(json!([1, 2])), Some("b2"));
    assert_eq!(given.try_run(retry), Ok(vec![]));
}

#[test]
fn a_retry_with_another_output_is_a_conflict() {
    let mut given = working(3);
    let first = given.named_checkpoint_command(1, "build", Some(json!({"a": 1})), None);
    given = given.run(first);
    let when = given.named_checkpoint_command(1, "build", Some(json!({"a": 2})), None);
    assert!(matches!(refused(given, when), PlanError::ConflictingCheckpoint { .. }));
}

#[test]
fn a_null_output_is_no_output() {
    let mut given = working(3);
    let first = given.named_checkpoint_command(1, "build", Some(serde_json::Value::Null), None);
    let then = given.try_run(first).expect("accepted");
    let [PlanEvent::StepCompleted(completed)] = then.as_slice() else { panic!("got {then:?}") };
    assert_eq!(completed.output, None);
    let retry = given.named_checkpoint_command(1, "build", None, None);
    assert_eq!(given.try_run(retry), Ok(vec![]));
}

#[test]
fn a_retry_of_a_completed_step_under_another_name_is_a_step_mismatch() {
    let mut given = working(3).named_step_completed(1, "build", None);
    let when = given.named_checkpoint_command(1, "lint", None, None);
    assert_eq!(refused(given, when), mismatch(1, "build", "lint"));
}

#[test]
fn completing_the_uncertain_step_under_another_name_is_a_step_mismatch() {
    let mut given = working(3).named_step_started(1, "build", 1);
    let when = given.named_checkpoint_command(1, "lint", None, None);
    let error = refused(given, when);
    assert_eq!(error, mismatch(1, "build", "lint"));
    assert_eq!(error.code(), "step_mismatch");
    assert!(error.to_string().contains(r#""build""#) && error.to_string().contains(r#""lint""#), "{error}");
}

#[test]
fn starting_the_uncertain_step_again_under_another_name_is_a_step_mismatch() {
    let given = working(3).named_step_started(1, "build", 1);
    assert_eq!(refused(given, start_command(1, "lint", 2)), mismatch(1, "build", "lint"));
}

#[test]
fn a_step_without_a_name_matches_any_name() {
    let mut given = working(3).step_started(1);
    let when = given.named_checkpoint_command(1, "build", None, None);
    assert!(given.try_run(when).is_ok());
}

fn attempt_failed(n: u32, attempt: u32, reason: AttemptFailure) -> PlanCommand {
    PlanCommand::RecordAttemptFailed {
        step: step(n),
        attempt: Attempt::new(attempt).expect("a valid attempt"),
        reason,
        retry_at: Some(epoch() + Duration::hours(1)),
    }
}

#[test]
fn a_failed_attempt_keeps_the_plan_processing_and_the_next_attempt_starts_afresh() {
    let mut given = working(3).named_step_started(1, "build", 1);
    let then = given.try_run(attempt_failed(1, 1, AttemptFailure::Exit { code: 3 })).expect("accepted");
    let [PlanEvent::StepAttemptFailed(failed)] = then.as_slice() else { panic!("got {then:?}") };
    assert_eq!((failed.step, failed.attempt.get(), &failed.reason), (step(1), 1, &AttemptFailure::Exit { code: 3 }));
    assert_eq!(given.state().state, ProcessingState::Processing);
    assert_eq!(given.state().resume.uncertain_step, None, "the attempt's outcome is known");
    let given = given.named_step_started(1, "build", 2);
    assert_eq!(given.state().resume.uncertain_attempt.map(Attempt::get), Some(2));
    let mut given = given;
    let when = given.named_checkpoint_command(1, "build", None, None);
    assert!(given.try_run(when).is_ok(), "the second attempt completes the step");
}

#[test]
fn only_the_running_attempt_can_fail() {
    let not_started = working(3);
    assert!(matches!(
        refused(not_started, attempt_failed(1, 1, AttemptFailure::Timeout)),
        PlanError::AttemptNotRunning { uncertain: None, .. }
    ));
    let other_attempt = working(3).named_step_started(1, "build", 2);
    let error = refused(other_attempt, attempt_failed(1, 1, AttemptFailure::Signal { signal: 9 }));
    assert_eq!(error.code(), "attempt_not_running");
    let already_failed =
        working(3).named_step_started(1, "build", 1).run(attempt_failed(1, 1, AttemptFailure::Timeout));
    assert!(matches!(
        refused(already_failed, attempt_failed(1, 1, AttemptFailure::Timeout)),
        PlanError::AttemptNotRunning { .. }
    ));
}

#[test]
fn a_failed_attempt_needs_a_processing_plan() {
    let interrupted = working(3).named_step_started(1, "build", 1).shut_down("SIGTERM");
    assert!(matches!(
        refused(interrupted, attempt_failed(1, 1, AttemptFailure::Timeout)),
        PlanError::InvalidState { .. }
    ));
}
