//! What the `waypoint` binary prints, through the real binary: JSON documents keep the
//! contract's key order; every rich line of `run`, `show`, `list`, `history`, `logs`, errors and
//! `--help` fits 80 columns with names of 200 characters; rich output speaks in status words and
//! step names (phases, states and decision ids only with `-v` or in `plan history`); times are
//! local, durations read back as plan-file durations; `run --help`'s example runs as printed.

use serde_json::Value;
use waypoint_application::engine::parse_duration;

use crate::cli_harness::{Run, Sandbox};

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

/// `waypoint --format rich ARGS` in 80 columns, in UTC.
fn rich(sandbox: &Sandbox, args: &[&str]) -> Run {
    let mut all = vec!["--format", "rich"];
    all.extend_from_slice(args);
    let output = sandbox.command(&all).env("COLUMNS", "80").env("TZ", "UTC").output().expect("waypoint runs");
    Run::from_output(output)
}

/// Every line `run` printed, on stdout and stderr, is at most 80 characters wide.
#[track_caller]
fn assert_fits(run: &Run, what: &str) {
    for line in run.stdout.lines().chain(run.stderr.lines()) {
        assert!(line.chars().count() <= 80, "`{what}` printed a line of {} columns:\n{line}", line.chars().count());
    }
}

/// Words rich output keeps to itself unless asked (`-v`, `plan history`).
#[track_caller]
fn assert_plain_words(run: &Run, what: &str) {
    let text = format!("{}{}", run.stdout, run.stderr);
    for word in ["strategize", "action", "queued", "processing", "decision", "step-1-a1"] {
        assert!(!text.contains(word), "`{what}` says {word:?}:\n{text}");
    }
}

const LONG_PLAN: &str = r#"
name = "NAME"
[[steps]]
name = "STEP1"
run = "echo one; echo 'result=ok' >> \"$WAYPOINT_OUTPUT\""
[[steps]]
name = "STEP2"
run = "echo two; [ -f fixed ] || { echo 'the disk is full' >&2; exit 3; }"
retries = 1
retry_delay = "10ms"
"#;

#[test]
fn every_rich_line_fits_80_columns_with_names_of_200_characters() {
    let sandbox = Sandbox::new();
    let plan_name = format!("a plan {}", "n".repeat(193));
    let step_one = "s".repeat(200);
    let step_two = format!("second {}", "t".repeat(193));
    let text = LONG_PLAN.replace("NAME", &plan_name).replace("STEP1", &step_one).replace("STEP2", &step_two);
    sandbox.write("plan.toml", &text);
    let failed = rich(&sandbox, &["run", "plan.toml"]);
    failed.expect_code(1);
    let id = sandbox.only_plan_id();
    let mut shown = vec![("run FILE (a step fails)".to_owned(), failed)];
    for args in [
        vec!["plan", "list"],
        vec!["plan", "show", &id],
        vec!["plan", "show", &id, "--outputs"],
        vec!["plan", "history", &id],
        vec!["plan", "logs", &id],
        vec!["resume", &id, "--dry-run"],
        vec!["plan", "show", "ghost-plan"],
        vec!["plan", "fork", &id, "--from-step", "3"],
        vec!["run", "--from-step", "9", "plan.toml"],
        vec!["store", "stats"],
    ] {
        shown.push((args.join(" "), rich(&sandbox, &args)));
    }
    sandbox.write("fixed", "");
    shown.push(("run FILE (continued)".to_owned(), rich(&sandbox, &["run", "plan.toml"])));
    shown.push(("run FILE (completed)".to_owned(), rich(&sandbox, &["run", "plan.toml"])));
    shown.push(("plan show (completed)".to_owned(), rich(&sandbox, &["plan", "show", &id])));
    shown.push(("plan fork".to_owned(), rich(&sandbox, &["plan", "fork", &id, "--from-step", "2"])));
    sandbox.write("plan.toml", &text.replace("echo one;", "echo ONE;"));
    shown.push(("run FILE (edited after it completed)".to_owned(), rich(&sandbox, &["run", "plan.toml"])));
    shown.push(("plan resume (definition_changed)".to_owned(), rich(&sandbox, &["plan", "resume", &id])));
    for (what, run) in &shown {
        assert_fits(run, what);
        if !what.contains("history") {
            assert_plain_words(run, what);
        }
    }
    assert!(shown[0].1.stderr.contains('…'), "long names are cut with …:\n{}", shown[0].1.stderr);
    assert!(shown.iter().any(|(what, run)| what.contains("continued") && run.stdout.contains("completed")));
}

