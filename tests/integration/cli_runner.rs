//! `waypoint run` and the resume of a plan file, through the real binary: completion, a failing
//! step, SIGINT / SIGTERM / kill -9 mid-step then resume (each completed step's side effect
//! exactly once), a changed plan file, a missing output, and two resumes racing.
//!
//! Nothing here is timed: steps announce themselves by writing marker files, and the tests wait
//! on those files.

use serde_json::{json, Value};

use crate::cli_harness::{
    assert_json_redacted, finish, first_to_finish, on_a_terminal, send_signal, summary_selectors, wait_for_file,
    Sandbox,
};

/// Step 2 appends to `effects.log`, touches `two.started` and waits until `release` exists
/// (at most two minutes, so a test gone wrong still ends).
const INTERRUPTIBLE: &str = r#"
name = "interruptible"

[env]
MARK = "done"

[[steps]]
name = "one"
run = "echo one >> effects.log && echo $MARK > one.out"
outputs = ["one.out"]

[[steps]]
name = "two"
run = """
echo two-start >> effects.log
echo $$ > two.pid
touch two.started
i=0; while [ ! -f release ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
echo two >> effects.log
"""

[[steps]]
name = "three"
run = "echo three >> effects.log && echo $WAYPOINT_STEP:$WAYPOINT_STEP_NAME > three.out"
outputs = ["three.out"]
"#;

fn effects(sandbox: &Sandbox) -> Vec<String> {
    sandbox.read("effects.log").lines().map(str::to_owned).collect()
}

fn show(sandbox: &Sandbox, id: &str) -> Value {
    let run = sandbox.run(&["plan", "show", id]);
    run.expect_code(0);
    run.json()
}

/// Starts `run` on the interruptible plan and waits until step 2 is running.
fn start_and_reach_step_two(sandbox: &Sandbox) -> std::process::Child {
    let plan = sandbox.write("plan.toml", INTERRUPTIBLE);
    let child = sandbox.spawn(&["run", plan.to_str().unwrap()]);
    wait_for_file(&sandbox.path("two.started"), "step 2 to start");
    child
}

/// Resumes the interrupted plan with step 2 released and checks the contract: completed steps
/// never ran again, the interrupted step ran again, the plan completed.
fn resume_and_check_exactly_once(sandbox: &Sandbox, id: &str) {
    sandbox.write("release", "");
    let preview = sandbox.run(&["plan", "resume", id, "--dry-run"]);
    preview.expect_code(0);
    let preview = preview.json();
    assert_eq!(preview["eligible"], true, "{preview}");
    assert_eq!(
        preview["steps"],
        json!([
            {"step": 1, "name": "one", "action": "skip"},
            {"step": 2, "name": "two", "action": "rerun"},
            {"step": 3, "name": "three", "action": "run"},
        ])
    );

    let resumed = sandbox.run(&["plan", "resume", id]);
    resumed.expect_code(0);
    let resumed = resumed.json();
    assert_eq!(resumed["resumed"]["from_step"], 2);
    assert_eq!(resumed["resumed"]["rerun_uncertain"], true);
    let statuses: Vec<&str> =
        resumed["steps"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["skipped", "completed", "completed"]);
    assert_eq!(resumed["summary"]["state"], "complete");
    assert_eq!(resumed["summary"]["resume_count"], 1);

    assert_eq!(effects(sandbox), ["one", "two-start", "two-start", "two", "three"]);
    assert_eq!(sandbox.read("three.out"), "3:three\n");
}

