//! Plan-file steps beyond running once: timeouts, retries, step outputs across a resume, stored
//! logs, per-step definition drift on every surface, prefix ids and the plain status words, and
//! the runner's hardening (outputs that are not files, lost stdout, bad input found before any
//! write, a signal during the last step, `plan interrupt` during a run).

use serde_json::{json, Value};

use crate::cli_harness::{finish, send_signal, wait_for_file, Sandbox, DRIFT};

fn history_types(sandbox: &Sandbox, id: &str) -> Vec<Value> {
    let history = sandbox.run(&["plan", "history", id]);
    history.expect_code(0);
    history.json()["events"].as_array().unwrap().clone()
}

#[test]
fn a_step_past_its_timeout_is_stopped_and_recorded_as_a_timeout() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        "name = \"slow\"\n[[steps]]\nname = \"sleeps\"\nrun = \"sleep 30 && touch finished\"\ntimeout = \"1s\"\nretries = 1\nretry_delay = \"10ms\"\n",
    );
    let error = sandbox.run(&["run", plan.to_str().unwrap()]).expect_error(1, "step_failed");
    assert_eq!(error["error"]["reason"], "timeout");
    assert!(error["error"]["message"].as_str().unwrap().contains("timed out"), "{error}");
    assert!(!sandbox.path("finished").exists());
    let id = error["error"]["plan_id"].as_str().unwrap();
    let events = history_types(&sandbox, id);
    let failed: Vec<&Value> = events.iter().filter(|e| e["type"] == "step_attempt_failed").collect();
    assert_eq!(failed.len(), 1, "the first attempt timed out and was retried: {events:?}");
    assert_eq!(failed[0]["data"]["reason"]["kind"], "timeout");
    let show = sandbox.run(&["plan", "show", id]).json();
    assert_eq!(show["status"], "failed");
    assert!(show["error"].as_str().unwrap().contains("timed out"), "{show}");
}

#[test]
fn a_step_with_retries_fails_twice_then_succeeds_and_history_shows_both_failures() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        r#"
name = "flaky"
[[steps]]
name = "third time lucky"
run = "echo try >> tries.log; [ $(wc -l < tries.log) -ge 3 ] || exit 7"
retries = 2
retry_delay = "10ms"
"#,
    );
    let run = sandbox.run(&["run", plan.to_str().unwrap()]);
    run.expect_code(0);
    assert_eq!(run.json()["summary"]["status"], "completed");
    let id = run.json()["plan_id"].as_str().unwrap().to_owned();
    let events = history_types(&sandbox, &id);
    let failed: Vec<&Value> = events.iter().filter(|e| e["type"] == "step_attempt_failed").collect();
    assert_eq!(failed.len(), 2, "{events:?}");
    assert_eq!(failed[0]["data"]["attempt"], 1);
    assert_eq!(failed[1]["data"]["attempt"], 2);
    assert_eq!(failed[0]["data"]["reason"], json!({"kind": "exit", "code": 7}), "{}", failed[0]);
    let starts: Vec<&Value> = events.iter().filter(|e| e["type"] == "step_started").collect();
    assert_eq!(starts.len(), 3);
    assert_ne!(starts[0]["data"]["decision_id"], starts[1]["data"]["decision_id"], "a fresh decision per attempt");
    assert_eq!(starts[2]["data"]["attempt"], 3);
    // Every attempt's output is kept.
    let logs = sandbox.run(&["plan", "logs", &id]).json();
    assert_eq!(logs["logs"].as_array().unwrap().len(), 3, "{logs}");
}

#[test]
fn outputs_of_step_one_reach_step_three_after_an_interruption_during_step_two() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "plan.toml",
        r#"
name = "outputs"
[[steps]]
name = "produce"
run = """
echo "version=1.2.3" >> "$WAYPOINT_OUTPUT"
printf 'notes<<END\nfirst line\nsecond line\nEND\n' >> "$WAYPOINT_OUTPUT"
echo produced >> effects.log
"""
[[steps]]
name = "wait"
run = "touch two.started; while [ ! -f release ]; do sleep 0.05; done"
[[steps]]
name = "consume"
run = "cat \"$WAYPOINT_OUTPUTS\" > seen.json"
"#,
    );
    let child = sandbox.spawn(&["run", "plan.toml"]);
    wait_for_file(&sandbox.path("two.started"), "step 2 to start");
    send_signal(i64::from(child.id()), "INT");
    finish(child).expect_error(130, "interrupted");
    sandbox.write("release", "");
    sandbox.run(&["run", "plan.toml"]).expect_code(0);
    assert_eq!(sandbox.read("effects.log"), "produced\n", "step 1 ran once");
    let seen: Value = serde_json::from_str(&sandbox.read("seen.json")).unwrap();
    assert_eq!(seen, json!({"produce": {"version": "1.2.3", "notes": "first line\nsecond line"}, "wait": {}}));
    let id = sandbox.only_plan_id();
    let outputs = sandbox.run(&["plan", "show", &id, "--outputs"]).json();
    assert_eq!(outputs["outputs"]["produce"]["version"], "1.2.3");
    let rich = sandbox.run_rich(&["plan", "show", &id, "--outputs"]);
    assert!(rich.stdout.contains("  version = 1.2.3"), "{}", rich.stdout);
}

