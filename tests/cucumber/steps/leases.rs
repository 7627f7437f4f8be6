//! Steps about leases: a runner without a run lock holds a plan by lease, renews it with
//! heartbeats, and loses it to another runner once it expired. The scenario's clock is the
//! store's clock, so `N seconds pass` moves leases to their expiry.

use std::time::Duration;

use cucumber::gherkin::Step;
use cucumber::{given, when};
use waypoint_application::domain::{DecisionId, PlanId, RunnerId, StepNumber};
use waypoint_application::{LeaseRequest, ResumeRequest, StepStart};

use crate::world::{Failure, PhaseArg, PlanWorld, Service};

fn lease(runner: &str, seconds: u64) -> LeaseRequest {
    LeaseRequest::new(RunnerId::parse(runner).expect("a valid runner id"), Duration::from_secs(seconds))
}

#[given(regex = r#"^the plan starts (\w+) as runner "([^"]+)" with a lease of (\d+) seconds$"#)]
#[when(regex = r#"^the plan starts (\w+) as runner "([^"]+)" with a lease of (\d+) seconds$"#)]
async fn start_leased(world: &mut PlanWorld, step: &Step, phase: PhaseArg, runner: String, seconds: u64) {
    let lease = lease(&runner, seconds);
    world
        .act(step, async move |service: Service, id: PlanId| service.start_phase_leased(&id, phase.0, lease).await)
        .await;
}

#[given(regex = r#"^the plan resumes as runner "([^"]+)" with a lease of (\d+) seconds$"#)]
#[when(regex = r#"^the plan resumes as runner "([^"]+)" with a lease of (\d+) seconds$"#)]
async fn resume_leased(world: &mut PlanWorld, step: &Step, runner: String, seconds: u64) {
    let request = ResumeRequest { lease: Some(lease(&runner, seconds)), ..world.resume_request(false) };
    world.act(step, async move |service: Service, id: PlanId| service.resume_plan(&id, request).await).await;
}

#[given(regex = r#"^runner "([^"]+)" sends a heartbeat for (\d+) seconds$"#)]
#[when(regex = r#"^runner "([^"]+)" sends a heartbeat for (\d+) seconds$"#)]
async fn heartbeat(world: &mut PlanWorld, step: &Step, runner: String, seconds: u64) {
    let LeaseRequest { runner, duration } = lease(&runner, seconds);
    world.act(step, async move |service: Service, id: PlanId| service.heartbeat(&id, runner, duration).await).await;
}

#[given(regex = r#"^step (\d+) starts under runner "([^"]+)"'s lease for (\d+) seconds$"#)]
#[when(regex = r#"^step (\d+) starts under runner "([^"]+)"'s lease for (\d+) seconds$"#)]
async fn step_starts_leased(world: &mut PlanWorld, step: &Step, n: u32, runner: String, seconds: u64) {
    let lease = lease(&runner, seconds);
    world
        .act(step, async move |service: Service, id: PlanId| {
            let decision = DecisionId::parse(&format!("decision-{n}")).expect("a valid decision id");
            let start = StepStart { lease: Some(lease), ..StepStart::new(StepNumber::new(n)?, decision) };
            Ok::<_, Failure>(service.record_step_started(&id, start).await?)
        })
        .await;
}

#[given(regex = r"^(\d+) seconds? pass(?:es)?$")]
fn seconds_pass(world: &mut PlanWorld, seconds: i64) {
    world.harness().clock.advance(chrono::Duration::seconds(seconds));
}
