//! Every `PlanError` variant and every `ResumeIneligibleReason` is reached by a given history and
//! a command; the test lists what it reached, so a new variant without a test shows up here.

use std::collections::BTreeSet;

use waypoint_domain::{
    decide, evaluate_eligibility, EligibilityInputs, Fingerprint, Phase, PlanCommand, PlanError,
    ResumeIneligibleReason, SnapshotCheck, TotalSteps,
};

use crate::domain_history::{epoch, message, History};

/// The variant's name. The match is exhaustive: a new variant does not compile until it is
/// named here and added to `EVERY_VARIANT`.
fn variant(error: &PlanError) -> &'static str {
    match error {
        PlanError::NotCreated => "NotCreated",
        PlanError::AlreadyExists => "AlreadyExists",
        PlanError::Terminal { .. } => "Terminal",
        PlanError::InvalidPhaseTransition { .. } => "InvalidPhaseTransition",
        PlanError::TransitionNotAllowedInState { .. } => "TransitionNotAllowedInState",
        PlanError::InvalidState { .. } => "InvalidState",
        PlanError::StepOutOfOrder { .. } => "StepOutOfOrder",
        PlanError::StepBeyondTotal { .. } => "StepBeyondTotal",
        PlanError::ConflictingCheckpoint { .. } => "ConflictingCheckpoint",
        PlanError::StepMismatch { .. } => "StepMismatch",
        PlanError::AttemptNotRunning { .. } => "AttemptNotRunning",
        PlanError::StepNotCompleted { .. } => "StepNotCompleted",
        PlanError::TotalBelowCompleted { .. } => "TotalBelowCompleted",
        PlanError::NotEligible { .. } => "NotEligible",
        PlanError::LeaseLost { .. } => "LeaseLost",
        PlanError::PauseRequested { .. } => "PauseRequested",
    }
}

const EVERY_VARIANT: [&str; 16] = [
    "NotCreated",
    "AlreadyExists",
    "Terminal",
    "InvalidPhaseTransition",
    "TransitionNotAllowedInState",
    "InvalidState",
    "StepOutOfOrder",
    "StepBeyondTotal",
    "ConflictingCheckpoint",
    "StepMismatch",
    "AttemptNotRunning",
    "StepNotCompleted",
    "TotalBelowCompleted",
    "NotEligible",
    "LeaseLost",
    "PauseRequested",
];

fn actor(name: &str) -> waypoint_domain::Actor {
    waypoint_domain::Actor::parse(name).expect("a valid actor")
}

/// A plan that stopped before step `n`, asking `question`.
fn waiting_at(n: u32) -> History {
    in_strategize(Some(3)).steps_completed(1..=n - 1).run(PlanCommand::RequestApproval {
        step: waypoint_domain::StepNumber::new(n).expect("a valid step"),
        name: None,
        question: message("Deploy?"),
        at: epoch(),
    })
}

fn in_strategize(total: Option<u32>) -> History {
    History::new().created(total).started(Phase::Strategize, None)
}

fn applied() -> History {
    in_strategize(None)
        .run(PlanCommand::CompletePhase)
        .started(Phase::Execute, None)
        .run(PlanCommand::CompletePhase)
        .started(Phase::Apply, None)
        .run(PlanCommand::Apply)
}

fn attempt_failed(n: u32, attempt: u32) -> PlanCommand {
    PlanCommand::RecordAttemptFailed {
        step: waypoint_domain::StepNumber::new(n).expect("a valid step"),
        attempt: waypoint_domain::Attempt::new(attempt).expect("a valid attempt"),
        reason: waypoint_domain::AttemptFailure::Timeout,
        retry_at: None,
    }
}

/// A fork of `source` at `at`: decided against no plan, since a fork is a new one.
fn fork_of(source: &History, at: u32) -> PlanCommand {
    PlanCommand::Fork {
        source_id: waypoint_domain::PlanId::parse("source").expect("a valid id"),
        source: Box::new(source.state().clone()),
        source_version: source.events.len() as u32,
        at_step: Some(waypoint_domain::StepNumber::new(at).expect("a valid step")),
        at: source.now(),
    }
}

fn total(n: u32) -> TotalSteps {
    TotalSteps::new(n).expect("a valid total")
}

fn resume() -> PlanCommand {
    History::new().created(None).resumed_command()
}

impl History {
    fn resumed_command(&self) -> PlanCommand {
        PlanCommand::Resume {
            by: waypoint_domain::Actor::parse("operator").expect("a valid actor"),
            runner: None,
            at: self.now(),
            inputs: EligibilityInputs::default(),
            lease: None,
        }
    }
}

