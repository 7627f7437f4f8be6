//! Unit tests of the binary's pure parts: plan files, output digests and the snapshot probe,
//! which fingerprint a resume checks, and the small formatting helpers.

use std::ffi::OsString;
use std::path::Path;

use chrono::{Duration, TimeZone, Utc};
use uuid::Uuid;
use waypoint_application::SnapshotProbe;
use waypoint_domain::{Artifact, Checkpoint, CheckpointId, DecisionId, PlanId, SnapshotCheck, SnapshotId};

use crate::error::exit;
use crate::keys::keyed_id;
use crate::outputs::{digest_outputs, parse_step_outputs, OutputsProbe};
use crate::plan_file::{fingerprint_of, PlanFile};
use crate::progress::bar;
use crate::text::ago;
use crate::text::escape_controls;

const PLAN: &str = r#"
name = "build"
dir = "work"
[env]
MODE = "fast"
[[steps]]
name = "compile"
run = "make"
outputs = ["bin/app", "bin/lib.so"]
[[steps]]
name = "test"
run = "make test"
"#;

#[test]
fn a_plan_file_resolves_its_directory_and_outputs_against_its_own_folder() {
    let file = PlanFile::parse(Path::new("/plans/build.toml"), PLAN.as_bytes()).expect("a valid plan file");
    assert_eq!(file.name.as_str(), "build");
    assert_eq!(file.steps[0].workdir, Path::new("/plans/work"));
    assert_eq!(file.steps[0].env.get("MODE").map(String::as_str), Some("fast"));
    assert_eq!(file.steps.len(), 2);
    assert_eq!(file.steps[0].outputs, [Path::new("/plans/work/bin/app"), Path::new("/plans/work/bin/lib.so")]);
    assert!(file.steps[1].outputs.is_empty());
    assert_eq!(file.source().unwrap().as_str(), "/plans/build.toml");
    assert_eq!(file.fingerprint, fingerprint_of(PLAN.as_bytes()));
}

#[test]
fn a_plan_file_without_dir_runs_in_its_folder() {
    let file = PlanFile::parse(Path::new("/plans/p.toml"), b"name = \"p\"\n[[steps]]\nname = \"a\"\nrun = \"true\"\n")
        .expect("a valid plan file");
    assert_eq!(file.steps[0].workdir, Path::new("/plans"));
}

#[test]
fn bad_plan_files_are_usage_errors_that_say_what_is_wrong() {
    for (text, expected) in [
        ("name = \"x\"", "no steps"),
        ("name = \"x\"\nsteps = []", "no steps"),
        ("[[steps]]\nname = \"a\"\nrun = \"b\"", "missing field `name`"),
        ("name = \"\"\n[[steps]]\nname = \"a\"\nrun = \"b\"", "plan name is empty"),
        ("name = \"x\"\n[[steps]]\nname = \" \"\nrun = \"b\"", "step 1 has an empty name"),
        ("name = \"x\"\n[[steps]]\nname = \"a\"\nrun = \"\"", "empty `run`"),
        ("name = \"x\"\n[[steps]]\nname = \"a\"\nrun = \"b\"\nouts = []", "unknown field `outs`"),
        ("name = \"x\"\n[[steps]]\nname = \"a\"\nrun = \"b\"\noutputs = [\"\"]", "unusable output path"),
        ("name = [", "invalid"),
    ] {
        let error = PlanFile::parse(Path::new("/p.toml"), text.as_bytes()).expect_err(text);
        assert_eq!(error.exit, exit::USAGE, "{text}");
        assert!(error.message.contains(expected), "{text}: {}", error.message);
        assert!(!error.message.contains('\n'), "one line: {}", error.message);
    }
    let error = PlanFile::parse(Path::new("/p.toml"), &[0xff, 0xfe]).expect_err("not UTF-8");
    assert!(error.message.contains("not UTF-8"));
}