/// Every command's `--help`.
const COMMANDS: &[&[&str]] = &[
    &[],
    &["run"],
    &["resume"],
    &["plan"],
    &["plan", "create"],
    &["plan", "start"],
    &["plan", "total-steps"],
    &["plan", "step-started"],
    &["plan", "heartbeat"],
    &["plan", "checkpoint"],
    &["plan", "interrupt"],
    &["plan", "fail"],
    &["plan", "complete-phase"],
    &["plan", "apply"],
    &["plan", "constrain"],
    &["plan", "cancel"],
    &["plan", "list"],
    &["plan", "show"],
    &["plan", "logs"],
    &["plan", "fork"],
    &["plan", "history"],
    &["plan", "resume"],
    &["store"],
    &["store", "verify"],
    &["store", "repair"],
    &["store", "stats"],
    &["store", "compact"],
];

#[test]
fn every_help_fits_80_columns_and_the_plan_file_example_runs_as_printed() {
    let sandbox = Sandbox::new();
    for command in COMMANDS {
        let mut args = command.to_vec();
        args.push("--help");
        let help = rich(&sandbox, &args);
        help.expect_code(0);
        assert_fits(&help, &args.join(" "));
    }
    // The example, copied from the help as printed, is a plan file that runs.
    let help = rich(&sandbox, &["run", "--help"]).stdout;
    let example: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("A plan file is TOML"))
        .skip(2)
        .take_while(|l| l.is_empty() || l.starts_with("  "))
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect();
    assert!(example.len() > 10 && example.contains(&"[[steps]]"), "the example in:\n{help}");
    sandbox.write("example.toml", &example.join("\n"));
    let run = sandbox.run(&["run", "example.toml"]);
    run.expect_code(0);
    assert!(sandbox.path("out/fetch.txt").is_file(), "the example's step ran");
}

#[test]
fn rich_output_names_steps_and_says_phases_only_when_asked() {
    let sandbox = Sandbox::new();
    sandbox.write("plan.toml", &LONG_PLAN.replace("NAME", "words").replace("STEP1", "fetch").replace("STEP2", "build"));
    rich(&sandbox, &["run", "plan.toml"]).expect_code(1);
    let id = sandbox.only_plan_id();
    let show = rich(&sandbox, &["plan", "show", &id]);
    assert_plain_words(&show, "plan show");
    assert!(show.stdout.contains("next        step 2 (build) · it failed: it runs again"), "{}", show.stdout);
    let verbose = rich(&sandbox, &["-v", "plan", "show", &id]);
    assert!(verbose.stdout.contains("failed · strategize/errored"), "{}", verbose.stdout);
    assert!(verbose.stdout.contains("decision step-1-a1"), "{}", verbose.stdout);
    let history = rich(&sandbox, &["plan", "history", &id]);
    assert!(history.stdout.contains("step 1 (fetch) · decision step-1-a1"), "{}", history.stdout);
    assert!(history.stdout.contains("step 2 (build) · attempt 1"), "{}", history.stdout);
    let logs = rich(&sandbox, &["plan", "logs", &id, "--step", "2"]);
    assert!(logs.stdout.contains("── step 2 (build) · attempt 2 · stderr"), "{}", logs.stdout);
}

