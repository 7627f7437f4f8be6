//! Leases in the domain: given a history, when a lease-bearing command is decided or eligibility
//! is judged at a time on the store's clock, then these events, this verdict or this refusal.

use chrono::Duration;
use waypoint_domain::{
    evaluate_eligibility, EligibilityInputs, Lease, Phase, PlanCommand, PlanError, PlanEvent, PlanState, PlanStatus,
    ResumeIneligibleReason, ResumeSummary, LEASE_EXPIRED_REASON,
};

use crate::domain_history::{decision, epoch, message, plan_id, runner_id, step, History};

/// A plan in strategize, held by `runner-a`'s lease, which expires at minute 2 (it started at
/// minute 1 with a lease of one minute).
fn leased_by_a() -> History {
    History::new().created(Some(3)).started_leased(Phase::Strategize, "runner-a", 1)
}

/// Eligibility judged with the store's clock at `minute` after the epoch.
fn at_minute(minute: i64) -> EligibilityInputs {
    EligibilityInputs { now: Some(epoch() + Duration::minutes(minute)), ..EligibilityInputs::default() }
}

fn summary(given: &History, inputs: &EligibilityInputs) -> ResumeSummary {
    let verdict = evaluate_eligibility(given.state(), inputs);
    ResumeSummary::build(&plan_id(), given.state(), &verdict, Some(epoch()))
}

fn lease_of(given: &History) -> Option<&Lease> {
    given.state().lease.as_ref()
}

#[test]
fn a_live_lease_is_still_running_and_an_expired_one_a_crash() {
    let given = leased_by_a();
    assert_eq!(lease_of(&given).map(|l| l.expires_at), Some(epoch() + Duration::minutes(2)));
    let live = evaluate_eligibility(given.state(), &at_minute(1));
    assert_eq!((live.reasons.as_slice(), live.crash_inferred), (&[ResumeIneligibleReason::StillRunning][..], false));
    // The lease holds up to, not including, its expiry.
    let at_expiry = evaluate_eligibility(given.state(), &at_minute(2));
    assert!(at_expiry.eligible && at_expiry.crash_inferred && at_expiry.lease_expired, "{at_expiry:?}");
    let crashed = summary(&given, &at_minute(5));
    assert_eq!(crashed.status, PlanStatus::Crashed);
    let interruption = crashed.interruption.expect("inferred");
    assert_eq!(interruption.reason, LEASE_EXPIRED_REASON);
    assert_eq!((interruption.at, interruption.inferred), (Some(epoch() + Duration::minutes(2)), true));
}

#[test]
fn a_lease_judged_without_the_store_clock_counts_as_live() {
    let verdict = evaluate_eligibility(leased_by_a().state(), &EligibilityInputs::default());
    assert_eq!(verdict.reasons, [ResumeIneligibleReason::StillRunning], "a false 'gone' would let two runners in");
}

#[test]
fn a_held_run_lock_keeps_a_plan_running_whatever_its_lease_says() {
    let inputs = EligibilityInputs { runner_alive: true, ..at_minute(5) };
    let verdict = evaluate_eligibility(leased_by_a().state(), &inputs);
    assert_eq!(
        (verdict.reasons.as_slice(), verdict.crash_inferred),
        (&[ResumeIneligibleReason::StillRunning][..], false)
    );
}

#[test]
fn the_holder_renews_its_lease_even_after_it_expired() {
    let mut given = leased_by_a();
    let renew = given.renew_command("runner-a", 10);
    let events = given.try_run(renew).expect("the holder renews");
    assert!(matches!(&events[..], [PlanEvent::LeaseRenewed(e)] if e.runner == runner_id("runner-a")));
    let expires_at = lease_of(&given).expect("still leased").expires_at;
    assert_eq!(expires_at, epoch() + Duration::minutes(12), "renewed from the time of the heartbeat");
    assert_eq!(evaluate_eligibility(given.state(), &at_minute(11)).reasons, [ResumeIneligibleReason::StillRunning]);
}

#[test]
fn another_runner_cannot_renew_and_nobody_renews_a_plan_without_a_lease() {
    let cases = [
        (leased_by_a(), "runner-b", Some("runner-a")),
        (History::new().created(None).started(Phase::Strategize, None), "runner-a", None),
        (History::new().created(None).started(Phase::Strategize, Some("runner-a")), "runner-a", None),
        (leased_by_a().shut_down("SIGTERM"), "runner-a", None),
        (leased_by_a().run(PlanCommand::Fail { message: message("boom") }), "runner-a", None),
        (leased_by_a().run(PlanCommand::CompletePhase), "runner-a", None),
        // A terminal plan answers lease_lost too: what the runner must hear is that it holds nothing.
        (leased_by_a().run(PlanCommand::Cancel { reason: None }), "runner-a", None),
    ];
    for (mut given, who, holder) in cases {
        let before = given.events.len();
        let renew = given.renew_command(who, 5);
        match given.try_run(renew) {
            Err(error @ PlanError::LeaseLost { .. }) => {
                assert_eq!(error.code(), "lease_lost");
                assert_eq!(error, PlanError::LeaseLost { runner: runner_id(who), holder: holder.map(runner_id) });
            }
            other => panic!("given {:?}, a renewal by {who} must be lease_lost, got {other:?}", given.events),
        }
        assert_eq!(given.events.len(), before, "a refusal records nothing");
    }
}

