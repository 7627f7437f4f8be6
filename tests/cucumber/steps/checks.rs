//! `Then` steps: what the last command returned, what the store holds, what every surface reports.

use cucumber::gherkin::Step;
use cucumber::then;
use serde_json::Value;
use waypoint_application::domain::ResumeIneligibleReason;

use crate::world::{list, Done, Maybe, PhaseArg, PlanWorld, StateArg};

#[then(regex = r"^the command is (?:accepted|refused with (\w+))$")]
fn command_result(world: &mut PlanWorld, refusal: Maybe<String>) {
    match (world.outcome(), refusal.0) {
        (Ok(_), None) => {}
        (Err(failure), Some(expected)) => assert_eq!(failure.name(), expected, "refused with: {failure}"),
        (Ok(done), Some(expected)) => panic!("expected a refusal with {expected}, but it was accepted: {done:?}"),
        (Err(failure), None) => panic!("expected the command to be accepted, but it was refused: {failure}"),
    }
}

#[then(regex = r#"^the refusal lists the reasons "([^"]*)"$"#)]
fn refusal_reasons(world: &mut PlanWorld, reasons: String) {
    let failure = world.outcome().as_ref().expect_err("the command was refused");
    assert_eq!(codes(failure.reasons().expect("a resume refusal carries its reasons")), list(&reasons));
}

#[then(expr = "the plan is {phase} {state}")]
async fn plan_is(world: &mut PlanWorld, phase: PhaseArg, state: StateArg) {
    let view = world.view().await;
    assert_eq!((view.state.phase, view.state.state), (phase.0, state.0));
}

#[then(regex = r#"^the plan is (?:eligible to resume|not eligible to resume because "([^"]+)")$"#)]
async fn eligibility(world: &mut PlanWorld, reasons: Maybe<String>) {
    assert_eq!(codes(&world.reasons().await), reasons.0.as_deref().map(list).unwrap_or_default());
}

/// Compares each named field of the summary's JSON form with the table's value. `absent` is
/// `null`, `present` is anything else; other values are JSON, or else plain text.
#[then(regex = r"^the (returned|resume) summary shows:$")]
async fn summary_shows(world: &mut PlanWorld, step: &Step, which: String) {
    let summary = serde_json::to_value(world.summary(which == "returned").await).expect("summary serializes");
    let table = step.table.as_ref().expect("a table of field | value");
    for row in &table.rows {
        let (field, expected) = (&row[0], row[1].as_str());
        let pointer = format!("/{}", field.replace('.', "/"));
        let actual = summary.pointer(&pointer).unwrap_or_else(|| panic!("the summary has no field {field}"));
        match expected {
            "absent" => assert!(actual.is_null(), "{field} should be absent, is {actual}"),
            "present" => assert!(!actual.is_null(), "{field} should be present"),
            _ => {
                let expected = serde_json::from_str(expected).unwrap_or_else(|_| Value::String(expected.to_owned()));
                assert_eq!(actual, &expected, "summary field {field}");
            }
        }
    }
}

#[then(regex = r"^(no|\d+) events? (?:was|were) appended$")]
async fn appended_count(world: &mut PlanWorld, count: String) {
    let expected: usize = if count == "no" { 0 } else { count.parse().expect("a count") };
    assert_eq!(world.appended().await.len(), expected);
}

#[then("the store's bytes are unchanged")]
async fn bytes_unchanged(world: &mut PlanWorld) {
    let now = world.store_fingerprint().await;
    assert_eq!(now, world.fingerprint_before(), "the store's content changed");
}

#[then(regex = r#"^the appended events? (?:is|are) "([^"]*)"$"#)]
async fn appended_types(world: &mut PlanWorld, types: String) {
    let appended: Vec<String> = world.appended().await.iter().map(|e| e.event.event_type().to_string()).collect();
    assert_eq!(appended, list(&types));
}

#[then("the shutdown was already recorded")]
fn shutdown_already_recorded(world: &mut PlanWorld) {
    assert!(matches!(world.outcome(), Ok(Done::Shutdown(false))), "got {:?}", world.outcome());
}