#[test]
fn run_completes_every_step_and_records_each_one() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        r#"
name = "three steps"
dir = "work"
[env]
GREETING = "hello"
[[steps]]
name = "greet"
run = "echo $GREETING > greeting.txt && echo said hello"
outputs = ["greeting.txt"]
[[steps]]
name = "count"
run = "wc -c < greeting.txt > count.txt"
outputs = ["count.txt"]
[[steps]]
name = "no outputs"
run = "true"
"#,
    );
    std::fs::create_dir(sandbox.path("work")).unwrap();
    let run = sandbox.run(&["run", plan.to_str().unwrap()]);
    run.expect_code(0);
    let doc = run.json();
    assert!(run.stderr.starts_with(&format!("plan {}\n", doc["plan_id"].as_str().unwrap())), "{}", run.stderr);
    assert!(run.stderr.contains("said hello"), "step output is passed on to stderr: {}", run.stderr);
    assert_eq!(sandbox.read("work/greeting.txt"), "hello\n");
    let mut selectors = vec![".plan_id".to_owned(), ".steps[].decision_id".into(), ".steps[].snapshot_id".into()];
    selectors.extend(summary_selectors(".summary"));
    assert_json_redacted("runner_run_complete", &doc, &selectors);

    // Each checkpoint names its outputs, absolute, and a digest of them; each decision is unique.
    let id = doc["plan_id"].as_str().unwrap();
    let history = sandbox.run(&["plan", "history", id]).json();
    let completed: Vec<&Value> =
        history["events"].as_array().unwrap().iter().filter(|e| e["type"] == "step_completed").collect();
    assert_eq!(completed.len(), 3);
    let greeting = sandbox.path("work/greeting.txt").canonicalize().unwrap();
    assert_eq!(completed[0]["data"]["artifacts"], json!([greeting.to_str().unwrap()]));
    assert!(completed[0]["data"]["snapshot_id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(completed[2]["data"]["snapshot_id"], Value::Null);
    assert_ne!(completed[0]["data"]["decision_id"], completed[1]["data"]["decision_id"]);
    let created = &history["events"][0];
    assert_eq!(created["data"]["source"], plan.canonicalize().unwrap().to_str().unwrap());
    assert_eq!(created["data"]["fingerprint"].as_str().unwrap().len(), 64);
    assert_eq!(history["events"][1]["data"]["phase"], "strategize");
    assert!(history["events"][1]["data"]["runner"].as_str().unwrap().starts_with("waypoint-"));
}

#[test]
fn a_failing_step_fails_the_plan_with_its_exit_code_and_stderr_and_resumes_once_fixed() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        r#"
name = "flaky"
[[steps]]
name = "first"
run = "echo first >> effects.log"
[[steps]]
name = "check"
run = "echo check >> effects.log; if [ ! -f fixed ]; then echo 'the disk is full' >&2; exit 3; fi"
[[steps]]
name = "last"
run = "echo last >> effects.log"
"#,
    );
    let failed = sandbox.run(&["run", plan.to_str().unwrap()]);
    let error = failed.expect_error(1, "step_failed");
    assert_eq!(error["error"]["step"], 2);
    assert_eq!(error["error"]["exit_code"], 3);
    assert_eq!(error["error"]["stderr_tail"], "the disk is full");
    assert!(failed.stderr.contains("exited with code 3: the disk is full"), "{}", failed.stderr);
    let id = error["error"]["plan_id"].as_str().unwrap().to_owned();
    let summary = show(&sandbox, &id);
    assert_eq!((summary["state"].as_str(), summary["uncertain_step"].as_u64()), (Some("errored"), Some(2)));
    let rich = sandbox.run_rich(&["plan", "show", &id]);
    assert!(rich.stdout.contains("step 2 (check) exited with code 3"), "{}", rich.stdout);

    sandbox.write("fixed", "");
    let resumed = sandbox.run_rich(&["plan", "resume", &id]);
    resumed.expect_code(0);
    let first = resumed.stdout.lines().next().unwrap();
    assert_eq!(first, format!("↻ resuming plan {id} · flaky · from step 2 of 3"));
    assert!(
        !resumed.stdout.contains("started but did not complete"),
        "it failed, it did not vanish: {}",
        resumed.stdout
    );
    assert!(resumed.stdout.contains("status      completed\n"), "{}", resumed.stdout);
    assert!(resumed.stderr.contains("↷ 1/3  first  skipped: completed before"), "{}", resumed.stderr);
    assert_eq!(effects(&sandbox), ["first", "check", "check", "last"]);
}

#[test]
fn a_step_without_its_declared_output_fails() {
    let sandbox = Sandbox::new();
    let plan = sandbox
        .write("plan.toml", "name = \"x\"\n[[steps]]\nname = \"a\"\nrun = \"true\"\noutputs = [\"never.txt\"]\n");
    let failed = sandbox.run(&["run", plan.to_str().unwrap()]);
    let error = failed.expect_error(1, "step_failed");
    assert!(error["error"]["message"].as_str().unwrap().contains("never.txt"), "{error}");
}