#[test]
fn fingerprints_follow_the_bytes() {
    assert_eq!(fingerprint_of(b"a"), fingerprint_of(b"a"));
    assert_ne!(fingerprint_of(b"a"), fingerprint_of(b"a "));
    assert_eq!(fingerprint_of(b"").as_str(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

fn checkpoint(snapshot: Option<&str>, artifacts: &[&Path]) -> Checkpoint {
    Checkpoint {
        checkpoint_id: CheckpointId::from_uuid(Uuid::nil()),
        step: waypoint_domain::StepNumber::FIRST,
        decision_id: DecisionId::parse("d").unwrap(),
        snapshot_id: snapshot.map(|s| SnapshotId::parse(s).unwrap()),
        artifacts: artifacts.iter().map(|p| Artifact::parse(p.to_str().unwrap()).unwrap()).collect(),
        name: None,
        output: None,
        fingerprint: None,
    }
}

#[test]
fn output_digests_cover_paths_and_contents_and_the_probe_rechecks_them() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    std::fs::write(&a, "one").unwrap();
    std::fs::write(&b, "two").unwrap();
    let digest = digest_outputs(&[a.clone(), b.clone()]).unwrap();
    assert!(digest.as_str().starts_with("sha256:") && digest.as_str().len() == 71);
    assert_eq!(digest, digest_outputs(&[a.clone(), b.clone()]).unwrap());
    assert_ne!(digest, digest_outputs(&[b.clone(), a.clone()]).unwrap(), "order and names count");

    let plan = PlanId::parse("p").unwrap();
    let recorded = checkpoint(Some(digest.as_str()), &[&a, &b]);
    assert_eq!(OutputsProbe::Digest.check(&plan, &recorded), SnapshotCheck::Present);
    std::fs::write(&b, "changed").unwrap();
    assert_eq!(OutputsProbe::Digest.check(&plan, &recorded), SnapshotCheck::Missing);
    std::fs::remove_file(&b).unwrap();
    assert_eq!(OutputsProbe::Digest.check(&plan, &recorded), SnapshotCheck::Missing);
    assert!(digest_outputs(std::slice::from_ref(&b)).unwrap_err().to_string().contains("cannot be read"));
    assert!(digest_outputs(&[dir.path().to_path_buf()]).unwrap_err().to_string().contains("not a regular file"));

    // Snapshot ids Waypoint did not compute, or checkpoints without artifacts, are not its to check.
    assert_eq!(OutputsProbe::Digest.check(&plan, &checkpoint(Some("snap-1"), &[&b])), SnapshotCheck::NotChecked);
    assert_eq!(OutputsProbe::Digest.check(&plan, &checkpoint(Some(digest.as_str()), &[])), SnapshotCheck::NotChecked);
    assert_eq!(OutputsProbe::Digest.check(&plan, &checkpoint(None, &[&a])), SnapshotCheck::NotChecked);
}

#[test]
fn step_outputs_read_as_key_value_lines_and_delimited_blocks() {
    let parsed = parse_step_outputs("a=1\nurl=http://x/?q=1\n\nnotes<<EOF\nline one\nline=two\nEOF\na=2\n").unwrap();
    assert_eq!(
        serde_json::Value::Object(parsed),
        serde_json::json!({"a": "2", "url": "http://x/?q=1", "notes": "line one\nline=two"})
    );
    assert!(parse_step_outputs("just words\n").is_err());
    assert!(parse_step_outputs("k<<END\nnever closed\n").is_err());
    assert!(parse_step_outputs("=v\n").is_err());
}

#[test]
fn a_step_fingerprint_changes_with_that_step_only() {
    let before = PlanFile::parse(Path::new("/plans/build.toml"), PLAN.as_bytes()).unwrap();
    let edited = PLAN.replace("make test", "make check");
    let after = PlanFile::parse(Path::new("/plans/build.toml"), edited.as_bytes()).unwrap();
    assert_eq!(before.steps[0].fingerprint, after.steps[0].fingerprint);
    assert_ne!(before.steps[1].fingerprint, after.steps[1].fingerprint);
    assert_ne!(before.fingerprint, after.fingerprint);
    // The plan's [env] is part of every step's definition.
    let env = PLAN.replace("MODE = \"fast\"", "MODE = \"slow\"");
    let other = PlanFile::parse(Path::new("/plans/build.toml"), env.as_bytes()).unwrap();
    assert_ne!(before.steps[0].fingerprint, other.steps[0].fingerprint);
}

#[test]
fn keyed_ids_are_stable_per_file_and_generation() {
    let path = Path::new("/plans/build.toml");
    assert_eq!(keyed_id(path, 1), keyed_id(path, 1));
    assert_ne!(keyed_id(path, 1), keyed_id(path, 2));
    assert_ne!(keyed_id(path, 1), keyed_id(Path::new("/plans/other.toml"), 1));
    assert_eq!(keyed_id(path, 1).as_str().len(), 20);
}

#[test]
fn control_characters_are_escaped_for_the_terminal() {
    assert_eq!(escape_controls("plain path/ok"), "plain path/ok");
    assert_eq!(escape_controls("bad\u{1b}[31m\u{7}name"), "bad\\u{1b}[31m\\u{7}name");
}

#[test]
fn the_last_format_flag_decides_whether_a_usage_error_is_json() {
    let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
    assert!(crate::json_requested(&args(&["waypoint", "--format", "json", "plan"])));
    assert!(crate::json_requested(&args(&["waypoint", "--format=json"])));
    assert!(!crate::json_requested(&args(&["waypoint", "--format", "json", "--format", "rich"])));
    assert!(!crate::json_requested(&args(&["waypoint", "--format"])));
    assert!(!crate::json_requested(&args(&["waypoint", "plan", "list"])));
}

#[test]
fn bars_and_ages_read_well() {
    assert_eq!(bar(0, 4, 8), "░░░░░░░░");
    assert_eq!(bar(1, 4, 8), "██░░░░░░");
    assert_eq!(bar(4, 4, 8), "████████");
    assert_eq!(bar(9, 4, 8), "████████", "never past full");
    let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
    assert_eq!(ago(now - Duration::seconds(5), now), "5s ago");
    assert_eq!(ago(now - Duration::minutes(5), now), "5m ago");
    assert_eq!(ago(now - Duration::hours(5), now), "5h ago");
    assert_eq!(ago(now - Duration::days(5), now), "2026-11-16");
    assert_eq!(ago(now + Duration::seconds(5), now), "0s ago", "a clock slightly ahead is now");
}

#[test]
fn a_stderr_tail_is_printable_and_bounded() {
    let lines: Vec<String> = ["\x1b[31merror\x1b[0m: disk full\r", "bell\x07 tab\tend"].map(String::from).to_vec();
    assert_eq!(crate::capture::stderr_tail(&lines), "error: disk full\u{fffd}\nbell\u{fffd} tab\tend");
    let long = vec!["x".repeat(5000)];
    assert_eq!(crate::capture::stderr_tail(&long).chars().count(), 2000);
    assert!(waypoint_domain::Message::parse(&crate::capture::stderr_tail(&lines)).is_ok());
}

#[test]
fn the_command_line_is_consistent() {
    use clap::CommandFactory;
    crate::cli::Cli::command().debug_assert();
}

#[test]
fn a_lost_lease_is_a_conflict() {
    use waypoint_application::ServiceError;
    use waypoint_domain::{PlanError, RunnerId};
    let runner = |name: &str| RunnerId::parse(name).unwrap();
    let lost = PlanError::LeaseLost { runner: runner("orch-1"), holder: Some(runner("orch-2")) };
    let error =
        crate::error::CliError::from(ServiceError::Plan { plan_id: PlanId::parse("p-1").unwrap(), source: lost });
    assert_eq!((error.exit, error.code), (exit::CONFLICT, "lease_lost"));
    assert!(error.message.contains("runner orch-2 holds it now"), "{}", error.message);
}

#[test]
fn leases_parse_like_plan_file_durations_and_both_flags_go_together() {
    use crate::cli::{Cli, Command, PlanCommand};
    use clap::Parser;
    let parse = |args: &[&str]| Cli::try_parse_from([&["waypoint", "plan"], args].concat());
    let Ok(Cli { command: Command::Plan(PlanCommand::Start { lease, .. }), .. }) =
        parse(&["start", "p-1", "--phase", "strategize", "--runner", "orch-1", "--lease", "90s"])
    else {
        panic!("a leased start parses")
    };
    let lease = lease.request().expect("a lease");
    assert_eq!((lease.runner.as_str(), lease.duration), ("orch-1", std::time::Duration::from_secs(90)));
    for bad in [
        &["start", "p-1", "--phase", "strategize", "--runner", "orch-1"][..],
        &["start", "p-1", "--phase", "strategize", "--lease", "30s"],
        &["start", "p-1", "--phase", "strategize", "--runner", "orch-1", "--lease", "0s"],
        &["start", "p-1", "--phase", "strategize", "--runner", "orch-1", "--lease", "soon"],
        &["resume", "p-1", "--dry-run", "--runner", "orch-1", "--lease", "30s"],
        &["heartbeat", "p-1"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} must be refused");
    }
    let Ok(Cli { command: Command::Plan(PlanCommand::Heartbeat { lease, .. }), .. }) =
        parse(&["heartbeat", "p-1", "--runner", "orch-1"])
    else {
        panic!("a heartbeat parses")
    };
    assert_eq!(lease, std::time::Duration::from_secs(30), "the default renewal");
}

#[test]
fn names_are_cut_with_an_ellipsis_and_paths_from_the_left() {
    use crate::text::{columns, cut, cut_left, with_name};
    assert_eq!(cut("build", 10), "build");
    assert_eq!(cut("abcdefghij", 5), "abcd…");
    assert_eq!(cut("two\nlines", 10), "two…", "a second line is cut too");
    assert_eq!(cut_left("/very/long/path/plan.toml", 12), "…h/plan.toml");
    assert_eq!(columns("\x1b[32mok\x1b[0m"), 2, "colour takes no column");
    let line = with_name("  ▶ 1/2  ", &"n".repeat(200), "  started", 80);
    assert_eq!(columns(&line), 80);
    assert!(line.ends_with("n…  started"), "{line}");
}

#[test]
fn prose_wraps_between_words_and_keeps_a_command_whole() {
    use crate::text::{fit, wrap};
    let lines = wrap("one two three four five", 9, 9);
    assert_eq!(lines, ["one two", "three", "four five"]);
    let lines = wrap("run `waypoint store repair` now", 25, 25);
    assert_eq!(lines, ["run", "`waypoint store repair`", "now"], "a command in backticks stays on one line");
    let lines = wrap(&format!("see /a/{}/plan.toml", "d".repeat(40)), 20, 20);
    assert!(lines.iter().all(|l| l.chars().count() <= 20), "{lines:?}");
    assert!(lines[1].starts_with('…') && lines[1].ends_with("/plan.toml"), "a path keeps its end: {lines:?}");
    let fitted = fit("  because it failed (step 2 exited with code 3) and more words here", 30);
    assert!(fitted.lines().all(|l| l.chars().count() <= 30), "{fitted}");
    assert!(fitted.lines().skip(1).all(|l| l.starts_with("    ")), "continuations indented: {fitted}");
}

#[test]
fn the_width_is_columns_up_to_80() {
    // A test runs without a terminal on stdout (captured); $COLUMNS decides, capped at 80.
    let width = crate::text::width();
    assert!((40..=80).contains(&width), "{width}");
}

#[test]
fn every_error_kind_exits_with_the_code_the_python_package_reports() {
    use waypoint_application::{ErrorKind, ServiceError};
    let kinds = [
        (ErrorKind::NotFound, exit::NOT_FOUND),
        (ErrorKind::NotEligible, exit::NOT_ELIGIBLE),
        (ErrorKind::Conflict, exit::CONFLICT),
        (ErrorKind::StoreUnreadable, exit::STORE_UNREADABLE),
        (ErrorKind::InvalidCommand, exit::INVALID_COMMAND),
        (ErrorKind::Unexpected, exit::UNEXPECTED),
    ];
    for (kind, code) in kinds {
        assert_eq!(kind.exit_code(), code, "{kind:?}");
    }
    let not_found = ServiceError::NotFound(PlanId::parse("p").expect("a plan id"));
    assert_eq!(crate::error::CliError::from(not_found).exit, ErrorKind::NotFound.exit_code());
}

#[test]
fn a_json_list_written_item_by_item_is_the_document_written_whole() {
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        plans: &'a [serde_json::Value],
    }
    // Deeper than the 32 levels of indentation the list's formatter writes at once.
    let deep = (0..40).fold(serde_json::json!([1, {"leaf": true}]), |inner, _| serde_json::json!({"in": [inner, 2]}));
    let items = [
        serde_json::json!({"plan_id": "a", "reasons": [], "nested": {"list": [1, 2], "empty": {}}}),
        serde_json::json!({"plan_id": "b\nwith a newline", "interruption": null, "steps": [{"n": 1}]}),
        serde_json::json!("plain"),
        deep,
    ];
    for n in 0..=items.len() {
        let mut whole = serde_json::to_vec_pretty(&Doc { plans: &items[..n] }).unwrap();
        whole.push(b'\n');
        let mut bytes = Vec::new();
        let mut list = crate::ui::JsonList::new(&mut bytes, "plans");
        for item in &items[..n] {
            list.push(item);
        }
        list.finish().unwrap();
        let whole = String::from_utf8(whole).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), whole, "{n} items");
        // Rendered ahead in batches (as the listing's threads do), then pushed: the same document.
        for batch in 1..=2 {
            let mut bytes = Vec::new();
            let mut list = crate::ui::JsonList::new(&mut bytes, "plans");
            for chunk in items[..n].chunks(batch) {
                let mut rendered = crate::ui::RenderedItems::default();
                chunk.iter().for_each(|item| rendered.push(item));
                list.push_rendered(&rendered);
            }
            list.finish().unwrap();
            assert_eq!(String::from_utf8(bytes).unwrap(), whole, "{n} items rendered {batch} at a time");
        }
    }
    // An item that cannot be rendered (a map keyed by lists) fails the document, pushed alone
    // or rendered ahead, first in its batch or not.
    let unrenderable = std::collections::BTreeMap::from([(vec![1], 1)]);
    let mut list = crate::ui::JsonList::new(Vec::new(), "plans");
    list.push(&unrenderable);
    assert!(list.finish().is_err());
    for before in [0, 1] {
        let mut rendered = crate::ui::RenderedItems::default();
        (0..before).for_each(|_| rendered.push(&items[0]));
        rendered.push(&unrenderable);
        let mut list = crate::ui::JsonList::new(Vec::new(), "plans");
        list.push_rendered(&rendered);
        assert!(list.finish().is_err(), "{before} items before it");
    }
}
