//! Derived data: a reopened store serves plans from its checkpoint, indexes and view snapshots,
//! and every kind of damaged or missing derived file is rebuilt from the log.

use eventually::store::Expected;
use futures::executor::block_on;
use waypoint_application::domain::{DecisionId, Phase, StepNumber};
use waypoint_application::{CatalogQuery, NewPlan, PlanResumeService, PlanStore, PlanView, StepCheckpoint};
use waypoint_domain::PlanId;

use crate::index::ENTRY_LEN;
use crate::layout::Layout;
use crate::test_support::*;
use crate::{FileStore, PlanVersions, StoreOptions};

#[test]
fn load_view_keeps_every_checkpoint_so_a_retry_of_an_older_step_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let service = PlanResumeService::new(FileStore::open(dir.path()).unwrap());
    block_on(async {
        let id = service.create_plan(NewPlan::default()).await.unwrap().plan_id;
        service.start_phase(&id, Phase::Strategize, None).await.unwrap();
        let checkpoint =
            |n: u32| StepCheckpoint::new(StepNumber::new(n).unwrap(), DecisionId::parse(&format!("d-{n}")).unwrap());
        for n in 1..=3 {
            service.record_step_checkpoint(&id, checkpoint(n)).await.unwrap();
        }
        let retry = service.record_step_checkpoint(&id, checkpoint(1)).await.unwrap();
        assert!(!retry.appended);
        let full = service.store().load_view(&id).await.unwrap().unwrap();
        assert_eq!(full.state.resume.checkpoints.len(), 3);
        let summary = service.store().load_summary_view(&id).await.unwrap().unwrap();
        assert_eq!(summary.state.resume.checkpoints.len(), 1);
    });
}

#[test]
fn a_reopened_store_serves_plans_from_the_checkpoint_index_and_view_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { checkpoint_every: 7, view_snapshot_every: 5, ..Default::default() };
    let plans: Vec<PlanId> = (0..3).map(|i| plan(&format!("plan-{i}"))).collect();
    let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
    fill(&store, &plans, 20);
    let expected: Vec<_> = plans.iter().map(|id| store.read_plan(id, 1).unwrap()).collect();
    for id in &plans {
        assert_eq!(
            store.plan_view(id).unwrap(),
            waypoint_application::PlanView::replay(&store.read_plan(id, 1).unwrap())
        );
    }
    drop(store);

    let stored = crate::inspect::stored_catalog(dir.path()).unwrap().expect("a checkpoint was written");
    assert!(stored.position >= 7 && stored.position <= 60, "{}", stored.position);
    let index = crate::inspect::plan_index(dir.path(), &plans[0]).unwrap();
    assert!(index.len() >= 2 && index.iter().all(Option::is_some));
    assert!(crate::inspect::plan_view_snapshot(dir.path(), &plans[0]).unwrap().is_some());

    let reopened = FileStore::open_with(dir.path(), options).unwrap();
    for (id, events) in plans.iter().zip(&expected) {
        assert_eq!(&reopened.read_plan(id, 1).unwrap(), events);
        assert_eq!(reopened.read_plan(id, 15).unwrap(), events[14..].to_vec());
        assert_eq!(reopened.plan_view(id).unwrap(), waypoint_application::PlanView::replay(events));
        assert_eq!(reopened.summary_view(id).unwrap().unwrap().version, 20);
    }
    assert_eq!(reopened.catalog_snapshot().unwrap().plans.len(), 3);
    let replayed: Vec<_> = crate::inspect::events(dir.path()).unwrap().map(|e| e.unwrap().event).collect();
    assert_eq!(replayed.len(), 60);
    assert_eq!(reopened.read_all(1).unwrap().map(Result::unwrap).collect::<Vec<_>>(), replayed);
    assert_eq!(reopened.read_all(59).unwrap().count(), 2);
}

/// One kind of damage to the derived files of a store holding plans `p0` and `p1`.
type Damage = fn(&Layout);

fn flip_a_checkpoint_byte(layout: &Layout) {
    let mut bytes = std::fs::read(layout.checkpoint()).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x40;
    std::fs::write(layout.checkpoint(), bytes).unwrap();
}