#[test]
fn sigint_mid_step_interrupts_and_the_resume_runs_the_rest_exactly_once() {
    let sandbox = Sandbox::new();
    let child = start_and_reach_step_two(&sandbox);
    send_signal(i64::from(child.id()), "INT");
    let run = finish(child);
    let error = run.expect_error(130, "interrupted");
    assert_eq!((error["error"]["signal"].as_str(), error["error"]["step"].as_u64()), (Some("SIGINT"), Some(2)));

    let id = sandbox.only_plan_id();
    let summary = show(&sandbox, &id);
    assert_eq!(summary["state"], "queued");
    assert_eq!(summary["interrupted"], true);
    assert_eq!(summary["interruption"]["reason"], "SIGINT received during step 2");
    assert_eq!(summary["uncertain_step"], 2);
    assert_eq!(summary["last_completed_step"], 1);
    assert_eq!(effects(&sandbox), ["one", "two-start"], "step 2 stopped; step 3 never started");
    let resumable = sandbox.run(&["plan", "list", "--resumable"]).json();
    assert_eq!(resumable["plans"][0]["plan_id"], id.as_str());
    assert_json_redacted("runner_interrupted_summary", &summary, &summary_selectors(""));

    resume_and_check_exactly_once(&sandbox, &id);
}

#[test]
fn sigterm_mid_step_interrupts_and_exits_143() {
    let sandbox = Sandbox::new();
    let child = start_and_reach_step_two(&sandbox);
    send_signal(i64::from(child.id()), "TERM");
    let run = finish(child);
    let error = run.expect_error(143, "interrupted");
    assert_eq!(error["error"]["signal"], "SIGTERM");
    let id = sandbox.only_plan_id();
    assert_eq!(show(&sandbox, &id)["interruption"]["reason"], "SIGTERM received during step 2");
    resume_and_check_exactly_once(&sandbox, &id);
}

#[test]
fn a_killed_runner_leaves_a_crashed_plan_that_resumes() {
    let sandbox = Sandbox::new();
    let mut child = start_and_reach_step_two(&sandbox);
    child.kill().expect("SIGKILL reaches the runner");
    let run = finish(child);
    assert_eq!(run.code, None, "killed by a signal");
    // The step dies with its runner: its supervisor stops it.
    let step_shell: i64 = sandbox.read("two.pid").trim().parse().expect("step 2 wrote its pid");
    wait_until_gone(step_shell);

    let id = sandbox.only_plan_id();
    let summary = wait_for_summary(&sandbox, &id, |s| s["eligible"] == true);
    assert_eq!(summary["state"], "processing");
    assert_eq!(summary["eligible"], true, "the runner's lock died with it: {summary}");
    assert_eq!(summary["interruption"]["reason"], "crash");
    assert_eq!(summary["interruption"]["inferred"], true);
    assert_json_redacted("runner_crashed_summary", &summary, &summary_selectors(""));

    resume_and_check_exactly_once(&sandbox, &id);
}

