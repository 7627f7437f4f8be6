//! Steps about retention: compactions into the scenario's archive, what they removed, what the
//! archive holds, and how a removed plan answers.

use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use eventually::store::{EventStore, Select};
use futures::TryStreamExt;
use waypoint_application::domain::PlanId;
use waypoint_application::{CompactRequest, PlanStore, ServiceError, StoredEvent};

use crate::world::{list, Done, Failure, PlanWorld, Service, ARCHIVE};

#[given(regex = r"^(\d+) days? pass(?:es)?$")]
fn days_pass(world: &mut PlanWorld, days: i64) {
    world.harness().clock.advance(chrono::Duration::days(days));
}

#[given(regex = r"^plans last active more than (\d+) days ago are compacted$")]
async fn given_compacted(world: &mut PlanWorld, step: &Step, days: i64) {
    compact(world, step, days, false).await;
}

#[when(regex = r"^plans last active more than (\d+) days ago are compacted$")]
async fn compacted(world: &mut PlanWorld, step: &Step, days: i64) {
    compact(world, step, days, false).await;
}

#[when(regex = r"^a dry run of compacting plans last active more than (\d+) days ago is requested$")]
async fn dry_run(world: &mut PlanWorld, step: &Step, days: i64) {
    compact(world, step, days, true).await;
}

async fn compact(world: &mut PlanWorld, step: &Step, days: i64, dry_run: bool) {
    let archive = world.harness().archive.clone();
    let request = CompactRequest { older_than: chrono::Duration::days(days), dry_run };
    world
        .act(step, async move |service: Service, _| {
            Ok::<_, ServiceError>(Done::Compaction(Box::new(service.compact(request, &archive, ARCHIVE).await?)))
        })
        .await;
}

#[given(regex = r#"^the compaction removed "([^"]*)"$"#)]
#[then(regex = r#"^the compaction removed "([^"]*)"$"#)]
fn removed(world: &mut PlanWorld, plans: String) {
    match world.outcome() {
        Ok(Done::Compaction(compaction)) => {
            let ids: Vec<String> = compaction.removed.iter().map(PlanId::to_string).collect();
            assert_eq!(ids, list(&plans), "removed, oldest activity first");
            assert!(compaction.kept.is_empty(), "nothing moved meanwhile: {:?}", compaction.kept);
            assert_eq!(compaction.archive, ARCHIVE);
            if compaction.dry_run || ids.is_empty() {
                assert_eq!(compaction.reclaimed_bytes, 0, "nothing removed, nothing reclaimed");
            }
        }
        other => panic!("the last command was no compaction: {other:?}"),
    }
}

async fn history(store: &impl PlanStore, id: &PlanId) -> Vec<StoredEvent> {
    store
        .stream(id.clone(), Select::All)
        .await
        .expect("the store streams")
        .try_collect()
        .await
        .expect("events read back")
}

/// The parts of an event that an archive keeps exactly: its id, version, time and payload (its
/// global position is the archive's own).
fn kept_parts(events: &[StoredEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let version = eventually::versioning::Versioned::version(e);
            format!("{}|{version}|{}|{:?}", e.event_id, e.recorded_at.to_rfc3339(), e.event)
        })
        .collect()
}

#[then(regex = r#"^the archive holds the whole histories of "([^"]*)"$"#)]
async fn archive_holds(world: &mut PlanWorld, plans: String) {
    let archive = &world.harness().archive;
    let catalog: Vec<String> = archive
        .catalog()
        .await
        .expect("the archive lists its plans")
        .into_iter()
        .map(|view| view.plan_id.to_string())
        .collect();
    let mut expected = list(&plans);
    let mut held = catalog.clone();
    expected.sort();
    held.sort();
    assert_eq!(held, expected, "the plans in the archive");
    let before = world.before_events();
    for plan in list(&plans) {
        let id = PlanId::parse(&plan).expect("a valid plan id");
        let original: Vec<StoredEvent> = before.iter().filter(|e| e.source_id() == &id).cloned().collect();
        assert!(!original.is_empty(), "plan {plan} was in the store before the compaction");
        assert_eq!(kept_parts(&history(archive, &id).await), kept_parts(&original), "plan {plan}'s archived history");
    }
}

#[then("the archive is empty")]
async fn archive_empty(world: &mut PlanWorld) {
    let archive = &world.harness().archive;
    let all: Vec<StoredEvent> =
        archive.stream_all(Select::All).await.expect("the archive streams").try_collect().await.expect("events");
    assert!(all.is_empty(), "the archive holds {} events", all.len());
}

#[then(regex = r"^the plan was removed by retention, with its (\d+) events archived$")]
async fn plan_removed(world: &mut PlanWorld, events: u32) {
    let id = world.plan_id();
    let service = world.service();
    let removal = service.store().removal(&id).await.expect("the store answers").expect("a tombstone");
    assert_eq!((removal.plan_id.clone(), removal.version, removal.archive.as_str()), (id.clone(), events, ARCHIVE));
    for read in [service.load(&id).await.map(|_| ()), service.history(&id).await.map(|_| ())] {
        match read {
            Err(ServiceError::Removed(seen)) => assert_eq!(seen, removal),
            other => panic!("plan {id} still reads, or reads as never created: {other:?}"),
        }
    }
    assert!(history(service.store(), &id).await.is_empty(), "the store streams none of its events");
}

#[when(regex = r"^the plan's summary is requested$")]
async fn summary_requested(world: &mut PlanWorld, step: &Step) {
    world
        .act(step, async move |service: Service, id: PlanId| {
            service.build_resume_summary(&id, None).await.map(|_| Done::Read).map_err(Failure::from)
        })
        .await;
}
