//! `cargo xtask replay` as a whole process: statistics, time travel, old schema versions,
//! `--verify` passing on healthy stores and naming every difference on damaged ones.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use waypoint_application::domain::{DecisionId, Message, Phase, PlanId, StepNumber, TotalSteps};
use waypoint_application::{NewPlan, PlanResumeService, StepCheckpoint, StepStart};
use waypoint_store_file::record::{RawRecord, FILE_HEADER};
use waypoint_store_file::{FileStore, StoreOptions};

use crate::cli_harness::{built_binary, Run, Sandbox};

fn xtask_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_binary("xtask", "xtask"))
}

/// Runs `xtask replay --store STORE ARGS`.
pub(crate) fn replay(store: &Path, args: &[&str]) -> Run {
    let output = Command::new(xtask_bin())
        .arg("replay")
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("WAYPOINT_STORE")
        .stdin(Stdio::null())
        .output()
        .expect("xtask runs");
    Run::from_output(output)
}

fn replay_json(store: &Path, args: &[&str]) -> (Run, Value) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let run = replay(store, &all);
    let json = run.json();
    (run, json)
}

fn count_of(report: &Value, event_type: &str, schema_version: u64) -> u64 {
    report["events_by_type"]
        .as_array()
        .expect("events_by_type is a list")
        .iter()
        .find(|t| t["type"] == event_type && t["schema_version"] == schema_version)
        .map_or(0, |t| t["count"].as_u64().expect("a count"))
}

/// A store written through the library with a catalog checkpoint and index after every record
/// and view snapshots, so `--verify` has every stored projection to compare. Three plans of
/// four steps: two steps done each, the last plan interrupted.
pub(crate) fn checkpointed_store(dir: &Path) -> Vec<PlanId> {
    let options = StoreOptions { checkpoint_every: 1, view_snapshot_every: 1, ..StoreOptions::default() };
    let service = PlanResumeService::new(FileStore::open_with(dir, options).expect("the store opens"));
    futures::executor::block_on(async {
        let mut ids = Vec::new();
        for _ in 0..3 {
            let new = NewPlan { total_steps: Some(TotalSteps::new(4).unwrap()), ..NewPlan::default() };
            let id = service.create_plan(new).await.expect("created").plan_id;
            service.start_phase(&id, Phase::Strategize, None).await.expect("started");
            for n in 1..=2 {
                let step = StepNumber::new(n).unwrap();
                let decision_id = DecisionId::parse(&format!("d-{n}")).unwrap();
                service
                    .record_step_started(&id, StepStart::new(step, decision_id.clone()))
                    .await
                    .expect("step started");
                let checkpoint = StepCheckpoint {
                    step,
                    decision_id,
                    snapshot_id: None,
                    artifacts: vec![],
                    name: None,
                    output: None,
                    fingerprint: None,
                };
                service.record_step_checkpoint(&id, checkpoint).await.expect("checkpoint");
                // Loading the full view writes its snapshot once enough events folded on top.
                service.load(&id).await.expect("loads");
            }
            ids.push(id);
        }
        service.record_shutdown(&ids[2], Message::parse("deploy").unwrap()).await.expect("shutdown");
        ids
    })
}

