//! Definition drift per step: given a plan's history, when the definition is found as it is now,
//! then the one eligibility function blocks only on completed steps that changed.

use waypoint_domain::{
    check_definition, evaluate_eligibility, ChangedStep, CurrentDefinition, EligibilityInputs, Fingerprint, Phase,
    ResumeIneligibleReason, StepChange,
};

use crate::domain_history::{definition, step, step_name, History};

const RECORDED: [(&str, &str); 3] = [("build", "b1"), ("test", "c1"), ("deploy", "d1")];

/// Steps 1 and 2 completed, step 3 failed: the usual reason to resume.
fn failed_at_step_3() -> History {
    History::new()
        .created_with_steps(&RECORDED)
        .started(Phase::Strategize, Some("runner-1"))
        .named_step_completed(1, "build", Some("b1"))
        .named_step_completed(2, "test", Some("c1"))
        .named_step_started(3, "deploy", 1)
        .run(waypoint_domain::PlanCommand::Fail { message: crate::domain_history::message("deploy failed") })
}

fn now(steps: &[(&str, &str)]) -> CurrentDefinition {
    CurrentDefinition::Known { fingerprint: Some(fingerprint("ffff")), steps: definition(steps) }
}

fn fingerprint(hex: &str) -> Fingerprint {
    Fingerprint::parse(hex).expect("a valid fingerprint")
}

fn inputs(current: CurrentDefinition) -> EligibilityInputs {
    EligibilityInputs { definition: Some(current), ..EligibilityInputs::default() }
}

fn changed(n: u32, name: &str, completed: bool, change: StepChange) -> ChangedStep {
    ChangedStep { step: step(n), name: Some(step_name(name)), completed, change }
}

#[test]
fn an_unchanged_definition_is_eligible_with_no_changed_steps() {
    let verdict = evaluate_eligibility(failed_at_step_3().state(), &inputs(now(&RECORDED)));
    assert!(verdict.eligible, "{verdict:?}");
    assert!(verdict.changed_steps.is_empty());
}

#[test]
fn a_completed_step_that_changed_blocks_and_is_named() {
    let current = now(&[("build", "b1"), ("test", "c2"), ("deploy", "d1")]);
    let verdict = evaluate_eligibility(failed_at_step_3().state(), &inputs(current));
    assert_eq!(verdict.reasons, [ResumeIneligibleReason::DefinitionChanged]);
    assert_eq!(verdict.changed_steps, [changed(2, "test", true, StepChange::Changed)]);
}

#[test]
fn a_fix_to_the_failed_step_and_steps_added_at_the_end_do_not_block() {
    let current = now(&[("build", "b1"), ("test", "c1"), ("deploy", "d2"), ("notify", "e1")]);
    let verdict = evaluate_eligibility(failed_at_step_3().state(), &inputs(current));
    assert!(verdict.eligible, "{verdict:?}");
    assert_eq!(
        verdict.changed_steps,
        [changed(3, "deploy", false, StepChange::Changed), changed(4, "notify", false, StepChange::Added)]
    );
}

#[test]
fn a_completed_step_removed_or_moved_blocks() {
    let removed = check_definition(failed_at_step_3().state(), &now(&[("build", "b1")]));
    assert!(removed.definition_changed);
    assert_eq!(
        removed.changed_steps,
        [changed(2, "test", true, StepChange::Removed), changed(3, "deploy", false, StepChange::Removed)]
    );
    let swapped = now(&[("test", "c1"), ("build", "b1"), ("deploy", "d1")]);
    let moved = check_definition(failed_at_step_3().state(), &swapped);
    assert!(moved.definition_changed);
    assert_eq!(
        moved.changed_steps,
        [changed(1, "build", true, StepChange::Replaced), changed(2, "test", true, StepChange::Replaced)]
    );
}

#[test]
fn the_fingerprint_a_step_completed_with_wins_over_the_one_recorded_at_creation() {
    // Step 1 was fixed after the plan was created and before it completed.
    let given = History::new()
        .created_with_steps(&RECORDED)
        .started(Phase::Strategize, Some("runner-1"))
        .named_step_completed(1, "build", Some("b2"))
        .shut_down("SIGTERM");
    let same_as_it_ran = check_definition(given.state(), &now(&[("build", "b2"), ("test", "c1"), ("deploy", "d1")]));
    assert!(!same_as_it_ran.definition_changed, "{same_as_it_ran:?}");
    let as_created = check_definition(given.state(), &now(&RECORDED));
    assert_eq!(as_created.changed_steps, [changed(1, "build", true, StepChange::Changed)]);
}

