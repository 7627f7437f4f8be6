//! The read commands through the real binary: `list`, `show`, `history` and `resume --dry-run`
//! never change a byte of the store, in either format, and their shapes are pinned.

use serde_json::json;

use crate::cli_harness::{
    assert_json_redacted, finish, on_a_terminal, send_signal, summary_selectors, wait_for_file, Sandbox,
};

/// A store holding plans in several states: fresh, interrupted mid-phase, errored, and an
/// interrupted plan-file run.
fn populated() -> Sandbox {
    let sandbox = Sandbox::new();
    let ok = |args: &[&str]| {
        sandbox.run(args).expect_code(0);
    };
    ok(&["plan", "create", "--id", "fresh", "--name", "fresh plan"]);
    ok(&["plan", "create", "--id", "paused", "--name", "paused plan", "--total-steps", "4"]);
    ok(&["plan", "start", "paused", "--phase", "strategize"]);
    ok(&["plan", "step-started", "paused", "--step", "1", "--decision", "d1"]);
    ok(&["plan", "checkpoint", "paused", "--step", "1", "--decision", "d1", "--snapshot", "snap-1"]);
    ok(&["plan", "step-started", "paused", "--step", "2", "--decision", "d2"]);
    ok(&["plan", "interrupt", "paused", "--reason", "deploy freeze"]);
    ok(&["plan", "create", "--id", "broken"]);
    ok(&["plan", "start", "broken", "--phase", "strategize"]);
    ok(&["plan", "fail", "broken", "--message", "upstream is down"]);

    let plan = sandbox.write(
        "plan.toml",
        "name = \"file plan\"\n[[steps]]\nname = \"a\"\nrun = \"true\"\n[[steps]]\nname = \"b\"\nrun = \"touch b.started; sleep 60\"\n",
    );
    let child = sandbox.spawn(&["run", plan.to_str().unwrap()]);
    wait_for_file(&sandbox.path("b.started"), "step b to start");
    send_signal(i64::from(child.id()), "INT");
    finish(child).expect_code(130);
    sandbox
}

fn file_plan_id(sandbox: &Sandbox) -> String {
    let plans = sandbox.run(&["plan", "list"]).json();
    let ids: Vec<&str> = plans["plans"].as_array().unwrap().iter().map(|p| p["plan_id"].as_str().unwrap()).collect();
    ids.into_iter().find(|id| !["fresh", "paused", "broken"].contains(id)).expect("the plan file's plan").to_owned()
}

#[test]
fn read_commands_leave_every_byte_of_the_store_as_it_was() {
    let sandbox = populated();
    let file_plan = file_plan_id(&sandbox);
    let before = sandbox.store_bytes();
    assert!(!before.is_empty());
    for id in ["fresh", "paused", "broken", file_plan.as_str()] {
        for args in [
            vec!["plan", "show", id],
            vec!["plan", "history", id],
            vec!["plan", "resume", id, "--dry-run"],
            vec!["plan", "resume", id, "--dry-run", "--fingerprint", "abcdef"],
        ] {
            sandbox.run(&args).expect_code(0);
            sandbox.run_rich(&args).expect_code(0);
        }
    }
    for args in [vec!["plan", "list"], vec!["plan", "list", "--resumable"]] {
        sandbox.run(&args).expect_code(0);
        sandbox.run_rich(&args).expect_code(0);
    }
    sandbox.run(&["plan", "show", "unknown"]).expect_code(3);
    assert_eq!(sandbox.store_bytes(), before, "reads wrote to the store");
}

#[test]
fn reads_of_a_store_that_does_not_exist_create_nothing() {
    let sandbox = Sandbox::new();
    let listed = sandbox.run(&["plan", "list"]);
    listed.expect_code(0);
    assert_eq!(listed.json(), json!({"plans": []}));
    let rich = sandbox.run_rich(&["plan", "list"]);
    assert!(rich.stdout.contains("No plans here yet"), "{}", rich.stdout);
    sandbox.run(&["plan", "show", "nope"]).expect_error(3, "plan_not_found");
    sandbox.run(&["plan", "history", "nope"]).expect_error(3, "plan_not_found");
    sandbox.run(&["plan", "resume", "nope", "--dry-run"]).expect_error(3, "plan_not_found");
    assert!(!sandbox.store.exists(), "no store was created");
}

