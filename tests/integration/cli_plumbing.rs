//! The plumbing commands through the real binary: a plan walked through every phase and state,
//! each refusal with its exit code and error code, and the JSON shapes pinned.

use serde_json::Value;

use crate::cli_harness::{assert_json_redacted, summary_selectors, Sandbox};

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
fn create_prints_the_id_in_rich_mode_and_the_summary_in_json() {
    let sandbox = Sandbox::new();
    let rich = sandbox.run_rich(&["plan", "create", "--id", "rich-1"]);
    rich.expect_code(0);
    assert_eq!(rich.stdout, "rich-1\n");

    let random = sandbox.run_rich(&["plan", "create"]);
    random.expect_code(0);
    let id = random.stdout.trim();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    ok(&sandbox, &["plan", "show", id]);

    let created = ok(
        &sandbox,
        &["plan", "create", "--id", "json-1", "--name", "nightly", "--total-steps", "3", "--fingerprint", "abc123"],
    );
    assert_json_redacted("plumbing_create", &created, &summary_selectors(""));
}

#[test]
fn a_plan_walks_through_every_phase_with_plumbing_commands() {
    let sandbox = Sandbox::new();
    ok(&sandbox, &["plan", "create", "--id", "p1", "--name", "walk", "--total-steps", "2"]);
    sandbox.run(&["plan", "create", "--id", "p1"]).expect_error(5, "plan_exists");

    let started = ok(&sandbox, &["plan", "start", "p1", "--phase", "strategize"]);
    assert_eq!((started["phase"].as_str(), started["state"].as_str()), (Some("strategize"), Some("processing")));
    assert_eq!(ok(&sandbox, &["plan", "total-steps", "p1", "3"])["total_steps"], 3);

    let step = ok(&sandbox, &["plan", "step-started", "p1", "--step", "1", "--decision", "d1"]);
    assert_eq!(step["uncertain_step"], 1);
    let checkpoint =
        ["plan", "checkpoint", "p1", "--step", "1", "--decision", "d1", "--snapshot", "snap-1", "--artifact", "a.txt"];
    let recorded = ok(&sandbox, &checkpoint);
    assert_eq!((recorded["last_completed_step"].as_u64(), recorded["uncertain_step"].as_u64()), (Some(1), None));
    assert_json_redacted("plumbing_checkpoint", &recorded, &summary_selectors(""));

    // An exact retry writes nothing; a different payload for a recorded step is a conflict.
    let before = sandbox.store_bytes();
    assert_eq!(ok(&sandbox, &checkpoint)["last_checkpoint_id"], recorded["last_checkpoint_id"]);
    assert_eq!(sandbox.store_bytes(), before, "an idempotent retry leaves the store untouched");
    sandbox
        .run(&["plan", "checkpoint", "p1", "--step", "1", "--decision", "other"])
        .expect_error(5, "conflicting_checkpoint");
    sandbox.run(&["plan", "checkpoint", "p1", "--step", "3", "--decision", "d3"]).expect_error(7, "step_out_of_order");
    sandbox.run(&["plan", "total-steps", "p1", "0"]).expect_error(2, "invalid_value");

    // Interrupt (idempotent), preview, resume: a plain plan resumes without running anything.
    let interrupted = ok(&sandbox, &["plan", "interrupt", "p1", "--reason", "maintenance window"]);
    assert_eq!(interrupted["interrupted"], true);
    assert_eq!(interrupted["interruption"]["reason"], "maintenance window");
    let events = event_types(&sandbox, "p1").len();
    ok(&sandbox, &["plan", "interrupt", "p1"]);
    assert_eq!(event_types(&sandbox, "p1").len(), events, "a second interruption records nothing");

    let preview = ok(&sandbox, &["plan", "resume", "p1", "--dry-run"]);
    assert_eq!((preview["eligible"].as_bool(), preview["next_step"].as_u64()), (Some(true), Some(2)));
    let resumed = ok(&sandbox, &["plan", "resume", "p1"]);
    assert_json_redacted("plumbing_resume_plain", &resumed, &summary_selectors(".summary"));

    // Resumed by a caller without a run lock: it must record its own interruption first.
    let refused = sandbox.run(&["plan", "resume", "p1"]).expect_error(4, "not_eligible");
    assert_eq!(refused["error"]["reasons"], serde_json::json!(["still_running"]));

    for step in ["2", "3"] {
        ok(&sandbox, &["plan", "step-started", "p1", "--step", step, "--decision", "d"]);
        ok(&sandbox, &["plan", "checkpoint", "p1", "--step", step, "--decision", "d"]);
    }
    sandbox.run(&["plan", "apply", "p1"]).expect_error(7, "invalid_state");
    assert_eq!(ok(&sandbox, &["plan", "complete-phase", "p1"])["state"], "complete");

    // execute: fail, refused advance, resume the errored phase, complete.
    ok(&sandbox, &["plan", "start", "p1", "--phase", "execute"]);
    assert_eq!(ok(&sandbox, &["plan", "fail", "p1", "--message", "disk full"])["state"], "errored");
    sandbox.run(&["plan", "start", "p1", "--phase", "apply"]).expect_error(7, "invalid_transition");
    ok(&sandbox, &["plan", "resume", "p1"]);
    ok(&sandbox, &["plan", "complete-phase", "p1"]);

    // apply: constrained, revert to strategize, all the way back, applied.
    ok(&sandbox, &["plan", "start", "p1", "--phase", "apply"]);
    sandbox.run(&["plan", "complete-phase", "p1"]).expect_error(7, "invalid_state");
    assert_eq!(ok(&sandbox, &["plan", "constrain", "p1", "--message", "quota exceeded"])["state"], "constrained");
    ok(&sandbox, &["plan", "start", "p1", "--phase", "strategize"]);
    ok(&sandbox, &["plan", "complete-phase", "p1"]);
    ok(&sandbox, &["plan", "start", "p1", "--phase", "execute"]);
    ok(&sandbox, &["plan", "complete-phase", "p1"]);
    ok(&sandbox, &["plan", "start", "p1", "--phase", "apply"]);
    let applied = ok(&sandbox, &["plan", "apply", "p1"]);
    assert_eq!(applied["state"], "applied");

    // A terminal plan accepts only reads.
    sandbox.run(&["plan", "cancel", "p1"]).expect_error(7, "terminal_state");
    let refused = sandbox.run(&["plan", "resume", "p1"]).expect_error(4, "not_eligible");
    assert!(refused["error"]["reasons"].as_array().unwrap().contains(&"terminal_state".into()));

    let history = ok(&sandbox, &["plan", "history", "p1"]);
    let selectors: Vec<String> = [
        ".events[].at",
        ".events[].event_id",
        ".events[].data.created_at",
        ".events[].data.checkpoint_id",
        ".events[].data.at",
        ".events[].data.by",
    ]
    .map(String::from)
    .to_vec();
    assert_json_redacted("plumbing_history_walk", &history, &selectors);
}

