//! `waypoint plan fork`: a new plan from a source's completed steps, which runs again from the
//! step asked for; the source stays as it was.

use super::cli_harness::Sandbox;

#[test]
fn a_forked_plan_file_runs_again_from_the_step_asked_for_and_the_source_stays() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        "name = \"three\"\n\n[[steps]]\nname = \"one\"\nrun = \"echo one >> log.txt\"\n\n\
         [[steps]]\nname = \"two\"\nrun = \"echo two >> log.txt\"\n\n\
         [[steps]]\nname = \"three\"\nrun = \"echo three >> log.txt\"\n",
    );
    let source = sandbox.run(&["run", plan.to_str().unwrap()]).json()["plan_id"].as_str().unwrap().to_owned();
    let history_before = sandbox.run(&["plan", "history", &source]).stdout;

    let fork = sandbox.run(&["plan", "fork", &source, "--from-step", "2", "--id", "again"]);
    fork.expect_code(0);
    let summary = fork.json();
    assert_eq!(summary["plan_id"], "again", "{summary}");
    assert_eq!(summary["forked_from"]["plan_id"], source.as_str(), "{summary}");
    assert_eq!(summary["forked_from"]["step"], 1, "{summary}");
    assert_eq!((summary["eligible"].as_bool(), summary["next_step"].as_u64()), (Some(true), Some(2)), "{summary}");

    sandbox.run(&["plan", "resume", "again"]).expect_code(0);
    assert_eq!(sandbox.read("log.txt"), "one\ntwo\nthree\ntwo\nthree\n", "step 1 did not run again");
    assert_eq!(sandbox.run(&["plan", "history", &source]).stdout, history_before, "the source did not change");
    let rich = sandbox.run_rich(&["plan", "fork", &source, "--from-step", "1"]);
    rich.expect_code(0);
    assert!(rich.stdout.contains("no step copied") && rich.stdout.contains("waypoint plan resume"), "{}", rich.stdout);
}

#[test]
fn forking_from_a_step_after_the_completed_ones_is_refused() {
    let sandbox = Sandbox::new();
    for args in [
        vec!["plan", "create", "--id", "src", "--total-steps", "4"],
        vec!["plan", "start", "src", "--phase", "strategize"],
        vec!["plan", "checkpoint", "src", "--step", "1", "--decision", "d1"],
    ] {
        sandbox.run(&args).expect_code(0);
    }
    let before = sandbox.store_bytes();
    let error = sandbox.run(&["plan", "fork", "src", "--from-step", "3"]).expect_error(7, "step_not_completed");
    assert!(error["error"]["message"].as_str().unwrap().contains("step 2"), "{error}");
    assert_eq!(sandbox.store_bytes(), before, "nothing was written");
    sandbox.run(&["plan", "fork", "nope", "--from-step", "1"]).expect_error(3, "plan_not_found");
}
