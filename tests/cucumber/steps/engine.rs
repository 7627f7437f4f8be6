//! Steps that run library workflows through the step engine: steps that fail on chosen
//! attempts, runs that continue, finished keys that replay.

use std::cell::RefCell;
use std::time::Duration;

use cucumber::{then, when};
use waypoint_application::domain::{PlanEvent, PlanId};
use waypoint_application::{StepOptions, WorkflowError};

use crate::world::PlanWorld;

fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[when(
    regex = r#"^the workflow "([^"]+)" runs the steps "([^"]*)"(?: where "([^"]+)" fails on attempts? "([^"]+)")?(?: with (\d+) retr(?:y|ies))?$"#
)]
async fn run_workflow(
    world: &mut PlanWorld,
    key: String,
    steps: String,
    failing: String,
    failing_attempts: String,
    retries: String,
) {
    let id = world.select(&key);
    let service = world.service().clone();
    let failing_attempts: Vec<u32> = list(&failing_attempts).iter().map(|a| a.parse().expect("a number")).collect();
    let retries: u32 = retries.parse().unwrap_or(0);
    let ran = RefCell::new(Vec::new());
    let before = world.events().await.len();
    let result = async {
        let mut run = service.workflow(&id).await?;
        for name in list(&steps) {
            let options = StepOptions::named(&name).retries(retries).retry_delay(Duration::ZERO);
            run.step_with(options, |context| {
                ran.borrow_mut().push(format!("{name}#{}", context.attempt.get()));
                let fails = name == failing && failing_attempts.contains(&context.attempt.get());
                async move {
                    if fails {
                        Err(format!("{} failed", context.name))
                    } else {
                        Ok(context.step.get())
                    }
                }
            })
            .await?;
        }
        run.finish().await?;
        Ok::<_, WorkflowError>(())
    }
    .await;
    world.workflow_ran.extend(ran.into_inner());
    world.workflow_appended = world.events().await.len() - before;
    world.workflow_end = Some(match result {
        Ok(()) => "finished".to_owned(),
        Err(WorkflowError::StepFailed { step, .. }) => format!("failed at step {step}"),
        Err(other) => other.to_string(),
    });
}

#[then(regex = r#"^the workflow (finished|failed at step \d+)$"#)]
fn workflow_end(world: &mut PlanWorld, end: String) {
    assert_eq!(world.workflow_end.as_deref(), Some(end.as_str()));
}

#[then(regex = r#"^the workflow ran "([^"]*)"$"#)]
fn workflow_ran(world: &mut PlanWorld, ran: String) {
    assert_eq!(world.workflow_ran, list(&ran));
}

#[then(regex = r#"^the attempts recorded for step (\d+) of "([^"]+)" are "([^"]*)"$"#)]
async fn attempts_recorded(world: &mut PlanWorld, number: u32, key: String, attempts: String) {
    let id = PlanId::parse(&key).expect("a valid id");
    let history = world.service().history(&id).await.expect("the plan exists");
    let recorded: Vec<String> = history
        .iter()
        .filter_map(|event| match &event.event {
            PlanEvent::StepStarted(started) if started.step.get() == number => {
                started.attempt.map(|a| a.get().to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(recorded, list(&attempts));
}

#[then(regex = r#"^the last workflow run appended no events$"#)]
fn appended_nothing(world: &mut PlanWorld) {
    assert_eq!(world.workflow_appended, 0, "a replay writes nothing");
}