#[test]
fn an_unreadable_definition_counts_as_changed() {
    let unreadable = CurrentDefinition::Unreadable("plans/release.toml: no such file".to_owned());
    let verdict = evaluate_eligibility(failed_at_step_3().state(), &inputs(unreadable.clone()));
    assert_eq!(verdict.reasons, [ResumeIneligibleReason::DefinitionChanged]);
    let check = check_definition(failed_at_step_3().state(), &unreadable);
    assert_eq!(check.unreadable.as_deref(), Some("plans/release.toml: no such file"));
}

#[test]
fn a_plan_without_per_step_definitions_keeps_the_whole_plan_rule() {
    let given = History::new().created(Some(3)).started(Phase::Strategize, None).steps_completed(1..=1).shut_down("x");
    let differs = CurrentDefinition::Known { fingerprint: Some(fingerprint("ffff")), steps: definition(&RECORDED) };
    assert!(check_definition(given.state(), &differs).definition_changed);
    let same = CurrentDefinition::Known { fingerprint: Some(fingerprint("a1b2c3")), steps: definition(&RECORDED) };
    let check = check_definition(given.state(), &same);
    assert!(!check.definition_changed && check.changed_steps.is_empty(), "{check:?}");
}

#[test]
fn a_caller_without_per_step_definitions_keeps_the_whole_plan_rule() {
    let whole = CurrentDefinition::Known { fingerprint: Some(fingerprint("a1b2c3")), steps: Vec::new() };
    assert!(!check_definition(failed_at_step_3().state(), &whole).definition_changed);
    let other = CurrentDefinition::Known { fingerprint: Some(fingerprint("ffff")), steps: Vec::new() };
    assert!(check_definition(failed_at_step_3().state(), &other).definition_changed);
}

#[test]
fn a_compact_state_answers_the_definition_check_the_same() {
    let full = failed_at_step_3();
    let mut compact = full.state().clone();
    // What a compact view keeps: only the last checkpoint.
    let checkpoints = &mut compact.resume.checkpoints;
    checkpoints.drain(..checkpoints.len() - 1);
    let current = now(&[("build", "b9"), ("test", "c1"), ("deploy", "d2")]);
    assert_eq!(check_definition(&compact, &current), check_definition(full.state(), &current));
    assert!(check_definition(&compact, &current).definition_changed);
}

#[test]
fn the_definition_check_supersedes_the_whole_plan_fingerprint() {
    let current = now(&[("build", "b1"), ("test", "c1"), ("deploy", "d2")]);
    let both = EligibilityInputs { fingerprint: Some(fingerprint("ffff")), ..inputs(current) };
    assert!(evaluate_eligibility(failed_at_step_3().state(), &both).eligible);
}

#[test]
fn a_refused_resume_names_every_step_that_changed_after_it_completed() {
    let mut given = failed_at_step_3();
    let current = now(&[("build", "b2"), ("check", "c1"), ("deploy", "d2")]);
    let resume = waypoint_domain::PlanCommand::Resume {
        by: waypoint_domain::Actor::parse("operator").expect("a valid actor"),
        runner: None,
        at: given.now(),
        inputs: inputs(current),
        lease: None,
    };
    let refused = given.try_run(resume).expect_err("completed steps changed");
    let waypoint_domain::PlanError::NotEligible { reasons, changed_steps } = &refused else {
        panic!("a refused resume: {refused:?}")
    };
    assert_eq!(reasons, &[ResumeIneligibleReason::DefinitionChanged]);
    assert_eq!(
        changed_steps,
        &[changed(1, "build", true, StepChange::Changed), changed(2, "test", true, StepChange::Replaced)],
        "only the completed ones: the fix to step 3 does not block"
    );
    assert_eq!(
        refused.to_string(),
        "the plan cannot resume: definition_changed (step 1 (build) changed and step 2 (test) was replaced by \
         another step after they completed; restore them, or run again from the first changed step)"
    );
}
