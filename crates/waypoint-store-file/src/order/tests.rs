//! The catalog's order: a page reads its rows and not the catalog, runs from many checkpoints
//! and compactions merge into the listing's order, and every kind of damaged, missing or foreign
//! order file gives the same answers (sorting the rows instead), is named by `store verify`, and
//! is written again.

use futures::executor::block_on;
use waypoint_application::{listing_order, CatalogCursor, CatalogQuery, PlanStore, PlanView};
use waypoint_domain::PlanId;

use crate::layout::{Layout, RowsKind};
use crate::test_support::*;
use crate::{FileStore, StoreOptions};

/// Every plan through pages of the query's limit.
fn paged(store: &FileStore, query: CatalogQuery) -> Vec<PlanView> {
    let mut out = Vec::new();
    let mut ask = query;
    loop {
        let page = store.catalog_page_views(&ask).unwrap();
        let end = page.len() < ask.limit();
        ask = ask.after(page.last().map(CatalogCursor::after));
        out.extend(page);
        if end {
            return out;
        }
    }
}

fn sorted(store: &FileStore) -> Vec<PlanView> {
    let mut views: Vec<PlanView> = store.catalog_snapshot().unwrap().plans.into_values().collect();
    views.sort_by(listing_order);
    views
}

fn bulk_options() -> StoreOptions {
    StoreOptions { checkpoint_every: u32::MAX, ..Default::default() }
}

/// A store of 3,000 plans of two events each, named `prefix-NNNN`, all in one checkpoint: one
/// run of the order, its rows written one after the other.
fn checkpointed_plans(dir: &std::path::Path, prefix: &str) {
    let store = FileStore::open_with(dir, bulk_options()).unwrap();
    let plans: Vec<PlanId> = (0..3000).map(|i| plan(&format!("{prefix}-{i:04}"))).collect();
    fill(&store, &plans, 2);
    store.checkpoint().unwrap();
}

#[test]
fn a_page_reads_its_rows_not_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    checkpointed_plans(dir.path(), "many");
    let reader = FileStore::open_read_only_with(dir.path(), bulk_options()).unwrap();
    let rows_bytes = std::fs::metadata(Layout::new(dir.path()).rows(RowsKind::Open, 0)).unwrap().len();
    let before = crate::storage::bytes_read_on_this_thread();
    let page = reader.catalog_page_views(&CatalogQuery::first(50)).unwrap();
    let read = crate::storage::bytes_read_on_this_thread() - before;
    assert_eq!(page, sorted(&reader)[..50].to_vec());
    assert!(read * 20 < rows_bytes, "a page of 50 read {read} bytes of a {rows_bytes}-byte rows file");
}

#[test]
fn runs_of_many_checkpoints_and_compactions_merge_into_the_listing_order() {
    let dir = tempfile::tempdir().unwrap();
    // A checkpoint every 7 records: many runs, older rows of plans that moved, compactions.
    let options = StoreOptions { checkpoint_every: 7, ..Default::default() };
    let store = FileStore::open_with(dir.path(), options.clone()).unwrap();
    let plans: Vec<PlanId> = (0..40).map(|i| plan(&format!("run-{i:02}"))).collect();
    fill(&store, &plans, 3);
    // Some plans move again, in another order, so their older rows are stale.
    let again: Vec<PlanId> = plans.iter().rev().step_by(3).cloned().collect();
    for id in &again {
        store.append_events(id, eventually::store::Expected::Exact(3), vec![step_completed(3)]).unwrap();
    }
    for handle in [store.clone(), FileStore::open_read_only_with(dir.path(), options.clone()).unwrap()] {
        let expected = sorted(&handle);
        assert_eq!(expected.len(), 40);
        for limit in [1, 6, 40] {
            assert_eq!(paged(&handle, CatalogQuery::first(limit)), expected, "pages of {limit}");
        }
        let report = block_on(handle.verify()).unwrap();
        assert!(report.ok, "{report:?}");
        assert!(report.checked.get("catalog_order_entries").copied().unwrap_or(0) > 40, "{report:?}");
    }
}

type Damage = fn(&Layout);

fn order_file(layout: &Layout) -> std::path::PathBuf {
    let head = crate::catalog::read_head(layout).unwrap().unwrap();
    layout.order(RowsKind::Open, head.open.generation)
}

fn delete_the_order(layout: &Layout) {
    std::fs::remove_file(order_file(layout)).unwrap();
}

fn cut_the_order_short(layout: &Layout) {
    let path = order_file(layout);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 20).unwrap();
}

fn flip_an_entry_byte(layout: &Layout) {
    let path = order_file(layout);
    let mut bytes = std::fs::read(&path).unwrap();
    // The offset of the third entry of the first run now points inside a row.
    bytes[32 + 2 * 16 + 8] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
}

