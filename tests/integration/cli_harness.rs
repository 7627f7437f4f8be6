//! Drives the real `waypoint` binary against a temporary store: builds it once, runs commands,
//! reads the store's bytes, and waits on files that steps write.
//!
//! How the binary is found: `CARGO_BIN_EXE_*` exists only for a package's own binaries, so the
//! first test to need it runs `cargo build -p waypoint-cli --bin waypoint` (the `cargo` that runs
//! these tests, same target directory and profile) and uses `<target>/<profile>/waypoint`. The
//! build is incremental and takes a moment when nothing changed, and the binary is never stale.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long to wait for something a step or a process does. Generous: it bounds a hang, it is
/// never what a test asserts.
const PATIENCE: Duration = Duration::from_secs(120);

/// The `waypoint` binary, built on first use.
pub fn waypoint_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // The runner starts `waypoint-supervise` from beside itself: never a stale one.
        built_binary("waypoint-cli", "waypoint-supervise");
        built_binary("waypoint-cli", "waypoint")
    })
}

/// Builds `bin` of `package` with the `cargo` that runs these tests (same target directory and
/// profile) and returns its path. Incremental: a moment when nothing changed, never stale.
pub fn built_binary(package: &str, bin: &str) -> PathBuf {
    built(package, "--bin", bin, None)
}

/// Builds the example `name` of `package`, as [`built_binary`] does a binary.
pub fn built_example(package: &str, name: &str) -> PathBuf {
    built(package, "--example", name, Some("examples"))
}

fn built(package: &str, kind: &str, name: &str, subdir: Option<&str>) -> PathBuf {
    // <target>/<profile>/deps/integration-<hash>
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("tests run from <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("a profile directory sits in the target directory");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", package, kind, name]).env("CARGO_TARGET_DIR", target_dir);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "`cargo build -p {package} {kind} {name}` failed: {status}");
    let path = subdir.map_or_else(|| profile_dir.to_path_buf(), |d| profile_dir.join(d)).join(name);
    assert!(path.is_file(), "cargo built {package} but {} is missing", path.display());
    path
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct Run {
    /// `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(output: Output) -> Self {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// stdout as the one JSON document it must be.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }

    /// Asserts the exit code, showing everything printed when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Asserts a JSON error object with `code`, and one line on stderr.
    #[track_caller]
    pub fn expect_error(&self, exit: i32, code: &str) -> Value {
        self.expect_code(exit);
        let json = self.json();
        assert_eq!(json["error"]["code"], code, "error code in {json}");
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "a message in {json}");
        // The message is one line, the last; a run's progress lines may come before it.
        let error_lines: Vec<&str> = self.stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(error_lines.len(), 1, "one error line on stderr, got:\n{}", self.stderr);
        assert!(self.stderr.trim_end().ends_with(error_lines[0]), "the error line comes last:\n{}", self.stderr);
        json
    }
}

/// A plan file of three steps, each appending its name to `effects.log`; step 2 fails (exit 3)
/// until a file `fixed` exists beside it.
pub const DRIFT: &str = r#"
name = "drift"
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

/// A temporary directory with a store in it (not created until a command writes).
#[derive(Debug)]
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = dir.path().join("store");
        Sandbox { dir, store }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `waypoint` command on this sandbox's store, in JSON format, without colour.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(waypoint_bin());
        command
            .arg("--store")
            .arg(&self.store)
            .args(["--format", "json"])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("WAYPOINT_STORE")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        command
    }

    /// Runs `waypoint --format json ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from_output(self.command(args).output().expect("waypoint runs"))
    }

    /// Runs `waypoint --format rich ARGS` to completion (the later `--format` wins).
    pub fn run_rich(&self, args: &[&str]) -> Run {
        let mut all = vec!["--format", "rich"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// Starts `waypoint --format json ARGS` without waiting.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("waypoint starts")
    }

    /// Writes a file in the sandbox and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("the sandbox is writable");
        path
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Every file under the store and its bytes: equal maps mean an untouched store.
    pub fn store_bytes(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        collect(&self.store, &mut files);
        files
    }

    /// The plan id of the only plan in the store.
    pub fn only_plan_id(&self) -> String {
        let listed = self.run(&["plan", "list"]);
        listed.expect_code(0);
        let plans = listed.json()["plans"].as_array().cloned().expect("a list of plans");
        assert_eq!(plans.len(), 1, "one plan in {plans:?}");
        plans[0]["plan_id"].as_str().expect("a plan id").to_owned()
    }
}

fn collect(dir: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.insert(path.clone(), b"<dir>".to_vec());
            collect(&path, files);
        } else {
            files.insert(path.clone(), std::fs::read(&path).expect("a store file is readable"));
        }
    }
}

/// Waits until `path` exists. Panics (naming `what`) only if it never appears.
#[track_caller]
pub fn wait_for_file(path: &Path, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !path.exists() {
        assert!(Instant::now() < deadline, "gave up waiting for {what} ({})", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a started command and collects what it printed.
pub fn finish(child: Child) -> Run {
    Run::from_output(child.wait_with_output().expect("waypoint finishes"))
}

/// Sends `signal` (a name `kill` understands, such as INT) to a process, or with a negative
/// id, to a process group.
pub fn send_signal(pid: i64, signal: &str) {
    let status =
        Command::new("kill").arg(format!("-{signal}")).arg("--").arg(pid.to_string()).status().expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Polls started commands until one finishes; returns its index. The others keep running.
pub fn first_to_finish(children: &mut [Child]) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        for (i, child) in children.iter_mut().enumerate() {
            if child.try_wait().expect("a child can be polled").is_some() {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no command finished");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fields of a summary object that are random or time-dependent, under `prefix` (`""` for
/// a summary at the top, `".summary"`, `".plans[]"`).
pub fn summary_selectors(prefix: &str) -> Vec<String> {
    ["plan_id", "last_checkpoint_id", "decision_id", "snapshot_id", "interruption.at", "lease.expires_at"]
        .into_iter()
        .map(|field| format!("{prefix}.{field}"))
        .collect()
}

/// Asserts an insta JSON snapshot with every selector's value redacted: a present value becomes
/// `[redacted]` and `null` stays visible, so the snapshot still pins which fields are known.
#[track_caller]
pub fn assert_json_redacted(name: &str, value: &Value, selectors: &[String]) {
    let mut settings = insta::Settings::clone_current();
    settings.set_sort_maps(false);
    for selector in selectors {
        settings.add_redaction(selector, insta::dynamic_redaction(redact_present));
    }
    settings.bind(|| insta::assert_json_snapshot!(name, value));
}

fn redact_present(
    value: insta::internals::Content,
    _path: insta::internals::ContentPath<'_>,
) -> insta::internals::Content {
    if value.is_nil() {
        value
    } else {
        "[redacted]".into()
    }
}

/// Runs `waypoint ARGS` (rich) on a pseudo-terminal, through util-linux `script`, in the
/// sandbox's directory, and returns what it printed (stdout and stderr both reach the terminal).
pub fn on_a_terminal(sandbox: &Sandbox, args: &str, no_color: bool) -> String {
    let command = format!("{} --store {} {args}", waypoint_bin().display(), sandbox.store.display());
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &command, "/dev/null"])
        .current_dir(sandbox.dir.path())
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR");
    if no_color {
        script.env("NO_COLOR", "1");
    }
    let output = script.output().expect("util-linux `script` runs (it gives the command a terminal)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
