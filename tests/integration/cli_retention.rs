//! `waypoint store compact` through the real binary, on a file store: what goes and what stays,
//! how a removed plan answers, the archive read on its own (by the binary and by replay), the
//! dry run, the JSON shape, bad durations and archives, and `run FILE` after its plan went.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::cli_harness::Sandbox;
use super::replay_cli::replay;

/// A plan driven through the plumbing commands to apply/applied: finished, so retention may take it.
fn applied_plan(sandbox: &Sandbox, id: &str) {
    for args in [
        vec!["plan", "create", "--id", id, "--total-steps", "1"],
        vec!["plan", "start", id, "--phase", "strategize"],
        vec!["plan", "complete-phase", id],
        vec!["plan", "start", id, "--phase", "execute"],
        vec!["plan", "complete-phase", id],
        vec!["plan", "start", id, "--phase", "apply"],
        vec!["plan", "apply", id],
    ] {
        sandbox.run(&args).expect_code(0);
    }
}

/// A plan with one step done, then interrupted: resumable, so retention never takes it.
fn interrupted_plan(sandbox: &Sandbox, id: &str) {
    for args in [
        vec!["plan", "create", "--id", id, "--total-steps", "3"],
        vec!["plan", "start", id, "--phase", "strategize"],
        vec!["plan", "step-started", id, "--step", "1", "--decision", "d1"],
        vec!["plan", "checkpoint", id, "--step", "1", "--decision", "d1"],
        vec!["plan", "interrupt", id, "--reason", "lunch"],
    ] {
        sandbox.run(&args).expect_code(0);
    }
}

/// A plumbing plan whose strategize phase completed: between phases, its execute phase may
/// still start, so retention must never take it.
fn between_phases_plan(sandbox: &Sandbox, id: &str) {
    for args in [
        vec!["plan", "create", "--id", id, "--total-steps", "1"],
        vec!["plan", "start", id, "--phase", "strategize"],
        vec!["plan", "complete-phase", id],
    ] {
        sandbox.run(&args).expect_code(0);
    }
}

/// Where compaction archives this sandbox's store by default: `store.archive` beside it.
fn default_archive(sandbox: &Sandbox) -> PathBuf {
    std::fs::canonicalize(sandbox.dir.path()).expect("the sandbox exists").join("store.archive")
}