#[test]
fn plan_logs_shows_a_steps_output_by_step_and_attempt() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        "name = \"talks\"\n[[steps]]\nname = \"a\"\nrun = \"echo out-a; echo err-a >&2\"\n[[steps]]\nname = \"b\"\nrun = \"echo out-b\"\n",
    );
    let id = sandbox.run(&["run", plan.to_str().unwrap()]).json()["plan_id"].as_str().unwrap().to_owned();
    let logs = sandbox.run(&["plan", "logs", &id, "--step", "1"]).json();
    assert_eq!(logs["logs"], json!([{"step": 1, "attempt": 1, "stdout": "out-a\n", "stderr": "err-a\n"}]));
    assert_eq!(logs["cap_bytes"], 1024 * 1024);
    let rich = sandbox.run_rich(&["plan", "logs", &id, "--step", "2", "--attempt", "1"]);
    rich.expect_code(0);
    assert!(
        rich.stdout.contains("step 2 (b) · attempt 1 · stdout") && rich.stdout.contains("out-b"),
        "{}",
        rich.stdout
    );
    assert!(!rich.stdout.contains("out-a"));
}

#[test]
fn a_huge_line_is_streamed_and_the_kept_log_is_capped() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        "name = \"loud\"\n[[steps]]\nname = \"one long line\"\nrun = \"head -c 8388608 /dev/zero | tr '\\\\0' x; echo\"\n",
    );
    let run = sandbox.run(&["run", plan.to_str().unwrap()]);
    run.expect_code(0);
    assert!(run.stderr.len() < 64 * 1024, "the display cuts long lines: {} bytes", run.stderr.len());
    let id = run.json()["plan_id"].as_str().unwrap().to_owned();
    let logs = sandbox.run(&["plan", "logs", &id, "--step", "1"]).json();
    let log = logs["logs"][0]["stdout"].as_str().unwrap().to_owned();
    assert!(log.len() <= 1024 * 1024 + 100, "capped: {} bytes", log.len());
    assert!(log.starts_with("[waypoint: 7340033 earlier bytes cut"), "says what was cut: {}", &log[..80]);
}

#[test]
fn every_surface_gives_the_same_verdict_on_a_changed_completed_step() {
    let sandbox = Sandbox::new();
    sandbox.write("plan.toml", DRIFT);
    let error = sandbox.run(&["run", "plan.toml"]).expect_error(1, "step_failed");
    let id = error["error"]["plan_id"].as_str().unwrap().to_owned();
    sandbox.write("plan.toml", &DRIFT.replace("echo one >>", "echo ONE >>"));

    let changed = json!([{"step": 1, "name": "one", "completed": true, "change": "changed"}]);
    let show = sandbox.run(&["plan", "show", &id]).json();
    assert_eq!((show["eligible"].as_bool(), &show["reasons"]), (Some(false), &json!(["definition_changed"])));
    assert_eq!(show["changed_steps"], changed);
    let listed = sandbox.run(&["plan", "list", "--resumable"]).json();
    assert_eq!(listed["plans"], json!([]));
    let all = sandbox.run(&["plan", "list"]).json();
    assert_eq!(all["plans"][0]["reasons"], json!(["definition_changed"]));
    let preview = sandbox.run(&["plan", "resume", &id, "--dry-run"]).json();
    assert_eq!((preview["eligible"].as_bool(), &preview["changed_steps"]), (Some(false), &changed));
    let refused = sandbox.run(&["plan", "resume", &id]).expect_error(4, "not_eligible");
    assert_eq!(refused["error"]["reasons"], json!(["definition_changed"]));
    let again = sandbox.run(&["run", "plan.toml"]).expect_error(4, "not_eligible");
    assert!(again["error"]["message"].as_str().unwrap().contains("waypoint run --from-step 1 "), "{again}");
}