#[test]
fn durations_printed_read_back_and_times_are_local_in_one_format() {
    let sandbox = Sandbox::new();
    sandbox.write("plan.toml", &LONG_PLAN.replace("NAME", "times").replace("STEP1", "fetch").replace("STEP2", "build"));
    let run = rich(&sandbox, &["run", "plan.toml"]);
    let durations: Vec<&str> = run
        .stderr
        .lines()
        .filter_map(|l| l.split_once(" done ").or_else(|| l.split_once(" failed ")).map(|(_, d)| d.trim()))
        .chain(
            run.stderr.lines().filter_map(|l| l.split_once("retrying in ").map(|(_, d)| d.split(' ').next().unwrap())),
        )
        .collect();
    assert!(durations.len() >= 3, "{}", run.stderr);
    for duration in durations {
        assert!(parse_duration(duration).is_some(), "{duration:?} is not a plan-file duration:\n{}", run.stderr);
    }
    let id = sandbox.only_plan_id();
    let at = sandbox.run(&["plan", "history", &id]).json()["events"][0]["at"].as_str().unwrap().to_owned();
    let utc = chrono::DateTime::parse_from_rfc3339(&at).unwrap().with_timezone(&chrono::Utc);
    let args = ["--format", "rich", "plan", "history", &id];
    let in_tokyo = Run::from_output(sandbox.command(&args).env("TZ", "Asia/Tokyo").output().unwrap());
    let expected = (utc + chrono::Duration::hours(9)).format("%Y-%m-%d %H:%M:%S").to_string();
    assert!(in_tokyo.stdout.lines().next().unwrap().contains(&expected), "{expected} in\n{}", in_tokyo.stdout);
    let stats = rich(&sandbox, &["store", "stats"]);
    let failed = stats.stdout.lines().find(|l| l.starts_with("  failed ")).unwrap_or_default();
    assert!(failed.ends_with(" 1"), "status words: {}", stats.stdout);
    assert_plain_words(&stats, "store stats");
    let newest = stats.stdout.lines().find(|l| l.starts_with("newest activity")).unwrap();
    let time = newest.trim_start_matches("newest activity").trim();
    assert!(chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S").is_ok(), "{newest}");
    assert_eq!(sandbox.run(&["store", "stats"]).json()["plans_by_status"]["failed"], 1);
}

#[test]
fn a_short_prefix_and_a_prefix_of_a_removed_plan_say_so() {
    let sandbox = Sandbox::new();
    for args in [
        vec!["plan", "create", "--id", "removed-one"],
        vec!["plan", "start", "removed-one", "--phase", "strategize"],
        vec!["plan", "cancel", "removed-one"],
    ] {
        sandbox.run(&args).expect_code(0);
    }
    sandbox.run(&["store", "compact", "--older-than", "0s"]).expect_code(0);
    let short = sandbox.run(&["plan", "show", "rem"]).expect_error(3, "plan_not_found");
    assert!(short["error"]["message"].as_str().unwrap().contains("at least 4 characters"), "{short}");
    let removed = sandbox.run(&["plan", "show", "removed-o"]).expect_error(3, "plan_not_found");
    let message = removed["error"]["message"].as_str().unwrap();
    assert!(message.contains("plan removed-one was removed by retention"), "{removed}");
    assert_eq!(removed["error"]["plan_id"], "removed-one");
}

#[test]
fn an_empty_resumable_listing_counts_every_plan_and_json_lists_only_resumable_ones() {
    let sandbox = Sandbox::new();
    sandbox.write("done.toml", "name = \"done\"\n[[steps]]\nname = \"one\"\nrun = \"true\"\n");
    sandbox.run(&["run", "done.toml"]).expect_code(0);
    sandbox.write("more.toml", "name = \"more\"\n[[steps]]\nname = \"one\"\nrun = \"true\"\n");
    sandbox.run(&["run", "more.toml"]).expect_code(0);
    let empty = rich(&sandbox, &["plan", "list", "--resumable"]);
    empty.expect_code(0);
    assert!(
        empty.stdout.contains("None of the 2 plans here can resume now; `waypoint plan list` shows them all."),
        "{}",
        empty.stdout
    );
    // A failed plan is the one resumable plan: listed alone, the finished ones not.
    sandbox.write("fails.toml", "name = \"fails\"\n[[steps]]\nname = \"one\"\nrun = \"exit 3\"\n");
    sandbox.run(&["run", "fails.toml"]).expect_code(1);
    let listed = sandbox.run(&["plan", "list", "--resumable"]).json();
    let plans = listed["plans"].as_array().unwrap();
    assert_eq!(plans.len(), 1, "{listed}");
    assert_eq!(plans[0]["state"], "errored", "{listed}");
    assert_eq!(sandbox.run(&["plan", "list"]).json()["plans"].as_array().unwrap().len(), 3);
}