fn listed(sandbox: &Sandbox, store: &Path) -> Vec<String> {
    let store = store.to_str().expect("a UTF-8 path");
    let run = sandbox.run(&["--store", store, "plan", "list"]);
    run.expect_code(0);
    run.json()["plans"].as_array().expect("plans").iter().map(|p| p["plan_id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn compact_keeps_a_plumbing_plan_between_phases_and_it_moves_on_afterwards() {
    let sandbox = Sandbox::new();
    between_phases_plan(&sandbox, "strategized");
    let run = sandbox.run(&["store", "compact", "--older-than", "0s"]);
    run.expect_code(0);
    assert_eq!(run.json()["removed"], serde_json::json!([]), "{}", run.json());
    // The next phases still run on the kept plan.
    for args in [
        vec!["plan", "start", "strategized", "--phase", "execute"],
        vec!["plan", "complete-phase", "strategized"],
        vec!["plan", "start", "strategized", "--phase", "apply"],
        vec!["plan", "apply", "strategized"],
    ] {
        sandbox.run(&args).expect_code(0);
    }
    let run = sandbox.run(&["store", "compact", "--older-than", "0s"]);
    run.expect_code(0);
    assert_eq!(run.json()["removed"], serde_json::json!(["strategized"]), "applied, it goes");
}

#[test]
fn compact_removes_an_applied_plan_keeps_an_interrupted_one_and_archives_it_readably() {
    let sandbox = Sandbox::new();
    applied_plan(&sandbox, "done-1");
    interrupted_plan(&sandbox, "kept-1");

    let run = sandbox.run(&["store", "compact", "--older-than", "0s"]);
    run.expect_code(0);
    let report = run.json();
    let archive = default_archive(&sandbox);
    assert_eq!(report["removed"], serde_json::json!(["done-1"]), "{report}");
    assert_eq!(report["archive"], archive.to_str().unwrap(), "{report}");
    assert!(report["reclaimed_bytes"].is_u64(), "{report}");
    assert_eq!(report["dry_run"], false, "{report}");
    assert_eq!(report["kept"], serde_json::json!([]), "{report}");

    // The removed plan: not found, saying why and where; its id stays taken.
    let error = sandbox.run(&["plan", "show", "done-1"]).expect_error(3, "plan_not_found");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("removed by retention"), "{message}");
    assert!(message.contains(archive.to_str().unwrap()), "{message}");
    assert_eq!(error["error"]["plan_id"], "done-1");
    assert_eq!(error["error"]["archive"], archive.to_str().unwrap());
    for args in [
        vec!["plan", "history", "done-1"],
        vec!["plan", "resume", "done-1"],
        vec!["resume", "done-1", "--dry-run"],
        vec!["plan", "fork", "done-1", "--from-step", "1"],
        vec!["plan", "logs", "done-1"],
        vec!["plan", "cancel", "done-1"],
    ] {
        let error = sandbox.run(&args).expect_error(3, "plan_not_found");
        assert!(error["error"]["message"].as_str().unwrap().contains("removed by retention"), "{args:?}: {error}");
    }
    let rich = sandbox.run_rich(&["plan", "show", "done-1"]);
    rich.expect_code(3);
    assert!(rich.stderr.contains("waypoint --store"), "the remedy names the archive: {}", rich.stderr);
    // A prefix never resolves to a removed plan.
    sandbox.run(&["plan", "show", "done"]).expect_error(3, "plan_not_found");
    let error = sandbox.run(&["plan", "create", "--id", "done-1"]).expect_error(5, "plan_removed");
    assert!(error["error"]["message"].as_str().unwrap().contains("removed by retention"), "{error}");

    // The rest of the store is whole.
    sandbox.run(&["plan", "show", "kept-1"]).expect_code(0);
    assert_eq!(listed(&sandbox, &sandbox.store), ["kept-1"]);
    sandbox.run(&["store", "verify"]).expect_code(0);
    replay(&sandbox.store, &["--verify"]).expect_code(0);

    // The archive is a store of its own.
    let shown = archive.to_str().unwrap();
    sandbox.run(&["--store", shown, "store", "verify"]).expect_code(0);
    assert_eq!(listed(&sandbox, &archive), ["done-1"]);
    let summary = sandbox.run(&["--store", shown, "plan", "show", "done-1"]);
    summary.expect_code(0);
    assert_eq!(summary.json()["state"], "applied");
    replay(&archive, &["--verify"]).expect_code(0);
}

#[test]
fn compacting_twice_removes_nothing_the_second_time() {
    let sandbox = Sandbox::new();
    applied_plan(&sandbox, "done-1");
    sandbox.run(&["store", "compact", "--older-than", "0s"]).expect_code(0);
    let again = sandbox.run(&["store", "compact", "--older-than", "0s"]);
    again.expect_code(0);
    assert_eq!(again.json()["removed"], serde_json::json!([]));
    assert_eq!(listed(&sandbox, &default_archive(&sandbox)), ["done-1"]);
    let rich = sandbox.run_rich(&["store", "compact", "--older-than", "0s"]);
    rich.expect_code(0);
    assert!(rich.stdout.contains("nothing to remove"), "{}", rich.stdout);
}

#[test]
fn a_dry_run_lists_the_plans_and_writes_nothing() {
    let sandbox = Sandbox::new();
    applied_plan(&sandbox, "done-1");
    interrupted_plan(&sandbox, "kept-1");
    let before = sandbox.store_bytes();
    let run = sandbox.run(&["store", "compact", "--older-than", "0s", "--dry-run"]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["removed"], serde_json::json!(["done-1"]), "{report}");
    assert_eq!(report["dry_run"], true, "{report}");
    assert_eq!(report["reclaimed_bytes"], 0, "{report}");
    let rich = sandbox.run_rich(&["store", "compact", "--older-than", "0s", "--dry-run"]);
    rich.expect_code(0);
    assert!(rich.stdout.contains("nothing was written"), "{}", rich.stdout);
    assert!(rich.stdout.lines().all(|l| l.chars().count() <= 80), "80 columns:\n{}", rich.stdout);
    assert_eq!(sandbox.store_bytes(), before, "a dry run writes nothing to the store");
    assert!(!default_archive(&sandbox).exists(), "a dry run creates no archive");
    sandbox.run(&["plan", "show", "done-1"]).expect_code(0);
}

#[test]
fn a_plan_newer_than_the_cutoff_stays() {
    let sandbox = Sandbox::new();
    applied_plan(&sandbox, "done-1");
    let run = sandbox.run(&["store", "compact", "--older-than", "30d"]);
    run.expect_code(0);
    assert_eq!(run.json()["removed"], serde_json::json!([]));
    sandbox.run(&["plan", "show", "done-1"]).expect_code(0);
}

#[test]
fn rich_output_names_what_went_where_and_what_it_gave_back() {
    let sandbox = Sandbox::new();
    applied_plan(&sandbox, "done-1");
    applied_plan(&sandbox, "done-2");
    let run = sandbox.run_rich(&["store", "compact", "--older-than", "0s"]);
    run.expect_code(0);
    assert!(run.stdout.contains("removed 2 plans"), "{}", run.stdout);
    assert!(run.stdout.contains("done-1") && run.stdout.contains("done-2"), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("archived in {}", default_archive(&sandbox).display())), "{}", run.stdout);
    assert!(run.stdout.contains("reclaimed"), "{}", run.stdout);
    assert!(run.stdout.lines().all(|l| l.chars().count() <= 80), "80 columns:\n{}", run.stdout);
}