#[test]
fn a_fix_to_the_failed_step_resumes_and_is_listed_as_changed() {
    let sandbox = Sandbox::new();
    sandbox.write("plan.toml", DRIFT);
    let error = sandbox.run(&["run", "plan.toml"]).expect_error(1, "step_failed");
    let id = error["error"]["plan_id"].as_str().unwrap().to_owned();
    sandbox.write("plan.toml", &DRIFT.replace("[ -f fixed ] || exit 3", "true"));

    let show = sandbox.run(&["plan", "show", &id]).json();
    assert_eq!(show["eligible"], true, "{show}");
    assert_eq!(show["changed_steps"], json!([{"step": 2, "name": "two", "completed": false, "change": "changed"}]));
    assert_eq!(sandbox.run(&["plan", "list", "--resumable"]).json()["plans"][0]["plan_id"], id.as_str());
    let preview = sandbox.run(&["plan", "resume", &id, "--dry-run"]).json();
    assert_eq!(preview["eligible"], true);
    let resumed = sandbox.run(&["resume", &id]);
    resumed.expect_code(0);
    assert_eq!(resumed.json()["summary"]["status"], "completed");
    assert_eq!(sandbox.read("effects.log"), "one\ntwo\ntwo\nthree\n");
}

#[test]
fn ids_may_be_given_as_a_unique_prefix_and_an_ambiguous_one_lists_the_candidates() {
    let sandbox = Sandbox::new();
    for id in ["abcd1111", "abcd2222", "ffff0000"] {
        sandbox.run(&["plan", "create", "--id", id]).expect_code(0);
    }
    assert_eq!(sandbox.run(&["plan", "show", "ffff"]).json()["plan_id"], "ffff0000");
    assert_eq!(sandbox.run(&["plan", "show", "abcd1"]).json()["plan_id"], "abcd1111");
    let ambiguous = sandbox.run(&["plan", "show", "abcd"]).expect_error(2, "ambiguous_id");
    assert_eq!(ambiguous["error"]["candidates"], json!(["abcd1111", "abcd2222"]));
    sandbox.run(&["plan", "show", "abc"]).expect_error(3, "plan_not_found");
    sandbox.run(&["plan", "start", "ffff", "--phase", "strategize"]).expect_code(0);
    assert_eq!(sandbox.run(&["plan", "show", "ffff0000"]).json()["phase"], "strategize");
}

#[test]
fn the_status_word_says_interrupted_crashed_failed_and_completed() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write("plan.toml", "name = \"s\"\n[[steps]]\nname = \"waits\"\nrun = \"touch started; while [ ! -f release ]; do sleep 0.05; done\"\n");
    let child = sandbox.spawn(&["run", plan.to_str().unwrap()]);
    wait_for_file(&sandbox.path("started"), "the step to start");
    let id = sandbox.only_plan_id();
    assert_eq!(sandbox.run(&["plan", "show", &id]).json()["status"], "running");
    send_signal(i64::from(child.id()), "INT");
    finish(child).expect_code(130);
    let rich = sandbox.run_rich(&["plan", "show", &id]);
    assert_eq!(sandbox.run(&["plan", "show", &id]).json()["status"], "interrupted");
    assert!(rich.stdout.contains("interrupted"), "{}", rich.stdout);

    std::fs::remove_file(sandbox.path("started")).unwrap();
    let mut child = sandbox.spawn(&["run", plan.to_str().unwrap()]);
    wait_for_file(&sandbox.path("started"), "the step to start again");
    child.kill().unwrap();
    finish(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sandbox.run(&["plan", "show", &id]).json()["status"] != "crashed" {
        assert!(std::time::Instant::now() < deadline, "never crashed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sandbox.write("release", "");
    sandbox.run(&["run", plan.to_str().unwrap()]).expect_code(0);
    let done = sandbox.run(&["plan", "show", &id]).json();
    assert_eq!(done["status"], "completed");
    let rich = sandbox.run_rich(&["plan", "show", &id]);
    assert!(!rich.stdout.contains("crash"), "a completed plan no longer shows its old interruption: {}", rich.stdout);

    let failing = sandbox.write("fails.toml", "name = \"f\"\n[[steps]]\nname = \"no\"\nrun = \"exit 4\"\n");
    let error = sandbox.run(&["run", failing.to_str().unwrap()]).expect_error(1, "step_failed");
    let failed = sandbox.run(&["plan", "show", error["error"]["plan_id"].as_str().unwrap()]).json();
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("exited with code 4"));
}

#[test]
fn a_fifo_as_an_output_or_an_artifact_is_reported_never_waited_on() {
    let sandbox = Sandbox::new();
    let status = std::process::Command::new("mkfifo").arg(sandbox.path("fifo")).status().unwrap();
    assert!(status.success());
    let plan =
        sandbox.write("plan.toml", "name = \"f\"\n[[steps]]\nname = \"a\"\nrun = \"true\"\noutputs = [\"fifo\"]\n");
    let error = sandbox.run(&["run", plan.to_str().unwrap()]).expect_error(1, "step_failed");
    assert!(error["error"]["message"].as_str().unwrap().contains("not a regular file"), "{error}");

    sandbox.run(&["plan", "create", "--id", "p1", "--total-steps", "1"]).expect_code(0);
    sandbox.run(&["plan", "start", "p1", "--phase", "strategize"]).expect_code(0);
    let fifo = sandbox.path("fifo");
    let snapshot = "sha256:".to_owned() + &"0".repeat(64);
    sandbox
        .run(&[
            "plan",
            "checkpoint",
            "p1",
            "--step",
            "1",
            "--decision",
            "d",
            "--snapshot",
            &snapshot,
            "--artifact",
            fifo.to_str().unwrap(),
        ])
        .expect_code(0);
    sandbox.run(&["plan", "list"]).expect_code(0);
    sandbox.run(&["plan", "show", "p1"]).expect_code(0);
    sandbox.run(&["plan", "resume", "p1", "--dry-run"]).expect_code(0);
}

#[test]
fn a_lost_write_to_stdout_is_exit_1() {
    let sandbox = Sandbox::new();
    for args in [vec!["plan", "create"], vec!["plan", "list"]] {
        let full = std::fs::File::options().write(true).open("/dev/full").unwrap();
        let output = sandbox.command(&args).stdout(full).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stderr).contains("cannot write the result"), "{args:?}");
    }
}

