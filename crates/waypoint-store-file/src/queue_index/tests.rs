//! The claim index against the rule it serves: after any mix of submissions, claims, failures
//! and cancellations, by this process or another, across checkpoints, a poll answers exactly
//! what filtering the open catalog answers; and once built, a poll reads its queue's changes,
//! not the catalog.

use std::time::Duration;

use eventually::store::Expected;
use futures::executor::block_on;
use waypoint_application::domain::{Artifact, Message, PlanName, QueueName, RunnerId, SubmittedDefinition};
use waypoint_application::{in_queue, LeaseRequest, ManualClock, PlanResumeService, PlanView, RunDefinition, Submit};

use super::{QueueIndex, MAX_UNSURE};
use crate::storage::bytes_read_on_this_thread;
use crate::test_support::*;
use crate::{AppendRequest, FileStore, StoreOptions};

fn queue(name: &str) -> QueueName {
    QueueName::parse(name).unwrap()
}

fn submit(service: &PlanResumeService<FileStore>, id: &str, queue_name: &str) {
    let definition = RunDefinition::unnamed_steps(
        PlanName::parse(id).unwrap(),
        Artifact::parse(&format!("submitted:{id}.toml")).unwrap(),
    );
    let submitted = SubmittedDefinition::new("plan_file", format!("name = {id:?}"), format!("{id}.toml")).unwrap();
    let submit = Submit { plan_id: plan(id), definition, submitted, queue: queue(queue_name), workdir: None };
    let (_, created) = block_on(service.submit(submit)).unwrap();
    assert!(created);
}

/// What the port's default answers: the open catalog, filtered by queue, oldest submission first.
fn by_filtering(store: &FileStore, queue: &QueueName) -> Vec<PlanView> {
    let mut views: Vec<PlanView> =
        store.open_plans().unwrap().into_iter().filter(|v| in_queue(&v.state) == Some(queue)).collect();
    views.sort_by(|a, b| {
        let key = |v: &PlanView| (v.state.submission.as_ref().map(|s| s.at), v.plan_id.clone());
        key(a).cmp(&key(b))
    });
    views
}

fn small_checkpoints() -> StoreOptions {
    StoreOptions { checkpoint_every: 3, ..StoreOptions::default() }
}

#[test]
fn every_poll_answers_what_filtering_the_open_catalog_answers() {
    let dir = tempfile::tempdir().unwrap();
    // The writer and the poller are two opens, as two processes are; both checkpoint often, so
    // polls meet plans in the rows, in the tail, and moved by the other's checkpoints.
    let writer = FileStore::open_with(dir.path(), small_checkpoints()).unwrap();
    let poller = FileStore::open_with(dir.path(), small_checkpoints()).unwrap();
    let clock = ManualClock::new(chrono::Utc::now());
    let submitter = PlanResumeService::new(writer.clone()).with_clock(clock.clone());
    let workers = [PlanResumeService::new(writer.clone()), PlanResumeService::new(poller.clone())];
    let queues = [queue("alpha"), queue("beta")];
    let mut held = Vec::new();
    let mut seed: u64 = 0x5eed;
    for n in 0..120 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let pick = (seed >> 33) as usize;
        match pick % 6 {
            0 | 1 => {
                // About half the submissions share their instant with the one before: ties by id.
                if (pick / 6).is_multiple_of(2) {
                    clock.advance(chrono::Duration::seconds(1));
                }
                submit(&submitter, &format!("p{:03}", 200 - n), queues[pick % 2].as_str());
            }
            2 => {
                let id = plan(&format!("plain{n}"));
                writer.append_events(&id, Expected::Exact(0), vec![created()]).unwrap();
            }
            3 => {
                let worker = &workers[pick % 2];
                let runner = RunnerId::parse(&format!("worker-{n}")).unwrap();
                let lease = LeaseRequest::new(runner, Duration::from_secs(3600));
                if let Some(claimed) = block_on(worker.claim(&queues[pick / 7 % 2], lease)).unwrap() {
                    held.push(claimed.run.plan_id().clone());
                }
            }
            4 if !held.is_empty() => {
                let id = held.remove(pick % held.len());
                let message = Message::parse("the step failed").unwrap();
                block_on(workers[pick % 2].fail(&id, message)).unwrap();
            }
            5 if !held.is_empty() => {
                let id = held.remove(pick % held.len());
                block_on(workers[pick % 2].cancel(&id, None)).unwrap();
            }
            _ => {}
        }
        for queue in &queues {
            let expected = by_filtering(&writer, queue);
            assert_eq!(poller.queue_views(queue).unwrap(), expected, "the poller, after step {n}");
            assert_eq!(writer.queue_views(queue).unwrap(), expected, "the writer, after step {n}");
        }
    }
    let listed: usize = queues.iter().map(|q| by_filtering(&writer, q).len()).sum();
    assert!(listed > 10, "the mix leaves plans in the queues: {listed}");
    let fresh = FileStore::open_read_only(dir.path()).unwrap();
    for queue in &queues {
        assert_eq!(fresh.queue_views(queue).unwrap(), by_filtering(&writer, queue), "a fresh read-only open");
    }
}