/// Whether process `pid` runs (a zombie waiting for its parent to reap it does not).
fn alive(pid: i64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Waits until process `pid` no longer runs.
fn wait_until_gone(pid: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while alive(pid) {
        assert!(std::time::Instant::now() < deadline, "process {pid} outlived its runner");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Shows the plan until `until` holds of its summary (a step left by a dead runner is being
/// stopped meanwhile).
fn wait_for_summary(sandbox: &Sandbox, id: &str, until: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let summary = show(sandbox, id);
        if until(&summary) {
            return summary;
        }
        assert!(std::time::Instant::now() < deadline, "the summary never changed: {summary}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Slow (about five seconds: the grace period before SIGKILL).
#[test]
fn a_killed_runner_takes_its_step_with_it_and_the_resume_waits_then_runs_it_exactly_once() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        r#"
name = "late writer"
[[steps]]
name = "slow"
run = """
echo start >> effects.log
if [ -f release ]; then echo done >> effects.log; exit 0; fi
( trap '' TERM; sleep 8; echo late > late.txt ) &
echo $! > late.pid
touch slow.started
wait
"""
"#,
    );
    let mut child = sandbox.spawn(&["run", plan.to_str().unwrap()]);
    wait_for_file(&sandbox.path("slow.started"), "the step to start");
    child.kill().expect("SIGKILL reaches the runner");
    assert_eq!(finish(child).code, None);
    let id = sandbox.only_plan_id();
    sandbox.write("release", "");

    // At once: the resume waits until the first attempt is gone, whatever it ignores.
    let resumed = sandbox.run(&["plan", "resume", &id]);
    resumed.expect_code(0);
    let late: i64 = sandbox.read("late.pid").trim().parse().expect("the step wrote its child's pid");
    assert!(!alive(late), "the step's child outlived its runner");
    assert!(!sandbox.path("late.txt").exists(), "the killed attempt never finished its work");
    assert_eq!(effects(&sandbox), ["start", "start", "done"]);
    assert_eq!(resumed.json()["summary"]["state"], "complete");
}

#[test]
fn two_resumes_at_once_one_runs_the_other_exits_5() {
    let sandbox = Sandbox::new();
    let child = start_and_reach_step_two(&sandbox);
    send_signal(i64::from(child.id()), "INT");
    finish(child).expect_code(130);
    let id = sandbox.only_plan_id();

    // Step 2 waits for `release` again, so the winner holds the plan until the loser is done.
    let mut racers = vec![sandbox.spawn(&["plan", "resume", &id]), sandbox.spawn(&["plan", "resume", &id])];
    let first = first_to_finish(&mut racers);
    let loser = finish(racers.remove(first));
    let winner = racers.remove(0);
    loser.expect_code(5);
    let code = loser.json()["error"]["code"].as_str().unwrap_or_default().to_owned();
    assert!(["run_lock_busy", "conflict"].contains(&code.as_str()), "{}", loser.stdout);
    loser.expect_error(5, &code);

    sandbox.write("release", "");
    let winner = finish(winner);
    winner.expect_code(0);
    assert_eq!(winner.json()["summary"]["resume_count"], 1);
    assert_eq!(effects(&sandbox), ["one", "two-start", "two-start", "two", "three"]);
}

#[test]
fn a_changed_plan_file_or_a_missing_output_refuses_the_resume_and_writes_nothing() {
    let sandbox = Sandbox::new();
    let child = start_and_reach_step_two(&sandbox);
    send_signal(i64::from(child.id()), "INT");
    finish(child).expect_code(130);
    let id = sandbox.only_plan_id();
    sandbox.write("release", "");

    // The output step 1 recorded is gone.
    std::fs::rename(sandbox.path("one.out"), sandbox.path("one.out.moved")).unwrap();
    let preview = sandbox.run(&["plan", "resume", &id, "--dry-run"]).json();
    assert_eq!((preview["eligible"].as_bool(), &preview["reasons"]), (Some(false), &json!(["snapshot_missing"])));
    let before = sandbox.store_bytes();
    let refused = sandbox.run(&["plan", "resume", &id]).expect_error(4, "not_eligible");
    assert_eq!(refused["error"]["reasons"], json!(["snapshot_missing"]));
    // Changed content is as good as gone.
    sandbox.write("one.out", "something else\n");
    sandbox.run(&["plan", "resume", &id]).expect_error(4, "not_eligible");
    std::fs::rename(sandbox.path("one.out.moved"), sandbox.path("one.out")).unwrap();

    // The completed step 1 changed since the run began (an edit elsewhere, such as a comment,
    // would not count).
    let plan = sandbox.path("plan.toml");
    sandbox.write("plan.toml", &INTERRUPTIBLE.replace("echo one >>", "echo uno >>"));
    let refused = sandbox.run(&["plan", "resume", &id]).expect_error(4, "not_eligible");
    assert_eq!(refused["error"]["reasons"], json!(["definition_changed"]));
    let preview = sandbox.run(&["plan", "resume", &id, "--dry-run"]).json();
    assert_eq!(preview["reasons"], json!(["definition_changed"]));
    assert_eq!(preview["changed_steps"], json!([{"step": 1, "name": "one", "completed": true, "change": "changed"}]));
    // A plan file that is gone cannot be resumed either.
    std::fs::remove_file(&plan).unwrap();
    let refused = sandbox.run(&["plan", "resume", &id]).expect_error(4, "not_eligible");
    assert_eq!(refused["error"]["reasons"], json!(["definition_changed"]));
    assert_eq!(sandbox.store_bytes(), before, "refused resumes write nothing");
    assert_eq!(effects(&sandbox), ["one", "two-start"], "no step ran");

    // Put back, it resumes.
    sandbox.write("plan.toml", INTERRUPTIBLE);
    resume_and_check_exactly_once(&sandbox, &id);
}

#[test]
fn rich_run_prints_the_plan_id_first_and_plain_progress_lines_off_a_terminal() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write("plan.toml", "name = \"tiny\"\n[[steps]]\nname = \"only\"\nrun = \"echo hi\"\n");
    let run = sandbox.run_rich(&["run", plan.to_str().unwrap()]);
    run.expect_code(0);
    let first = run.stdout.lines().next().unwrap();
    assert!(first.starts_with("▶ tiny · plan "), "{first}");
    assert!(run.stdout.contains("status      completed\n"), "{}", run.stdout);
    assert!(run.stderr.contains("▶ 1/1  only  started"), "{}", run.stderr);
    assert!(run.stderr.contains("│ hi"), "{}", run.stderr);
    assert!(run.stderr.contains("✓ 1/1  only  done"), "{}", run.stderr);
    assert!(!run.stderr.contains('\x1b') && !run.stdout.contains('\x1b'), "no colour or bar off a terminal");
}

/// Runs a plan whose step 1 sets `trap` for SIGINT, then waits (two minutes at most); step 2
/// would touch `never.ran`. Returns once step 1 is running.
fn start_trapping_step(sandbox: &Sandbox, trap: &str, outputs: &str) -> std::process::Child {
    let plan = sandbox.write(
        "plan.toml",
        &format!(
            r#"
name = "trapping"
[[steps]]
name = "traps ctrl-c"
run = """
trap '{trap}' INT
touch one.started
i=0; while [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
"""
outputs = [{outputs}]
[[steps]]
name = "never"
run = "touch never.ran"
"#
        ),
    );
    let child = sandbox.spawn(&["run", plan.to_str().unwrap()]);
    wait_for_file(&sandbox.path("one.started"), "step 1 to start");
    child
}

#[test]
fn a_second_sigint_stops_waiting_for_a_step_that_ignores_the_first() {
    let sandbox = Sandbox::new();
    let child = start_trapping_step(&sandbox, "touch got.int", "");
    send_signal(i64::from(child.id()), "INT");
    wait_for_file(&sandbox.path("got.int"), "the step to receive the first SIGINT");
    send_signal(i64::from(child.id()), "INT");
    let run = finish(child);
    let error = run.expect_error(130, "interrupted");
    assert_eq!(error["error"]["step"], 1);
    assert!(run.stderr.contains("Ctrl-C again stops waiting"), "{}", run.stderr);
    let summary = show(&sandbox, &sandbox.only_plan_id());
    assert_eq!((summary["state"].as_str(), summary["uncertain_step"].as_u64()), (Some("queued"), Some(1)));
    assert!(!sandbox.path("never.ran").exists(), "no further step started");
}

#[test]
fn a_plan_being_run_is_not_resumable_elsewhere() {
    let sandbox = Sandbox::new();
    let child = start_and_reach_step_two(&sandbox);
    let id = sandbox.only_plan_id();
    let preview = sandbox.run(&["plan", "resume", &id, "--dry-run"]).json();
    assert_eq!((preview["eligible"].as_bool(), &preview["reasons"]), (Some(false), &json!(["still_running"])));
    assert_eq!(sandbox.run(&["plan", "list", "--resumable"]).json(), json!({"plans": []}));
    let refused = sandbox.run(&["plan", "resume", &id]).expect_error(5, "run_lock_busy");
    assert_eq!(refused["error"]["reasons"], json!(["still_running"]));

    sandbox.write("release", "");
    finish(child).expect_code(0);
    assert_eq!(effects(&sandbox), ["one", "two-start", "two", "three"]);
}

#[test]
fn on_a_terminal_progress_is_a_live_bar_in_colour() {
    let sandbox = Sandbox::new();
    sandbox.write("plan.toml", "name = \"tiny\"\n[[steps]]\nname = \"only\"\nrun = \"echo hi\"\n");
    let screen = on_a_terminal(&sandbox, "run plan.toml", false);
    assert!(screen.contains("\r\x1b[2K"), "the bar is redrawn in place: {screen:?}");
    assert!(!screen.contains("started"), "no plain progress lines on a terminal: {screen:?}");
    assert!(screen.contains("\x1b[32m✓\x1b[0m 1/1  only  done"), "{screen:?}");
    let plain = on_a_terminal(&sandbox, "run --new plan.toml", true);
    assert!(
        plain.contains("\r\x1b[2K") && !plain.contains("\x1b[32m"),
        "NO_COLOR keeps the bar, drops colour: {plain:?}"
    );
}

#[test]
fn a_step_that_finishes_cleanly_after_the_signal_is_recorded_as_completed() {
    let sandbox = Sandbox::new();
    let child = start_trapping_step(&sandbox, "echo wrapped-up > one.out; exit 0", "\"one.out\"");
    send_signal(i64::from(child.id()), "INT");
    let error = finish(child).expect_error(130, "interrupted");
    assert_eq!(error["error"]["step"], 1);
    let summary = show(&sandbox, &sandbox.only_plan_id());
    assert_eq!(summary["last_completed_step"], 1, "its checkpoint was recorded: {summary}");
    assert_eq!((summary["uncertain_step"].clone(), summary["next_step"].clone()), (Value::Null, json!(2)));
    assert_eq!(summary["interruption"]["reason"], "SIGINT received during step 1");
    assert!(!sandbox.path("never.ran").exists());
}

#[test]
fn a_step_killed_by_a_signal_of_its_own_fails_the_plan() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write("plan.toml", "name = \"x\"\n[[steps]]\nname = \"dies\"\nrun = \"kill -KILL $$\"\n");
    let error = sandbox.run(&["run", plan.to_str().unwrap()]).expect_error(1, "step_failed");
    assert_eq!(error["error"]["exit_code"], Value::Null);
    assert!(error["error"]["message"].as_str().unwrap().contains("was killed by SIGKILL"), "{error}");
}

#[test]
fn run_again_after_ctrl_c_continues_the_same_plan_and_every_step_runs_once() {
    let sandbox = Sandbox::new();
    let child = start_and_reach_step_two(&sandbox);
    send_signal(i64::from(child.id()), "INT");
    finish(child).expect_error(130, "interrupted");
    let id = sandbox.only_plan_id();

    sandbox.write("release", "");
    let again = sandbox.run(&["run", "plan.toml"]);
    again.expect_code(0);
    let doc = again.json();
    assert_eq!((doc["outcome"].as_str(), doc["plan_id"].as_str()), (Some("resumed"), Some(id.as_str())));
    assert_eq!(doc["resumed"]["from_step"], 2);
    assert!(
        again.stderr.contains(&format!(
            "continuing plan {id} · interruptible · from step 2 of 3\n  because it was interrupted (SIGINT received during step 2)"
        )),
        "{}",
        again.stderr
    );
    assert_eq!(sandbox.only_plan_id(), id, "one plan");
    assert_eq!(effects(&sandbox), ["one", "two-start", "two-start", "two", "three"]);

    // Completed: nothing runs, nothing is written.
    let before = sandbox.store_bytes();
    let done = sandbox.run_rich(&["run", "plan.toml"]);
    done.expect_code(0);
    assert!(
        done.stdout.contains(&format!("plan {id} · interruptible\n  already completed 3 steps; nothing to run\n")),
        "{}",
        done.stdout
    );
    assert_eq!(sandbox.store_bytes(), before);

    // --new starts over, under a fresh id; the next plain run finds the newest.
    let fresh = sandbox.run(&["run", "--new", "plan.toml"]);
    fresh.expect_code(0);
    let fresh_id = fresh.json()["plan_id"].as_str().unwrap().to_owned();
    assert_ne!(fresh_id, id);
    assert_eq!(fresh.json()["outcome"], "created");
    let newest = sandbox.run(&["run", "plan.toml"]);
    assert_eq!(
        (newest.json()["outcome"].as_str(), newest.json()["plan_id"].as_str()),
        (Some("already_completed"), Some(fresh_id.as_str()))
    );
}

#[test]
fn run_again_while_the_plan_runs_exits_5() {
    let sandbox = Sandbox::new();
    let child = start_and_reach_step_two(&sandbox);
    let refused = sandbox.run(&["run", "plan.toml"]).expect_error(5, "run_lock_busy");
    assert_eq!(refused["error"]["reasons"], json!(["still_running"]));
    sandbox.write("release", "");
    finish(child).expect_code(0);
}

#[test]
fn a_process_that_left_the_steps_group_does_not_outlive_the_step() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        r#"
name = "escapes"
[[steps]]
name = "leave a job behind"
run = "setsid sh -c 'echo $$ > setsid.pid; exec sleep 300' & timeout 600 sh -c 'echo $$ > timeout.pid; exec sleep 300' & sleep 0.5; true"
"#,
    );
    let run = sandbox.run(&["run", plan.to_str().unwrap()]);
    run.expect_code(0);
    for file in ["setsid.pid", "timeout.pid"] {
        let pid = sandbox.read(file).trim().to_owned();
        assert!(!pid.is_empty(), "{file} was written");
        assert!(!alive(pid.parse().unwrap()), "the process in {file} ({pid}) outlived its step");
    }
}