/// Given a history, when a command is decided, then it is refused with `expected`.
fn refusals() -> Vec<(&'static str, History, PlanCommand)> {
    let mut with_checkpoint = in_strategize(Some(3)).steps_completed(1..=1);
    let conflicting = with_checkpoint.checkpoint_command(1, Some("sha256:other"));
    let mut beyond = in_strategize(Some(1)).steps_completed(1..=1);
    let beyond_total = beyond.checkpoint_command(2, None);
    let mut fresh_phase = in_strategize(None);
    let skipping = fresh_phase.checkpoint_command(2, None);
    let mut named = in_strategize(Some(3)).named_step_completed(1, "build", None);
    let renamed = named.named_checkpoint_command(2, "test", None, None);
    let named = named.named_step_started(2, "deploy", 1);
    let leased_by_a = History::new().created(None).started_leased(Phase::Strategize, "runner-a", 1);
    let renewed_by_b = leased_by_a.renew_command("runner-b", 2);
    let create = PlanCommand::Create {
        name: None,
        total_steps: None,
        fingerprint: None,
        source: None,
        steps: vec![],
        at: epoch(),
    };
    vec![
        ("AlreadyExists", History::new().created(None), create),
        ("Terminal", applied(), PlanCommand::Fail { message: message("too late") }),
        (
            "InvalidPhaseTransition",
            History::new().created(None),
            PlanCommand::StartPhase { phase: Phase::Execute, runner: None, lease: None },
        ),
        (
            "TransitionNotAllowedInState",
            in_strategize(None),
            PlanCommand::StartPhase { phase: Phase::Execute, runner: None, lease: None },
        ),
        ("InvalidState", History::new().created(None), PlanCommand::Fail { message: message("nothing runs") }),
        ("StepOutOfOrder", fresh_phase, skipping),
        ("StepBeyondTotal", beyond, beyond_total),
        ("ConflictingCheckpoint", with_checkpoint, conflicting),
        ("StepMismatch", named, renamed),
        ("AttemptNotRunning", in_strategize(Some(3)), attempt_failed(1, 1)),
        ("StepNotCompleted", History::new(), fork_of(&in_strategize(Some(3)).steps_completed(1..=1), 2)),
        (
            "TotalBelowCompleted",
            in_strategize(None).steps_completed(1..=2),
            PlanCommand::SetTotalSteps { total: total(1) },
        ),
        ("NotEligible", History::new().created(None), resume()),
        ("LeaseLost", leased_by_a, renewed_by_b),
        (
            "PauseRequested",
            in_strategize(Some(3)).run(PlanCommand::RequestPause { by: actor("ops"), reason: None, at: epoch() }),
            PlanCommand::StartStep {
                step: waypoint_domain::StepNumber::FIRST,
                decision_id: waypoint_domain::DecisionId::parse("d1").expect("a valid decision"),
                name: None,
                attempt: None,
                lease: None,
            },
        ),
    ]
}

#[test]
fn every_plan_error_variant_is_reached() {
    let mut reached = BTreeSet::new();
    let not_created = decide(None, PlanCommand::CompletePhase).expect_err("no plan, no command");
    reached.insert(variant(&not_created));
    for (expected, mut given, when) in refusals() {
        let before = given.events.len();
        let error = given.try_run(when).expect_err(expected);
        assert_eq!(variant(&error), expected, "{error}");
        assert_eq!(given.events.len(), before, "a refused command records nothing");
        reached.insert(variant(&error));
    }
    assert_eq!(reached, BTreeSet::from(EVERY_VARIANT), "PlanError variants reached");
}

#[test]
fn every_ineligibility_reason_is_reached() {
    use ResumeIneligibleReason::*;
    let changed = EligibilityInputs {
        fingerprint: Some(Fingerprint::parse("ffff").expect("a valid fingerprint")),
        ..EligibilityInputs::default()
    };
    let lost = EligibilityInputs { snapshot: SnapshotCheck::Missing, ..EligibilityInputs::default() };
    let alive = EligibilityInputs { runner_alive: true, ..EligibilityInputs::default() };
    let cases = [
        (applied(), EligibilityInputs::default(), vec![TerminalState]),
        (History::new().created(None), EligibilityInputs::default(), vec![ActionPhase]),
        (in_strategize(None), EligibilityInputs::default(), vec![StillRunning]),
        (History::new().created(None).started(Phase::Strategize, Some("runner-1")), alive, vec![StillRunning]),
        (
            in_strategize(Some(1)).steps_completed(1..=1).shut_down("SIGTERM"),
            EligibilityInputs::default(),
            vec![NothingToResume],
        ),
        (in_strategize(None).run(PlanCommand::CompletePhase), EligibilityInputs::default(), vec![NothingToResume]),
        (in_strategize(None).shut_down("SIGTERM"), changed, vec![DefinitionChanged]),
        (in_strategize(None).steps_completed(1..=1).shut_down("SIGTERM"), lost, vec![SnapshotMissing]),
        (waiting_at(2), EligibilityInputs::default(), vec![WaitingForApproval]),
        (
            waiting_at(2).run(PlanCommand::Reject { step: None, by: actor("ops"), reason: message("no"), at: epoch() }),
            EligibilityInputs::default(),
            vec![ApprovalRejected],
        ),
    ];
    let mut reached = BTreeSet::new();
    for (given, inputs, expected) in cases {
        let verdict = evaluate_eligibility(given.state(), &inputs);
        assert_eq!(verdict.reasons, expected, "given {:?}", given.events);
        assert!(!verdict.eligible);
        reached.extend(verdict.reasons);
    }
    assert_eq!(reached, BTreeSet::from(ResumeIneligibleReason::ALL), "reasons reached");
}
