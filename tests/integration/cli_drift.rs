//! A plan file edited between runs, through the real binary: steps added at the end extend the
//! plan and pending steps removed shrink it (on `run FILE`, `plan resume` and `run --from-step`);
//! refusals for steps changed after they completed name every one of them and the command that
//! runs again from the first; a fork says the step it runs from.

use crate::cli_harness::{Sandbox, DRIFT as THREE};

/// `text` with every run of blanks and line breaks as one space: rich output wraps at 80 columns.
fn unwrapped(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

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

#[test]
fn a_refused_resume_names_every_changed_step_and_the_command_that_runs_from_the_first() {
    let sandbox = Sandbox::new();
    sandbox.write("plan.toml", THREE);
    let id = sandbox.run(&["run", "plan.toml"]).expect_error(1, "step_failed")["error"]["plan_id"]
        .as_str()
        .unwrap()
        .to_owned();
    sandbox.write("plan.toml", &THREE.replace("echo one >>", "echo ONE >>").replace("name = \"two\"", "name = \"2\""));
    for args in [vec!["plan", "resume", id.as_str()], vec!["run", "plan.toml"]] {
        let refused = sandbox.run(&args).expect_error(4, "not_eligible");
        let error = &refused["error"];
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("step 1 (one) changed after it completed"), "{args:?}: {message}");
        assert!(message.contains("`waypoint run --from-step 1 "), "{args:?}: {message}");
        assert_eq!(error["from_step"], 1, "{refused}");
        assert_eq!(error["changed_steps"][0]["name"], "one", "{refused}");
        let rich = sandbox.run_rich(&args);
        rich.expect_code(4);
        assert!(unwrapped(&rich.stderr).contains("step 1 (one) changed"), "{}", rich.stderr);
    }
    let show = unwrapped(&sandbox.run_rich(&["plan", "show", &id]).stdout);
    assert!(show.contains("step 1 (one) changed, after it completed"), "{show}");
    assert!(show.contains("`waypoint run --from-step 1 "), "{show}");
}

#[test]
fn run_on_a_completed_plan_whose_file_changed_says_what_changed() {
    let sandbox = Sandbox::new();
    sandbox.write("fixed", "");
    sandbox.write("plan.toml", THREE);
    sandbox.run(&["run", "plan.toml"]).expect_code(0);
    sandbox.write("plan.toml", &format!("{}{FOURTH}", THREE.replace("echo two >>", "echo TWO >>")));
    let done = sandbox.run_rich(&["run", "plan.toml"]);
    done.expect_code(0);
    let said = unwrapped(&done.stdout);
    assert!(said.contains("already completed 3 steps"), "{said}");
    assert!(said.contains("the plan file changed: step 2 (two) changed and step 4 (four) was added"), "{said}");
    assert!(said.contains("--from-step 2 "), "{said}");
    let json = sandbox.run(&["run", "plan.toml"]).json();
    assert_eq!(json["outcome"], "already_completed");
    assert_eq!(json["summary"]["changed_steps"].as_array().map(Vec::len), Some(2), "{json}");
}

#[test]
fn a_fork_says_the_step_it_runs_from_and_run_file_continues_it() {
    let sandbox = Sandbox::new();
    sandbox.write("fixed", "");
    sandbox.write("plan.toml", THREE);
    let source = sandbox.run(&["run", "plan.toml"]).json()["plan_id"].as_str().unwrap().to_owned();
    let fork = sandbox.run_rich(&["plan", "fork", &source, "--from-step", "2"]);
    fork.expect_code(0);
    assert!(unwrapped(&fork.stdout).contains(&format!("forked plan {source} to run from step 2")), "{}", fork.stdout);
    let run = sandbox.run(&["run", "plan.toml"]);
    run.expect_code(0);
    let doc = run.json();
    let fork_id = doc["plan_id"].as_str().unwrap().to_owned();
    assert_ne!(fork_id, source, "the fork is the file's newest plan");
    assert_eq!(fork_id.len(), 20, "a short id like the file's other plans: {fork_id}");
    assert_eq!(doc["outcome"], "resumed");
    assert_eq!(sandbox.read("effects.log"), "one\ntwo\nthree\ntwo\nthree\n");
    let shown = unwrapped(&sandbox.run_rich(&["plan", "show", &fork_id]).stdout);
    assert!(shown.contains(&format!("forked from plan {source} (steps 1 to 1 copied)")), "{shown}");
    let other = sandbox.run(&["plan", "create", "--id", "plain"]);
    other.expect_code(0);
    sandbox.run(&["plan", "start", "plain", "--phase", "strategize"]).expect_code(0);
    let plain_fork = sandbox.run(&["plan", "fork", "plain", "--from-step", "1"]).json();
    assert_eq!(plain_fork["plan_id"].as_str().map(str::len), Some(20), "{plain_fork}");
}