fn tear_the_checkpoint(layout: &Layout) {
    let bytes = std::fs::read(layout.checkpoint()).unwrap();
    std::fs::write(layout.checkpoint(), &bytes[..bytes.len() / 2]).unwrap();
}

fn lose_every_index(layout: &Layout) {
    std::fs::remove_dir_all(layout.index_dir()).unwrap();
}

/// Version 3's entry keeps its version but points at version 5's record.
fn point_an_index_entry_at_another_record(layout: &Layout) {
    let path = layout.plan_index(&plan("p0"));
    let mut bytes = std::fs::read(&path).unwrap();
    let (third, fifth) = (2 * ENTRY_LEN as usize, 4 * ENTRY_LEN as usize);
    let offset_of_fifth: [u8; 8] = bytes[fifth..fifth + 8].try_into().unwrap();
    bytes[third..third + 8].copy_from_slice(&offset_of_fifth);
    std::fs::write(&path, bytes).unwrap();
}

fn garble_a_view_snapshot(layout: &Layout) {
    std::fs::write(layout.view(&plan("p0")), b"garbage").unwrap();
}

fn swap_in_another_plans_view_snapshot(layout: &Layout) {
    std::fs::copy(layout.view(&plan("p1")), layout.view(&plan("p0"))).unwrap();
}

fn damage_every_kind_at_once(layout: &Layout) {
    flip_a_checkpoint_byte(layout);
    lose_every_index(layout);
    garble_a_view_snapshot(layout);
}

#[test]
fn missing_or_damaged_derived_files_are_rebuilt_from_the_log() {
    let damages: [(&str, Damage); 7] = [
        ("a flipped checkpoint byte", flip_a_checkpoint_byte),
        ("a torn checkpoint", tear_the_checkpoint),
        ("lost indexes", lose_every_index),
        ("an index entry pointing at another record", point_an_index_entry_at_another_record),
        ("a garbled view snapshot", garble_a_view_snapshot),
        ("another plan's view snapshot", swap_in_another_plans_view_snapshot),
        ("every kind at once", damage_every_kind_at_once),
    ];
    for (name, damage) in damages {
        rebuilds_after(name, damage);
    }
}

/// The driver: fill a store, damage its derived files, then check that a read-only open serves
/// the same events and views without changing a byte, and a writable open rebuilds.
fn rebuilds_after(name: &str, damage: Damage) {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { checkpoint_every: 5, view_snapshot_every: 3, ..Default::default() };
    let plans: Vec<PlanId> = (0..2).map(|i| plan(&format!("p{i}"))).collect();
    let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
    fill(&store, &plans, 12);
    let expected: Vec<_> = plans.iter().map(|id| store.read_plan(id, 1).unwrap()).collect();
    let views: Vec<_> = plans.iter().map(|id| store.plan_view(id).unwrap()).collect();
    drop(store);

    damage(&Layout::new(dir.path()));

    let before = snapshot(dir.path());
    let read_only = FileStore::open_read_only(dir.path()).unwrap();
    for ((id, events), view) in plans.iter().zip(&expected).zip(&views) {
        assert_eq!(&read_only.read_plan(id, 1).unwrap(), events, "{name}");
        assert_eq!(&read_only.plan_view(id).unwrap(), view, "{name}");
    }
    drop(read_only);
    assert_eq!(snapshot(dir.path()), before, "{name}: a read-only open changed the store's bytes");

    let store = FileStore::open_with(dir.path(), options).unwrap();
    for ((id, events), view) in plans.iter().zip(&expected).zip(&views) {
        assert_eq!(&store.read_plan(id, 1).unwrap(), events, "{name}");
        assert_eq!(&store.plan_view(id).unwrap(), view, "{name}");
    }
    assert!(crate::inspect::plan_index(dir.path(), &plans[1]).unwrap().iter().all(Option::is_some), "{name}");
}