#[test]
fn cancel_and_phase_refusals() {
    let sandbox = Sandbox::new();
    ok(&sandbox, &["plan", "create", "--id", "c1"]);
    // `action` has nothing running to cancel, and `action` is never entered.
    sandbox.run(&["plan", "cancel", "c1"]).expect_error(7, "invalid_state");
    sandbox.run(&["plan", "start", "c1", "--phase", "action"]).expect_error(2, "invalid_value");
    sandbox.run(&["plan", "start", "c1", "--phase", "execute"]).expect_error(7, "invalid_transition");
    sandbox.run(&["plan", "resume", "c1"]).expect_error(4, "not_eligible");
    ok(&sandbox, &["plan", "start", "c1", "--phase", "strategize"]);
    sandbox.run(&["plan", "constrain", "c1", "--message", "no"]).expect_error(7, "invalid_state");
    let cancelled = ok(&sandbox, &["plan", "cancel", "c1", "--reason", "no longer needed"]);
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["reasons"], serde_json::json!(["terminal_state"]));
}

#[test]
fn rich_plumbing_output_confirms_in_one_line() {
    let sandbox = Sandbox::new();
    sandbox.run_rich(&["plan", "create", "--id", "r1", "--total-steps", "2"]).expect_code(0);
    let started = sandbox.run_rich(&["plan", "start", "r1", "--phase", "strategize"]);
    started.expect_code(0);
    assert_eq!(started.stdout, "✓ phase started · plan r1: running · 0 of 2 steps\n", "no phase without -v");
    let verbose = sandbox.run_rich(&["-v", "plan", "total-steps", "r1", "2"]);
    assert_eq!(verbose.stdout, "✓ total steps set to 2 · plan r1: running (strategize/processing) · 0 of 2 steps\n");
    assert!(!started.stdout.contains('\x1b'), "no colour when stdout is not a terminal");
    let refused = sandbox.run_rich(&["plan", "apply", "r1"]);
    refused.expect_code(7);
    assert!(refused.stdout.is_empty(), "rich errors go to stderr only");
    assert!(refused.stderr.starts_with("error: plan r1: cannot apply the plan"), "{}", refused.stderr);
}