#[test]
fn a_read_only_poller_sees_another_process_claim_and_finish() {
    let dir = tempfile::tempdir().unwrap();
    let writer = FileStore::open(dir.path()).unwrap();
    let service = PlanResumeService::new(writer.clone());
    submit(&service, "first", "work");
    let poller = FileStore::open_read_only(dir.path()).unwrap();
    let work = queue("work");
    assert_eq!(poller.queue_views(&work).unwrap().len(), 1);
    submit(&service, "second", "work");
    let lease = LeaseRequest::new(RunnerId::parse("worker-1").unwrap(), Duration::from_secs(3600));
    let claimed = block_on(service.claim(&work, lease)).unwrap().expect("the oldest plan");
    let listed = poller.queue_views(&work).unwrap();
    let ids: Vec<&str> = listed.iter().map(|v| v.plan_id.as_str()).collect();
    assert_eq!(ids, ["first", "second"], "a claimed plan stays in its queue while it runs");
    block_on(service.fail(claimed.run.plan_id(), Message::parse("no").unwrap())).unwrap();
    writer.checkpoint().unwrap();
    let ids: Vec<String> = poller.queue_views(&work).unwrap().into_iter().map(|v| v.plan_id.to_string()).collect();
    assert_eq!(ids, ["second"], "a failed plan leaves its queue");
}

#[test]
fn once_built_a_poll_reads_its_queue_not_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let writer = FileStore::open(dir.path()).unwrap();
    let others: Vec<AppendRequest> = (0..2_000)
        .map(|n| AppendRequest {
            plan_id: plan(&format!("other{n}")),
            expected: Expected::Exact(0),
            events: vec![created()],
        })
        .collect();
    for result in writer.append_many(others) {
        result.unwrap();
    }
    let service = PlanResumeService::new(writer.clone());
    submit(&service, "queued-1", "work");
    submit(&service, "queued-2", "work");
    writer.checkpoint().unwrap();
    let poller = FileStore::open(dir.path()).unwrap();
    let work = queue("work");

    let read_by = |what: &dyn Fn()| {
        let before = bytes_read_on_this_thread();
        what();
        bytes_read_on_this_thread() - before
    };
    let catalog = read_by(&|| drop(by_filtering(&poller, &work)));
    let first = read_by(&|| assert_eq!(poller.queue_views(&work).unwrap().len(), 2));
    assert!(first >= catalog / 2, "the first poll builds the index from the catalog: {first} of {catalog}");
    let idle = read_by(&|| assert_eq!(poller.queue_views(&work).unwrap().len(), 2));
    assert!(idle * 100 < catalog, "an idle poll read {idle} bytes; the catalog is {catalog}");

    let lease = LeaseRequest::new(RunnerId::parse("worker-1").unwrap(), Duration::from_secs(3600));
    let claimed = block_on(service.claim(&work, lease)).unwrap().expect("a plan");
    let polled = std::cell::RefCell::new(Vec::new());
    let after_claim = read_by(&|| *polled.borrow_mut() = poller.queue_views(&work).unwrap());
    assert!(after_claim * 20 < catalog, "a poll after a claim read {after_claim} bytes; the catalog is {catalog}");
    assert_eq!(polled.into_inner(), by_filtering(&writer, &work), "the poll sees the claim");
    drop(claimed);
}

#[test]
fn an_index_marked_past_its_bound_asks_to_be_dropped() {
    let mut index = QueueIndex::default();
    for n in 0..MAX_UNSURE {
        assert!(index.touch(&plan(&format!("p{n}"))));
    }
    assert!(index.touch(&plan("p0")), "a plan marked again takes no room");
    assert!(!index.touch(&plan("one-more")));
}