#[test]
fn catalog_rows_are_compacted_into_a_new_generation_and_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { checkpoint_every: 1, ..Default::default() };
    let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
    let plans: Vec<PlanId> = (0..3).map(|i| plan(&format!("plan-{i}"))).collect();
    // One checkpoint, and so one row, per append: past 1,024 rows the open file is compacted.
    fill(&store, &plans, 400);
    let catalog = store.catalog_snapshot().unwrap();
    assert_eq!(catalog.plans.len(), 3);
    assert!(catalog.plans.values().all(|v| v.version == 400));
    drop(store);

    let rows: Vec<String> = std::fs::read_dir(Layout::new(dir.path()).catalog_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(rows.iter().all(|name| name != "open-0.rows"), "the first generation is gone: {rows:?}");
    assert!(rows.iter().any(|name| name.starts_with("open-") && name != "open-0.rows"), "{rows:?}");
    let reopened = FileStore::open_read_only_with(dir.path(), options).unwrap();
    assert_eq!(reopened.catalog_snapshot().unwrap(), catalog);
    let stored = crate::inspect::stored_catalog(dir.path()).unwrap().expect("a checkpoint head");
    assert_eq!(stored.catalog.plans.len(), 3);
    let report = block_on(reopened.verify()).unwrap();
    assert!(report.ok, "{report:?}");
}

