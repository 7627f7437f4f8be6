//! Bad input through the real binary: malformed ids, unknown plans, missing or malformed plan
//! files, unusable stores and bad arguments. Each gets a one-line message, its exit code, and
//! leaves the store as it was.

use crate::cli_harness::{waypoint_bin, Sandbox};

const MALFORMED_IDS: [&str; 5] = ["../x", "", "a/b", "plän", "a b"];

fn too_long() -> String {
    "a".repeat(65)
}

#[test]
fn malformed_ids_are_usage_errors_and_touch_nothing() {
    let sandbox = Sandbox::new();
    sandbox.run(&["plan", "create", "--id", "exists"]).expect_code(0);
    let before = sandbox.store_bytes();
    let long = too_long();
    let ids: Vec<&str> = MALFORMED_IDS.iter().copied().chain([long.as_str()]).collect();
    for id in ids {
        for args in [
            vec!["plan", "show", id],
            vec!["plan", "history", id],
            vec!["plan", "resume", id],
            vec!["plan", "resume", id, "--dry-run"],
            vec!["plan", "start", id, "--phase", "strategize"],
            vec!["plan", "checkpoint", id, "--step", "1", "--decision", "d"],
            vec!["plan", "cancel", id],
            vec!["plan", "create", "--id", id],
        ] {
            let run = sandbox.run(&args);
            let error = run.expect_error(2, "invalid_value");
            let message = error["error"]["message"].as_str().unwrap();
            assert!(message.contains("plan id"), "{args:?}: {message}");
            assert!(run.stderr.starts_with("error: invalid value"), "{args:?}: {}", run.stderr);
            assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        }
    }
    let long_message = sandbox.run(&["plan", "show", &too_long()]).json();
    assert!(long_message["error"]["message"].as_str().unwrap().contains("65 characters long; the limit is 64"));
    // Exactly 64 characters is a valid id, only unknown.
    sandbox.run(&["plan", "show", &"a".repeat(64)]).expect_error(3, "plan_not_found");
    assert_eq!(sandbox.store_bytes(), before);
}

#[test]
fn unknown_plans_exit_3_for_every_command_and_write_nothing() {
    let sandbox = Sandbox::new();
    let rich_before = sandbox.run_rich(&["plan", "start", "ghost", "--phase", "strategize"]);
    rich_before.expect_code(3);
    assert!(!sandbox.store.exists(), "a write to an unknown plan does not create a store");

    sandbox.run(&["plan", "create", "--id", "exists"]).expect_code(0);
    let before = sandbox.store_bytes();
    for args in [
        vec!["plan", "start", "ghost", "--phase", "strategize"],
        vec!["plan", "total-steps", "ghost", "3"],
        vec!["plan", "step-started", "ghost", "--step", "1", "--decision", "d"],
        vec!["plan", "checkpoint", "ghost", "--step", "1", "--decision", "d"],
        vec!["plan", "interrupt", "ghost"],
        vec!["plan", "fail", "ghost", "--message", "m"],
        vec!["plan", "complete-phase", "ghost"],
        vec!["plan", "apply", "ghost"],
        vec!["plan", "constrain", "ghost", "--message", "m"],
        vec!["plan", "cancel", "ghost"],
        vec!["plan", "show", "ghost"],
        vec!["plan", "history", "ghost"],
        vec!["plan", "resume", "ghost"],
        vec!["plan", "resume", "ghost", "--dry-run"],
    ] {
        let error = sandbox.run(&args).expect_error(3, "plan_not_found");
        assert_eq!(error["error"]["plan_id"], "ghost", "{args:?}");
    }
    let rich = sandbox.run_rich(&["plan", "show", "ghost"]);
    assert_eq!(rich.stderr, "error: plan ghost not found; `waypoint plan list` shows the plans in this store\n");
    assert_eq!(sandbox.store_bytes(), before);
}

