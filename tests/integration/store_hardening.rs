//! What an operator's machine does to a store: a truncated log, derived files copied from
//! another store, planted symbolic links, a stopped writer, a clock before 1970, a low open-file
//! limit, a store path too long to create, and temporaries of writers that died. Each is met at
//! its mechanism, with a typed error or a cleanup, never silently.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use eventually::store::Expected;
use futures::executor::block_on;
use waypoint_application::domain::{DecisionId, Phase, PlanId, StepNumber, TotalSteps};
use waypoint_application::{ManualClock, NewPlan, PlanResumeService, StepCheckpoint};
use waypoint_store_file::{inspect, FileStore, FileStoreError, StoreOptions};

use crate::cli_harness::Sandbox;
use waypoint_application::testkit::plan_created as created;

/// A store of `plans` plans `p0`, `p1`, … of one event each, written with the default
/// checkpoint interval (so a checkpoint vouches for position 1,024 when there are more).
fn store_of_plans(dir: &Path, plans: u32) {
    let store = FileStore::open(dir).unwrap();
    for i in 0..plans {
        store.append_events(&PlanId::parse(&format!("p{i}")).unwrap(), Expected::Exact(0), vec![created()]).unwrap();
    }
}

/// Byte offset where the record at `position` ends.
fn end_of_position(dir: &Path, position: u32) -> u64 {
    let offsets: Vec<u64> = inspect::events(dir).unwrap().map(|e| e.unwrap().offset).collect();
    offsets[position as usize]
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

/// `waypoint store repair`, which needs the store closed by every process. A child process that
/// another test spawns at the moment this one has the store open can hold a copy of its
/// descriptor until it execs; wait that out.
fn repair(sandbox: &Sandbox) {
    for _ in 0..20 {
        let run = sandbox.run(&["store", "repair"]);
        if run.code == Some(0) {
            return;
        }
        assert!(run.stderr.contains("open in another process"), "{}", run.stderr);
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the store stayed locked");
}

#[test]
fn a_log_cut_before_what_a_checkpoint_vouched_for_is_damage_until_repaired() {
    for mid_record in [false, true] {
        let sandbox = Sandbox::new();
        store_of_plans(&sandbox.store, 1_100);
        let cut = end_of_position(&sandbox.store, 600) + if mid_record { 7 } else { 0 };
        let log = sandbox.store.join("events.log");
        truncate(&log, cut);
        let before = std::fs::read(&log).unwrap();

        let list = sandbox.run(&["plan", "list"]);
        list.expect_code(6);
        assert!(list.stderr.contains("events.log"), "{}", list.stderr);
        assert!(list.stderr.contains("waypoint store repair"), "{}", list.stderr);
        sandbox.run(&["plan", "show", "p1000"]).expect_code(6);
        sandbox.run(&["plan", "create", "--id", "fresh"]).expect_code(6);
        assert_eq!(std::fs::read(&log).unwrap(), before, "nothing is written until repair runs");

        repair(&sandbox);
        let listed = sandbox.run(&["plan", "list"]);
        listed.expect_code(0);
        assert_eq!(listed.json()["plans"].as_array().unwrap().len(), 600, "mid record: {mid_record}");
        sandbox.run(&["plan", "show", "p1000"]).expect_code(3);
        sandbox.run(&["plan", "create", "--id", "fresh"]).expect_code(0);
    }
}

/// Two stores with a plan `p2` of the same shape whose step 1 was recorded with different
/// decisions, and different totals for `p1`; both checkpointed, with view snapshots.
fn twin_stores(a: &Path, b: &Path) {
    for (dir, decision, total) in [(a, "ours", 3), (b, "theirs", 9)] {
        let options = StoreOptions { checkpoint_every: 1, view_snapshot_every: 1, ..StoreOptions::default() };
        let service = PlanResumeService::new(FileStore::open_with(dir, options).unwrap());
        block_on(async {
            for (id, total) in [("p1", total), ("p2", 5)] {
                let new = NewPlan {
                    id: Some(PlanId::parse(id).unwrap()),
                    total_steps: Some(TotalSteps::new(total).unwrap()),
                    start: Some((Phase::Strategize, None)),
                    ..NewPlan::default()
                };
                service.create_plan(new).await.unwrap();
            }
            let p2 = PlanId::parse("p2").unwrap();
            let checkpoint = StepCheckpoint::new(StepNumber::new(1).unwrap(), DecisionId::parse(decision).unwrap());
            service.record_step_checkpoint(&p2, checkpoint).await.unwrap();
            service.load(&p2).await.unwrap();
            service.load_summary(&p2).await.unwrap();
        });
    }
}

#[test]
fn derived_files_copied_from_another_store_are_never_trusted() {
    let (ours, theirs) = (Sandbox::new(), Sandbox::new());
    twin_stores(&ours.store, &theirs.store);
    assert!(theirs.store.join("views/p2.view").exists(), "the other store has a view snapshot");
    for file in ["catalog.ckpt", "views/p2.view", "views/p2.sum", "index/p2.idx", "index/p1.idx", "views/p1.sum"] {
        if theirs.store.join(file).exists() {
            std::fs::copy(theirs.store.join(file), ours.store.join(file)).unwrap();
        }
    }

    let show = ours.run(&["plan", "show", "p1"]);
    show.expect_code(0);
    assert_eq!(show.json()["total_steps"], 3, "{}", show.stdout);
    // Their decision is not an exact retry here: our log holds another one for step 1.
    let retry = ours.run(&["plan", "checkpoint", "p2", "--step", "1", "--decision", "theirs"]);
    assert_ne!(retry.code, Some(0), "{}", retry.stdout);
    ours.run(&["plan", "checkpoint", "p2", "--step", "1", "--decision", "ours"]).expect_code(0);
}

#[test]
fn a_symlink_planted_in_the_store_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();

    // An index replaced by a link: the next checkpoint must not write through it.
    let options = StoreOptions { checkpoint_every: 2, ..StoreOptions::default() };
    let store = FileStore::open_with(&store_dir, options.clone()).unwrap();
    let id = PlanId::parse("p").unwrap();
    store.append_events(&id, Expected::Exact(0), vec![created()]).unwrap();
    store.append_events(&PlanId::parse("q").unwrap(), Expected::Exact(0), vec![created()]).unwrap();
    let index = store_dir.join("index/p.idx");
    assert!(index.exists());
    std::fs::remove_file(&index).unwrap();
    symlink(&victim, &index).unwrap();
    let p2 = PlanId::parse("p2").unwrap();
    store.append_events(&p2, Expected::Exact(0), vec![created()]).unwrap();
    let _ = store.append_events(&id, Expected::Exact(1), vec![created()]);
    let _ = store.checkpoint();
    drop(store);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

    // A linked log: the store refuses to open it, naming the link.
    std::fs::remove_file(&index).unwrap();
    let log = store_dir.join("events.log");
    std::fs::rename(&log, dir.path().join("moved.log")).unwrap();
    symlink(&victim, &log).unwrap();
    for error in [FileStore::open(&store_dir).unwrap_err(), FileStore::open_read_only(&store_dir).unwrap_err()] {
        assert!(matches!(error, FileStoreError::Symlink { .. }), "{error}");
        assert!(error.to_string().contains("events.log") && error.to_string().contains("symbolic link"), "{error}");
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn a_stopped_writer_holding_the_write_lock_blocks_no_reader_and_is_named_to_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    store_of_plans(dir.path(), 3);
    // Hold write.lock the way a writer does, from another open file: as a stopped writer would.
    let lock = std::fs::OpenOptions::new().read(true).write(true).open(dir.path().join("write.lock")).unwrap();
    lock.lock().unwrap();

    // A reader never waits for a writer: it reads up to the last whole record.
    let options = StoreOptions { lock_timeout: Duration::from_secs(30), ..StoreOptions::default() };
    let started = std::time::Instant::now();
    let reader = FileStore::open_read_only_with(dir.path(), options).unwrap();
    assert_eq!(reader.catalog_snapshot().unwrap().plans.len(), 3);
    assert!(started.elapsed() < Duration::from_secs(5), "no wait for the stopped writer");
    // A writer must wait; after a bounded wait it hears who holds the lock.
    let options = StoreOptions { lock_timeout: Duration::from_millis(300), ..StoreOptions::default() };
    let error = FileStore::open_with(dir.path(), options).unwrap_err();
    assert!(matches!(error, FileStoreError::LockTimeout { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains("write.lock") && text.contains(&format!("process {}", std::process::id())), "{text}");
    lock.unlock().unwrap();
    FileStore::open(dir.path()).unwrap();
}

#[test]
fn a_clock_before_1970_is_a_typed_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new("1969-07-20T20:17:40Z".parse().unwrap());
    let service = PlanResumeService::new(FileStore::open(dir.path()).unwrap()).with_clock(clock);
    let error = block_on(service.create_plan(NewPlan::default())).unwrap_err();
    assert!(error.to_string().contains("before 1970"), "{error}");
    assert!(inspect::events(dir.path()).unwrap().next().is_none(), "nothing was appended");
}

#[test]
fn a_low_open_file_limit_does_not_stop_writes_between_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let child = env!("CARGO_BIN_EXE_store-append-child");
    let script = format!("ulimit -n 40 && exec '{child}' many-plans '{}' 300", dir.path().display());
    let output = Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).output().unwrap();
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let store = FileStore::open_read_only(dir.path()).unwrap();
    assert_eq!(store.catalog_snapshot().unwrap().plans.len(), 300);
}

#[test]
fn a_store_path_too_long_to_create_leaves_nothing_behind() {
    let sandbox = Sandbox::new();
    let top = sandbox.path("deep");
    let mut long = top.clone();
    for i in 0..40 {
        long = long.join(format!("{i:02}-{}", "d".repeat(120)));
    }
    let run = sandbox.run(&["--store", long.to_str().unwrap(), "plan", "create"]);
    assert_ne!(run.code, Some(0), "{}", run.stdout);
    assert!(!top.exists(), "a failed create removes the directories it made");
}

#[test]
fn temporaries_of_writers_that_died_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    store_of_plans(dir.path(), 2);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // A pid that no process has: the kernel's maximum is below it.
    let dead = tmp.join("p1.view.2147483646.tmp");
    std::fs::write(&dead, b"half a view").unwrap();
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let living = tmp.join(format!("p0.view.{}.tmp", sleeper.id()));
    std::fs::write(&living, b"being written").unwrap();

    drop(FileStore::open(dir.path()).unwrap());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(!dead.exists(), "a dead writer's temporary is removed");
    assert!(living.exists(), "a live writer's temporary is left alone");
}