#[test]
fn bad_plan_files_are_refused_before_anything_is_written() {
    let sandbox = Sandbox::new();
    for (name, text) in [
        ("nul.toml", "name = \"n\"\n[[steps]]\nname = \"a\"\nrun = \"echo \\u0000\"\n"),
        ("envkey.toml", "name = \"n\"\n[env]\n\"A\\u0000B\" = \"v\"\n[[steps]]\nname = \"a\"\nrun = \"true\"\n"),
        ("nodir.toml", "name = \"n\"\n[[steps]]\nname = \"a\"\nrun = \"true\"\ndir = \"missing\"\n"),
        ("timeout.toml", "name = \"n\"\n[[steps]]\nname = \"a\"\nrun = \"true\"\ntimeout = \"soon\"\n"),
        ("unknown.toml", "name = \"n\"\n[[steps]]\nname = \"a\"\nrun = \"true\"\nretry = 3\n"),
    ] {
        let path = sandbox.write(name, text);
        sandbox.run(&["run", path.to_str().unwrap()]).expect_error(2, "plan_file_invalid");
        assert!(!sandbox.store.exists(), "{name}: nothing written");
    }
}

#[test]
fn a_toml_error_shows_its_line_with_a_caret_and_escapes_control_characters() {
    let sandbox = Sandbox::new();
    let path = sandbox.write("bad.toml", "name = \"x\"\nsteps = [ \u{1b}[31m\u{7} ]\n");
    let run = sandbox.run_rich(&["run", path.to_str().unwrap()]);
    run.expect_code(2);
    assert!(!run.stderr.contains('\u{1b}') && !run.stderr.contains('\u{7}'), "{:?}", run.stderr);
    assert!(run.stderr.contains('^'), "a caret under the column: {}", run.stderr);
    let deep = format!("name = \"x\"\nsteps = {}", "[".repeat(300_000));
    let path = sandbox.write("deep.toml", &deep);
    let run = sandbox.run(&["run", path.to_str().unwrap()]);
    run.expect_code(2);
    assert!(run.stderr.len() < 10_000, "capped: {} bytes", run.stderr.len());
}

#[test]
fn sigint_during_the_last_step_that_still_succeeds_completes_the_plan() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        "name = \"t\"\n[[steps]]\nname = \"last\"\nrun = \"\"\"\ntrap 'exit 0' INT\ntouch started\nwhile true; do sleep 0.05; done\n\"\"\"\n",
    );
    let child = sandbox.spawn(&["run", plan.to_str().unwrap()]);
    wait_for_file(&sandbox.path("started"), "the step to start");
    send_signal(i64::from(child.id()), "INT");
    finish(child).expect_code(130);
    let show = sandbox.run(&["plan", "show", &sandbox.only_plan_id()]).json();
    assert_eq!((show["state"].as_str(), show["status"].as_str()), (Some("complete"), Some("completed")), "{show}");
}