#[test]
fn a_fingerprint_given_on_resume_is_compared_with_the_recorded_one() {
    let sandbox = Sandbox::new();
    ok(&sandbox, &["plan", "create", "--id", "f1", "--fingerprint", "abc123"]);
    ok(&sandbox, &["plan", "start", "f1", "--phase", "strategize"]);
    ok(&sandbox, &["plan", "interrupt", "f1"]);
    let preview = ok(&sandbox, &["plan", "resume", "f1", "--dry-run", "--fingerprint", "def456"]);
    assert_eq!(
        (preview["eligible"].as_bool(), &preview["reasons"]),
        (Some(false), &serde_json::json!(["definition_changed"]))
    );
    let refused = sandbox.run(&["plan", "resume", "f1", "--fingerprint", "def456"]).expect_error(4, "not_eligible");
    assert_eq!(refused["error"]["reasons"], serde_json::json!(["definition_changed"]));
    sandbox.run(&["plan", "resume", "f1", "--fingerprint", "xyz"]).expect_error(2, "invalid_value");
    let resumed = ok(&sandbox, &["plan", "resume", "f1", "--fingerprint", "abc123"]);
    assert_eq!(resumed["resumed"]["from_step"], 1);
}

#[test]
fn create_if_absent_continues_by_key_and_says_whether_it_created() {
    let sandbox = Sandbox::new();
    let first = ok(&sandbox, &["plan", "create", "--id", "orch-1", "--total-steps", "2", "--if-absent"]);
    assert_eq!((first["plan_id"].as_str(), first["created"].as_bool()), (Some("orch-1"), Some(true)));
    ok(&sandbox, &["plan", "start", "orch-1", "--phase", "strategize"]);
    let again = ok(&sandbox, &["plan", "create", "--id", "orch-1", "--if-absent"]);
    assert_eq!(again["created"], false, "{again}");
    assert_eq!(again["state"], "processing", "the existing plan, untouched: {again}");
    // Without the flag a taken id is still refused, and the flag needs an id.
    sandbox.run(&["plan", "create", "--id", "orch-1"]).expect_code(5);
    sandbox.run(&["plan", "create", "--if-absent"]).expect_code(2);
}

#[test]
fn checkpoint_records_a_step_name_and_output_that_show_and_history_give_back() {
    let sandbox = Sandbox::new();
    ok(&sandbox, &["plan", "create", "--id", "named", "--total-steps", "2"]);
    ok(&sandbox, &["plan", "start", "named", "--phase", "strategize"]);
    ok(&sandbox, &["plan", "step-started", "named", "--step", "1", "--decision", "d1"]);
    let args = ["plan", "checkpoint", "named", "--step", "1", "--decision", "d1", "--name", "fetch"];
    ok(&sandbox, &[&args[..], &["--output", r#"{"rows": 42}"#]].concat());
    let outputs = ok(&sandbox, &["plan", "show", "named", "--outputs"]);
    assert!(outputs.to_string().contains("fetch") && outputs.to_string().contains("42"), "{outputs}");
    let history = ok(&sandbox, &["plan", "history", "named"]);
    let completed = history["events"].as_array().unwrap().iter().find(|e| e["type"] == "step_completed").unwrap();
    assert_eq!(
        (completed["data"]["name"].as_str(), &completed["data"]["output"]),
        (Some("fetch"), &serde_json::json!({"rows": 42}))
    );
    // Output that is not JSON is refused, and nothing is written.
    ok(&sandbox, &["plan", "step-started", "named", "--step", "2", "--decision", "d2"]);
    let before = sandbox.store_bytes();
    sandbox
        .run(&["plan", "checkpoint", "named", "--step", "2", "--decision", "d2", "--output", "{not json"])
        .expect_code(2);
    assert_eq!(sandbox.store_bytes(), before);
}