#[then(regex = r"^the existing checkpoint of step (\d+) is returned$")]
async fn existing_checkpoint(world: &mut PlanWorld, n: u32) {
    let view = world.view().await;
    let Ok(Done::Checkpoint(recorded)) = world.outcome() else {
        panic!("expected a checkpoint: {:?}", world.outcome())
    };
    let stored = view.state.resume.checkpoints.iter().find(|c| c.step.get() == n).expect("step's checkpoint");
    assert_eq!((&recorded.checkpoint, recorded.appended), (stored, false));
}

#[then(regex = r"^the resume point is step (\d+)( and it re-runs the uncertain step)?$")]
fn resume_point(world: &mut PlanWorld, n: u32, rerun: String) {
    let Ok(Done::Resume(outcome)) = world.outcome() else { panic!("expected a resume: {:?}", world.outcome()) };
    let point = outcome.resumed.expect("a real resume returns its resume point");
    assert_eq!((point.from_step.get(), point.rerun_uncertain), (n, !rerun.is_empty()));
}

#[then("exactly one resume wins and the other gets a conflict")]
async fn one_winner(world: &mut PlanWorld) {
    let Ok(Done::Race(results)) = world.outcome() else { panic!("expected a race: {:?}", world.outcome()) };
    let winners = results.iter().filter(|r| r.is_ok()).count();
    let conflicts: Vec<String> = results.iter().filter_map(|r| r.as_ref().err()).map(|f| f.name()).collect();
    assert_eq!((winners, conflicts), (1, vec!["StoreConflict".to_owned()]));
    crate::world::note_reached("StoreConflict");
    assert_eq!(world.appended().await.len(), 1, "only the winner's event is stored");
}

#[then("both are accepted and one of them appended")]
fn both_accepted_one_appended(world: &mut PlanWorld) {
    let Ok(Done::Race(results)) = world.outcome() else { panic!("expected a race: {:?}", world.outcome()) };
    let appended: Vec<u32> =
        results.iter().map(|r| *r.as_ref().expect("every identical checkpoint is accepted")).collect();
    assert_eq!(appended.iter().sum::<u32>(), 1, "exactly one racer appended: {appended:?}");
}

/// The plan's events in order, each with a full envelope: versions 1, 2, 3… without gaps,
/// rising global positions, distinct event ids and times that never go back.
#[then(regex = r#"^the history reads "([^"]*)"$"#)]
async fn history(world: &mut PlanWorld, types: String) {
    let history = world.service().history(&world.plan_id()).await.expect("the plan's history");
    let names: Vec<String> = history.iter().map(|e| e.event.event_type().to_string()).collect();
    assert_eq!(names, list(&types));
    for (expected_version, pair) in (1u32..).zip(history.windows(2)) {
        assert_eq!(eventually::versioning::Versioned::version(&pair[0]), expected_version);
        assert!(pair[0].sequence_number() < pair[1].sequence_number(), "global positions rise");
        assert!(pair[0].recorded_at <= pair[1].recorded_at, "times never go back");
        assert_ne!(pair[0].event_id, pair[1].event_id);
        assert_eq!(pair[0].source_id(), &world.plan_id());
    }
}

#[then(regex = r#"^the (resumable plans|plans listed) are "([^"]*)"$"#)]
async fn listing(world: &mut PlanWorld, which: String, plans: String) {
    let service = world.service();
    let summaries =
        if which == "resumable plans" { service.list_resumable().await } else { service.list_plans().await };
    let ids: Vec<String> = summaries.expect("a listing").iter().map(|s| s.plan_id.to_string()).collect();
    assert_eq!(ids, list(&plans));
}

fn codes(reasons: &[ResumeIneligibleReason]) -> Vec<String> {
    reasons.iter().map(|r| r.code().to_owned()).collect()
}

#[then(regex = r#"^the error message is "([^"]*)"$"#)]
fn error_message(world: &mut PlanWorld, message: String) {
    let failure = world.outcome().as_ref().expect_err("the command was refused");
    assert_eq!(failure.to_string(), message);
}