#[test]
fn plan_interrupt_is_refused_while_a_runner_holds_the_plan() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        "name = \"t\"\n[[steps]]\nname = \"waits\"\nrun = \"touch started; while [ ! -f release ]; do sleep 0.05; done\"\n",
    );
    let child = sandbox.spawn(&["run", plan.to_str().unwrap()]);
    wait_for_file(&sandbox.path("started"), "the step to start");
    let id = sandbox.only_plan_id();
    sandbox.run(&["plan", "interrupt", &id]).expect_error(5, "run_lock_busy");
    sandbox.write("release", "");
    let run = finish(child);
    run.expect_code(0);
    assert_eq!(sandbox.run(&["plan", "show", &id]).json()["status"], "completed");
}

#[test]
fn run_from_step_keeps_the_earlier_checkpoints_and_runs_the_changed_step_again() {
    let sandbox = Sandbox::new();
    sandbox.write("plan.toml", DRIFT);
    sandbox.write("fixed", "");
    let first = sandbox.run(&["run", "plan.toml"]);
    first.expect_code(0);
    let old_id = first.json()["plan_id"].as_str().unwrap().to_owned();
    // Step 2 changes after it completed: the plain run refuses and says what to do.
    sandbox.write("plan.toml", &DRIFT.replace("echo two >>", "echo TWO >>"));
    let done = sandbox.run(&["run", "plan.toml"]);
    assert_eq!(done.json()["outcome"], "already_completed", "a completed plan is left alone");

    let again = sandbox.run(&["run", "--from-step", "2", "plan.toml"]);
    again.expect_code(0);
    let doc = again.json();
    assert_ne!(doc["plan_id"].as_str().unwrap(), old_id);
    let statuses: Vec<&str> = doc["steps"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["skipped", "completed", "completed"]);
    assert_eq!(sandbox.read("effects.log"), "one\ntwo\nthree\nTWO\nthree\n", "step 1 did not run again");
    assert_eq!(doc["outcome"], "forked");
    assert_eq!(doc["summary"]["forked_from"], json!({"plan_id": old_id, "step": 1}));
    let history = sandbox.run(&["plan", "history", doc["plan_id"].as_str().unwrap()]).json();
    assert_eq!(history["events"][0]["type"], "plan_forked", "{history}");
    // The next plain run finds the fork, the file's newest plan.
    assert_eq!(sandbox.run(&["run", "plan.toml"]).json()["plan_id"], doc["plan_id"]);

    // Beyond what completed: refused, nothing written.
    sandbox.write("plan.toml", DRIFT.replace("[ -f fixed ] || exit 3", "exit 3").as_str());
    let failing = sandbox.run(&["run", "--new", "plan.toml"]).expect_error(1, "step_failed");
    let before = sandbox.store_bytes();
    let refused = sandbox.run(&["run", "--from-step", "3", "plan.toml"]).expect_error(7, "step_not_completed");
    assert_eq!(refused["error"]["plan_id"], failing["error"]["plan_id"]);
    assert_eq!(sandbox.store_bytes(), before);
}

#[test]
fn a_listing_checks_outputs_by_presence_and_a_resume_by_digest() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "plan.toml",
        "name = \"o\"\n[[steps]]\nname = \"write\"\nrun = \"echo a > out.txt\"\noutputs = [\"out.txt\"]\n[[steps]]\nname = \"stop\"\nrun = \"exit 1\"\n",
    );
    let error = sandbox.run(&["run", "plan.toml"]).expect_error(1, "step_failed");
    let id = error["error"]["plan_id"].as_str().unwrap().to_owned();
    sandbox.write("out.txt", "changed\n");
    assert_eq!(sandbox.run(&["plan", "list", "--resumable"]).json()["plans"][0]["plan_id"], id.as_str());
    let preview = sandbox.run(&["plan", "resume", &id, "--dry-run"]).json();
    assert_eq!(preview["reasons"], json!(["snapshot_missing"]), "the digest is checked before a resume");
    std::fs::remove_file(sandbox.path("out.txt")).unwrap();
    assert_eq!(sandbox.run(&["plan", "list", "--resumable"]).json()["plans"], json!([]), "a missing output is seen");
}