#[test]
fn a_bad_duration_or_archive_is_a_usage_error_and_writes_nothing() {
    let sandbox = Sandbox::new();
    applied_plan(&sandbox, "done-1");
    let before = sandbox.store_bytes();
    for duration in ["soon", "30", "-1d", "5y", "", "99999999d"] {
        let flag = format!("--older-than={duration}");
        let error = sandbox.run(&["store", "compact", &flag]).expect_error(2, "invalid_value");
        assert!(error["error"]["message"].as_str().unwrap().contains("--older-than"), "{duration:?}: {error}");
    }
    sandbox.run(&["store", "compact"]).expect_code(2);
    let inside = sandbox.store.join("old");
    // The store under another name: a link to its folder (a bind mount has a test of its own).
    let alias = sandbox.path("alias");
    std::os::unix::fs::symlink(&sandbox.store, &alias).unwrap();
    let through_alias = alias.join("old");
    for archive in [sandbox.store.clone(), inside, sandbox.dir.path().to_path_buf(), alias.clone(), through_alias] {
        let archive = archive.to_str().unwrap();
        sandbox
            .run(&["store", "compact", "--older-than", "0s", "--archive", archive])
            .expect_error(2, "invalid_archive");
    }
    assert_eq!(sandbox.store_bytes(), before, "a refused compaction writes nothing");
    let missing = sandbox.path("nowhere");
    let missing = missing.to_str().unwrap();
    sandbox.run(&["--store", missing, "store", "compact", "--older-than", "1d"]).expect_error(6, "store_not_found");
}

#[test]
fn an_archive_given_by_path_is_used_and_named_in_the_removed_plans_message() {
    let sandbox = Sandbox::new();
    applied_plan(&sandbox, "done-1");
    let archive = sandbox.path("kept/archive");
    let run = sandbox.run(&["store", "compact", "--older-than", "0s", "--archive", "kept/archive"]);
    run.expect_code(0);
    let named = std::fs::canonicalize(&archive).expect("the archive was created");
    assert_eq!(run.json()["archive"], named.to_str().unwrap());
    let error = sandbox.run(&["plan", "show", "done-1"]).expect_error(3, "plan_not_found");
    assert_eq!(error["error"]["archive"], named.to_str().unwrap());
    assert_eq!(listed(&sandbox, &archive), ["done-1"]);
}

