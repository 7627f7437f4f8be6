//! Steps about forks: a new plan copied from a source's completed steps, which resumes after them.

use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use waypoint_application::domain::{PlanId, ProcessingState, StepNumber};

use crate::world::{Done, Failure, PlanWorld, Service};

#[given(regex = r#"^the plan is forked at step (\d+) as "([^"]+)"$"#)]
#[when(regex = r#"^the plan is forked at step (\d+) as "([^"]+)"$"#)]
async fn forked(world: &mut PlanWorld, step: &Step, at: u32, fork: String) {
    let fork = PlanId::parse(&fork).expect("a valid plan id");
    world
        .act(step, async move |service: Service, source: PlanId| {
            let at = if at == 0 { None } else { Some(StepNumber::new(at)?) };
            Ok::<_, Failure>(Done::Fork(Box::new(service.fork_plan(&source, at, Some(fork)).await?)))
        })
        .await;
}

#[then(regex = r#"^we look at plan "([^"]+)"$"#)]
fn look_at(world: &mut PlanWorld, plan: String) {
    world.select(&plan);
}

#[then(
    regex = r#"^it is a fork of "([^"]+)" (?:at step (\d+)|before step 1), queued in (\w+), resuming at step (\d+)$"#
)]
async fn is_a_fork(world: &mut PlanWorld, source: String, at: String, phase: String, next: u32) {
    let summary = world.summary(false).await;
    let forked_from = summary.forked_from.as_ref().expect("a fork names its source");
    assert_eq!(forked_from.plan_id.as_str(), source);
    assert_eq!(forked_from.step.map(StepNumber::get), at.parse().ok(), "the last step copied");
    assert_eq!((summary.phase.as_str(), summary.state), (phase.as_str(), ProcessingState::Queued));
    assert!(summary.eligible, "a fork can resume at once: {:?}", summary.reasons);
    assert_eq!(summary.next_step.map(StepNumber::get), Some(next));
    let history = world.service().history(&world.plan_id()).await.expect("the fork's history");
    assert_eq!(history.len(), 1, "a fork is one event until it runs");
    assert_eq!(history[0].event.event_type().as_str(), "plan_forked");
}
