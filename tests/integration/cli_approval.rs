//! Human in the loop through the real binary: a plan file step with `approval` stops the run
//! (exit 0, `waiting`), `plan approve` lets the next run go past it, `plan reject` fails the plan
//! (exit 4, `approval_rejected`), and `plan pause` stops a running plan at its next step.

use serde_json::Value;

use super::cli_harness::Sandbox;

const RELEASE: &str = r#"
name = "release"
[[steps]]
name = "build"
run = "echo build >> effects.log"
[[steps]]
name = "test"
run = "echo test >> effects.log"
[[steps]]
name = "deploy"
run = "echo deploy >> effects.log"
approval = "Deploy to production?"
[[steps]]
name = "announce"
run = "echo announce >> effects.log"
"#;

fn event_types(sandbox: &Sandbox, id: &str) -> Vec<String> {
    let history = sandbox.run(&["plan", "history", id]).json();
    history["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn an_approval_step_stops_the_run_until_someone_approves_it() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write("plan.toml", RELEASE);
    let plan = plan.to_str().unwrap();
    let first = sandbox.run(&["run", plan]);
    first.expect_code(0);
    let doc = first.json();
    assert_eq!(doc["outcome"], "waiting", "{doc}");
    assert_eq!(
        doc["waiting_for"],
        serde_json::json!({"step": 3, "name": "deploy", "question": "Deploy to production?"})
    );
    assert_eq!(doc["summary"]["status"], "waiting");
    assert_eq!(sandbox.read("effects.log"), "build\ntest\n", "steps 1 and 2 ran, step 3 waits");
    let id = doc["plan_id"].as_str().unwrap().to_owned();

    // Rich output names the command that approves.
    let rich = sandbox.run_rich(&["run", plan]);
    rich.expect_code(0);
    assert!(rich.stdout.contains(&format!("waypoint plan approve {id}")), "{}", rich.stdout);
    assert_eq!(sandbox.read("effects.log"), "build\ntest\n", "still waiting: nothing ran");

    // Approving a plan that does not wait there is invalid_state; the real approval goes through.
    sandbox.run(&["plan", "approve", &id, "--step", "2"]).expect_error(7, "invalid_state");
    let approved = sandbox.run(&["plan", "approve", &id, "--by", "alice", "--comment", "go"]);
    approved.expect_code(0);
    assert_eq!(approved.json()["status"], "interrupted", "{}", approved.json());
    let second = sandbox.run(&["run", plan]);
    second.expect_code(0);
    assert_eq!(second.json()["outcome"], "resumed");
    assert_eq!(second.json()["summary"]["status"], "completed");
    assert_eq!(sandbox.read("effects.log"), "build\ntest\ndeploy\nannounce\n");
    let types = event_types(&sandbox, &id);
    assert!(
        types.contains(&"approval_requested".to_owned()) && types.contains(&"step_approved".to_owned()),
        "{types:?}"
    );
    let history = sandbox.run_rich(&["plan", "history", &id]);
    assert!(history.stdout.contains("alice"), "history says who approved:\n{}", history.stdout);
}

#[test]
fn a_rejected_approval_fails_the_plan_and_running_it_again_is_refused() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write("plan.toml", RELEASE);
    let plan = plan.to_str().unwrap();
    let id = sandbox.run(&["run", plan]).json()["plan_id"].as_str().unwrap().to_owned();
    let rejected = sandbox.run(&["plan", "reject", &id, "--reason", "no", "--by", "bob"]);
    rejected.expect_code(0);
    let shown: Value = sandbox.run(&["plan", "show", &id]).json();
    assert_eq!(shown["status"], "failed", "{shown}");
    assert!(shown["error"].as_str().unwrap().contains("no"), "{shown}");
    assert_eq!(shown["reasons"], serde_json::json!(["approval_rejected"]));
    let again = sandbox.run(&["run", plan]).expect_error(4, "approval_rejected");
    assert_eq!(again["error"]["reasons"], serde_json::json!(["approval_rejected"]));
    sandbox.run(&["plan", "approve", &id]).expect_error(7, "invalid_state");
    assert_eq!(sandbox.read("effects.log"), "build\ntest\n", "the rejected step never ran");
}

#[test]
fn a_pause_stops_a_running_plan_after_its_current_step_and_running_again_continues() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        r#"
name = "slow"
[[steps]]
name = "one"
run = "echo one >> effects.log"
[[steps]]
name = "two"
run = "touch started; while [ ! -f release ]; do sleep 0.05; done; echo two >> effects.log"
[[steps]]
name = "three"
run = "echo three >> effects.log"
[[steps]]
name = "four"
run = "echo four >> effects.log"
[[steps]]
name = "five"
run = "echo five >> effects.log"
"#,
    );
    let plan = plan.to_str().unwrap();
    let child = sandbox.spawn(&["run", plan]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sandbox.path("started").exists() {
        assert!(std::time::Instant::now() < deadline, "step two never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let id = sandbox.only_plan_id();
    let paused = sandbox.run(&["plan", "pause", &id, "--reason", "a look at the data"]);
    paused.expect_code(0);
    assert_eq!(paused.json()["status"], "running", "the runner stops at its next step boundary");
    sandbox.write("release", "");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["outcome"], "paused", "{doc}");
    assert_eq!(doc["summary"]["status"], "paused");
    assert_eq!(sandbox.read("effects.log"), "one\ntwo\n", "the current step finished; no further step started");
    let again = sandbox.run(&["run", plan]);
    again.expect_code(0);
    assert_eq!(again.json()["summary"]["status"], "completed");
    assert_eq!(sandbox.read("effects.log"), "one\ntwo\nthree\nfour\nfive\n");
}

#[test]
fn a_pause_of_a_plan_nobody_runs_takes_effect_at_once() {
    let sandbox = Sandbox::new();
    for args in [
        vec!["plan", "create", "--id", "idle", "--total-steps", "3"],
        vec!["plan", "start", "idle", "--phase", "strategize"],
        vec!["plan", "interrupt", "idle", "--reason", "lunch"],
    ] {
        sandbox.run(&args).expect_code(0);
    }
    let paused = sandbox.run(&["plan", "pause", "idle"]);
    paused.expect_code(0);
    assert_eq!(paused.json()["status"], "paused", "{}", paused.json());
    assert_eq!(paused.json()["eligible"], true);
    // A plan that is finished cannot be paused.
    sandbox.run(&["plan", "cancel", "idle"]).expect_code(0);
    sandbox.run(&["plan", "pause", "idle"]).expect_code(7);
}