/// A plan whose earlier events went into one checkpoint and whose finishing event into a later
/// one has a "moved to done" row in the open file and a view in the done file at the same
/// version: the listing shows it once, from the done file.
#[test]
fn a_plan_finished_after_an_earlier_checkpoint_stays_listed() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let service = PlanResumeService::new(store.clone());
    let id = plan("finished-late");
    block_on(async {
        let new = NewPlan { id: Some(id.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
        service.create_plan(new).await.unwrap();
        store.checkpoint().unwrap();
        service.cancel(&id, None).await.unwrap();
        store.checkpoint().unwrap();
    });
    for handle in [store, FileStore::open(dir.path()).unwrap()] {
        let listed: Vec<PlanId> = handle.catalog_snapshot().unwrap().plans.into_keys().collect();
        assert_eq!(listed, vec![id.clone()], "the finished plan is listed");
        assert!(handle.open_plans().unwrap().is_empty(), "and not among the open ones");
    }
}

#[test]
fn plan_versions_are_each_plans_version_from_the_rows_and_the_tail_without_any_view() {
    let dir = tempfile::tempdir().unwrap();
    // A checkpoint every 7 records: some plans' last versions are in the rows, others in the tail.
    let options = StoreOptions { checkpoint_every: 7, ..Default::default() };
    let plans: Vec<PlanId> = (0..4).map(|i| plan(&format!("plan-{i}"))).collect();
    let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
    fill(&store, &plans, 9);
    for n in 9..11 {
        store.append_events(&plans[0], Expected::Exact(n), vec![step_completed(n)]).unwrap();
    }
    let expected: Vec<(PlanId, u32)> =
        plans.iter().map(|id| (id.clone(), store.read_plan(id, 1).unwrap().len() as u32)).collect();
    assert_eq!(expected[0].1, 11);
    let check = |versions: PlanVersions, when: &str| {
        for (id, version) in &expected {
            assert!(versions.is_latest(id, *version), "{when}: {id} at {version}");
            assert!(!versions.is_latest(id, version - 1), "{when}: {id} before {version}");
        }
        assert!(!versions.is_latest(&plan("plan-none"), 1), "{when}: a plan without events");
    };
    check(store.plan_versions().unwrap(), "writable");
    check(FileStore::open_read_only(dir.path()).unwrap().plan_versions().unwrap(), "read-only");
    store.checkpoint().unwrap();
    drop(store);
    check(FileStore::open_with(dir.path(), options).unwrap().plan_versions().unwrap(), "after a checkpoint");
}

#[test]
fn a_plan_with_two_rows_at_one_version_is_listed_once() {
    // Two processes can each checkpoint the same plan at the same version: its row, and its
    // entry in the order, are then there twice (here, written twice on purpose).
    let dir = tempfile::tempdir().unwrap();
    let plans: Vec<PlanId> = (0..3).map(|i| plan(&format!("plan-{i}"))).collect();
    let store = FileStore::open(dir.path()).unwrap();
    fill(&store, &plans, 3);
    store.checkpoint().unwrap();
    let layout = Layout::new(dir.path());
    let mut head = crate::catalog::read_head(&layout).unwrap().expect("a checkpoint");
    let view = store.summary_view(&plans[1]).unwrap().expect("a plan");
    let again = crate::catalog::NewRow { plan_id: &plans[1], version: view.version, view: Some(&view) };
    crate::catalog::append_rows(&layout, &mut head, crate::layout::RowsKind::Open, &[again]).unwrap();
    crate::catalog::write_head(&layout, &head).unwrap();
    drop(store);
    let store = FileStore::open_read_only(dir.path()).unwrap();
    for limit in [1, 2, 50] {
        let mut ask = CatalogQuery::first(limit);
        let mut paged = Vec::new();
        loop {
            let page = store.catalog_page_views(&ask).unwrap();
            let end = page.len() < limit;
            ask = ask.after(page.last().map(waypoint_application::CatalogCursor::after));
            paged.extend(page.into_iter().map(|v| v.plan_id));
            if end {
                break;
            }
        }
        assert_eq!(paged.len(), plans.len(), "pages of {limit} name each plan once: {paged:?}");
    }
    let mut walked = Vec::new();
    store
        .walk_catalog_views(CatalogQuery::first(50), &mut |batch| {
            walked.extend(batch.into_iter().map(|v| v.plan_id));
            true
        })
        .unwrap();
    assert_eq!(walked.len(), plans.len(), "a walk names each plan once: {walked:?}");
}

/// More open plans than one thread decodes (the rows come back in two parts), some of them moved
/// on by the tail (one cancelled), and a plan only the tail knows: the open plans are the open
/// plans of the whole catalog, each once, in every part of the listing.
#[test]
fn open_plans_decoded_in_parts_are_the_catalogs_open_plans_with_the_tail_folded_in() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { checkpoint_every: u32::MAX, ..Default::default() };
    let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
    let plans: Vec<PlanId> = (0..3000).map(|i| plan(&format!("part-{i:04}"))).collect();
    fill(&store, &plans, 2);
    let service = PlanResumeService::new(store.clone());
    let cancelled = plan("part-cancelled");
    let start = Some((Phase::Strategize, None));
    block_on(service.create_plan(NewPlan { id: Some(cancelled.clone()), start, ..NewPlan::default() })).unwrap();
    store.checkpoint().unwrap();
    // Moved on at both ends of the rows, so both decoded parts lose views to the tail.
    for id in plans[..20].iter().chain(&plans[2980..]) {
        store.append_events(id, Expected::Exact(2), vec![step_completed(2)]).unwrap();
    }
    block_on(async {
        service.cancel(&cancelled, None).await.unwrap();
        service.create_plan(NewPlan { id: Some(plan("tail-only")), ..NewPlan::default() }).await.unwrap();
    });
    let reader = FileStore::open_read_only_with(dir.path(), options).unwrap();
    for handle in [store, reader] {
        let parts = handle.open_plan_parts().unwrap();
        assert!(parts.len() >= 3, "two decoded parts and the tail's: {}", parts.len());
        let mut open: Vec<PlanView> = parts.into_iter().flatten().collect();
        open.sort_by(|a, b| a.plan_id.cmp(&b.plan_id));
        let mut expected: Vec<PlanView> = handle
            .catalog_snapshot()
            .unwrap()
            .plans
            .into_values()
            .filter(|view| !view.state.state.is_terminal())
            .collect();
        expected.sort_by(|a, b| a.plan_id.cmp(&b.plan_id));
        assert_eq!(open.len(), 3001, "3,000 plans and a new one; the cancelled one is not open");
        assert_eq!(open, expected);
        assert!(
            open.iter().filter(|v| v.plan_id.as_str() < "part-0020").all(|v| v.version == 3),
            "the tail's versions"
        );
    }
}