#[test]
fn a_missing_or_malformed_plan_file_is_a_usage_error_before_anything_is_written() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path("missing.toml");
    let error = sandbox.run(&["run", missing.to_str().unwrap()]).expect_error(2, "plan_file_unreadable");
    assert!(error["error"]["message"].as_str().unwrap().contains("missing.toml"));

    for (name, text, detail) in [
        ("syntax.toml", "name = \"x\"\n[[steps]\n", "invalid"),
        ("no_steps.toml", "name = \"x\"\n", "no steps"),
        ("no_name.toml", "[[steps]]\nname = \"a\"\nrun = \"true\"\n", "missing field `name`"),
        ("unknown_key.toml", "name = \"x\"\ncolour = 1\n[[steps]]\nname = \"a\"\nrun = \"true\"\n", "colour"),
        ("empty_run.toml", "name = \"x\"\n[[steps]]\nname = \"a\"\nrun = \" \"\n", "empty `run`"),
        ("control.toml", "name = \"\u{0}\"", "invalid"),
        (
            "same_name.toml",
            "name = \"x\"\n[[steps]]\nname = \"a\"\nrun = \"true\"\n[[steps]]\nname = \"a\"\nrun = \"true\"\n",
            "steps 1 and 2 are both named \"a\"",
        ),
    ] {
        let path = sandbox.write(name, text);
        let run = sandbox.run(&["run", path.to_str().unwrap()]);
        let error = run.expect_error(2, "plan_file_invalid");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(detail), "{name}: {message}");
    }
    let dir = sandbox.path("a_directory");
    std::fs::create_dir(&dir).unwrap();
    sandbox.run(&["run", dir.to_str().unwrap()]).expect_error(2, "plan_file_unreadable");
    assert!(!sandbox.store.exists(), "nothing was written");
}

#[test]
fn an_unreadable_store_exits_6() {
    let sandbox = Sandbox::new();
    // A file where the store directory should be.
    std::fs::write(&sandbox.store, b"not a store").unwrap();
    for args in [
        vec!["plan", "list"],
        vec!["plan", "show", "p"],
        vec!["plan", "create"],
        vec!["plan", "start", "p", "--phase", "strategize"],
    ] {
        let error = sandbox.run(&args).expect_error(6, "store_unreadable");
        assert!(error["error"]["message"].as_str().unwrap().contains("cannot open the store"), "{args:?}");
    }
    assert_eq!(std::fs::read(&sandbox.store).unwrap(), b"not a store");

    // A store whose log is garbage.
    let corrupt = Sandbox::new();
    corrupt.run(&["plan", "create", "--id", "p"]).expect_code(0);
    let log = corrupt.store.join("events.log");
    assert!(log.is_file(), "the file store keeps its log in events.log");
    std::fs::write(&log, b"this is not a waypoint log at all, not even its header").unwrap();
    let before = corrupt.store_bytes();
    for args in [vec!["plan", "list"], vec!["plan", "show", "p"], vec!["plan", "history", "p"]] {
        corrupt.run(&args).expect_code(6);
    }
    assert_eq!(corrupt.store_bytes(), before, "a corrupt store is not rewritten by reads");
}