#[test]
fn paths_with_control_characters_are_printed_escaped() {
    let sandbox = Sandbox::new();
    let name = "plan\u{1b}[31m\u{7}.toml";
    let path = sandbox.write(name, "name = \"x\"\n[[steps]]\nname = \"a\"\nrun = \"true\"\noutputs = [\"missing\"]\n");
    let run = sandbox.run_rich(&["run", path.to_str().unwrap()]);
    run.expect_code(2);
    assert!(run.stderr.contains("\\u{1b}"), "{:?}", run.stderr);
    assert!(!run.stdout.contains('\u{1b}') && !run.stderr.contains('\u{1b}'), "{:?}\n{:?}", run.stdout, run.stderr);
    assert!(!run.stdout.contains('\u{7}') && !run.stderr.contains('\u{7}'));
    let store = sandbox.path("store\u{1b}x");
    std::fs::write(&store, "").unwrap();
    let output = std::process::Command::new(crate::cli_harness::waypoint_bin())
        .arg("--store")
        .arg(&store)
        .args(["plan", "list"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(6));
    assert!(!output.stderr.contains(&0x1b), "{}", String::from_utf8_lossy(&output.stderr));
}

/// The default store is a relative path (`./.waypoint`) while steps run in the plan file's own
/// folder: the attempt lock, the outputs and the logs must still be found beside the store.
#[test]
fn a_relative_store_and_a_plan_file_in_another_folder_run_and_pass_outputs() {
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.path("plans")).unwrap();
    sandbox.write(
        "plans/two.toml",
        "name = \"two\"\n\n[[steps]]\nname = \"make\"\nrun = \"echo answer=42 >> \\\"$WAYPOINT_OUTPUT\\\"\"\n\n\
         [[steps]]\nname = \"use\"\nrun = \"cat \\\"$WAYPOINT_OUTPUTS\\\" > seen.json\"\n",
    );
    let output = std::process::Command::new(super::cli_harness::waypoint_bin())
        .args(["--store", "relative-store", "--format", "json", "run", "plans/two.toml"])
        .current_dir(sandbox.dir.path())
        .env_remove("WAYPOINT_STORE")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let run = super::cli_harness::Run::from_output(output);
    run.expect_code(0);
    assert!(sandbox.path("relative-store/runs").is_dir(), "the sidecar is beside the store");
    assert!(sandbox.read("plans/seen.json").contains("\"42\""), "step 2 saw step 1's output");
}

#[test]
fn a_failed_attempts_stderr_is_still_there_after_a_fix_and_a_rerun() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        "name = \"gpu\"\n[[steps]]\nname = \"prepare\"\nrun = \"true\"\n\
         [[steps]]\nname = \"train\"\nrun = \"[ -f gpu ] || { echo 'GPU not available' >&2; exit 3; }; echo trained\"\n",
    );
    let failed = sandbox.run(&["run", plan.to_str().unwrap()]).expect_error(1, "step_failed");
    let id = failed["error"]["plan_id"].as_str().unwrap().to_owned();
    sandbox.write("gpu", "");
    let rerun = sandbox.run(&["run", plan.to_str().unwrap()]);
    rerun.expect_code(0);
    assert_eq!(rerun.json()["plan_id"], id.as_str(), "the same plan continued");
    let first = sandbox.run(&["plan", "logs", &id, "--step", "2", "--attempt", "1"]).json();
    assert_eq!(first["logs"], json!([{"step": 2, "attempt": 1, "stdout": "", "stderr": "GPU not available\n"}]));
    let second = sandbox.run(&["plan", "logs", &id, "--step", "2", "--attempt", "2"]).json();
    assert_eq!(second["logs"][0]["stdout"], "trained\n", "the rerun is attempt 2: {second}");
    let starts: Vec<Value> = history_types(&sandbox, &id)
        .into_iter()
        .filter(|e| e["type"] == "step_started" && e["data"]["step"] == 2)
        .map(|e| e["data"]["attempt"].clone())
        .collect();
    assert_eq!(starts, [json!(1), json!(2)], "attempt numbers go on across runs");
}

#[test]
fn a_declared_output_missing_after_exit_0_is_a_failed_attempt_that_is_retried() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        "name = \"writes\"\n[[steps]]\nname = \"report\"\n\
         run = \"echo x >> tries.log; [ $(wc -l < tries.log) -ge 2 ] && echo done > report.txt; true\"\n\
         outputs = [\"report.txt\"]\nretries = 1\nretry_delay = \"10ms\"\n",
    );
    let run = sandbox.run(&["run", plan.to_str().unwrap()]);
    run.expect_code(0);
    let id = run.json()["plan_id"].as_str().unwrap().to_owned();
    let failed: Vec<Value> =
        history_types(&sandbox, &id).into_iter().filter(|e| e["type"] == "step_attempt_failed").collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let reason = failed[0]["data"]["reason"].to_string();
    assert!(reason.contains("report.txt"), "the failed attempt names the missing output: {reason}");
    assert_eq!(sandbox.read("tries.log"), "x\nx\n", "it ran twice");
}

