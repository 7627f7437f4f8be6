//! A plan file edited between runs, through the real binary: steps added at the end extend the
//! plan and pending steps removed shrink it (on `run FILE`, `plan resume` and `run --from-step`);
//! refusals for steps changed after they completed name every one of them and the command that
//! runs again from the first; a fork says the step it runs from.

use crate::cli_harness::Sandbox;

const THREE: &str = r#"
name = "grows"
[[steps]]
name = "one"
run = "echo one >> effects.log"
[[steps]]
name = "two"
run = "echo two >> effects.log; [ -f fixed ] || exit 3"
[[steps]]
name = "three"
run = "echo three >> effects.log"
"#;

const FOURTH: &str = "[[steps]]\nname = \"four\"\nrun = \"echo four >> effects.log\"\n";

/// Runs `THREE` until step 2 fails, then fixes step 2 and appends a fourth step.
fn failed_then_grown(sandbox: &Sandbox) -> String {
    sandbox.write("plan.toml", THREE);
    let error = sandbox.run(&["run", "plan.toml"]).expect_error(1, "step_failed");
    sandbox.write("plan.toml", &format!("{}{FOURTH}", THREE.replace("[ -f fixed ] || exit 3", "true")));
    error["error"]["plan_id"].as_str().unwrap().to_owned()
}

#[test]
fn a_step_added_at_the_end_extends_the_plan_when_run_again() {
    let sandbox = Sandbox::new();
    let id = failed_then_grown(&sandbox);
    let run = sandbox.run(&["run", "plan.toml"]);
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["plan_id"], id.as_str());
    assert_eq!(
        (doc["summary"]["status"].as_str(), doc["summary"]["total_steps"].as_u64()),
        (Some("completed"), Some(4))
    );
    assert_eq!(sandbox.read("effects.log"), "one\ntwo\ntwo\nthree\nfour\n");
}

#[test]
fn a_step_added_at_the_end_extends_the_plan_on_plan_resume() {
    let sandbox = Sandbox::new();
    let id = failed_then_grown(&sandbox);
    let resumed = sandbox.run(&["plan", "resume", &id]);
    resumed.expect_code(0);
    assert_eq!(resumed.json()["summary"]["total_steps"], 4);
    assert_eq!(sandbox.read("effects.log"), "one\ntwo\ntwo\nthree\nfour\n");
}

#[test]
fn a_fork_run_takes_the_files_steps_added_since() {
    let sandbox = Sandbox::new();
    sandbox.write("fixed", "");
    sandbox.write("plan.toml", THREE);
    sandbox.run(&["run", "plan.toml"]).expect_code(0);
    sandbox.write("plan.toml", &format!("{THREE}{FOURTH}"));
    let again = sandbox.run(&["run", "--from-step", "3", "plan.toml"]);
    again.expect_code(0);
    assert_eq!(again.json()["summary"]["total_steps"], 4);
    assert_eq!(sandbox.read("effects.log"), "one\ntwo\nthree\nthree\nfour\n");
}

#[test]
fn a_pending_step_removed_shrinks_the_plan() {
    let sandbox = Sandbox::new();
    sandbox.write("fixed", "");
    sandbox.write("plan.toml", &THREE.replace("echo three >> effects.log", "exit 4"));
    sandbox.run(&["run", "plan.toml"]).expect_error(1, "step_failed");
    let two_steps = THREE.split("[[steps]]\nname = \"three\"").next().unwrap().to_owned();
    sandbox.write("plan.toml", &two_steps);
    let run = sandbox.run(&["run", "plan.toml"]);
    run.expect_code(0);
    let summary = &run.json()["summary"];
    assert_eq!((summary["status"].as_str(), summary["total_steps"].as_u64()), (Some("completed"), Some(2)));
    assert_eq!(sandbox.read("effects.log"), "one\ntwo\n", "{summary}");
}