#[test]
fn store_locations_and_arguments() {
    let sandbox = Sandbox::new();
    let error = sandbox.run(&["--store", "redis://localhost/0", "plan", "list"]);
    let error = error.expect_error(2, "unsupported_store");
    assert!(error["error"]["message"].as_str().unwrap().contains("postgres://"), "{error}");
    // A URL gone wrong is never taken for a folder (whose name would hold the password), and a
    // huge value is not echoed whole.
    for malformed in ["postgres:/u:S3cret@db.example/app", "postgresql:u@host/db", "pg+ssl:user:S3cret@host"] {
        let error = sandbox.run(&["--store", malformed, "plan", "list"]).expect_error(2, "invalid_store");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(!message.contains("S3cret"), "{message}");
        assert!(!sandbox.dir.path().join(malformed.split('/').next().unwrap()).exists(), "no folder was made");
    }
    let huge = format!("{}://x", "a".repeat(100_000));
    let error = sandbox.run(&["--store", &huge, "plan", "list"]).expect_error(2, "unsupported_store");
    assert!(error.to_string().len() < 2_000, "the location is not echoed whole");

    // `$WAYPOINT_STORE` is the default store, `--store` overrides it.
    let from_env = std::process::Command::new(waypoint_bin())
        .args(["--format", "json", "plan", "create", "--id", "via-env"])
        .env("WAYPOINT_STORE", &sandbox.store)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(from_env.status.code(), Some(0), "{}", String::from_utf8_lossy(&from_env.stderr));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sandbox.store).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "the store is created private to its user");
    sandbox.run(&["plan", "show", "via-env"]).expect_code(0);

    // `./.waypoint` when neither is given.
    let default = std::process::Command::new(waypoint_bin())
        .args(["plan", "create", "--id", "via-default"])
        .current_dir(sandbox.dir.path())
        .env_remove("WAYPOINT_STORE")
        .output()
        .unwrap();
    assert_eq!(default.status.code(), Some(0));
    assert!(sandbox.path(".waypoint").is_dir());

    // Unknown commands and missing arguments: usage errors, JSON on stdout in JSON mode.
    sandbox.run(&["plan", "frobnicate"]).expect_code(2);
    assert_eq!(sandbox.run(&["plan", "frobnicate"]).json()["error"]["code"], "usage");
    sandbox.run(&["plan", "checkpoint", "p", "--step", "0", "--decision", "d"]).expect_error(2, "invalid_value");
    sandbox
        .run(&["plan", "checkpoint", "p", "--step", "1", "--decision", "no spaces"])
        .expect_error(2, "invalid_value");
    let rich = sandbox.run_rich(&["plan", "start", "p"]);
    rich.expect_code(2);
    assert!(rich.stdout.is_empty());
    assert!(rich.stderr.contains("--phase"), "{}", rich.stderr);

    let help = sandbox.run_rich(&["--help"]);
    help.expect_code(0);
    for expected in ["waypoint run examples/demo.toml", "Exit codes:", "WAYPOINT_STORE"] {
        assert!(help.stdout.contains(expected), "{expected:?} in --help");
    }
    let run_help = sandbox.run_rich(&["run", "--help"]);
    assert!(run_help.stdout.contains("[[steps]]") && run_help.stdout.contains("the plan has completed"));
}

#[test]
fn oversized_input_is_refused_with_its_limit_and_writes_nothing() {
    let sandbox = Sandbox::new();
    let id = sandbox.run(&["plan", "create", "--total-steps", "2"]).json()["plan_id"].as_str().unwrap().to_owned();
    sandbox.run(&["plan", "start", &id, "--phase", "strategize"]).expect_code(0);
    let before = sandbox.store_bytes();

    let huge_reason = "r".repeat(8193);
    let run = sandbox.run(&["plan", "interrupt", &id, "--reason", &huge_reason]);
    let error = run.expect_error(2, "invalid_value");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("8193 characters long; the limit is 8192"), "{message}");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);

    let huge_artifact = "a".repeat(4097);
    let run = sandbox.run(&["plan", "checkpoint", &id, "--step", "1", "--decision", "d", "--artifact", &huge_artifact]);
    run.expect_error(2, "invalid_value");

    let plan_file = sandbox.write("huge.toml", &format!("name = \"huge\"\n# {}\n", "x".repeat(1024 * 1024)));
    let run = sandbox.run(&["run", plan_file.to_str().unwrap()]);
    let error = run.expect_error(2, "plan_file_unreadable");
    assert!(error["error"]["message"].as_str().unwrap().contains("larger than"), "{error}");

    // A 100 KB argument is not echoed whole, in JSON or on the terminal: every message and
    // text detail is cut to 2,000 characters.
    let huge_id = "i".repeat(100_000);
    let huge_store = format!("postgres://u:secret@127.0.0.1:1/{}", "d".repeat(100_000));
    for args in [vec!["plan", "show", huge_id.as_str()], vec!["--store", huge_store.as_str(), "plan", "list"]] {
        let run = sandbox.run(&args);
        assert_ne!(run.code, Some(0));
        let error: serde_json::Value = serde_json::from_str(&run.stdout).expect("a JSON error");
        for (key, value) in error["error"].as_object().unwrap() {
            let chars = value.as_str().map_or(0, |text| text.chars().count());
            assert!(chars <= 2000, "error.{key} is {chars} characters long");
        }
        assert!(run.stderr.chars().count() <= 2100, "stderr is {} characters long", run.stderr.chars().count());
        let rich = sandbox.run_rich(&args);
        assert!(rich.stderr.chars().count() <= 2100, "rich stderr is {} characters long", rich.stderr.chars().count());
    }

    assert_eq!(sandbox.store_bytes(), before, "refused input writes nothing");
}
