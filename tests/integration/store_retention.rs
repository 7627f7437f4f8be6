//! Retention through real processes, on the file store and on PostgreSQL: `kill -9` at many
//! moments of a compaction loses no event of a kept plan and leaves every finished plan either
//! whole in the store or whole in the archive (never neither), and the next compaction finishes
//! the work.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use eventually::store::Select;
use futures::executor::block_on;
use futures::TryStreamExt;
use waypoint_application::domain::{DecisionId, EventId, Message, Phase, PlanId, StepNumber};
use waypoint_application::{CompactRequest, NewPlan, PlanResumeService, PlanStore, StepCheckpoint, StepStart};
use waypoint_store_file::FileStore;
use waypoint_store_postgres::testing::TestDatabase;
use waypoint_store_postgres::PostgresStore;

use super::store_child::{copy_dir, spawn, XorShift};

const KEPT: usize = 20;

type Histories = HashMap<PlanId, Vec<EventId>>;

/// `finished` cancelled plans and `KEPT` interrupted ones; returns every plan's event ids and
/// which plans are finished.
fn populate<S: PlanStore>(store: &S, finished: usize) -> (Histories, Vec<PlanId>) {
    let service = PlanResumeService::new(store.clone());
    let mut done = Vec::new();
    block_on(async {
        for i in 0..finished + KEPT {
            let id = PlanId::parse(&format!("plan-{i:04}")).unwrap();
            let new = NewPlan { id: Some(id.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
            service.create_plan(new).await.unwrap();
            for n in 1..=3 {
                let (step, decision) = (StepNumber::new(n).unwrap(), DecisionId::parse(&format!("d{n}")).unwrap());
                service.record_step_started(&id, StepStart::new(step, decision.clone())).await.unwrap();
                service.record_step_checkpoint(&id, StepCheckpoint::new(step, decision)).await.unwrap();
            }
            if i < finished {
                service.cancel(&id, Some(Message::parse("done with it").unwrap())).await.unwrap();
                done.push(id);
            } else {
                service.record_shutdown(&id, Message::parse("deploy").unwrap()).await.unwrap();
            }
        }
    });
    let histories = block_on(store.catalog())
        .unwrap()
        .into_iter()
        .map(|view| (view.plan_id.clone(), ids(store, &view.plan_id)))
        .collect();
    (histories, done)
}

fn ids<S: PlanStore>(store: &S, plan: &PlanId) -> Vec<EventId> {
    let events: Vec<_> =
        block_on(async { store.stream(plan.clone(), Select::All).await?.try_collect::<Vec<_>>().await })
            .expect("a plan reads back");
    events.iter().map(|e| e.event_id).collect()
}

/// Checks a store and its archive after a kill: kept plans whole, each finished plan whole in
/// one place at least, removed only once archived. Returns how many were removed.
fn check<S: PlanStore>(store: &S, archive: &Path, histories: &Histories, finished: &[PlanId]) -> usize {
    let archived = archive.join("events.log").exists().then(|| FileStore::open(archive).unwrap());
    let mut removed = 0;
    for (plan, history) in histories {
        let held = ids(store, plan);
        if !finished.contains(plan) {
            assert_eq!(&held, history, "kept plan {plan} is whole");
            continue;
        }
        let in_archive = archived.as_ref().map(|a| ids(a, plan)).unwrap_or_default();
        assert!(in_archive.is_empty() || &in_archive == history, "plan {plan} is archived whole or not at all");
        let tombstone = block_on(store.removal(plan)).unwrap();
        if held.is_empty() {
            removed += 1;
            assert_eq!(&in_archive, history, "removed plan {plan} is in the archive");
            assert!(tombstone.is_some(), "removed plan {plan} has a tombstone");
        } else {
            assert_eq!(&held, history, "plan {plan} is whole in the store or gone");
            assert!(tombstone.is_none(), "a plan in the store has no tombstone");
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

/// A store under test: a fresh copy of the populated one per round, and the child's mode.
trait Target {
    type Store: PlanStore;
    /// A fresh copy of the populated store, as the child's argument.
    fn copy(&mut self, round: usize) -> String;
    fn open(&self, location: &str) -> Self::Store;
    const CHILD: &'static str;
}

struct Files {
    template: PathBuf,
}

impl Target for Files {
    type Store = FileStore;
    const CHILD: &'static str = "compact";

    fn copy(&mut self, round: usize) -> String {
        let dir = self.template.with_file_name(format!("store-{round}"));
        copy_dir(&self.template, &dir, "");
        dir.to_str().unwrap().to_owned()
    }

    fn open(&self, location: &str) -> FileStore {
        FileStore::open(location).expect("the store opens after a kill with no manual step")
    }
}

struct Postgres {
    template: TestDatabase,
    copies: Vec<TestDatabase>,
}

impl Target for Postgres {
    type Store = PostgresStore;
    const CHILD: &'static str = "pg-compact";

    fn copy(&mut self, round: usize) -> String {
        let copy = self.template.copy(&format!("retention_round_{round}"));
        let url = copy.url().to_owned();
        self.copies.push(copy);
        url
    }

    fn open(&self, location: &str) -> PostgresStore {
        PostgresStore::connect(location).unwrap()
    }
}

/// Kills a compaction of `target`'s store `rounds` times at random moments, checking after each
/// kill and after the compaction that follows it.
fn kill_loop<T: Target>(mut target: T, scratch: &Path, histories: &Histories, finished: &[PlanId], rounds: usize) {
    let mut rng = XorShift(0x5eed_2026_1130);
    // One compaction left to finish says how long one takes on this machine, so the kills
    // land all over it however fast or slow the machine is.
    let location = target.copy(rounds);
    let archive = scratch.join("archive-timed");
    let child = spawn(&[T::CHILD, &location, archive.to_str().unwrap()]);
    assert_eq!(child.lines.recv_timeout(Duration::from_secs(60)).unwrap(), "started");
    let started = std::time::Instant::now();
    let done = child.lines.recv_timeout(Duration::from_secs(300)).expect("an unkilled compaction finishes");
    let duration = started.elapsed().as_micros().max(1) as u64;
    assert_eq!(done, format!("done {}", finished.len()), "an unkilled compaction removes every finished plan");
    assert_eq!(check(&target.open(&location), &archive, histories, finished), finished.len());
    let mut interrupted = 0;
    for round in 0..rounds {
        let location = target.copy(round);
        let archive = scratch.join(format!("archive-{round}"));
        let child = spawn(&[T::CHILD, &location, archive.to_str().unwrap()]);
        assert_eq!(child.lines.recv_timeout(Duration::from_secs(60)).unwrap(), "started");
        std::thread::sleep(Duration::from_micros(rng.next(duration)));
        let lines = child.kill_and_collect_lines();
        let finished_before_kill = lines.iter().any(|line| line.starts_with("done"));
        interrupted += usize::from(!finished_before_kill);
        let store = target.open(&location);
        check(&store, &archive, histories, finished);
        // The next compaction finishes the work, reusing what the killed one archived.
        let service = PlanResumeService::new(store.clone());
        let archive_store = FileStore::open(&archive).unwrap();
        let request = CompactRequest { older_than: chrono::Duration::zero(), dry_run: false };
        block_on(service.compact(request, &archive_store, archive.to_str().unwrap())).unwrap();
        drop(archive_store);
        assert_eq!(
            check(&store, &archive, histories, finished),
            finished.len(),
            "everything finished is removed at last"
        );
        let _ = std::fs::remove_dir_all(&archive);
    }
    eprintln!("{}: one compaction takes {duration} µs; {interrupted} of {rounds} kills interrupted one", T::CHILD);
    assert!(interrupted > 0, "no kill landed before the compaction finished: the loop tested nothing");
}

fn scratch(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("waypoint-retention-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    root
}

#[test]
fn kill_9_during_compaction_never_loses_a_plan_on_the_file_store() {
    let root = scratch("file");
    let template = root.join("template");
    let (histories, finished) = populate(&FileStore::open(&template).unwrap(), 160);
    kill_loop(Files { template }, &root, &histories, &finished, 8);
    let _ = std::fs::remove_dir_all(&root);
}

/// More plans than one removal batch (500), so kills also land between batches.
#[test]
fn kill_9_during_compaction_never_loses_a_plan_on_postgres() {
    let root = scratch("postgres");
    let template = TestDatabase::create("retention_template");
    let (histories, finished) = populate(&PostgresStore::connect(template.url()).unwrap(), 600);
    kill_loop(Postgres { template, copies: Vec::new() }, &root, &histories, &finished, 6);
    let _ = std::fs::remove_dir_all(&root);
}