/// Slow (about five seconds: the grace period before SIGKILL).
#[test]
fn a_step_that_removes_its_run_folder_still_keeps_a_resume_from_starting_beside_it() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        r#"
name = "removes its folder"
[[steps]]
name = "slow"
run = """
echo start >> effects.log
if [ -f release ]; then echo done >> effects.log; exit 0; fi
rm -rf "$(dirname "$WAYPOINT_OUTPUT")"
( trap '' TERM; sleep 8; echo late > late.txt ) &
echo $! > late.pid
touch slow.started
wait
"""
"#,
    );
    let mut child = sandbox.spawn(&["run", plan.to_str().unwrap()]);
    wait_for_file(&sandbox.path("slow.started"), "the step to start");
    child.kill().expect("SIGKILL reaches the runner");
    assert_eq!(finish(child).code, None);
    let id = sandbox.only_plan_id();
    // The attempt lock was never in the removed folder: the plan still counts as running.
    assert_eq!(show(&sandbox, &id)["reasons"], json!(["still_running"]));
    sandbox.write("release", "");
    let resumed = sandbox.run(&["plan", "resume", &id]);
    resumed.expect_code(0);
    let late: i64 = sandbox.read("late.pid").trim().parse().expect("the step wrote its child's pid");
    assert!(!alive(late), "the step's child outlived its runner");
    assert!(!sandbox.path("late.txt").exists(), "the killed attempt never finished its work");
    assert_eq!(effects(&sandbox), ["start", "start", "done"]);
}

