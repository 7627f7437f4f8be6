//! Retention on the file store, through real processes: `kill -9` at many moments of a
//! compaction loses no event of a kept plan and leaves every finished plan either whole in the
//! store or whole in the archive (never neither), and the next compaction finishes the work.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures::executor::block_on;
use waypoint_application::domain::{DecisionId, EventId, Message, Phase, PlanId, StepNumber};
use waypoint_application::{CompactRequest, NewPlan, PlanResumeService, PlanStore, StepCheckpoint, StepStart};
use waypoint_store_file::FileStore;

use super::store_child::{spawn, XorShift};

const FINISHED: usize = 160;
const KEPT: usize = 20;

/// A store of `FINISHED` cancelled plans and `KEPT` interrupted ones; returns every plan's
/// event ids and which plans are finished.
fn populate(dir: &Path) -> (HashMap<PlanId, Vec<EventId>>, Vec<PlanId>) {
    let store = FileStore::open(dir).unwrap();
    let service = PlanResumeService::new(store.clone());
    let mut finished = Vec::new();
    block_on(async {
        for i in 0..FINISHED + KEPT {
            let id = PlanId::parse(&format!("plan-{i:03}")).unwrap();
            let new = NewPlan { id: Some(id.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
            service.create_plan(new).await.unwrap();
            for n in 1..=3 {
                let (step, decision) = (StepNumber::new(n).unwrap(), DecisionId::parse(&format!("d{n}")).unwrap());
                service.record_step_started(&id, StepStart::new(step, decision.clone())).await.unwrap();
                service.record_step_checkpoint(&id, StepCheckpoint::new(step, decision)).await.unwrap();
            }
            if i < FINISHED {
                service.cancel(&id, Some(Message::parse("done with it").unwrap())).await.unwrap();
                finished.push(id);
            } else {
                service.record_shutdown(&id, Message::parse("deploy").unwrap()).await.unwrap();
            }
        }
    });
    let histories = block_on(store.catalog())
        .unwrap()
        .into_iter()
        .map(|view| {
            let events = store.read_plan(&view.plan_id, 1).unwrap();
            (view.plan_id, events.iter().map(|e| e.event_id).collect())
        })
        .collect();
    (histories, finished)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn ids(store: &FileStore, plan: &PlanId) -> Vec<EventId> {
    store.read_plan(plan, 1).unwrap().iter().map(|e| e.event_id).collect()
}

/// Checks the store and its archive after a kill: kept plans whole, each finished plan whole in
/// one place at least, removed only once archived. Returns how many were removed.
fn check(dir: &Path, archive: &Path, histories: &HashMap<PlanId, Vec<EventId>>, finished: &[PlanId]) -> usize {
    let store = FileStore::open(dir).expect("the store opens after a kill with no manual step");
    let archived = archive.join("events.log").exists().then(|| FileStore::open(archive).unwrap());
    let mut removed = 0;
    for (plan, history) in histories {
        let held = ids(&store, plan);
        if !finished.contains(plan) {
            assert_eq!(&held, history, "kept plan {plan} is whole");
            continue;
        }
        let in_archive = archived.as_ref().map(|a| ids(a, plan)).unwrap_or_default();
        assert!(in_archive.is_empty() || &in_archive == history, "plan {plan} is archived whole or not at all");
        if held.is_empty() {
            removed += 1;
            assert_eq!(&in_archive, history, "removed plan {plan} is in the archive");
            assert!(store.removal(plan).unwrap().is_some(), "removed plan {plan} has a tombstone");
        } else {
            assert_eq!(&held, history, "plan {plan} is whole in the store or gone");
            assert!(store.removal(plan).unwrap().is_none(), "a plan in the store has no tombstone");
        }
    }
    let report = block_on(store.verify()).unwrap();
    assert!(report.ok, "the store verifies after a kill: {:?}", report.differences);
    if let Some(archived) = archived {
        let report = block_on(archived.verify()).unwrap();
        assert!(report.ok, "the archive verifies on its own: {:?}", report.differences);
    }
    removed
}

#[test]
fn kill_9_during_compaction_never_loses_a_plan() {
    let root = std::env::temp_dir().join(format!("waypoint-retention-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let template = root.join("template");
    let (histories, finished) = populate(&template);
    let mut rng = XorShift(0x5eed_2026_1130);
    let mut interrupted = 0;
    for round in 0..8 {
        let (dir, archive) = (root.join(format!("store-{round}")), root.join(format!("archive-{round}")));
        copy_dir(&template, &dir);
        let child = spawn(&["compact", dir.to_str().unwrap(), archive.to_str().unwrap()]);
        assert_eq!(child.lines.recv_timeout(Duration::from_secs(30)).unwrap(), "started");
        std::thread::sleep(Duration::from_micros(rng.next(400_000)));
        let lines = child.kill_and_collect_lines();
        let finished_before_kill = lines.iter().any(|line| line.starts_with("done"));
        interrupted += usize::from(!finished_before_kill);
        let removed = check(&dir, &archive, &histories, &finished);
        if !finished_before_kill {
            assert!(removed == 0 || removed == FINISHED, "one compaction removes all its plans or none: {removed}");
        }
        // The next compaction finishes the work, reusing what the killed one archived.
        let service = PlanResumeService::new(FileStore::open(&dir).unwrap());
        let archive_store = FileStore::open(&archive).unwrap();
        let request = CompactRequest { older_than: chrono::Duration::zero(), dry_run: false };
        block_on(service.compact(request, &archive_store, archive.to_str().unwrap())).unwrap();
        drop((service, archive_store));
        assert_eq!(check(&dir, &archive, &histories, &finished), FINISHED, "everything finished is removed at last");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&archive);
    }
    assert!(interrupted > 0, "no kill landed before the compaction finished: the loop tested nothing");
    let _ = std::fs::remove_dir_all(&root);
}