fn store_files(store: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![store.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable store dir") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).expect("readable file")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn replay_counts_every_event_of_a_cli_store_and_writes_nothing() {
    let sandbox = Sandbox::new();
    let id = sandbox.run(&["plan", "create", "--total-steps", "3"]).json()["plan_id"].as_str().unwrap().to_owned();
    sandbox.run(&["plan", "start", &id, "--phase", "strategize"]).expect_code(0);
    sandbox.run(&["plan", "step-started", &id, "--step", "1", "--decision", "d1"]).expect_code(0);
    sandbox.run(&["plan", "checkpoint", &id, "--step", "1", "--decision", "d1"]).expect_code(0);
    sandbox.run(&["plan", "interrupt", &id, "--reason", "lunch"]).expect_code(0);
    let before = store_files(&sandbox.store);

    let (run, report) = replay_json(&sandbox.store, &["--verify"]);
    run.expect_code(0);
    assert_eq!(report["events"], 5);
    assert_eq!(report["plans"], 1);
    assert_eq!(count_of(&report, "step_completed", 3), 1);
    assert_eq!(count_of(&report, "interrupted", 1), 1);
    assert_eq!(report["plans_by_phase_state"][0]["state"], "queued");
    assert_eq!(report["verify"]["ok"], true, "{report}");
    assert!(report["peak_rss_bytes"].as_u64().is_some_and(|b| b > 0));
    assert_eq!(store_files(&sandbox.store), before, "replay must not write to the store");
}

#[test]
fn verify_passes_on_a_checkpointed_store_and_checks_every_projection() {
    let sandbox = Sandbox::new();
    checkpointed_store(&sandbox.store);
    let (run, report) = replay_json(&sandbox.store, &["--verify"]);
    run.expect_code(0);
    let verify = &report["verify"];
    assert_eq!(verify["ok"], true, "{report}");
    assert_eq!(verify["checked"]["catalog_plans"], 3);
    assert!(verify["checked"]["index_entries"].as_u64().unwrap() > 0, "{report}");
    assert!(verify["checked"]["view_snapshots"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(verify["checked"]["incremental_views"], 3);
}

#[test]
fn verify_names_a_damaged_index_entry() {
    let sandbox = Sandbox::new();
    let ids = checkpointed_store(&sandbox.store);
    let index = sandbox.store.join("index").join(format!("{}.idx", ids[0]));
    let mut bytes = std::fs::read(&index).expect("the plan has an index");
    // The second entry's offset field (its first eight bytes): point version 2 elsewhere.
    bytes[16] ^= 0x40;
    std::fs::write(&index, bytes).unwrap();

    let (run, report) = replay_json(&sandbox.store, &["--verify"]);
    run.expect_code(1);
    let differences = report["verify"]["differences"].as_array().expect("differences");
    assert!(
        differences.iter().any(|d| d.as_str().unwrap().contains(&format!("index of plan {}", ids[0]))),
        "{differences:?}"
    );
    let rich = replay(&sandbox.store, &["--verify"]);
    rich.expect_code(1);
    assert!(rich.stdout.contains("differences"), "{}", rich.stdout);
}

#[test]
fn verify_names_a_damaged_catalog_checkpoint() {
    let sandbox = Sandbox::new();
    checkpointed_store(&sandbox.store);
    let catalog = sandbox.store.join("catalog.ckpt");
    let mut bytes = std::fs::read(&catalog).expect("the store has a catalog checkpoint");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&catalog, bytes).unwrap();

    let (run, report) = replay_json(&sandbox.store, &["--verify"]);
    run.expect_code(1);
    let text = report["verify"]["differences"].to_string();
    assert!(text.contains("catalog checkpoint"), "{text}");
}

#[test]
fn verify_names_a_catalog_from_another_store_which_the_store_never_trusts() {
    let (ours, theirs) = (Sandbox::new(), Sandbox::new());
    let our_ids = checkpointed_store(&ours.store);
    let their_ids = checkpointed_store(&theirs.store);
    std::fs::copy(theirs.store.join("catalog.ckpt"), ours.store.join("catalog.ckpt")).unwrap();

    let (run, report) = replay_json(&ours.store, &["--verify"]);
    run.expect_code(1);
    let text = report["verify"]["differences"].to_string();
    assert!(text.contains("belongs to another store"), "{text}");
    // The store itself serves its own plans, folded from its own log.
    let (_, listing) = replay_json(&ours.store, &[]);
    let listed = listing.to_string();
    for id in &our_ids {
        assert!(listed.contains(id.as_str()), "plan {id} is missing from {listed}");
    }
    for id in &their_ids {
        assert!(!listed.contains(id.as_str()), "plan {id} of the other store is listed: {listed}");
    }
}

#[test]
fn until_and_at_show_a_plan_as_it_was() {
    let sandbox = Sandbox::new();
    let ids = checkpointed_store(&sandbox.store);
    let id = ids[2].as_str();

    // Version 2 is PhaseStarted: processing, nothing completed yet.
    let (run, report) = replay_json(&sandbox.store, &["--plan", id, "--until", "2"]);
    run.expect_code(0);
    let plan = &report["plan"];
    assert_eq!(plan["version"], 2);
    assert_eq!(plan["summary"]["state"], "processing");
    assert_eq!(plan["summary"]["last_completed_step"], Value::Null);
    assert_eq!(report["events"], 2);

    // The present: interrupted after two steps.
    let (_, now) = replay_json(&sandbox.store, &["--plan", id]);
    assert_eq!(now["plan"]["summary"]["state"], "queued");
    assert_eq!(now["plan"]["summary"]["last_completed_step"], 2);
    assert_eq!(now["plan"]["eligibility"]["eligible"], true);

    // Before the store existed: nothing at all.
    let (run, before) = replay_json(&sandbox.store, &["--at", "2000-01-01T00:00:00Z"]);
    run.expect_code(0);
    assert_eq!(before["events"], 0);
    assert_eq!(before["plans"], 0);
}

#[test]
fn a_committed_log_of_an_older_schema_replays_through_the_upcasters_and_verifies() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/store-schema-v1");
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(&sandbox.store).unwrap();
    std::fs::copy(fixture.join("events.log"), sandbox.store.join("events.log")).unwrap();

    let (run, report) = replay_json(&sandbox.store, &["--verify"]);
    run.expect_code(0);
    assert_eq!(report["verify"]["ok"], true, "{report}");
    assert_eq!(count_of(&report, "step_completed", 1), 3, "the fixture's checkpoints are schema v1");
    assert_eq!(count_of(&report, "step_completed", 2), 0);

    let (_, plan) = replay_json(&sandbox.store, &["--plan", "fixture-a"]);
    let summary = &plan["plan"]["summary"];
    assert_eq!(summary["last_completed_step"], 2);
    assert_eq!(summary["uncertain_step"], 3);
    assert_eq!(summary["snapshot_id"], Value::Null);
    assert_eq!(summary["interruption"]["reason"], "deploy");
    assert_eq!(summary["eligible"], true);
}

#[test]
fn an_unknown_event_type_stops_the_replay_naming_the_record() {
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(&sandbox.store).unwrap();
    let record = |position: u32, event_type: &str, data: &str| RawRecord {
        position,
        version: position,
        batch_start: position,
        event_id: uuid::Uuid::from_u128(u128::from(position)),
        recorded_at: chrono::DateTime::UNIX_EPOCH,
        plan_id: "future-plan".into(),
        event_type: event_type.into(),
        schema_version: 1,
        data: data.as_bytes().to_vec(),
    };
    let created =
        r#"{"name":null,"total_steps":null,"fingerprint":null,"source":null,"created_at":"2026-01-01T00:00:00Z"}"#;
    let mut log = FILE_HEADER.to_vec();
    let first = record(1, "plan_created", created).encode().unwrap();
    let offset = log.len() + first.len();
    log.extend(first);
    log.extend(record(2, "plan_teleported", "{}").encode().unwrap());
    std::fs::write(sandbox.store.join("events.log"), log).unwrap();

    let (run, report) = replay_json(&sandbox.store, &[]);
    run.expect_code(6);
    let message = report["error"]["message"].as_str().expect("an error message");
    assert!(message.contains("plan_teleported"), "{message}");
    assert!(message.contains(&format!("offset {offset}")), "{message}");
    assert!(!run.stderr.trim().is_empty());
}

#[test]
fn bad_arguments_are_usage_errors() {
    let sandbox = Sandbox::new();
    replay(&sandbox.store, &["--until", "3"]).expect_code(2);
    replay(&sandbox.store, &["--plan", "../x"]).expect_code(2);
    replay(&sandbox.store, &["--at", "yesterday"]).expect_code(2);
    replay(&sandbox.store, &["--plan", "p", "--until", "1", "--at", "2026-01-01T00:00:00Z"]).expect_code(2);
    let missing = replay(&sandbox.path("nowhere"), &[]);
    missing.expect_code(6);
    assert!(missing.stderr.contains("no store"), "{}", missing.stderr);
}

#[test]
fn verify_passes_on_a_store_written_by_waypoint_run() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        "name = \"two steps\"\n\n[[steps]]\nname = \"one\"\nrun = \"echo 1 > one.txt\"\noutputs = [\"one.txt\"]\n\n\
         [[steps]]\nname = \"two\"\nrun = \"echo 2 > two.txt\"\noutputs = [\"two.txt\"]\n",
    );
    sandbox.run(&["run", plan.to_str().unwrap()]).expect_code(0);

    let (run, report) = replay_json(&sandbox.store, &["--verify"]);
    run.expect_code(0);
    assert_eq!(report["verify"]["ok"], true, "{report}");
    let current = u64::from(waypoint_application::domain::EventType::StepCompleted.current_schema_version());
    assert_eq!(count_of(&report, "step_completed", current), 2);
    assert_eq!(report["plans_by_phase_state"][0]["state"], "complete");
}

