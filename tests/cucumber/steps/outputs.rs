//! Steps about named steps: their outputs, their attempts, and drift of their definitions.

use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use serde_json::Value;
use waypoint_application::domain::{
    Attempt, AttemptFailure, DecisionId, Fingerprint, PlanId, ResumeSummary, StepDefinition, StepName, StepNumber,
    StepOutput, TotalSteps,
};
use waypoint_application::{Clock, FailedAttempt, NewPlan, StepCheckpoint, StepStart};

use crate::world::{list, Failure, Maybe, PlanWorld, Service};

/// Registers one step definition for both `Given` and `When`.
macro_rules! command {
    (($kind:ident = $pattern:tt) $($item:tt)*) => {
        #[given($kind = $pattern)]
        #[when($kind = $pattern)]
        $($item)*
    };
}

fn step_name(name: &str) -> StepName {
    StepName::parse(name).expect("a valid step name")
}

#[given(regex = r#"^a plan "([^"]+)" with the steps:$"#)]
async fn plan_with_steps(world: &mut PlanWorld, step: &Step, plan: String) {
    let table = step.table.as_ref().expect("a table of name | fingerprint");
    world.definition = table
        .rows
        .iter()
        .skip(1)
        .map(|row| StepDefinition {
            name: step_name(&row[0]),
            fingerprint: Fingerprint::parse(&row[1]).expect("a valid fingerprint"),
        })
        .collect();
    let id = world.select(&plan);
    let steps = world.definition.clone();
    world
        .act(step, async move |service: Service, _| {
            let new = NewPlan {
                id: Some(id),
                total_steps: Some(TotalSteps::new(steps.len() as u32)?),
                steps,
                ..NewPlan::default()
            };
            Ok::<_, Failure>(service.create_plan(new).await?)
        })
        .await;
}