const ONE_STEP: &str = r#"
name = "one-step"

[[steps]]
name = "hello"
run = "echo hello"
"#;

/// `run FILE` finds the file's plans by generation: a removed generation still counts, so the
/// next plan never takes a removed plan's id.
#[test]
fn run_file_after_its_plan_was_removed_says_so_and_new_takes_a_fresh_id() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("job.toml", ONE_STEP);
    let file = file.to_str().unwrap();
    let first = sandbox.run(&["run", file]);
    first.expect_code(0);
    let first_id = first.json()["plan_id"].as_str().unwrap().to_owned();
    sandbox.run(&["store", "compact", "--older-than", "0s"]).expect_code(0);

    let again = sandbox.run(&["run", file]);
    again.expect_code(0);
    let doc: Value = again.json();
    assert_eq!((doc["plan_id"].as_str(), doc["outcome"].as_str()), (Some(first_id.as_str()), Some("removed")));
    let rich = sandbox.run_rich(&["run", file]);
    rich.expect_code(0);
    assert!(rich.stdout.contains("removed by retention"), "{}", rich.stdout);

    let fresh = sandbox.run(&["run", "--new", file]);
    fresh.expect_code(0);
    let fresh_id = fresh.json()["plan_id"].as_str().unwrap().to_owned();
    assert_ne!(fresh_id, first_id, "a removed plan's id is never used again");
    // The removed plan's step logs went to the archive with its events.
    let archive = default_archive(&sandbox);
    let logs = sandbox.run(&["--store", archive.to_str().unwrap(), "plan", "logs", &first_id]);
    logs.expect_code(0);
    assert!(logs.json()["logs"][0]["stdout"].as_str().is_some_and(|s| s.contains("hello")), "{}", logs.stdout);
    // And the file's next plan after that is a third id, not the removed one.
    sandbox.run(&["store", "compact", "--older-than", "0s"]).expect_code(0);
    let third = sandbox.run(&["run", "--new", file]);
    third.expect_code(0);
    let third_id = third.json()["plan_id"].as_str().unwrap().to_owned();
    assert!(third_id != first_id && third_id != fresh_id, "{third_id}");
}

/// An archive that already holds another plan under a due plan's id is refused (exit 5,
/// `archive_conflict`) before the store loses anything.
#[test]
fn an_archive_holding_another_plan_of_the_same_id_is_refused_and_nothing_is_removed() {
    let sandbox = Sandbox::new();
    applied_plan(&sandbox, "clash-1");
    let other = sandbox.path("other-store");
    let other_store = other.to_str().unwrap();
    sandbox.run(&["--store", other_store, "plan", "create", "--id", "clash-1"]).expect_code(0);
    let before = sandbox.store_bytes();

    let error = sandbox
        .run(&["store", "compact", "--older-than", "0s", "--archive", other_store])
        .expect_error(5, "archive_conflict");
    let message = error["error"]["message"].as_str().expect("a message");
    assert!(message.contains("clash-1") && message.contains("nothing was removed"), "{message}");
    assert_eq!(sandbox.store_bytes(), before, "the store is untouched");
    sandbox.run(&["plan", "show", "clash-1"]).expect_code(0);
}