/// A step whose first attempt starts a child that ignores SIGTERM and records its supervisor's
/// pid; the second attempt notes whether that child still runs.
const SUPERVISOR_KILLED: &str = r#"
name = "supervisor killed"
[[steps]]
name = "slow"
retries = RETRIES
retry_delay = "0s"
run = """
echo "start $WAYPOINT_ATTEMPT" >> effects.log
if [ "$WAYPOINT_ATTEMPT" != 1 ]; then
  if kill -0 "$(cat late.pid)" 2>/dev/null; then echo overlap >> effects.log; fi
  exit 0
fi
( trap '' TERM; sleep 8; echo late > late.txt ) &
echo $! > late.pid
echo $PPID > supervisor.pid
touch slow.started
wait
"""
"#;

/// Slow (about five seconds each: the grace period before SIGKILL).
#[test]
fn a_supervisor_killed_outright_takes_its_step_with_it_before_the_retry_or_the_end_of_run() {
    for retries in [1, 0] {
        let sandbox = Sandbox::new();
        let plan = sandbox.write("plan.toml", &SUPERVISOR_KILLED.replace("RETRIES", &retries.to_string()));
        let child = sandbox.spawn(&["run", plan.to_str().unwrap()]);
        wait_for_file(&sandbox.path("slow.started"), "the step to start");
        let supervisor: i64 = sandbox.read("supervisor.pid").trim().parse().expect("the step wrote its parent's pid");
        send_signal(supervisor, "KILL");
        let run = finish(child);
        let late: i64 = sandbox.read("late.pid").trim().parse().expect("the step wrote its child's pid");
        assert!(!alive(late), "retries = {retries}: the step's child outlived its supervisor and its run");
        assert!(!sandbox.path("late.txt").exists(), "retries = {retries}: the killed attempt went on");
        if retries == 1 {
            run.expect_code(0);
            assert_eq!(effects(&sandbox), ["start 1", "start 2"], "the retry started once attempt 1 was gone");
        } else {
            assert_ne!(run.code, Some(0), "a step whose supervisor was killed failed");
            assert_eq!(effects(&sandbox), ["start 1"]);
        }
    }
}

