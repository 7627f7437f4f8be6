//! A store written in an older on-disk layout (tests/fixtures/store-layout-2026-11) opens with
//! today's `waypoint`, reads without loss, verifies, and takes new writes.

use std::path::Path;

use serde_json::Value;

use crate::cli_harness::Sandbox;
use crate::store_child::copy_dir;

fn sandbox_with_fixture() -> Sandbox {
    let sandbox = Sandbox::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/store-layout-2026-11");
    // The fixture's README explains it; it is not part of the store.
    copy_dir(&fixture, &sandbox.store, "README.md");
    sandbox
}

fn plan<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["plans"].as_array().unwrap().iter().find(|p| p["plan_id"] == id).unwrap_or_else(|| panic!("{id} listed"))
}

#[test]
fn a_store_in_the_older_layout_reads_every_plan_as_it_was_written() {
    let sandbox = sandbox_with_fixture();

    let list = sandbox.run(&["plan", "list"]);
    list.expect_code(0);
    let list = list.json();
    assert_eq!(list["plans"].as_array().unwrap().len(), 5, "{list}");
    assert_eq!(plan(&list, "long-a")["last_completed_step"], 12);
    assert_eq!(plan(&list, "long-a")["interruption"]["reason"], "deploy");
    assert_eq!(plan(&list, "long-a")["eligible"], true);
    assert_eq!(plan(&list, "done-b")["state"], "complete");
    assert_eq!(plan(&list, "cancelled-c")["state"], "cancelled");
    assert_eq!(plan(&list, "errored-d")["state"], "errored");
    assert_eq!(plan(&list, "tail-e")["last_completed_step"], 1);

    let resumable = sandbox.run(&["plan", "list", "--resumable"]).json();
    let mut ids: Vec<&str> =
        resumable["plans"].as_array().unwrap().iter().map(|p| p["plan_id"].as_str().unwrap()).collect();
    ids.sort();
    assert!(ids.contains(&"long-a") && ids.contains(&"errored-d"), "{resumable}");
    assert!(!ids.contains(&"done-b") && !ids.contains(&"cancelled-c"), "{resumable}");

    let show = sandbox.run(&["plan", "show", "long-a"]);
    show.expect_code(0);
    assert_eq!(show.json()["next_step"], 13, "{}", show.stdout);

    let history = sandbox.run(&["plan", "history", "long-a"]);
    history.expect_code(0);
    assert_eq!(history.json()["events"].as_array().unwrap().len(), 28);

    sandbox.run(&["store", "verify"]).expect_code(0);
}

#[test]
fn a_store_in_the_older_layout_takes_new_writes_and_keeps_every_old_event() {
    let sandbox = sandbox_with_fixture();
    let before = std::fs::read(sandbox.store.join("events.log")).unwrap();

    sandbox.run(&["plan", "checkpoint", "tail-e", "--step", "2", "--decision", "d-2"]).expect_code(0);
    sandbox.run(&["plan", "resume", "long-a"]).expect_code(0);
    sandbox.run(&["plan", "create", "--name", "fresh", "--total-steps", "1"]).expect_code(0);

    let list = sandbox.run(&["plan", "list"]).json();
    assert_eq!(list["plans"].as_array().unwrap().len(), 6, "{list}");
    assert_eq!(plan(&list, "tail-e")["last_completed_step"], 2);
    assert_eq!(plan(&list, "long-a")["resume_count"], 1);
    let history = sandbox.run(&["plan", "history", "long-a"]).json();
    assert_eq!(history["events"].as_array().unwrap().len(), 29);
    let after = std::fs::read(sandbox.store.join("events.log")).unwrap();
    assert!(after.len() > before.len());
    sandbox.run(&["store", "verify"]).expect_code(0);
}

#[test]
fn a_log_of_the_older_layout_cut_before_its_checkpoint_is_damage() {
    let sandbox = sandbox_with_fixture();
    let log = sandbox.store.join("events.log");
    // The fixture's checkpoint vouches for the first 32 records; keep about half the log.
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(len / 2).unwrap();

    let list = sandbox.run(&["plan", "list"]);
    list.expect_code(6);
    assert!(list.stderr.contains("waypoint store repair"), "{}", list.stderr);
    sandbox.run(&["plan", "create", "--id", "fresh"]).expect_code(6);
}

#[test]
fn temporaries_that_dead_writers_of_the_older_layout_left_are_removed_by_the_upgrade() {
    let sandbox = sandbox_with_fixture();
    // A pid no process has: the kernel's maximum is below it.
    let stale =
        [sandbox.store.join("views/long-a.view.2147483646.tmp"), sandbox.store.join("catalog.ckpt.2147483646.tmp")];
    for path in &stale {
        std::fs::write(path, b"half written").unwrap();
    }
    sandbox.run(&["plan", "list"]).expect_code(0);
    assert!(stale.iter().all(|p| p.exists()), "a read-only command writes nothing");

    sandbox.run(&["plan", "create", "--id", "fresh"]).expect_code(0);
    for path in &stale {
        assert!(!path.exists(), "{} is left behind", path.display());
    }
}