fn swap_two_entries(layout: &Layout) {
    let path = order_file(layout);
    let mut bytes = std::fs::read(&path).unwrap();
    let (first, second) = (32, 32 + 16);
    let entry: Vec<u8> = bytes[first..first + 16].to_vec();
    bytes.copy_within(second..second + 16, first);
    bytes[second..second + 16].copy_from_slice(&entry);
    std::fs::write(&path, bytes).unwrap();
}

fn put_another_stores_order(layout: &Layout) {
    let other = tempfile::tempdir().unwrap();
    drop(build(other.path()));
    std::fs::copy(order_file(&Layout::new(other.path())), order_file(layout)).unwrap();
}

/// Twelve plans, checkpointed in one run.
fn build(dir: &std::path::Path) -> FileStore {
    let store = FileStore::open_with(dir, bulk_options()).unwrap();
    let plans: Vec<PlanId> = (0..12).map(|i| plan(&format!("damaged-{i:02}"))).collect();
    fill(&store, &plans, 2);
    store.checkpoint().unwrap();
    store
}

#[test]
fn damaged_missing_or_foreign_orders_change_no_answer_and_are_written_again() {
    let cases: [(&str, Damage, bool); 5] = [
        ("missing", delete_the_order, true),
        ("cut short", cut_the_order_short, true),
        ("an entry's byte flipped", flip_an_entry_byte, false),
        ("two entries swapped", swap_two_entries, false),
        ("another store's", put_another_stores_order, true),
    ];
    for (name, damage, rewritten_by_a_checkpoint) in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = build(dir.path());
        let expected = sorted(&store);
        drop(store);
        damage(&Layout::new(dir.path()));
        let store = FileStore::open_with(dir.path(), bulk_options()).unwrap();
        for limit in [1, 5, 12] {
            assert_eq!(paged(&store, CatalogQuery::first(limit)), expected, "{name}: pages of {limit}");
        }
        let report = block_on(store.verify()).unwrap();
        assert!(!report.ok, "{name}: verify names the damage");
        assert!(report.differences.iter().any(|d| d.contains("catalog order")), "{name}: {report:?}");
        // The next checkpoint writes a usable order again when it can tell this one is not.
        let id = plan("damaged-00");
        store.append_events(&id, eventually::store::Expected::Exact(2), vec![step_completed(2)]).unwrap();
        store.checkpoint().unwrap();
        assert_eq!(paged(&store, CatalogQuery::first(4)), sorted(&store), "{name}: after a checkpoint");
        let report = block_on(store.verify()).unwrap();
        assert_eq!(report.ok, rewritten_by_a_checkpoint, "{name}: {report:?}");
    }
}

/// A plan whose index is lost still lists: without an index to say which of its rows is the
/// latest, the page sorts the rows instead of skipping it.
#[test]
fn a_plan_whose_index_is_lost_is_still_listed() {
    let dir = tempfile::tempdir().unwrap();
    let store = build(dir.path());
    let expected = sorted(&store);
    drop(store);
    std::fs::remove_file(Layout::new(dir.path()).plan_index(&plan("damaged-05"))).unwrap();
    let store = FileStore::open_read_only_with(dir.path(), bulk_options()).unwrap();
    assert_eq!(paged(&store, CatalogQuery::first(5)), expected);
}

#[test]
fn rows_read_ahead_are_the_rows_read_one_by_one() {
    use super::{CheckedRuns, Ordered, ReadAhead, ROW_GUESS};

    let dir = tempfile::tempdir().unwrap();
    checkpointed_plans(dir.path(), "ahead");
    let layout = Layout::new(dir.path());
    let head = crate::catalog::read_head(&layout).unwrap().unwrap();
    let ordered = Ordered::open(&layout, &head, RowsKind::Open, &mut CheckedRuns::new()).unwrap();
    // Every entry in its run's order: a checkpoint writes the rows in that order, one after the
    // other, so the walk reads ahead, and gets the rows a read of each alone gets.
    let mut ahead = ReadAhead::default();
    let mut rows = 0;
    for run in &ordered.runs {
        for index in 0..run.entries {
            let (activity, offset) = ordered.entry(run, index).unwrap();
            let alone = ordered.row(activity, offset).unwrap();
            let via = ordered.row_via(&mut ahead, activity, offset).unwrap();
            assert_eq!(
                (&via.plan_id, via.version, &via.bytes, via.view),
                (&alone.plan_id, alone.version, &alone.bytes, alone.view)
            );
            assert_eq!(via.view(&ordered).unwrap(), alone.view(&ordered).unwrap());
            rows += 1;
        }
    }
    assert_eq!(rows, 3000);
    assert!(ahead.bytes.len() > ROW_GUESS, "the walk read ahead: {} bytes", ahead.bytes.len());

    // Bytes read ahead that end inside a row: the rest of it is read from the file.
    let (activity, offset) = ordered.entry(&ordered.runs[0], 5).unwrap();
    let whole = ordered.row(activity, offset).unwrap();
    let mut cut = ReadAhead { at: offset, bytes: whole.bytes[..20].to_vec(), end: None };
    assert_eq!(ordered.row_via(&mut cut, activity, offset).unwrap().bytes, whole.bytes);
}
