//! The step engine: given a store and earlier runs, when a surface runs steps through the
//! engine, then attempts count on across runs, failures follow one rule, and finished keys
//! replay.

use std::time::Duration;

use futures::executor::block_on;
use waypoint_domain::{
    Fingerprint, PlanEvent, PlanName, ProcessingState, RunnerId, StepDefinition, StepName, StepNumber,
};

use super::*;
use crate::{InMemoryStore, PlanResumeService};

type Service = PlanResumeService<InMemoryStore>;

fn key(name: &str) -> WorkflowKey {
    WorkflowKey::parse(name).unwrap()
}

fn definition(key: &WorkflowKey) -> RunDefinition {
    RunDefinition::unnamed_steps(PlanName::parse("test").unwrap(), key.source())
}

fn runner() -> RunnerId {
    RunnerId::parse("engine-test").unwrap()
}

fn step(n: u32) -> StepNumber {
    StepNumber::new(n).unwrap()
}

fn name(text: &str) -> StepName {
    StepName::parse(text).unwrap()
}

async fn open(service: &Service, key: &WorkflowKey, new: bool) -> Result<Prepared<InMemoryStore>, EngineError> {
    service.prepare_run(key, definition(key), runner(), new).await
}

async fn start(service: &Service, key: &WorkflowKey) -> EngineRun<InMemoryStore> {
    match open(service, key, false).await.unwrap() {
        Prepared::Fresh(ready) | Prepared::Continue(ready, _) => ready.start().await.unwrap(),
        other => panic!("expected a run, got {other:?}"),
    }
}

async fn run_attempt(run: &mut EngineRun<InMemoryStore>, n: u32) -> AttemptTicket {
    match run.begin_step(step(n), &name(&format!("s{n}"))).await.unwrap() {
        StepTurn::Run(ticket) => ticket,
        StepTurn::Replay(_) | StepTurn::Paused => panic!("step {n} should run"),
    }
}

#[test]
fn attempt_numbers_go_on_across_runs_and_decision_ids_follow_them() {
    block_on(async {
        let service = PlanResumeService::new(InMemoryStore::new());
        let key = key("attempts");
        let policy = StepPolicy { retries: 1, ..StepPolicy::default() };
        let mut run = start(&service, &key).await;
        let first = run_attempt(&mut run, 1).await;
        assert_eq!(first.attempt.get(), 1);
        let retry = run.attempt_failed(&first, StepFailure::Exit { code: 3 }, &policy, None).await.unwrap();
        assert_eq!(retry, Retry { delay: Duration::ZERO, retries_left: 0 });
        let second = run_attempt(&mut run, 1).await;
        assert_eq!(second.attempt.get(), 2);
        let failed =
            run.attempt_failed(&second, StepFailure::Exit { code: 3 }, &policy, Some("GPU not available")).await;
        match failed {
            Err(EngineError::StepFailed { message, .. }) => {
                assert_eq!(message.as_str(), "step 1 (s1) exited with code 3; stderr ends with:\nGPU not available")
            }
            other => panic!("the last attempt fails the plan: {other:?}"),
        }
        drop(run);
        // The next run: a fresh retry budget, attempt numbers counting on.
        let mut run = start(&service, &key).await;
        let third = run_attempt(&mut run, 1).await;
        assert_eq!(third.attempt.get(), 3, "attempt 3, not 1 again");
        assert_eq!(third.decision_id.as_str(), "step-1-a3");
        run.completed(&third, StepResult::default()).await.unwrap();
        let next = run_attempt(&mut run, 2).await;
        assert_eq!(next.attempt.get(), 1, "another step starts at attempt 1");
    });
}

#[test]
fn a_run_stopped_while_waiting_to_retry_continues_with_the_next_attempt_number() {
    block_on(async {
        let service = PlanResumeService::new(InMemoryStore::new());
        let key = key("waiting");
        let policy = StepPolicy { retries: 3, retry_delay: Duration::from_secs(60), ..StepPolicy::default() };
        let mut run = start(&service, &key).await;
        let first = run_attempt(&mut run, 1).await;
        let retry =
            run.attempt_failed(&first, StepFailure::Timeout { limit: Duration::from_secs(5) }, &policy, None).await;
        assert_eq!(retry.unwrap(), Retry { delay: Duration::from_secs(60), retries_left: 2 });
        assert_eq!(run.interrupt("SIGINT received").await.unwrap(), Stopped::Interrupted);
        drop(run);
        let mut run = start(&service, &key).await;
        let again = run_attempt(&mut run, 1).await;
        assert_eq!(again.attempt.get(), 2);
        assert!(!again.rerun, "the failed attempt's outcome is known: not a rerun of an uncertain step");
    });
}

