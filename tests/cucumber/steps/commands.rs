//! Steps that run commands. Each reads as `Given` (it must be accepted) or `When` (its result is
//! kept for the `Then` steps); `PlanWorld::act` tells the two apart.

use cucumber::gherkin::Step;
use cucumber::{given, when};
use eventually::store::{EventStore, Expected};
use uuid::Uuid;
use waypoint_application::domain::{
    decide, Actor, Artifact, DecisionId, EventId, Fingerprint, PlanCommand, PlanId, RunnerId, SnapshotId, StepNumber,
    TotalSteps,
};
use waypoint_application::{NewPlan, RecordedEvent, ServiceError, StepCheckpoint, StepStart};

use crate::world::{Done, Failure, Maybe, Move, PhaseArg, PlanWorld, Service, StateArg};

/// Registers one step definition for both `Given` and `When`.
macro_rules! command {
    (($kind:ident = $pattern:tt) $($item:tt)*) => {
        #[given($kind = $pattern)]
        #[when($kind = $pattern)]
        $($item)*
    };
}

command! {(regex = r#"^a plan "([^"]+)"(?: is created)?(?: with (\d+) steps)?(?: (?:with|and) fingerprint "([0-9a-f]+)")?$"#)
async fn create_plan(world: &mut PlanWorld, step: &Step, plan: String, total: Maybe<u32>, fingerprint: Maybe<String>) {
    let id = world.select(&plan);
    world
        .act(step, async move |service: Service, _| {
            let new = NewPlan {
                id: Some(id),
                total_steps: total.0.map(TotalSteps::new).transpose()?,
                fingerprint: fingerprint.0.as_deref().map(Fingerprint::parse).transpose()?,
                ..NewPlan::default()
            };
            Ok::<_, Failure>(service.create_plan(new).await?)
        })
        .await;
}}

#[given(expr = "a plan {string} in {phase} {state}")]
async fn plan_in(world: &mut PlanWorld, step: &Step, plan: String, phase: PhaseArg, state: StateArg) {
    create_plan(world, step, plan, Maybe(None), Maybe(None)).await;
    for next in Move::path_to(phase.0, state.0) {
        world.act(step, async move |service: Service, id: PlanId| next.perform(&service, &id).await).await;
    }
    let view = world.view().await;
    assert_eq!((view.state.phase, view.state.state), (phase.0, state.0), "the path reached another pair");
}

#[given(regex = r#"^a plan "([^"]+)" run from the plan file "([^"]+)" that completed$"#)]
async fn plan_file_plan_completed(world: &mut PlanWorld, step: &Step, plan: String, file: String) {
    let id = world.select(&plan);
    world
        .act(step, async move |service: Service, _| {
            let new = NewPlan {
                id: Some(id.clone()),
                source: Some(Artifact::parse(&file)?),
                start: Some((waypoint_application::domain::Phase::Strategize, None)),
                ..NewPlan::default()
            };
            service.create_plan(new).await?;
            Ok::<_, Failure>(service.complete_phase(&id).await?)
        })
        .await;
}

#[given(regex = r#"^we work on plan "([^"]+)"$"#)]
fn work_on(world: &mut PlanWorld, plan: String) {
    world.select(&plan);
}

command! {(expr = "the plan {move}")
async fn lifecycle_move(world: &mut PlanWorld, step: &Step, next: Move) {
    world.act(step, async move |service: Service, id: PlanId| next.perform(&service, &id).await).await;
}}

command! {(regex = r#"^the plan starts (\w+) as runner "([^"]+)"$"#)
async fn start_as_runner(world: &mut PlanWorld, step: &Step, phase: PhaseArg, runner: String) {
    let runner = RunnerId::parse(&runner).expect("a valid runner id");
    world
        .act(step, async move |service: Service, id: PlanId| service.start_phase(&id, phase.0, Some(runner)).await)
        .await;
    world.runner_holds_lock_if_accepted();
}}

command! {(regex = r"^the total is set to (\d+)$")
async fn set_total(world: &mut PlanWorld, step: &Step, total: u32) {
    world
        .act(step, async move |service: Service, id: PlanId| {
            Ok::<_, Failure>(service.set_total_steps(&id, TotalSteps::new(total)?).await?)
        })
        .await;
}}

command! {(regex = r"^step (\d+) starts$")
async fn step_starts(world: &mut PlanWorld, step: &Step, n: u32) {
    world
        .act(step, async move |service: Service, id: PlanId| {
            Ok::<_, Failure>(service.record_step_started(&id, StepStart::new(StepNumber::new(n)?, decision(n, None))).await?)
        })
        .await;
}}

command! {(regex = r#"^step (\d+) completes(?: with decision "([^"]+)")?(?: with snapshot "([^"]+)")?(?: with artifact "([^"]+)")?$"#)
async fn step_completes(
    world: &mut PlanWorld,
    step: &Step,
    n: u32,
    decision_id: Maybe<String>,
    snapshot: Maybe<String>,
    artifact: Maybe<String>,
) {
    if let Some(snapshot) = &snapshot.0 {
        // The runner that took the snapshot left it where the probe looks.
        world.harness().snapshots.set_present(snapshot, true);
    }
    world
        .act(step, async move |service: Service, id: PlanId| {
            let checkpoint = StepCheckpoint {
                step: StepNumber::new(n)?,
                decision_id: decision(n, decision_id.0.as_deref()),
                snapshot_id: snapshot.0.as_deref().map(SnapshotId::parse).transpose()?,
                artifacts: artifact.0.as_deref().map(Artifact::parse).transpose()?.into_iter().collect(),
                name: None,
                output: None,
                fingerprint: None,
            };
            Ok::<_, Failure>(service.record_step_checkpoint(&id, checkpoint).await?)
        })
        .await;
}}

command! {(regex = r"^steps (\d+) to (\d+) complete$")
async fn steps_complete(world: &mut PlanWorld, step: &Step, first: u32, last: u32) {
    world
        .act(step, async move |service: Service, id: PlanId| {
            let mut last_recorded = None;
            for n in first..=last {
                let (step, decision_id) = (StepNumber::new(n)?, decision(n, None));
                let checkpoint = StepCheckpoint { step, decision_id, snapshot_id: None, artifacts: vec![], name: None, output: None, fingerprint: None };
                last_recorded = Some(service.record_step_checkpoint(&id, checkpoint).await?);
            }
            Ok::<_, Failure>(last_recorded.expect("the range names at least one step"))
        })
        .await;
}}

command! {(regex = r#"^the plan resumes(?: as runner "([^"]+)")?$"#)
async fn resumes(world: &mut PlanWorld, step: &Step, runner: Maybe<String>) {
    let runner = runner.0.as_deref().map(|r| RunnerId::parse(r).expect("a valid runner id"));
    let request = waypoint_application::ResumeRequest { runner: runner.clone(), ..world.resume_request(false) };
    world.act(step, async move |service: Service, id: PlanId| service.resume_plan(&id, request).await).await;
    if runner.is_some() {
        world.runner_holds_lock_if_accepted();
    }
}}

#[when("a dry run of the resume is requested")]
async fn dry_run(world: &mut PlanWorld, step: &Step) {
    let request = world.resume_request(true);
    world.act(step, async move |service: Service, id: PlanId| service.resume_plan(&id, request).await).await;
}

#[when("two runners resume the plan at the same moment")]
async fn racing_runners(world: &mut PlanWorld, step: &Step) {
    let request = world.resume_request(false);
    world
        .act(step, async move |service: Service, id: PlanId| {
            // Both loads wait for each other, so both decide against the same version.
            service.store().open_gate(2);
            let results = std::thread::scope(|scope| {
                let racers: Vec<_> = (0..2)
                    .map(|_| scope.spawn(|| futures::executor::block_on(service.resume_plan(&id, request.clone()))))
                    .collect();
                racers.into_iter().map(|r| r.join().expect("a racer panicked")).collect::<Vec<_>>()
            });
            service.store().close_gate();
            let results = results
                .into_iter()
                .map(|r| r.map(|o| o.resumed.expect("a real resume").version).map_err(Failure::from))
                .collect();
            Ok::<_, ServiceError>(Done::Race(results))
        })
        .await;
}

#[when(regex = r"^two runners record step (\d+) with the same payload at the same moment$")]
async fn racing_identical_checkpoints(world: &mut PlanWorld, step: &Step, n: u32) {
    world
        .act(step, async move |service: Service, id: PlanId| {
            let checkpoint = StepCheckpoint::new(StepNumber::new(n)?, decision(n, None));
            // Both loads wait for each other, so both decide against the same version.
            service.store().open_gate(2);
            let results = std::thread::scope(|scope| {
                let racers: Vec<_> = (0..2)
                    .map(|_| {
                        let (service, id, checkpoint) = (&service, &id, checkpoint.clone());
                        scope.spawn(move || futures::executor::block_on(service.record_step_checkpoint(id, checkpoint)))
                    })
                    .collect();
                racers.into_iter().map(|r| r.join().expect("a racer panicked")).collect::<Vec<_>>()
            });
            service.store().close_gate();
            let results =
                results.into_iter().map(|r| r.map(|c| u32::from(c.appended)).map_err(Failure::from)).collect();
            Ok::<_, Failure>(Done::Race(results))
        })
        .await;
}

#[when("two resumes are decided from the same loaded state")]
async fn racing_decisions(world: &mut PlanWorld, step: &Step) {
    world
        .act(step, async move |service: Service, id: PlanId| {
            let view = service.load(&id).await?;
            let mut results = Vec::new();
            for by in ["runner-a", "runner-b"] {
                let command = PlanCommand::Resume {
                    by: Actor::parse(by).expect("a valid actor"),
                    runner: None,
                    at: crate::world::epoch(),
                    inputs: Default::default(),
                    lease: None,
                };
                let events = decide(Some(&view.state), command).expect("the plan is eligible");
                let recorded = events
                    .into_iter()
                    .map(|event| RecordedEvent {
                        event_id: EventId::from_uuid(Uuid::new_v4()),
                        recorded_at: crate::world::epoch(),
                        event,
                    })
                    .collect();
                let mut store = service.store().clone();
                results.push(
                    store.append(id.clone(), Expected::Exact(view.version), recorded).await.map_err(Failure::from),
                );
            }
            Ok::<_, ServiceError>(Done::Race(results))
        })
        .await;
}

#[given(regex = r#"^the runner "([^"]+)" dies$"#)]
fn runner_dies(world: &mut PlanWorld, _runner: String) {
    world.runners_die();
}

#[given("another runner holds the plan's run lock")]
fn lock_held(world: &mut PlanWorld) {
    world.another_runner_takes_the_lock();
}

#[given(regex = r#"^the snapshot "([^"]+)" is lost$"#)]
fn snapshot_lost(world: &mut PlanWorld, snapshot: String) {
    world.harness().snapshots.set_present(&snapshot, false);
}

#[given(regex = r#"^the caller's plan definition has fingerprint "([0-9a-f]+)"$"#)]
fn caller_fingerprint(world: &mut PlanWorld, fingerprint: String) {
    world.fingerprint = Some(Fingerprint::parse(&fingerprint).expect("a valid fingerprint"));
}

#[given(regex = r"^(\d+) minutes? pass(?:es)?$")]
fn time_passes(world: &mut PlanWorld, minutes: i64) {
    world.harness().clock.advance(chrono::Duration::minutes(minutes));
}

/// Step `n`'s decision: the one the scenario names, or `decision-n`.
fn decision(n: u32, named: Option<&str>) -> DecisionId {
    DecisionId::parse(named.unwrap_or(&format!("decision-{n}"))).expect("a valid decision id")
}
