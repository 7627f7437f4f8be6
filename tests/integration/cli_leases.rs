//! Leases through the real binary: an orchestrator holds a plumbing plan by lease, command by
//! command; once the lease ran out without a heartbeat the plan is crashed (`lease_expired`),
//! another runner resumes it, and the first runner's heartbeat is refused (exit 5, `lease_lost`).

use std::time::Duration;

use serde_json::Value;

use crate::cli_harness::Sandbox;

#[track_caller]
fn ok(sandbox: &Sandbox, args: &[&str]) -> Value {
    let run = sandbox.run(args);
    run.expect_code(0);
    run.json()
}

fn event_types(sandbox: &Sandbox, id: &str) -> Vec<String> {
    let history = ok(sandbox, &["plan", "history", id]);
    history["events"].as_array().expect("events").iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn an_expired_lease_is_a_crash_another_runner_takes_over_and_the_old_runner_is_fenced() {
    let sandbox = Sandbox::new();
    ok(&sandbox, &["plan", "create", "--id", "leased-1", "--total-steps", "3"]);
    let started =
        ok(&sandbox, &["plan", "start", "leased-1", "--phase", "strategize", "--runner", "a", "--lease", "1s"]);
    assert_eq!((started["status"].as_str(), started["lease"]["runner"].as_str()), (Some("running"), Some("a")));
    ok(&sandbox, &["plan", "step-started", "leased-1", "--step", "1", "--decision", "d1"]);

    // No heartbeat: the lease, granted before the start returned, has run out a second later.
    std::thread::sleep(Duration::from_millis(1200));
    let shown = ok(&sandbox, &["plan", "show", "leased-1"]);
    assert_eq!((shown["status"].as_str(), shown["state"].as_str()), (Some("crashed"), Some("processing")), "{shown}");
    assert_eq!(shown["interruption"]["reason"], "lease_expired");
    assert_eq!(shown["interruption"]["inferred"], true);
    assert_eq!(shown["interruption"]["at"], shown["lease"]["expires_at"], "it stopped when its lease ran out");
    assert_eq!((shown["eligible"].as_bool(), shown["next_step"].as_u64()), (Some(true), Some(1)));
    let resumable = ok(&sandbox, &["plan", "list", "--resumable"]);
    assert_eq!(resumable["plans"][0]["plan_id"], "leased-1");

    let resumed = ok(&sandbox, &["plan", "resume", "leased-1", "--runner", "b", "--lease", "30s"]);
    assert_eq!(resumed["resumed"]["from_step"], 1);
    assert_eq!(resumed["resumed"]["rerun_uncertain"], true, "a's step runs again");
    assert_eq!(
        (resumed["summary"]["status"].as_str(), resumed["summary"]["lease"]["runner"].as_str()),
        (Some("running"), Some("b"))
    );

    let before = sandbox.store_bytes();
    let fenced = sandbox.run(&["plan", "heartbeat", "leased-1", "--runner", "a"]);
    let error = fenced.expect_error(5, "lease_lost");
    assert_eq!(error["error"]["plan_id"], "leased-1");
    let message = error["error"]["message"].as_str().expect("a message");
    assert!(message.contains("runner b holds it now") && message.contains("stop working on the plan"), "{message}");
    let step = ["plan", "step-started", "leased-1", "--step", "1", "--decision", "d1-again", "--runner", "a"];
    sandbox.run(&[&step[..], &["--lease", "30s"]].concat()).expect_error(5, "lease_lost");
    assert_eq!(sandbox.store_bytes(), before, "the fenced runner wrote nothing");

    let renewed = ok(&sandbox, &["plan", "heartbeat", "leased-1", "--runner", "b", "--lease", "60s"]);
    assert_eq!(renewed["lease"]["runner"], "b");
    assert_eq!(
        event_types(&sandbox, "leased-1"),
        ["plan_created", "phase_started", "step_started", "resumed", "lease_renewed"]
    );
    let history = ok(&sandbox, &["plan", "history", "leased-1"]);
    let events = history["events"].as_array().expect("events");
    assert_eq!(
        (events[1]["schema_version"].as_u64(), events[1]["data"]["lease"]["runner"].as_str()),
        (Some(2), Some("a"))
    );
    assert_eq!(
        (events[3]["schema_version"].as_u64(), events[3]["data"]["lease"]["runner"].as_str()),
        (Some(2), Some("b"))
    );
}

#[test]
fn a_live_lease_keeps_the_plan_running_and_only_its_holder_goes_on() {
    let sandbox = Sandbox::new();
    ok(&sandbox, &["plan", "create", "--id", "leased-2"]);
    ok(&sandbox, &["plan", "start", "leased-2", "--phase", "strategize", "--runner", "a", "--lease", "10m"]);
    let shown = ok(&sandbox, &["plan", "show", "leased-2"]);
    assert_eq!((shown["status"].as_str(), shown["eligible"].as_bool()), (Some("running"), Some(false)));
    assert_eq!(shown["reasons"], serde_json::json!(["still_running"]));

    let takeover = sandbox.run(&["plan", "resume", "leased-2", "--runner", "b", "--lease", "30s"]);
    assert_eq!(takeover.expect_error(4, "not_eligible")["error"]["reasons"], serde_json::json!(["still_running"]));
    let step = ["plan", "step-started", "leased-2", "--step", "1", "--decision", "d1"];
    sandbox.run(&[&step[..], &["--runner", "b", "--lease", "30s"]].concat()).expect_error(5, "lease_lost");
    let started = ok(&sandbox, &[&step[..], &["--runner", "a", "--lease", "10m"]].concat());
    assert_eq!(started["uncertain_step"], 1);

    let rich = sandbox.run_rich(&["plan", "heartbeat", "leased-2", "--runner", "a"]);
    rich.expect_code(0);
    assert!(rich.stdout.contains("lease renewed for 30s · held by a until"), "{}", rich.stdout);
    let shown = sandbox.run_rich(&["plan", "show", "leased-2"]);
    assert!(shown.stdout.contains("held by a until"), "{}", shown.stdout);
    let history = sandbox.run_rich(&["plan", "history", "leased-2"]);
    assert!(
        history.stdout.contains("lease_renewed") || history.stdout.contains("runner a · until"),
        "{}",
        history.stdout
    );
}

#[test]
fn lease_flags_are_checked_before_anything_runs() {
    let sandbox = Sandbox::new();
    ok(&sandbox, &["plan", "create", "--id", "leased-3"]);
    let start = ["plan", "start", "leased-3", "--phase", "strategize"];
    sandbox.run(&[&start[..], &["--lease", "30s"]].concat()).expect_code(2);
    sandbox.run(&[&start[..], &["--runner", "a"]].concat()).expect_code(2);
    sandbox.run(&[&start[..], &["--runner", "a", "--lease", "0s"]].concat()).expect_error(2, "invalid_value");
    sandbox.run(&[&start[..], &["--runner", "a b", "--lease", "30s"]].concat()).expect_error(2, "invalid_value");
    sandbox.run(&["plan", "heartbeat", "leased-3"]).expect_code(2);
    // A heartbeat for a plan nobody holds by lease.
    ok(&sandbox, &start);
    sandbox.run(&["plan", "heartbeat", "leased-3", "--runner", "a"]).expect_error(5, "lease_lost");
    sandbox.run(&["plan", "heartbeat", "nobody", "--runner", "a"]).expect_error(3, "plan_not_found");
}

#[test]
fn a_plan_files_plan_is_not_resumed_by_lease() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("one.toml", "name = \"one\"\n[[steps]]\nname = \"only\"\nrun = \"true\"\n");
    sandbox.run(&["run", file.to_str().expect("a UTF-8 path")]).expect_code(0);
    let id = sandbox.only_plan_id();
    let refused = sandbox.run(&["plan", "resume", &id, "--runner", "b", "--lease", "30s"]);
    let error = refused.expect_error(2, "lease_not_supported");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("leave out --runner and --lease")));
}
