//! Submitting and claiming: given submitted plans, when workers claim, then the oldest comes
//! first, a key submitted again is the same plan, and a queue limit holds.

use std::time::Duration;

use futures::executor::block_on;
use waypoint_domain::{Artifact, PlanName, PlanStatus, RunnerId};

use super::*;
use crate::InMemoryStore;

fn submit(service: &PlanResumeService<InMemoryStore>, id: &str, queue: &str) -> bool {
    let definition = RunDefinition::unnamed_steps(
        PlanName::parse(id).unwrap(),
        Artifact::parse(&format!("submitted:{id}.toml")).unwrap(),
    );
    let request = Submit {
        plan_id: PlanId::parse(id).unwrap(),
        definition,
        submitted: SubmittedDefinition::new("plan_file", "name = 'x'".into(), format!("{id}.toml")).unwrap(),
        queue: QueueName::parse(queue).unwrap(),
        workdir: None,
    };
    block_on(service.submit(request)).expect("submit").1
}

fn lease(runner: &str) -> LeaseRequest {
    LeaseRequest::new(RunnerId::parse(runner).unwrap(), Duration::from_secs(60))
}

#[test]
fn submitting_a_key_again_gives_back_the_plan_it_made() {
    let service = PlanResumeService::new(InMemoryStore::new());
    assert!(submit(&service, "job-1", "builds"));
    assert!(!submit(&service, "job-1", "builds"), "the same key is the same plan");
    let summary = block_on(service.build_resume_summary(&PlanId::parse("job-1").unwrap(), None)).unwrap();
    assert_eq!((summary.status, summary.queue.as_ref().map(QueueName::as_str)), (PlanStatus::Queued, Some("builds")));
    let submitted = block_on(service.submission(&summary.plan_id)).unwrap().expect("submitted");
    assert_eq!(submitted.definition.text, "name = 'x'");
}

#[test]
fn workers_claim_oldest_first_only_their_queue_and_within_its_limit() {
    let service = PlanResumeService::new(InMemoryStore::new());
    submit(&service, "first", "builds");
    submit(&service, "other", "docs");
    submit(&service, "second", "builds");
    let builds = QueueName::parse("builds").unwrap();
    block_on(service.set_queue_limit(&builds, Some(1))).unwrap();
    let claimed = block_on(service.claim(&builds, lease("w1"))).unwrap().expect("a plan");
    assert_eq!(claimed.run.plan_id().as_str(), "first");
    assert_eq!(claimed.before.status, PlanStatus::Queued);
    assert!(block_on(service.claim(&builds, lease("w2"))).unwrap().is_none(), "the limit of 1 is reached");
    block_on(service.set_queue_limit(&builds, None)).unwrap();
    let next = block_on(service.claim(&builds, lease("w2"))).unwrap().expect("a plan");
    assert_eq!(next.run.plan_id().as_str(), "second");
    assert!(block_on(service.claim(&builds, lease("w3"))).unwrap().is_none(), "docs is another queue");
    let queues = block_on(service.queues()).unwrap();
    let names: Vec<(&str, usize, usize)> = queues.iter().map(|q| (q.queue.as_str(), q.claimable, q.running)).collect();
    assert_eq!(names, [("builds", 0, 2), ("docs", 1, 0)]);
}