#[test]
fn list_shows_every_plan_and_resumable_only_the_eligible_ones() {
    let sandbox = populated();
    let file_plan = file_plan_id(&sandbox);
    let all = sandbox.run(&["plan", "list"]).json();
    let ids: Vec<&str> = all["plans"].as_array().unwrap().iter().map(|p| p["plan_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [file_plan.as_str(), "broken", "paused", "fresh"], "newest activity first");

    let resumable = sandbox.run(&["plan", "list", "--resumable"]).json();
    let ids: Vec<&str> =
        resumable["plans"].as_array().unwrap().iter().map(|p| p["plan_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [file_plan.as_str(), "broken", "paused"]);
    let mut selectors = summary_selectors(".plans[]");
    selectors.push(".plans[0].plan_id".into());
    assert_json_redacted("reads_list_resumable", &resumable, &selectors);

    let table = sandbox.run_rich(&["plan", "list"]);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("RESUMABLE"), "{}", table.stdout);
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "fits 80 columns:\n{}", table.stdout);
    let fresh = lines.iter().find(|l| l.starts_with("fresh ")).expect("a row for fresh");
    assert!(
        fresh.contains("fresh plan") && fresh.contains("not_started") && fresh.contains("no: not started"),
        "{fresh}"
    );
    let paused = lines.iter().find(|l| l.starts_with("paused ")).expect("a row for paused");
    assert!(paused.contains("interrupted") && paused.contains("1/4") && paused.contains("yes"), "{paused}");
}

#[test]
fn show_and_the_dry_run_pin_the_summary_and_what_a_resume_would_do() {
    let sandbox = populated();
    let shown = sandbox.run(&["plan", "show", "paused"]).json();
    assert_json_redacted("reads_show_paused", &shown, &summary_selectors(""));
    let preview = sandbox.run(&["plan", "resume", "paused", "--dry-run"]).json();
    assert_eq!(preview, shown, "a plain plan's dry run is its summary");
    let changed = sandbox.run(&["plan", "resume", "fresh", "--dry-run", "--fingerprint", "ff"]).json();
    assert_eq!(changed["reasons"], json!(["action_phase"]), "no fingerprint was recorded to differ from");

    let rich = sandbox.run_rich(&["plan", "show", "paused"]).stdout;
    for expected in [
        "paused plan  paused",
        "status      interrupted\n",
        "progress    █████░░░░░░░░░░░░░░░ 1 of 4 steps · 25%",
        "next        step 2 · it started but did not finish: it runs again",
        "stopped     deploy freeze",
        "resumable   yes · waypoint resume paused",
    ] {
        assert!(rich.contains(expected), "{expected:?} in\n{rich}");
    }
    let broken = sandbox.run_rich(&["plan", "show", "broken"]).stdout;
    assert!(broken.contains("error       upstream is down"), "{broken}");
    let fresh = sandbox.run_rich(&["plan", "show", "fresh"]).stdout;
    assert!(fresh.contains("resumable   no: not started · nothing has run yet"), "{fresh}");

    let file_plan = file_plan_id(&sandbox);
    let preview = sandbox.run(&["plan", "resume", &file_plan, "--dry-run"]).json();
    assert_eq!(
        preview["steps"],
        json!([{"step": 1, "name": "a", "action": "skip"}, {"step": 2, "name": "b", "action": "rerun"}])
    );
    let rich = sandbox.run_rich(&["plan", "resume", &file_plan, "--dry-run"]).stdout;
    assert!(rich.contains("If resumed now:"), "{rich}");
    assert!(rich.contains("↷ 1  a  skipped: completed"), "{rich}");
    assert!(rich.contains("↻ 2  b  runs again: it started but did not complete"), "{rich}");
}

#[test]
fn history_is_a_timeline_in_rich_and_the_event_envelope_in_json() {
    let sandbox = populated();
    let history = sandbox.run(&["plan", "history", "paused"]).json();
    let events = history["events"].as_array().unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    for event in events {
        for key in ["version", "position", "type", "schema_version", "at", "data"] {
            assert!(event.get(key).is_some(), "{key} in {event}");
        }
    }
    let rich = sandbox.run_rich(&["plan", "history", "paused"]).stdout;
    let lines: Vec<&str> = rich.lines().collect();
    assert_eq!(lines.len(), 6);
    assert!(lines[0].trim_start().starts_with("v1 ") && lines[0].contains("plan_created"), "{rich}");
    assert!(lines[4].contains("step_started") && lines[4].contains("step 2 · decision d2"), "{rich}");
    assert!(lines[5].contains("interrupted") && lines[5].contains("deploy freeze"), "{rich}");
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let sandbox = populated();
    let coloured = on_a_terminal(&sandbox, "plan show paused", false);
    assert!(coloured.contains("\x1b[33minterrupted\x1b[0m"), "{coloured:?}");
    let plain = on_a_terminal(&sandbox, "plan show paused", true);
    assert!(!plain.contains('\x1b'), "{plain:?}");
    assert!(plain.contains("status      interrupted\r\n"), "{plain:?}");
    let piped = sandbox.run_rich(&["plan", "list"]);
    assert!(!piped.stdout.contains('\x1b'));
    let table = on_a_terminal(&sandbox, "plan list", false);
    assert!(table.contains("\x1b[1mID"), "{table:?}");
}
