//! What the `waypoint` binary prints, through the real binary: JSON documents keep the
//! contract's key order.

use serde_json::Value;

use crate::cli_harness::Sandbox;

/// The keys of a JSON object, in the order printed.
fn keys(value: &Value) -> Vec<&str> {
    value.as_object().unwrap_or_else(|| panic!("an object: {value}")).keys().map(String::as_str).collect()
}

#[test]
fn json_documents_keep_the_contracts_key_order() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write("plan.toml", "name = \"order\"\n[[steps]]\nname = \"one\"\nrun = \"echo hi\"\n");
    let run = sandbox.run(&["run", plan.to_str().unwrap()]);
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(keys(&doc), ["plan_id", "outcome", "steps", "summary"]);
    assert_eq!(keys(&doc["summary"])[..4], ["plan_id", "phase", "state", "eligible"]);
    let id = doc["plan_id"].as_str().unwrap().to_owned();

    let error = sandbox.run(&["plan", "resume", &id]).expect_error(4, "not_eligible");
    assert_eq!(keys(&error["error"]), ["code", "message", "reasons", "plan_id"]);

    let history = sandbox.run(&["plan", "history", &id]).json();
    let created = &history["events"][0];
    assert_eq!(keys(created), ["version", "position", "type", "schema_version", "at", "data", "event_id"]);
    assert_eq!(keys(&created["data"])[..3], ["name", "total_steps", "fingerprint"], "the event's own order");

    let logs = sandbox.run(&["plan", "logs", &id]).json();
    assert_eq!(keys(&logs), ["plan_id", "cap_bytes", "logs"]);
    assert_eq!(keys(&logs["logs"][0]), ["step", "attempt", "stdout", "stderr"]);

    let compact = sandbox.run(&["store", "compact", "--older-than", "0s", "--dry-run"]).json();
    assert_eq!(keys(&compact), ["removed", "archive", "reclaimed_bytes", "dry_run", "kept", "cutoff"]);
}
