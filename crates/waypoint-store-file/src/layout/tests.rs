//! The layout's names are part of the on-disk format: pinned here, so a rename is a test
//! failure. Every file and directory is private, and no plan id can build a path outside.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use eventually::store::{EventStore, Expected};
use futures::executor::block_on;
use waypoint_application::LogStream;
use waypoint_domain::{Attempt, PlanId, StepNumber};

use super::{parse_step_log, temp_for, temp_owner, Layout, RowsKind};
use crate::test_support::*;
use crate::{FileStore, FileStoreError};

#[test]
fn every_name_is_the_documented_one() {
    let layout = Layout::new("/s");
    let plan = PlanId::parse("p-1").unwrap();
    let cases = [
        (layout.log(), "/s/events.log"),
        (layout.store_lock(), "/s/store.lock"),
        (layout.write_lock(), "/s/write.lock"),
        (layout.locks_dir(), "/s/locks"),
        (layout.run_lock(&plan), "/s/locks/p-1.lock"),
        (layout.attempt_lock(&plan), "/s/locks/p-1.attempt"),
        (layout.checkpoint(), "/s/catalog.ckpt"),
        (layout.index_dir(), "/s/index"),
        (layout.plan_index(&plan), "/s/index/p-1.idx"),
        (layout.views_dir(), "/s/views"),
        (layout.view(&plan), "/s/views/p-1.view"),
        (layout.torn_dir(), "/s/torn"),
        (layout.torn_tail(42, "T"), "/s/torn/events.log.at-42.T.torn"),
        (layout.repair_cut(42, "T"), "/s/torn/events.log.repair-at-42.T.cut"),
        (layout.backup_dir(), "/s/backup"),
        (layout.backup("T"), "/s/backup/events.log.T.bak"),
        (layout.checkpoint_lock(), "/s/checkpoint.lock"),
        (layout.summary(&plan), "/s/views/p-1.sum"),
        (layout.catalog_dir(), "/s/catalog"),
        (layout.rows(RowsKind::Open, 3), "/s/catalog/open-3.rows"),
        (layout.rows(RowsKind::Done, 0), "/s/catalog/done-0.rows"),
        (layout.tmp_dir(), "/s/tmp"),
        (layout.retention_dir(), "/s/retention"),
        (layout.retention_commits(), "/s/retention/batches"),
        (layout.retention_batch(7), "/s/retention/7.batch"),
        (layout.removed_dir(), "/s/removed"),
        (layout.tombstones(0xabc), "/s/removed/abc.rm"),
        (layout.logs_dir(), "/s/logs"),
        (layout.plan_runs(&plan), "/s/runs/p-1"),
        (layout.plan_logs(&plan), "/s/logs/p-1"),
        (layout.step_log(&plan, step(3), attempt(2), LogStream::Stdout), "/s/logs/p-1/3-2.out"),
        (layout.step_log(&plan, step(3), attempt(12), LogStream::Stderr), "/s/logs/p-1/3-12.err"),
    ];
    for (built, documented) in cases {
        assert_eq!(built, Path::new(documented));
    }
    assert_eq!(layout.dir(), Path::new("/s"));
    let temp = format!("/s/tmp/catalog.ckpt.{}.tmp", std::process::id());
    assert_eq!(temp_for(&layout.tmp_dir(), &layout.checkpoint()), Path::new(&temp));
    assert_eq!(temp_owner(&format!("p-1.view.{}.tmp", 42)), Some(42));
    assert_eq!(temp_owner("p-1.view"), None);
    let log_temp = layout.step_log_temp(&plan, step(3), attempt(2), LogStream::Stderr, 7);
    let pid = std::process::id();
    assert_eq!(log_temp, Path::new(&format!("/s/tmp/logs.p-1.3-2.err.7.{pid}.tmp")));
    let log_temp_name = log_temp.file_name().unwrap().to_str().unwrap();
    assert_eq!(temp_owner(log_temp_name), Some(pid), "dead writers' log temporaries are found like the others");
}

fn step(n: u32) -> StepNumber {
    StepNumber::new(n).unwrap()
}

fn attempt(n: u32) -> Attempt {
    Attempt::new(n).unwrap()
}

#[test]
fn step_log_names_parse_back_and_nothing_else_does() {
    let layout = Layout::new("/s");
    let plan = PlanId::parse("p-1").unwrap();
    for (s, a, stream) in
        [(1, 1, LogStream::Stdout), (3, 12, LogStream::Stderr), (u32::MAX, u32::MAX, LogStream::Stdout)]
    {
        let path = layout.step_log(&plan, step(s), attempt(a), stream);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_step_log(name), Some((step(s), attempt(a), stream)), "{name}");
    }
    for other in [
        "1-1.log",
        "1-1",
        "0-1.out",
        "1-0.err",
        "01-1.out",
        "1-+1.out",
        "1.out",
        "a-1.out",
        "1-1.out.7.9.tmp",
        "-1-1.out",
    ] {
        assert_eq!(parse_step_log(other), None, "{other}");
    }
}

#[test]
fn files_and_directories_are_private_whatever_the_umask() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("missing-parent").join("store");
    let mut store = FileStore::open(&dir).unwrap();
    block_on(store.append(plan("p1"), Expected::Exact(0), vec![created()])).unwrap();
    let _guard = waypoint_application::RunLocks::acquire(&store.run_locks(), &plan("p1"), &runner()).unwrap();
    for entry in walk(&parent.path().join("missing-parent")) {
        let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
        let want = if entry.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{}", entry.display());
    }
}

#[test]
fn ids_that_would_escape_the_directory_are_refused_before_any_path_is_built() {
    for bad in ["../x", "/etc/passwd", "a/b", "nul\0byte", "..", ".", "", &"x".repeat(65), "tab\t"] {
        assert!(PlanId::parse(bad).is_err(), "{bad:?} must not be a plan id");
    }
    // A record whose plan id would escape (written by hand, checksum intact) is damage: it never
    // becomes a PlanId, so no index, view or lock path is ever built from it.
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    drop(FileStore::open(&dir).unwrap());
    append_raw(&dir, raw(1, "../escaped", "plan_created", 1, b"{}"));
    let before: Vec<_> = std::fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(matches!(FileStore::open(&dir), Err(FileStoreError::Corrupt { .. })));
    assert!(matches!(FileStore::open_read_only(&dir), Err(FileStoreError::Corrupt { .. })));
    let after: Vec<_> = std::fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after);
}