#[test]
fn the_retry_delay_doubles_and_is_capped() {
    let policy = StepPolicy { retries: 20, retry_delay: Duration::from_secs(2), timeout: None };
    let delays: Vec<u64> = (1..=5).map(|n| policy.delay_after(n).as_secs()).collect();
    assert_eq!(delays, [2, 4, 8, 16, 32]);
    assert_eq!(policy.delay_after(12), MAX_RETRY_DELAY);
    assert_eq!(policy.delay_after(100), MAX_RETRY_DELAY);
}

#[test]
fn durations_print_as_the_plan_file_writes_them() {
    let shown: Vec<String> = [500, 1_000, 90_000, 150_000, 3_600_000, 5_400_000, 1_500]
        .into_iter()
        .map(|ms| format_duration(Duration::from_millis(ms)))
        .collect();
    assert_eq!(shown, ["500ms", "1s", "1m30s", "2m30s", "1h", "1h30m", "1500ms"]);
}

#[test]
fn durations_read_as_people_write_them_and_every_printed_one_reads_back() {
    for (text, ms) in [
        ("90s", 90_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("250ms", 250),
        ("2", 2_000),
        ("30d", 30 * 86_400_000),
        ("2m30s", 150_000),
        ("1h2m3s", 3_723_000),
        (" 5m ", 300_000),
    ] {
        assert_eq!(parse_duration(text), Some(Duration::from_millis(ms)), "{text}");
    }
    for bad in ["soon", "-1s", "", "s", "30s2m", "1m1m", "1.5s", "5 weeks"] {
        assert_eq!(parse_duration(bad), None, "{bad:?}");
    }
    for ms in [0, 1, 999, 1_000, 1_500, 59_999, 60_000, 61_000, 3_599_000, 3_600_000, 3_723_000, 90_061_000] {
        let duration = Duration::from_millis(ms);
        assert_eq!(parse_duration(&format_duration(duration)), Some(duration), "{}", format_duration(duration));
    }
}

#[test]
fn a_finished_key_is_given_back_and_new_starts_the_next_generation() {
    block_on(async {
        let service = PlanResumeService::new(InMemoryStore::new());
        let key = key("finished");
        let mut run = start(&service, &key).await;
        let ticket = run_attempt(&mut run, 1).await;
        run.completed(&ticket, StepResult::default()).await.unwrap();
        run.finish().await.unwrap();
        match open(&service, &key, false).await.unwrap() {
            Prepared::Finished(finished) => {
                assert_eq!(finished.view.plan_id.as_str(), "finished");
                assert_eq!(finished.view.state.resume.checkpoints.len(), 1);
                assert!(finished.view.state.is_finished(), "a workflow records its source");
            }
            other => panic!("a finished key replays: {other:?}"),
        }
        let Prepared::Fresh(ready) = open(&service, &key, true).await.unwrap() else { panic!("new starts afresh") };
        assert!(ready.plan_id().as_str().starts_with("finished-g2-"), "{}", ready.plan_id());
        let run = ready.start().await.unwrap();
        drop(run);
        assert_eq!(service.newest_generation(&key).await.unwrap(), Some(2));
    });
}

#[test]
fn a_held_plan_is_still_running() {
    block_on(async {
        let service = PlanResumeService::new(InMemoryStore::new());
        let key = key("held");
        let _run = start(&service, &key).await;
        match open(&service, &key, false).await {
            Err(EngineError::StillRunning { plan_id }) => assert_eq!(plan_id.as_str(), "held"),
            other => panic!("a second runner is refused: {other:?}"),
        }
    });
}

#[test]
fn an_interrupt_after_the_last_step_finishes_the_plan() {
    block_on(async {
        let service = PlanResumeService::new(InMemoryStore::new());
        let key = key("one-step");
        let steps = vec![StepDefinition { name: name("s1"), fingerprint: Fingerprint::parse("aa").unwrap() }];
        let definition = RunDefinition { steps, ..definition(&key) };
        let Prepared::Fresh(ready) = service.prepare_run(&key, definition, runner(), false).await.unwrap() else {
            panic!("fresh")
        };
        let mut run = ready.start().await.unwrap();
        let ticket = run_attempt(&mut run, 1).await;
        run.completed(&ticket, StepResult::default()).await.unwrap();
        assert_eq!(run.interrupt("SIGTERM received").await.unwrap(), Stopped::Finished);
        let id = key.first().clone();
        assert_eq!(service.load(&id).await.unwrap().state.state, ProcessingState::Complete);
        let history = service.history(&id).await.unwrap();
        assert!(!history.iter().any(|e| matches!(e.event, PlanEvent::Interrupted(_))), "no interruption recorded");
    });
}

#[test]
fn a_run_that_fails_between_steps_fails_the_plan_and_the_next_run_continues_at_the_next_step() {
    block_on(async {
        let service = PlanResumeService::new(InMemoryStore::new());
        let key = key("body-fails");
        let mut run = start(&service, &key).await;
        let ticket = run_attempt(&mut run, 1).await;
        run.completed(&ticket, StepResult::default()).await.unwrap();
        let message = run.fail("ValueError: no mail").await.unwrap();
        assert_eq!(message.as_str(), "the run failed before step 2: ValueError: no mail");
        drop(run);
        let summary = service.build_resume_summary(key.first(), None).await.unwrap();
        assert_eq!(summary.error.as_deref(), Some("the run failed before step 2: ValueError: no mail"));
        assert!(summary.eligible, "a failed plan resumes: {summary:?}");
        let mut run = start(&service, &key).await;
        assert!(matches!(run.begin_step(step(1), &name("s1")).await.unwrap(), StepTurn::Replay(_)));
        assert_eq!(run_attempt(&mut run, 2).await.attempt.get(), 1);
    });
}

#[test]
fn the_newest_generation_is_found_by_bisection() {
    for newest in [0u64, 1, 2, 3, 7, 8, 9, 100] {
        let mut asked = 0;
        let found = block_on(newest_generation(|g| {
            asked += 1;
            futures::future::ready(Ok::<_, ()>(g <= newest))
        }))
        .unwrap();
        assert_eq!(found, (newest > 0).then_some(newest));
        assert!(asked <= 2 * (64 - newest.leading_zeros() as usize) + 2, "{asked} lookups for {newest}");
    }
}

/// A definition of `names`, each step's fingerprint its name's `fingerprint` digits.
fn steps_of(key: &WorkflowKey, steps: &[(&str, &str)]) -> RunDefinition {
    let steps = steps
        .iter()
        .map(|(n, f)| StepDefinition { name: name(n), fingerprint: Fingerprint::parse(f).unwrap() })
        .collect();
    RunDefinition { steps, ..definition(key) }
}

/// Runs `definition` under `key` until step `fail` fails for good (or to the end), the way a
/// plan-file run does.
async fn run_until_failure(service: &Service, key: &WorkflowKey, definition: RunDefinition, fail: Option<u32>) {
    let total = definition.steps.len() as u32;
    let names: Vec<StepName> = definition.steps.iter().map(|s| s.name.clone()).collect();
    let mut run = match service.prepare_run(key, definition, runner(), false).await.unwrap() {
        Prepared::Fresh(ready) | Prepared::Continue(ready, _) => ready.start().await.unwrap(),
        other => panic!("expected a run, got {other:?}"),
    };
    for n in 1..=total {
        let ticket = match run.begin_step(step(n), &names[n as usize - 1]).await.unwrap() {
            StepTurn::Replay(_) => continue,
            StepTurn::Run(ticket) => ticket,
            StepTurn::Paused => panic!("nobody paused this plan"),
        };
        if Some(n) == fail {
            let failed = run.attempt_failed(&ticket, StepFailure::Exit { code: 1 }, &StepPolicy::default(), None).await;
            assert!(matches!(failed, Err(EngineError::StepFailed { .. })), "{failed:?}");
            return;
        }
        run.completed(&ticket, StepResult::default()).await.unwrap();
    }
    run.finish().await.unwrap();
}

#[test]
fn steps_added_at_the_end_extend_a_continued_plan() {
    block_on(async {
        let service = PlanResumeService::new(InMemoryStore::new());
        let key = key("grows");
        let three = [("a", "aa"), ("b", "bb"), ("c", "cc")];
        run_until_failure(&service, &key, steps_of(&key, &three), Some(2)).await;
        // The failed step fixed and a fourth step added.
        let four = [("a", "aa"), ("b", "b2"), ("c", "cc"), ("d", "dd")];
        run_until_failure(&service, &key, steps_of(&key, &four), None).await;
        let view = service.load(key.first()).await.unwrap();
        assert_eq!(view.state.resume.total_steps.map(|t| t.get()), Some(4));
        assert_eq!(view.state.resume.last_completed_step, Some(step(4)));
        assert_eq!(view.state.state, ProcessingState::Complete);
    });
}

#[test]
fn pending_steps_removed_shrink_a_continued_plan_but_never_below_a_completed_step() {
    let key = key("shrinks");
    let recorded = |total: u32, last: Option<u32>| ResumeMetadata {
        total_steps: Some(TotalSteps::new(total).unwrap()),
        last_completed_step: last.map(step),
        ..ResumeMetadata::default()
    };
    let two = steps_of(&key, &[("a", "aa"), ("b", "bb")]);
    assert_eq!(two.new_total(&recorded(3, Some(2))).map(|t| t.get()), Some(2), "step 3 removed before it ran");
    assert_eq!(two.new_total(&recorded(3, Some(3))), None, "a completed step is never cut off");
    assert_eq!(two.new_total(&recorded(2, Some(1))), None, "the same total");
    assert_eq!(two.new_total(&recorded(1, None)).map(|t| t.get()), Some(2));
    assert_eq!(definition(&key).new_total(&recorded(3, Some(1))), None, "steps learned as they run");
    block_on(async {
        let service = PlanResumeService::new(InMemoryStore::new());
        run_until_failure(&service, &key, steps_of(&key, &[("a", "aa"), ("b", "bb"), ("c", "cc")]), Some(3)).await;
        run_until_failure(&service, &key, two, None).await;
        let view = service.load(key.first()).await.unwrap();
        assert_eq!(view.state.resume.total_steps.map(|t| t.get()), Some(2));
        assert_eq!(view.state.state, ProcessingState::Complete);
    });
}

#[test]
fn a_leased_run_keeps_others_off_until_it_expires_then_the_taken_over_runner_is_fenced() {
    block_on(async {
        let clock = crate::ManualClock::new(chrono::Utc::now());
        let store = InMemoryStore::new().with_clock(clock.clone());
        let service = PlanResumeService::new(store).with_clock(clock.clone());
        let key = key("leased");
        let lease = |name: &str| crate::LeaseRequest::new(RunnerId::parse(name).unwrap(), Duration::from_secs(30));
        let Prepared::Fresh(ready) =
            service.prepare_run_leased(&key, definition(&key), lease("worker-a"), false).await.unwrap()
        else {
            panic!("fresh")
        };
        let mut first = ready.start().await.unwrap();
        let ticket = run_attempt(&mut first, 1).await;
        first.completed(&ticket, StepResult::default()).await.unwrap();
        // While the lease is live, another runner is refused.
        match service.prepare_run_leased(&key, definition(&key), lease("worker-b"), false).await {
            Err(EngineError::StillRunning { .. }) => {}
            other => panic!("a live lease keeps others off: {other:?}"),
        }
        first.heartbeat().await.unwrap();
        clock.advance(chrono::Duration::seconds(31));
        // Expired: worker-b takes the plan over and continues after step 1.
        let Prepared::Continue(ready, summary) =
            service.prepare_run_leased(&key, definition(&key), lease("worker-b"), false).await.unwrap()
        else {
            panic!("an expired lease is taken over")
        };
        assert_eq!(summary.interruption.map(|i| i.reason), Some("lease_expired".to_owned()));
        let mut second = ready.start().await.unwrap();
        assert_eq!(second.next_step(), step(2));
        // The first runner is fenced: its next step start and heartbeat are refused.
        assert!(first.begin_step(step(2), &name("s2")).await.is_err(), "the old runner starts nothing");
        assert!(first.heartbeat().await.is_err(), "the old runner's heartbeat is lease_lost");
        let ticket = run_attempt(&mut second, 2).await;
        second.completed(&ticket, StepResult::default()).await.unwrap();
        second.finish().await.unwrap();
    });
}

#[test]
fn a_fork_run_of_a_plan_that_runs_now_is_refused() {
    block_on(async {
        let service = PlanResumeService::new(InMemoryStore::new());
        let key = key("busy-source");
        let mut run = start(&service, &key).await;
        let ticket = run_attempt(&mut run, 1).await;
        run.completed(&ticket, StepResult::default()).await.unwrap();
        let _step_two = run_attempt(&mut run, 2).await;
        match service.prepare_fork_run(&key, definition(&key), runner(), step(2)).await {
            Err(EngineError::StillRunning { plan_id }) => assert_eq!(plan_id.as_str(), "busy-source"),
            other => panic!("a fork from a running plan would run step 2 twice at once: {other:?}"),
        }
        drop(run);
        assert!(
            service.prepare_fork_run(&key, definition(&key), runner(), step(2)).await.unwrap().is_some(),
            "once it stopped"
        );
    });
}

#[test]
fn a_run_that_records_against_its_own_last_view_sees_what_others_wrote_meanwhile() {
    block_on(async {
        let service = PlanResumeService::new(InMemoryStore::new());
        let key = key("known-view");
        let mut run = start(&service, &key).await;
        let first = run_attempt(&mut run, 1).await;
        run.completed(&first, StepResult::default()).await.unwrap();
        // Someone else writes between two of the run's records: the run's view is stale now.
        service.pause(run.plan_id(), waypoint_domain::Actor::parse("operator").unwrap(), None).await.unwrap();
        match run.begin_step(step(2), &name("s2")).await.unwrap() {
            StepTurn::Paused => {}
            other => panic!("the pause asked for meanwhile stops the run at the step boundary: {other:?}"),
        }
        let view = service.load(run.plan_id()).await.unwrap();
        assert_eq!(view.state.resume.checkpoints.len(), 1, "step 1 recorded once, step 2 never started");
        assert!(view.state.resume.uncertain_step.is_none());
    })
}