/// A step that starts two processes that leave its process group (`setsid`, and GNU `timeout`,
/// which moves itself to a group of its own), each writing its pid, then waits in the foreground.
/// Retries none; `TIMEOUT` is replaced by a `timeout = …` line or nothing.
const LEAVES_ITS_GROUP: &str = r#"
name = "leaves its group"
[[steps]]
name = "leave and wait"
TIMEOUT
run = """
setsid sh -c 'echo $$ > setsid.pid; exec sleep 600' &
timeout 600 sh -c 'echo $$ > timeout.pid; exec sleep 600' &
while [ ! -s setsid.pid ] || [ ! -s timeout.pid ]; do sleep 0.05; done
touch left.started
sleep 600
"""
"#;

/// How the step of [`LEAVES_ITS_GROUP`] is ended.
#[derive(Debug, Clone, Copy)]
enum StepStopped {
    /// `kill -9` of the runner: its supervisor reads the end of its lifeline.
    RunnerKilled,
    /// SIGTERM to the runner, which passes it on to the step's group.
    RunnerTerminated,
    /// The step's own `timeout = "1s"`.
    TimedOut,
}

/// Kills the processes whose pids it holds when dropped: a test that fails leaves no `sleep 600`.
struct KillOnDrop(Vec<i64>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Whether `kill -0 PID` reaches a process that is not a zombie (a zombie has ended: only its
/// parent's reaping is left).
fn answers_kill_0(pid: i64) -> bool {
    let reached = std::process::Command::new("kill")
        .args(["-0", "--", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    reached && alive(pid)
}

/// Runs [`LEAVES_ITS_GROUP`], ends the step the way `stopped` says once both processes that left
/// its group run, and checks that neither outlives it.
fn a_process_that_left_the_group_is_gone_after(stopped: StepStopped) {
    let sandbox = Sandbox::new();
    let timeout = if matches!(stopped, StepStopped::TimedOut) { "timeout = \"1s\"" } else { "" };
    let plan = sandbox.write("plan.toml", &LEAVES_ITS_GROUP.replace("TIMEOUT", timeout));
    let mut child = sandbox.spawn(&["run", plan.to_str().unwrap()]);
    wait_for_file(&sandbox.path("left.started"), "the step to start its processes");
    let pids: Vec<i64> = ["setsid.pid", "timeout.pid"]
        .iter()
        .map(|file| sandbox.read(file).trim().parse().unwrap_or_else(|_| panic!("{file} holds a pid")))
        .collect();
    let _cleanup = KillOnDrop(pids.clone());
    assert!(pids.iter().all(|&pid| answers_kill_0(pid)), "{stopped:?}: both run before the step is stopped");
    let run = match stopped {
        StepStopped::RunnerKilled => {
            child.kill().expect("SIGKILL reaches the runner");
            finish(child)
        }
        StepStopped::RunnerTerminated => {
            send_signal(i64::from(child.id()), "TERM");
            finish(child)
        }
        StepStopped::TimedOut => finish(child),
    };
    match stopped {
        StepStopped::RunnerKilled => assert_eq!(run.code, None, "killed by a signal"),
        StepStopped::RunnerTerminated => {
            run.expect_error(143, "interrupted");
        }
        StepStopped::TimedOut => {
            assert_eq!(run.expect_error(1, "step_failed")["error"]["reason"], "timeout");
        }
    }
    // The runner's supervisor stops them within its grace period (SIGTERM, then SIGKILL).
    for (file, pid) in ["setsid.pid", "timeout.pid"].iter().zip(&pids) {
        let deadline = std::time::Instant::now() + STOPPED_WITHIN;
        while answers_kill_0(*pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "{stopped:?}: the process in {file} ({pid}) left the step's group and outlived the step"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The supervisor's grace period (5 s) between SIGTERM and SIGKILL, with room for a loaded machine.
const STOPPED_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);

#[test]
fn a_process_that_left_the_steps_group_is_gone_after_kill_9_of_the_runner() {
    a_process_that_left_the_group_is_gone_after(StepStopped::RunnerKilled);
}

#[test]
fn a_process_that_left_the_steps_group_is_gone_after_sigterm_to_the_runner() {
    a_process_that_left_the_group_is_gone_after(StepStopped::RunnerTerminated);
}

#[test]
fn a_process_that_left_the_steps_group_is_gone_after_the_steps_timeout() {
    a_process_that_left_the_group_is_gone_after(StepStopped::TimedOut);
}

#[test]
fn run_from_step_while_the_files_plan_runs_that_step_exits_5_and_the_step_runs_once() {
    let sandbox = Sandbox::new();
    let child = start_and_reach_step_two(&sandbox);
    let id = sandbox.only_plan_id();
    let before = sandbox.store_bytes();
    let refused = sandbox.run(&["run", "--from-step", "2", "plan.toml"]).expect_error(5, "run_lock_busy");
    assert_eq!(refused["error"]["reasons"], json!(["still_running"]), "{refused}");
    assert_eq!(refused["error"]["plan_id"], id.as_str(), "{refused}");
    // Nothing was written: no fork, no event (the run's own step 2 writes nothing while it waits).
    assert_eq!(sandbox.only_plan_id(), id, "no fork was made");
    assert_eq!(sandbox.store_bytes().keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    sandbox.write("release", "");
    finish(child).expect_code(0);
    assert_eq!(effects(&sandbox), ["one", "two-start", "two", "three"], "step 2 ran once");
}
