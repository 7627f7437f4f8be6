//! `waypoint store verify | repair | stats`: the operator's commands, on stores made by the CLI,
//! and every command a message names is one the binary has.

use std::path::Path;
use std::process::Command;

use super::cli_harness::{waypoint_bin, Sandbox};
use super::replay_cli::checkpointed_store;

/// A plan made through the plumbing commands: created, started, one step done, interrupted.
fn cli_plan(sandbox: &Sandbox, id: &str) {
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

#[test]
fn store_verify_passes_on_a_cli_made_store_and_writes_nothing() {
    let sandbox = Sandbox::new();
    cli_plan(&sandbox, "p1");
    cli_plan(&sandbox, "p2");
    let before = sandbox.store_bytes();
    let run = sandbox.run(&["store", "verify"]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checked"]["events"], 10, "{report}");
    assert_eq!(report["checked"]["full_views"], 2, "{report}");
    assert_eq!(report["differences"].as_array().map(Vec::len), Some(0));
    let rich = sandbox.run_rich(&["store", "verify"]);
    rich.expect_code(0);
    assert!(rich.stdout.contains("Verify: OK"), "{}", rich.stdout);
    assert_eq!(sandbox.store_bytes(), before, "verify writes nothing");
}

#[test]
fn store_verify_exits_6_naming_a_damaged_index_and_a_damaged_catalog() {
    let sandbox = Sandbox::new();
    let ids = checkpointed_store(&sandbox.store);
    let index = sandbox.store.join("index").join(format!("{}.idx", ids[0]));
    let mut bytes = std::fs::read(&index).expect("the plan has an index");
    bytes[16] ^= 0x40;
    std::fs::write(&index, bytes).unwrap();
    let catalog = sandbox.store.join("catalog.ckpt");
    let mut bytes = std::fs::read(&catalog).expect("the store has a catalog checkpoint");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&catalog, bytes).unwrap();

    let error = sandbox.run(&["store", "verify"]).expect_error(6, "verify_failed");
    let differences = error["error"]["differences"].to_string();
    assert!(differences.contains(&format!("index of plan {}", ids[0])), "{differences}");
    assert!(differences.contains("catalog checkpoint"), "{differences}");
    let rich = sandbox.run_rich(&["store", "verify"]);
    rich.expect_code(6);
    assert!(rich.stdout.contains("differences"), "{}", rich.stdout);
    assert!(rich.stderr.contains("waypoint store repair"), "{}", rich.stderr);
}

#[test]
fn store_verify_and_stats_of_a_missing_store_say_so() {
    let sandbox = Sandbox::new();
    for command in ["verify", "stats"] {
        let error = sandbox.run(&["store", command]).expect_error(6, "store_not_found");
        assert!(error["error"]["message"].as_str().unwrap().contains("no store at"), "{error}");
    }
    assert!(!sandbox.store.exists(), "nothing was created");
}

#[test]
fn store_stats_counts_plans_events_and_bytes() {
    let sandbox = Sandbox::new();
    cli_plan(&sandbox, "p1");
    sandbox.run(&["plan", "create", "--id", "p2"]).expect_code(0);
    sandbox.run(&["plan", "start", "p2", "--phase", "strategize"]).expect_code(0);
    sandbox.run(&["plan", "cancel", "p2"]).expect_code(0);
    let stats = sandbox.run(&["store", "stats"]).json();
    assert_eq!(stats["plans"], 2, "{stats}");
    assert_eq!(stats["events"], 8, "{stats}");
    assert_eq!(stats["plans_by_state"]["queued"], 1, "{stats}");
    assert_eq!(stats["plans_by_state"]["cancelled"], 1, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["oldest_activity"].as_str().unwrap() <= stats["newest_activity"].as_str().unwrap());
    let rich = sandbox.run_rich(&["store", "stats"]);
    rich.expect_code(0);
    assert!(rich.stdout.contains("plans") && rich.stdout.contains("events"), "{}", rich.stdout);
}

#[test]
fn store_repair_mends_what_the_error_message_sends_the_user_to_it_for() {
    let sandbox = Sandbox::new();
    for id in ["a", "b", "c"] {
        sandbox.run(&["plan", "create", "--id", id]).expect_code(0);
    }
    // Flip a byte inside the first record: damage before the last record is never a torn tail.
    let log = sandbox.store.join("events.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[40] ^= 0x20;
    std::fs::write(&log, bytes).unwrap();
    let error = sandbox.run(&["plan", "list"]).expect_error(6, "store_unreadable");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("waypoint store repair"), "{message}");

    let repaired = sandbox.run(&["store", "repair"]);
    repaired.expect_code(0);
    let report = repaired.json();
    assert!(report["damage_at"].as_u64().is_some(), "{report}");
    assert!(Path::new(report["backup"].as_str().unwrap()).is_file(), "a backup was kept: {report}");
    sandbox.run(&["plan", "list"]).expect_code(0);
    sandbox.run(&["store", "verify"]).expect_code(0);
}

/// Every `waypoint …` command that a message or help text in the sources names, up to its first
/// argument, is a command the binary accepts (`--help` on it exits 0).
#[test]
fn every_command_named_in_a_message_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut named = std::collections::BTreeSet::new();
    let mut pending = vec![root.join("crates")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("target") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, _) in text.match_indices("`waypoint ") {
                    let rest = &text[i + 1..];
                    let end = rest.find('`').unwrap_or(rest.len());
                    let words: Vec<&str> = rest[..end]
                        .split_whitespace()
                        .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-'))
                        .collect();
                    named.insert((words.join(" "), path.strip_prefix(&root).unwrap().display().to_string()));
                }
            }
        }
    }
    assert!(named.iter().any(|(c, _)| c == "waypoint store repair"), "the scan finds the repair advice: {named:?}");
    for (command, file) in &named {
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let status = Command::new(waypoint_bin()).args(&args).arg("--help").output().unwrap().status;
        assert!(status.success(), "`{command}`, named in {file}, is not a command of the binary");
    }
}