command! {(regex = r#"^step (\d+) "([^"]+)" starts as attempt (\d+)$"#)
async fn named_step_starts(world: &mut PlanWorld, step: &Step, n: u32, name: String, attempt: u32) {
    world
        .act(step, async move |service: Service, id: PlanId| {
            let start = StepStart {
                step: StepNumber::new(n)?,
                decision_id: DecisionId::parse(&format!("decision-{n}-{attempt}"))?,
                name: Some(step_name(&name)),
                attempt: Some(Attempt::new(attempt)?),
                lease: None,
            };
            Ok::<_, Failure>(service.record_step_started(&id, start).await?)
        })
        .await;
}}

/// Records step `n` under `name` with `output`, and the definition fingerprint the scenario's
/// definition has for that step now, as a runner would.
async fn complete_named(world: &mut PlanWorld, step: &Step, n: u32, name: String, output: Option<Value>) {
    let fingerprint = world.definition.iter().find(|d| d.name.as_str() == name).map(|d| d.fingerprint.clone());
    world
        .act(step, async move |service: Service, id: PlanId| {
            let checkpoint = StepCheckpoint {
                step: StepNumber::new(n)?,
                decision_id: DecisionId::parse(&format!("decision-{n}"))?,
                snapshot_id: None,
                artifacts: vec![],
                name: Some(step_name(&name)),
                output: output.map(StepOutput::new).transpose()?,
                fingerprint,
            };
            Ok::<_, Failure>(service.record_step_checkpoint(&id, checkpoint).await?)
        })
        .await;
}

command! {(regex = r#"^step (\d+) "([^"]+)" completes(?: with output (.+))?$"#)
async fn named_step_completes(world: &mut PlanWorld, step: &Step, n: u32, name: String, output: Maybe<String>) {
    let output = output.0.map(|json| serde_json::from_str(&json).expect("the scenario's output is JSON"));
    complete_named(world, step, n, name, output).await;
}}

command! {(regex = r#"^step (\d+) "([^"]+)" completes with an output of (\d+) bytes$"#)
async fn named_step_completes_with_size(world: &mut PlanWorld, step: &Step, n: u32, name: String, bytes: usize) {
    // A JSON string of `bytes` bytes when encoded: its two quotes and the characters between.
    let output = Value::String("x".repeat(bytes - 2));
    complete_named(world, step, n, name, Some(output)).await;
}}

command! {(regex = r"^attempt (\d+) of step (\d+) fails with (exit code (\d+)|signal (\d+)|a timeout)$")
async fn attempt_fails(
    world: &mut PlanWorld,
    step: &Step,
    attempt: u32,
    n: u32,
    _how: String,
    code: Maybe<i32>,
    signal: Maybe<i32>,
) {
    let reason = match (code.0, signal.0) {
        (Some(code), _) => AttemptFailure::Exit { code },
        (_, Some(signal)) => AttemptFailure::Signal { signal },
        _ => AttemptFailure::Timeout,
    };
    let retry_at = Some(world.harness().clock.now() + chrono::Duration::seconds(2));
    world
        .act(step, async move |service: Service, id: PlanId| {
            let failed = FailedAttempt { step: StepNumber::new(n)?, attempt: Attempt::new(attempt)?, reason, retry_at };
            Ok::<_, Failure>(service.record_attempt_failed(&id, failed).await?)
        })
        .await;
}}

#[then(regex = r#"^the error code is "(\w+)"$"#)]
fn error_code(world: &mut PlanWorld, code: String) {
    let failure = world.outcome().as_ref().expect_err("the command was refused");
    assert_eq!(failure.code(), code, "refused with: {failure}");
}

/// Reads the plan back from the store, as a resumed run would, and compares every completed
/// step's name and output with the table.
#[then("reading the plan back gives the completed steps:")]
async fn completed_steps_read_back(world: &mut PlanWorld, step: &Step) {
    let view = world.view().await;
    let table = step.table.as_ref().expect("a table of step | name | output");
    let expected: Vec<(u32, String, Value)> = table
        .rows
        .iter()
        .skip(1)
        .map(|row| {
            let output = if row[2] == "absent" { Value::Null } else { serde_json::from_str(&row[2]).expect("JSON") };
            (row[0].parse().expect("a step number"), row[1].clone(), output)
        })
        .collect();
    let actual: Vec<(u32, String, Value)> = view
        .state
        .resume
        .checkpoints
        .iter()
        .map(|c| {
            let name = c.name.as_ref().map_or_else(String::new, |n| n.to_string());
            (c.step.get(), name, c.output.as_ref().map_or(Value::Null, |o| o.as_value().clone()))
        })
        .collect();
    assert_eq!(actual, expected);
}

#[given(regex = r#"^the definition of step (\d+) "([^"]+)" changes$"#)]
fn step_definition_changes(world: &mut PlanWorld, n: u32, name: String) {
    let position = usize::try_from(n - 1).expect("a small step number");
    let step = world.definition.get_mut(position).expect("the definition has the step");
    assert_eq!(step.name.as_str(), name, "the scenario names the step at that position");
    // Any other digest will do: flip the fingerprint's last hex digit.
    let mut hex = step.fingerprint.as_str().to_owned();
    let last = if hex.ends_with('0') { '1' } else { '0' };
    hex.pop();
    hex.push(last);
    step.fingerprint = Fingerprint::parse(&hex).expect("still hexadecimal");
}

#[given(regex = r#"^the step "([^"]+)" with fingerprint "([0-9a-f]+)" is added to the definition$"#)]
fn step_added(world: &mut PlanWorld, name: String, fingerprint: String) {
    world.definition.push(StepDefinition {
        name: step_name(&name),
        fingerprint: Fingerprint::parse(&fingerprint).expect("a valid fingerprint"),
    });
}

#[given(regex = r#"^steps (\d+) and (\d+) swap places in the definition$"#)]
fn steps_swap(world: &mut PlanWorld, a: usize, b: usize) {
    world.definition.swap(a - 1, b - 1);
}

#[given(regex = r#"^the step "([^"]+)" is removed from the definition$"#)]
fn step_removed(world: &mut PlanWorld, name: String) {
    world.definition.retain(|d| d.name.as_str() != name);
}

#[then(regex = r#"^the definition check finds the plan (?:eligible|not eligible because "([^"]+)")$"#)]
async fn definition_verdict(world: &mut PlanWorld, reasons: Maybe<String>) {
    let verdict = world.definition_verdict().await;
    let codes: Vec<String> = verdict.reasons.iter().map(|r| r.code().to_owned()).collect();
    assert_eq!(codes, reasons.0.as_deref().map(list).unwrap_or_default());
    assert_eq!(verdict.eligible, verdict.reasons.is_empty());
}

/// The summary's `changed_steps`, each as `N name completed|pending change`.
#[then(regex = r#"^the summary lists the changed steps "([^"]*)"$"#)]
async fn changed_steps(world: &mut PlanWorld, expected: String) {
    let verdict = world.definition_verdict().await;
    let view = world.service().load_summary(&world.plan_id()).await.expect("the plan's summary view loads");
    let summary = ResumeSummary::build(&view.plan_id, &view.state, &verdict, Some(view.last_activity_at));
    let shown: Vec<String> = summary
        .changed_steps
        .iter()
        .map(|c| {
            let name = c.name.as_ref().map_or("?", StepName::as_str);
            let when = if c.completed { "completed" } else { "pending" };
            let change = serde_json::to_value(c.change).expect("serializes");
            format!("{} {name} {when} {}", c.step, change.as_str().expect("a word"))
        })
        .collect();
    assert_eq!(shown, list(&expected));
}

#[then(regex = r#"^the error message names "([^"]+)" and "([^"]+)"$"#)]
fn error_names_both(world: &mut PlanWorld, first: String, second: String) {
    let message = world.outcome().as_ref().expect_err("the command was refused").to_string();
    for name in [first, second] {
        assert!(message.contains(&format!("{name:?}")), "{message:?} does not name {name:?}");
    }
}