#[test]
fn a_plain_replay_lets_go_of_whole_plans_and_reports_what_a_verifying_one_does() {
    // Plans interleaved in the log, some finished, some not: a plain replay counts each plan as
    // soon as it is folded whole and lets go of it; --verify keeps every plan to the end.
    let sandbox = Sandbox::new();
    let create =
        || sandbox.run(&["plan", "create", "--total-steps", "2"]).json()["plan_id"].as_str().unwrap().to_owned();
    let (a, b) = (create(), create());
    sandbox.run(&["plan", "start", &a, "--phase", "strategize"]).expect_code(0);
    sandbox.run(&["plan", "start", &b, "--phase", "strategize"]).expect_code(0);
    let c = create();
    sandbox.run(&["plan", "checkpoint", &a, "--step", "1", "--decision", "d1"]).expect_code(0);
    sandbox.run(&["plan", "cancel", &b]).expect_code(0);
    sandbox.run(&["plan", "interrupt", &a, "--reason", "lunch"]).expect_code(0);
    sandbox.run(&["plan", "start", &c, "--phase", "strategize"]).expect_code(0);

    let (plain_run, plain) = replay_json(&sandbox.store, &[]);
    plain_run.expect_code(0);
    let (verify_run, verified) = replay_json(&sandbox.store, &["--verify"]);
    verify_run.expect_code(0);
    assert_eq!(plain["plans"], 3);
    for key in ["events", "plans", "events_by_type", "plans_by_phase_state"] {
        assert_eq!(plain[key], verified[key], "{key}: {plain} vs {verified}");
    }
    let slowest = |report: &Value| {
        let mut ids: Vec<String> = report["slowest_plans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["plan_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let mut all = vec![a, b, c];
    all.sort();
    assert_eq!(slowest(&plain), all, "every plan is among the five slowest of three");
}
