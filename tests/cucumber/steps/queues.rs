//! Steps about workers and queues: a plan submitted with its definition waits as `queued`, and
//! workers claim the oldest claimable plan of their queue under a lease, within the queue's limit.

use std::time::Duration;

use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use waypoint_application::domain::{
    Artifact, PlanId, PlanName, QueueName, RunnerId, StepDefinition, StepName, SubmittedDefinition,
};
use waypoint_application::{LeaseRequest, RunDefinition, Submit};

use crate::world::{Failure, Maybe, PlanWorld, Service};

fn queue(name: &str) -> QueueName {
    QueueName::parse(name).expect("a valid queue name")
}

fn submission(id: &PlanId, steps: u32, queue_name: &str) -> Submit {
    let definition = RunDefinition {
        name: PlanName::parse(id.as_str()).expect("a valid name"),
        source: Artifact::parse(&format!("submitted:{id}.toml")).expect("a valid source"),
        fingerprint: None,
        steps: (1..=steps)
            .map(|n| StepDefinition {
                name: StepName::parse(&format!("step {n}")).expect("a valid step name"),
                fingerprint: waypoint_application::domain::Fingerprint::parse("abcd").expect("a valid fingerprint"),
            })
            .collect(),
    };
    let text = format!("name = {:?}\n", id.as_str());
    Submit {
        plan_id: id.clone(),
        definition,
        submitted: SubmittedDefinition::new("plan_file", text, format!("{id}.toml")).expect("a small definition"),
        queue: queue(queue_name),
        workdir: None,
    }
}

#[given(regex = r#"^a plan "([^"]+)" of (\d+) steps? submitted to queue "([^"]+)"$"#)]
async fn submitted(world: &mut PlanWorld, step: &Step, plan: String, steps: u32, queue_name: String) {
    let id = world.select(&plan);
    let request = submission(&id, steps, &queue_name);
    world
        .act(step, async move |service: Service, _id: PlanId| {
            let (view, created) = service.submit(request).await?;
            assert!(created, "a new key makes a plan");
            Ok::<_, Failure>(view)
        })
        .await;
}

#[when(regex = r#"^plan "([^"]+)" is submitted to queue "([^"]+)" again$"#)]
async fn submitted_again(world: &mut PlanWorld, step: &Step, plan: String, queue_name: String) {
    let id = world.select(&plan);
    let request = submission(&id, 2, &queue_name);
    world
        .act(step, async move |service: Service, _id: PlanId| {
            let (view, created) = service.submit(request).await?;
            assert!(!created, "the same key gives back the plan it made");
            Ok::<_, Failure>(view)
        })
        .await;
}

#[given(regex = r#"^queue "([^"]+)" is limited to (\d+) running plans?$"#)]
async fn limited(world: &mut PlanWorld, queue_name: String, limit: u32) {
    world.service().set_queue_limit(&queue(&queue_name), Some(limit)).await.expect("the limit is set");
}

#[when(regex = r#"^worker "([^"]+)" claims from queue "([^"]+)" with a lease of (\d+) seconds$"#)]
async fn claims(world: &mut PlanWorld, worker: String, queue_name: String, seconds: u64) {
    let lease = LeaseRequest::new(RunnerId::parse(&worker).expect("a valid runner id"), Duration::from_secs(seconds));
    let claimed = world.service().claim(&queue(&queue_name), lease).await.expect("a claim answers");
    let id = claimed.map(|claimed| claimed.run.plan_id().clone());
    if let Some(id) = &id {
        world.select(id.as_str());
    }
    world.claimed = Some(id);
    world.harness().clock.advance(chrono::Duration::seconds(1));
}

#[then(regex = r#"^worker "([^"]+)" (?:holds plan "([^"]+)"|claimed nothing)$"#)]
async fn holds(world: &mut PlanWorld, worker: String, plan: Maybe<String>) {
    let plan = plan.0;
    let claimed = world.claimed.clone().expect("a worker must claim first");
    assert_eq!(claimed.as_ref().map(PlanId::as_str), plan.as_deref(), "what worker {worker} claimed");
    if let Some(plan) = plan {
        let view = world.service().load_summary(&PlanId::parse(&plan).expect("a valid id")).await.expect("loads");
        let holder = view.state.lease.map(|lease| lease.runner.to_string());
        assert_eq!(holder.as_deref(), Some(worker.as_str()), "the worker holds the plan by its lease");
    }
}