#[test]
fn under_umask_000_every_file_a_run_leaves_in_the_store_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        "name = \"private\"\n[[steps]]\nname = \"speak\"\nrun = \"echo out; echo err >&2; echo key=value >> \\\"$WAYPOINT_OUTPUT\\\"\"\n",
    );
    let script = "umask 000; exec \"$0\" --store \"$1\" --format json run \"$2\"";
    let status = std::process::Command::new("sh")
        .args(["-c", script])
        .arg(crate::cli_harness::waypoint_bin())
        .arg(&sandbox.store)
        .arg(&plan)
        .current_dir(sandbox.dir.path())
        .env_remove("WAYPOINT_STORE")
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let mut seen = 0;
    for (path, _) in sandbox.store_bytes() {
        let mode = std::fs::symlink_metadata(&path).unwrap().permissions().mode() & 0o777;
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, expected, "{} is {mode:o}", path.display());
        seen += 1;
    }
    assert!(seen > 5, "the run left its files: {seen}");
}

#[test]
fn a_step_never_sees_the_store_location_and_its_password() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        "name = \"env\"\n[[steps]]\nname = \"look\"\nrun = \"echo \\\"store=${WAYPOINT_STORE:-none}\\\" > seen.txt\"\n",
    );
    let output = std::process::Command::new(crate::cli_harness::waypoint_bin())
        .args(["--format", "json", "run"])
        .arg(&plan)
        .env("WAYPOINT_STORE", &sandbox.store)
        .current_dir(sandbox.dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(sandbox.read("seen.txt"), "store=none\n");
}

#[test]
fn a_link_a_step_plants_at_its_output_file_is_never_followed_into_the_log() {
    let sandbox = Sandbox::new();
    sandbox.write("secret.txt", "password=hunter2\n");
    let plan = sandbox.write(
        "plan.toml",
        "name = \"links\"\n[[steps]]\nname = \"plant\"\nrun = \"ln -sf \\\"$PWD/secret.txt\\\" \\\"$WAYPOINT_OUTPUT\\\"\"\n",
    );
    let run = sandbox.run(&["run", plan.to_str().unwrap()]);
    let error = run.expect_error(1, "step_failed");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("symbolic link"), "{message}");
    never_recorded(&sandbox, &sandbox.only_plan_id(), "hunter2");
}

/// The credentials file of the link tests: a step plants links to it.
const SECRET: &str = "password=hunter2\n";

/// `secret` is nowhere in what the store holds of plan `id`: its outputs, events and step logs.
#[track_caller]
fn never_recorded(sandbox: &Sandbox, id: &str, secret: &str) {
    for args in [vec!["plan", "show", id, "--outputs"], vec!["plan", "history", id], vec!["plan", "logs", id]] {
        let shown = sandbox.run(&args);
        shown.expect_code(0);
        assert!(!shown.stdout.contains(secret), "`{}` shows the secret:\n{}", args.join(" "), shown.stdout);
    }
}

/// The folder of a store holding `$WAYPOINT_OUTPUT` (`<store>/runs/<plan>/step.output`), for a
/// step's shell.
const STORE_OF_STEP: &str = r#"store="$(dirname "$(dirname "$(dirname "$WAYPOINT_OUTPUT")")")""#;

/// Runs `plan` (a plan file's text) in a fresh sandbox beside `secret.txt`: it completes, and
/// nothing was written through a link to the secret. The sandbox and the plan's id.
#[track_caller]
fn run_beside_a_secret(plan: &str) -> (Sandbox, String) {
    let sandbox = Sandbox::new();
    sandbox.write("secret.txt", SECRET);
    let path = sandbox.write("plan.toml", plan);
    let run = sandbox.run(&["run", path.to_str().unwrap()]);
    run.expect_code(0);
    assert_eq!(sandbox.read("secret.txt"), SECRET, "nothing was written through the link");
    let id = run.json()["plan_id"].as_str().unwrap().to_owned();
    (sandbox, id)
}

#[test]
fn a_link_a_step_plants_at_outputs_json_is_removed_never_written_through() {
    let (sandbox, id) = run_beside_a_secret(
        r#"
name = "links"
[[steps]]
name = "plant"
run = """
echo made=here >> "$WAYPOINT_OUTPUT"
ln -sf "$PWD/secret.txt" "$WAYPOINT_OUTPUTS"
"""
[[steps]]
name = "look"
run = "cat \"$WAYPOINT_OUTPUTS\" > seen.json"
"#,
    );
    let seen: Value = serde_json::from_str(&sandbox.read("seen.json")).expect("step 2 read the outputs as JSON");
    assert_eq!(seen, json!({"plant": {"made": "here"}}));
    let outputs_json = sandbox.store.join("runs").join(&id).join("outputs.json");
    let kind = std::fs::symlink_metadata(&outputs_json).expect("outputs.json is there").file_type();
    assert!(kind.is_file(), "the link was replaced by a file of Waypoint's: {kind:?}");
    never_recorded(&sandbox, &id, "hunter2");
}