#[test]
fn leaving_processing_ends_the_lease() {
    let moves = [
        PlanCommand::Fail { message: message("boom") },
        PlanCommand::CompletePhase,
        PlanCommand::Cancel { reason: None },
        PlanCommand::RecordShutdown { reason: message("SIGTERM"), at: epoch() },
    ];
    for command in moves {
        let given = leased_by_a().run(command);
        assert_eq!(lease_of(&given), None, "after {:?}", given.events.last());
    }
    let applied = History::new()
        .created(None)
        .started(Phase::Strategize, None)
        .run(PlanCommand::CompletePhase)
        .started(Phase::Execute, None)
        .run(PlanCommand::CompletePhase)
        .started_leased(Phase::Apply, "runner-a", 1);
    assert!(lease_of(&applied).is_some());
    assert_eq!(lease_of(&applied.run(PlanCommand::Apply)), None);
    let constrained = History::new()
        .created(None)
        .started(Phase::Strategize, None)
        .run(PlanCommand::CompletePhase)
        .started(Phase::Execute, None)
        .run(PlanCommand::CompletePhase)
        .started_leased(Phase::Apply, "runner-a", 1)
        .run(PlanCommand::Constrain { message: message("window closed") });
    assert_eq!(lease_of(&constrained), None);
}

#[test]
fn a_live_lease_refuses_a_takeover_and_an_expired_one_hands_the_plan_over() {
    let mut given = leased_by_a().steps_completed(1..=1).step_started(2);
    let early = given.resume_leased_command("runner-b", 5, epoch() + Duration::minutes(1));
    let refused = given.try_run(early).expect_err("a's lease is live");
    assert_eq!(
        refused,
        PlanError::NotEligible { reasons: vec![ResumeIneligibleReason::StillRunning], changed_steps: Vec::new() }
    );
    let late = given.resume_leased_command("runner-b", 5, epoch() + Duration::minutes(30));
    let events = given.try_run(late).expect("a's lease expired: b takes over");
    let [PlanEvent::Resumed(resumed)] = &events[..] else { panic!("resumed: {events:?}") };
    assert_eq!(resumed.from_step, step(2));
    assert_eq!(resumed.lease.as_ref().map(|l| &l.runner), Some(&runner_id("runner-b")));
    assert_eq!(lease_of(&given).map(|l| &l.runner), Some(&runner_id("runner-b")), "b's lease replaced a's");

    // The old runner is fenced: it neither renews nor starts a step under its lease.
    let renew = given.renew_command("runner-a", 5);
    let lost = PlanError::LeaseLost { runner: runner_id("runner-a"), holder: Some(runner_id("runner-b")) };
    assert_eq!(given.try_run(renew), Err(lost.clone()));
    let start = start_under(&given, 2, "runner-a");
    assert_eq!(given.try_run(start), Err(lost));
    // The new holder does both.
    let start = start_under(&given, 2, "runner-b");
    given.try_run(start).expect("the holder starts a step under its lease");
    let renew = given.renew_command("runner-b", 5);
    given.try_run(renew).expect("and renews it");
}

#[test]
fn a_step_start_under_a_lease_renews_it_and_needs_the_holder() {
    let mut given = leased_by_a();
    let start = start_under(&given, 1, "runner-a");
    let events = given.try_run(start).expect("the holder starts a step");
    assert!(matches!(&events[..], [PlanEvent::StepStarted(e)] if e.lease.is_some()));
    assert_eq!(lease_of(&given).map(|l| l.expires_at), Some(epoch() + Duration::minutes(4)));
    // A step start without a lease leaves the lease as it is.
    let mut plain = leased_by_a();
    plain = plain.step_started(1);
    assert_eq!(lease_of(&plain).map(|l| l.expires_at), Some(epoch() + Duration::minutes(2)));
    // A plan started without a lease gets none from a step start: leases come with a start or
    // a resume, which are judged for eligibility.
    let mut lockless = History::new().created(None).started(Phase::Strategize, None);
    let start = start_under(&lockless, 1, "runner-a");
    assert_eq!(lockless.try_run(start), Err(PlanError::LeaseLost { runner: runner_id("runner-a"), holder: None }));
}

#[test]
fn a_plan_without_a_lease_keeps_the_old_rules() {
    let lockless = History::new().created(None).started(Phase::Strategize, None);
    let verdict = evaluate_eligibility(lockless.state(), &at_minute(600));
    assert_eq!(verdict.reasons, [ResumeIneligibleReason::StillRunning], "a lockless worker is never presumed dead");
    let locked = History::new().created(None).started(Phase::Strategize, Some("runner-1"));
    let gone = evaluate_eligibility(locked.state(), &at_minute(600));
    assert!(gone.crash_inferred && !gone.lease_expired, "a free run lock is a crash, not a lease expiry");
    assert_eq!(summary(&locked, &at_minute(600)).interruption.map(|i| i.reason), Some("crash".to_owned()));
}

#[test]
fn replaying_a_leased_history_gives_the_same_state() {
    let mut given = leased_by_a().steps_completed(1..=1);
    let renew = given.renew_command("runner-a", 3);
    given.try_run(renew).expect("renewed");
    let replayed = given.events.iter().fold(None, PlanState::fold);
    assert_eq!(replayed.as_ref(), given.state.as_ref());
    let stored: Vec<PlanEvent> = given
        .events
        .iter()
        .map(|e| PlanEvent::decode(e.event_type().as_str(), e.schema_version(), &e.encode_data()).expect("decodes"))
        .collect();
    assert_eq!(stored, given.events, "every lease-bearing event reads back as written");
}

/// Step `n` starts under `runner`'s lease, renewed for two minutes.
fn start_under(given: &History, n: u32, runner: &str) -> PlanCommand {
    PlanCommand::StartStep {
        step: step(n),
        decision_id: decision(n),
        name: None,
        attempt: None,
        lease: Some(given.lease(runner, 2)),
    }
}
