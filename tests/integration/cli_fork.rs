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

/// The case: 17 steps that each recorded about 1 MB of output (together far over one
/// record's limit), then a step with none. A fork that keeps all 17 fits the store, and the
/// fork's outputs are the source's.
#[test]
fn a_fork_of_seventeen_steps_of_a_megabyte_of_output_each_keeps_every_output() {
    const BIG: usize = 17;
    let sandbox = Sandbox::new();
    let mut plan = String::from("name = \"big outputs\"\n");
    for (i, letter) in ('a'..='z').take(BIG).enumerate() {
        plan.push_str(&format!(
            "\n[[steps]]\nname = \"s{}\"\nrun = \"printf 'blob=' >> \\\"$WAYPOINT_OUTPUT\\\"; \
             head -c 1000000 /dev/zero | tr '\\\\0' '{letter}' >> \\\"$WAYPOINT_OUTPUT\\\"\"\n",
            i + 1
        ));
    }
    plan.push_str("\n[[steps]]\nname = \"last\"\nrun = \"echo last >> last.txt\"\n");
    let file = sandbox.write("plan.toml", &plan);
    let run = sandbox.run(&["run", file.to_str().unwrap()]);
    run.expect_code(0);
    let source = run.json()["plan_id"].as_str().unwrap().to_owned();
    let outputs = |id: &str| {
        let shown = sandbox.run(&["plan", "show", id, "--outputs"]);
        shown.expect_code(0);
        shown.json()["outputs"].clone()
    };
    let source_outputs = outputs(&source);
    for (i, letter) in ('a'..='z').take(BIG).enumerate() {
        let blob = source_outputs[format!("s{}", i + 1)]["blob"].as_str().unwrap_or_default();
        assert!(blob.len() == 1_000_000 && blob.chars().all(|c| c == letter), "step {} recorded its megabyte", i + 1);
    }

    let fork = sandbox.run(&["plan", "fork", &source, "--from-step", "18", "--id", "big-fork"]);
    fork.expect_code(0);
    assert_eq!(fork.json()["forked_from"], serde_json::json!({"plan_id": source, "step": 17}), "{}", fork.stdout);
    sandbox.run(&["plan", "resume", "big-fork"]).expect_code(0);
    assert_eq!(sandbox.read("last.txt"), "last\nlast\n", "only the last step ran again");
    assert_eq!(outputs("big-fork"), source_outputs, "the fork's outputs are the source's");
    sandbox.run(&["store", "verify"]).expect_code(0);
}