#[test]
fn a_link_a_failed_attempt_plants_at_its_output_file_is_not_written_through_by_the_next_attempt() {
    let (sandbox, id) = run_beside_a_secret(
        r#"
name = "links"
[[steps]]
name = "retried"
retries = 1
retry_delay = "0s"
run = """
if [ "$WAYPOINT_ATTEMPT" = 1 ]; then ln -sf "$PWD/secret.txt" "$WAYPOINT_OUTPUT"; exit 1; fi
echo fresh=value >> "$WAYPOINT_OUTPUT"
"""
"#,
    );
    let outputs = sandbox.run(&["plan", "show", &id, "--outputs"]).json();
    assert_eq!(outputs["outputs"]["retried"], json!({"fresh": "value"}), "{outputs}");
    let failed: Vec<Value> =
        history_types(&sandbox, &id).into_iter().filter(|e| e["type"] == "step_attempt_failed").collect();
    assert_eq!(failed.len(), 1, "attempt 1 failed, attempt 2 did not: {failed:?}");
    never_recorded(&sandbox, &id, "hunter2");
}

#[test]
fn a_link_a_step_plants_as_the_stores_logs_folder_is_never_written_through() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        &format!(
            r#"
name = "links"
[[steps]]
name = "first"
run = "echo first output"
[[steps]]
name = "plant"
run = """
{STORE_OF_STEP}
mv "$store/logs" logs.moved
mkdir decoy
ln -s "$PWD/decoy" "$store/logs"
echo hunter2
"""
[[steps]]
name = "after"
run = "echo after > after.txt"
"#
        ),
    );
    let run = sandbox.run(&["run", plan.to_str().unwrap()]);
    // The step matters more than its log: the run goes on, saying the log was not kept.
    run.expect_code(0);
    assert!(run.stderr.contains("could not be kept in the store"), "{}", run.stderr);
    assert_eq!(sandbox.read("after.txt"), "after\n");
    let decoy: Vec<_> = std::fs::read_dir(sandbox.path("decoy")).unwrap().collect();
    assert!(decoy.is_empty(), "nothing was made through the link: {decoy:?}");
    // The store refuses to open with a link among its own entries, naming it.
    let refused = sandbox.run(&["plan", "list"]);
    assert_ne!(refused.code, Some(0), "{}", refused.stdout);
    let message = refused.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("logs") && message.contains("link"), "{message}");
    // Put back, the store opens, and what it holds never had the step's second log.
    std::fs::remove_file(sandbox.store.join("logs")).unwrap();
    std::fs::rename(sandbox.path("logs.moved"), sandbox.store.join("logs")).unwrap();
    let id = sandbox.only_plan_id();
    never_recorded(&sandbox, &id, "hunter2");
    let logs = sandbox.run(&["plan", "logs", &id, "--step", "1"]).json();
    assert!(logs["logs"][0]["stdout"].as_str().is_some_and(|s| s.contains("first output")), "{logs}");
}

#[test]
fn a_link_a_step_plants_as_the_stores_runs_folder_is_never_read_or_written_through() {
    let sandbox = Sandbox::new();
    // A folder of credentials, whose file happens to be named like the output file.
    std::fs::create_dir(sandbox.path("vault")).unwrap();
    sandbox.write("vault/step.output", SECRET);
    let plan = sandbox.write(
        "plan.toml",
        &format!(
            r#"
name = "links"
[[steps]]
name = "plant"
run = """
{STORE_OF_STEP}
mv "$store/runs" runs.moved
mkdir decoy
ln -s "$PWD/vault" "decoy/$WAYPOINT_PLAN_ID"
ln -s "$PWD/decoy" "$store/runs"
"""
[[steps]]
name = "never"
run = "touch never.ran"
"#
        ),
    );
    let run = sandbox.run(&["run", plan.to_str().unwrap()]);
    let error = run.expect_error(1, "step_failed");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("$WAYPOINT_OUTPUT cannot be read") && message.contains("a link"), "{message}");
    assert!(!sandbox.path("never.ran").exists(), "no further step ran");
    assert_eq!(sandbox.read("vault/step.output"), SECRET, "the credentials are untouched");
    let decoy: Vec<_> = std::fs::read_dir(sandbox.path("decoy")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(decoy.len(), 1, "only the step's own link is there: {decoy:?}");
    // `runs` is the store's own entry: the store refuses to open until it is put back.
    let refused = sandbox.run(&["plan", "list"]);
    assert_ne!(refused.code, Some(0), "{}", refused.stdout);
    std::fs::remove_file(sandbox.store.join("runs")).unwrap();
    std::fs::rename(sandbox.path("runs.moved"), sandbox.store.join("runs")).unwrap();
    never_recorded(&sandbox, &sandbox.only_plan_id(), "hunter2");
}
