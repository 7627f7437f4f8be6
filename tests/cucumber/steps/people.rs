//! Steps where a person takes part: a run that stops to ask, an approval or a rejection, a
//! pause.

use cucumber::gherkin::Step;
use cucumber::{given, when};
use waypoint_application::domain::{Actor, Message, PlanId, StepNumber};

use crate::world::{Failure, Maybe, PlanWorld, Service};

/// Registers one step definition for both `Given` and `When`.
macro_rules! command {
    (($kind:ident = $pattern:tt) $($item:tt)*) => {
        #[given($kind = $pattern)]
        #[when($kind = $pattern)]
        $($item)*
    };
}

fn step_number(n: Option<u32>) -> Result<Option<StepNumber>, Failure> {
    Ok(n.map(StepNumber::new).transpose()?)
}

command! {(regex = r#"^the run stops before step (\d+) to ask "([^"]+)"$"#)
async fn asks(world: &mut PlanWorld, step: &Step, n: u32, question: String) {
    world
        .act(step, async move |service: Service, id: PlanId| {
            Ok::<_, Failure>(service.request_approval(&id, StepNumber::new(n)?, None, Message::parse(&question)?).await?)
        })
        .await;
}}

command! {(regex = r#"^"([^"]+)" approves(?: step (\d+))?(?: saying "([^"]+)")?$"#)
async fn approves(world: &mut PlanWorld, step: &Step, by: String, n: Maybe<u32>, comment: Maybe<String>) {
    world
        .act(step, async move |service: Service, id: PlanId| {
            let comment = comment.0.as_deref().map(Message::parse).transpose()?;
            Ok::<_, Failure>(service.approve(&id, step_number(n.0)?, Actor::parse(&by)?, comment).await?)
        })
        .await;
}}

command! {(regex = r#"^"([^"]+)" rejects(?: step (\d+))? because "([^"]+)"$"#)
async fn rejects(world: &mut PlanWorld, step: &Step, by: String, n: Maybe<u32>, reason: String) {
    world
        .act(step, async move |service: Service, id: PlanId| {
            let reason = Message::parse(&reason)?;
            Ok::<_, Failure>(service.reject(&id, step_number(n.0)?, Actor::parse(&by)?, reason).await?)
        })
        .await;
}}

command! {(regex = r#"^"([^"]+)" pauses the plan$"#)
async fn pauses(world: &mut PlanWorld, step: &Step, by: String) {
    world
        .act(step, async move |service: Service, id: PlanId| {
            Ok::<_, Failure>(service.pause(&id, Actor::parse(&by)?, None).await?)
        })
        .await;
}}