/// Whether this process runs as root (`/proc/self` belongs to the process's effective user).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The store under a second path that no link explains: a bind mount of its folder, which
/// `canonicalize` leaves as it is. The mount is made in a mount namespace of the command's own
/// (`unshare --mount`; a user namespace as well when not root), so nothing stays mounted
/// whatever happens to the test. The compaction runs in that namespace, on the store, with the
/// archive at the mount (or inside it).
#[test]
fn an_archive_that_is_the_store_bind_mounted_elsewhere_is_refused_and_nothing_is_removed() {
    let sandbox = Sandbox::new();
    applied_plan(&sandbox, "done-1");
    let alias = sandbox.path("mounted");
    std::fs::create_dir(&alias).unwrap();
    let before = sandbox.store_bytes();
    // The mount must show the store's device and inode, or the test proves nothing: exit 99.
    let script = r#"mount --bind "$1" "$2" || exit 98
[ "$(stat -c %d:%i "$1")" = "$(stat -c %d:%i "$2")" ] || exit 99
exec "$0" --store "$1" --format json store compact --older-than 0s --archive "$3""#;
    for archive in [alias.clone(), alias.join("old")] {
        let mut unshare = std::process::Command::new("unshare");
        if !running_as_root() {
            unshare.arg("--map-root-user");
        }
        let output = unshare
            .args(["--mount", "sh", "-c", script])
            .arg(super::cli_harness::waypoint_bin())
            .arg(&sandbox.store)
            .arg(&alias)
            .arg(&archive)
            .current_dir(sandbox.dir.path())
            .env_remove("WAYPOINT_STORE")
            .env("NO_COLOR", "1")
            .output()
            .expect("util-linux `unshare` runs (it makes the bind mount in a namespace of its own)");
        let run = super::cli_harness::Run::from_output(output);
        assert!(
            !matches!(run.code, Some(98 | 99)),
            "the bind mount could not be made (exit {:?}): {}",
            run.code,
            run.stderr
        );
        let error = run.expect_error(2, "invalid_archive");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("under another path"), "{archive:?}: {message}");
    }
    assert_eq!(sandbox.store_bytes(), before, "a refused compaction writes nothing");
    sandbox.run(&["plan", "show", "done-1"]).expect_code(0);
    assert_eq!(std::fs::read_dir(&alias).unwrap().count(), 0, "nothing was left at the mount point");
}

/// A plan file's plan whose one step printed `hello`: finished, with a step log.
fn ran_plan_with_a_log(sandbox: &Sandbox) -> String {
    let file = sandbox.write("job.toml", ONE_STEP);
    let run = sandbox.run(&["run", file.to_str().unwrap()]);
    run.expect_code(0);
    run.json()["plan_id"].as_str().unwrap().to_owned()
}

/// An archive on another file system: nothing can be renamed into it, so the step logs must be
/// copied through the store port (a rename across file systems once failed silently and left
/// them behind). `/dev/shm` is a tmpfs; the test checks that it is another device first.
#[test]
fn an_archive_on_another_file_system_takes_the_removed_plans_step_logs() {
    use std::os::unix::fs::MetadataExt;
    let sandbox = Sandbox::new();
    let elsewhere = tempfile::tempdir_in("/dev/shm").expect("a folder in /dev/shm (a tmpfs)");
    let (here, there) = (sandbox.dir.path().metadata().unwrap().dev(), elsewhere.path().metadata().unwrap().dev());
    assert_ne!(
        here,
        there,
        "{} and {} are one file system: this test needs /dev/shm on another (set TMPDIR elsewhere)",
        sandbox.dir.path().display(),
        elsewhere.path().display()
    );
    let id = ran_plan_with_a_log(&sandbox);
    let logs_here = sandbox.store.join("logs").join(&id);
    assert!(logs_here.is_dir(), "the run kept its step log in the store");
    let archive = elsewhere.path().join("archive");
    let archive_named = archive.to_str().unwrap();
    let run = sandbox.run(&["store", "compact", "--older-than", "0s", "--archive", archive_named]);
    run.expect_code(0);
    assert_eq!(run.json()["removed"], serde_json::json!([id]), "{}", run.stdout);
    assert!(!logs_here.exists(), "the removed plan's logs are gone from the store");
    assert!(!sandbox.store.join("runs").join(&id).exists(), "and its run folder");
    let logs = sandbox.run(&["--store", archive_named, "plan", "logs", &id]);
    logs.expect_code(0);
    assert!(logs.json()["logs"][0]["stdout"].as_str().is_some_and(|s| s.contains("hello")), "{}", logs.stdout);
    let shown = sandbox.run(&["--store", archive_named, "plan", "show", &id]);
    shown.expect_code(0);
    assert_eq!(shown.json()["status"], "completed", "{}", shown.stdout);
    sandbox.run(&["--store", archive_named, "store", "verify"]).expect_code(0);
}
