//! The Python package (`crates/waypoint-python`) in `cargo xtask test` and `cargo xtask bench`:
//! its wheel built with maturin and installed into a throwaway virtualenv, then (for `test`)
//! `mypy --strict` over the examples and the package, and pytest over its tests against the
//! file store and the throwaway PostgreSQL.
//!
//! The tools come from the host Python (`$WAYPOINT_PYTHON`, else `python3`): maturin, pytest
//! and mypy must be installed there (`python3 -m pip install maturin pytest mypy`; `.ci/run`
//! does). A missing tool fails the run: the Python tests never skip. The virtualenv sees the
//! host's packages (`--system-site-packages`), so it needs no network and no `ensurepip`; the
//! wheel goes into the virtualenv alone.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The package's folder, relative to the workspace root.
pub const PACKAGE: &str = "crates/waypoint-python";

/// The host interpreter that runs maturin, pytest and mypy.
fn host_python() -> String {
    std::env::var("WAYPOINT_PYTHON").ok().filter(|p| !p.trim().is_empty()).unwrap_or_else(|| "python3".to_owned())
}

/// Checks that the host Python has every tool, naming the missing ones and how to install them.
fn check_tools(python: &str) -> Result<(), String> {
    let missing: Vec<&str> = ["maturin", "pytest", "mypy"]
        .into_iter()
        .filter(|tool| {
            !Command::new(python).args(["-m", tool, "--version"]).output().is_ok_and(|out| out.status.success())
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the Python package's tests need {} in {python} (not found); install them with \
         `{python} -m pip install maturin pytest mypy` (.ci/run does), or name another interpreter in WAYPOINT_PYTHON",
        missing.join(", ")
    ))
}

/// Runs `command`, echoing it; a failure names it.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    println!("== {what}");
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("{what}: {status}")),
        Err(e) => Err(format!("{what}: cannot start it: {e}")),
    }
}

/// The cargo that runs xtask.
fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The workspace's target directory, as cargo reports it.
fn target_dir(root: &Path) -> Result<PathBuf, String> {
    let output = Command::new(cargo())
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata printed no JSON: {e}"))?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata names no target_directory".to_owned())
}

/// Builds the `waypoint` binary (debug) and returns its path: the interop tests run it.
pub fn waypoint_binary(root: &Path) -> Result<PathBuf, String> {
    let mut build = Command::new(cargo());
    build.current_dir(root).args(["build", "--locked", "-p", "waypoint-cli", "--bins"]);
    run(&mut build, "cargo build -p waypoint-cli --bins (for the Python interop tests)")?;
    let binary = target_dir(root)?.join("debug").join("waypoint");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!("cargo built waypoint-cli but {} is missing", binary.display()))
    }
}

/// A virtualenv in a temporary folder with the package's wheel installed; removed on drop.
#[derive(Debug)]
pub struct Venv {
    dir: PathBuf,
    python: PathBuf,
    wheel_bytes: u64,
}

impl Venv {
    /// Checks the tools, builds the wheel with cargo profile `profile` (`dev` for tests,
    /// `release` for the benchmark) and installs it into a fresh virtualenv.
    pub fn with_wheel(root: &Path, profile: &str) -> Result<Venv, String> {
        let host = host_python();
        check_tools(&host)?;
        let dir = std::env::temp_dir().join(format!("waypoint-xtask-python-{}-{profile}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut venv = Venv { python: dir.join("venv").join("bin").join("python"), dir, wheel_bytes: 0 };
        let mut create = Command::new(&host);
        create.args(["-m", "venv", "--system-site-packages", "--without-pip"]).arg(venv.dir.join("venv"));
        run(&mut create, &format!("{host} -m venv (a throwaway virtualenv in {})", venv.dir.display()))?;
        let wheels = venv.dir.join("wheels");
        let mut build = Command::new(&host);
        build
            .current_dir(root)
            .args(["-m", "maturin", "build", "--locked", "--profile", profile, "--manifest-path"])
            .arg(Path::new(PACKAGE).join("Cargo.toml"))
            .arg("--interpreter")
            .arg(&venv.python)
            .arg("--out")
            .arg(&wheels);
        run(&mut build, &format!("maturin build --profile {profile} ({PACKAGE})"))?;
        let wheel = std::fs::read_dir(&wheels)
            .map_err(|e| format!("cannot read {}: {e}", wheels.display()))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|e| e == "whl"))
            .ok_or_else(|| format!("maturin built no wheel into {}", wheels.display()))?;
        venv.wheel_bytes = std::fs::metadata(&wheel).map(|m| m.len()).unwrap_or(0);
        let mut install = Command::new(&venv.python);
        install.args(["-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--force-reinstall"]).arg(&wheel);
        run(&mut install, &format!("pip install {} into the virtualenv", wheel.display()))?;
        Ok(venv)
    }

    /// The virtualenv's interpreter.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// The wheel's size in bytes.
    pub fn wheel_bytes(&self) -> u64 {
        self.wheel_bytes
    }

    /// A scratch folder inside the virtualenv's temporary folder.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Venv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `cargo xtask test`'s Python part: the wheel into a throwaway virtualenv, `mypy --strict` on
/// the examples and the package, then pytest against the file store and `postgres_url`.
pub fn test(root: &Path, postgres_url: &str, postgres_bin: &Path) -> Result<(), String> {
    let binary = waypoint_binary(root)?;
    let venv = Venv::with_wheel(root, "dev")?;
    println!("== the wheel is {} bytes (dev profile)", venv.wheel_bytes());
    // The example as a user's code, and the package's own sources and stubs.
    for target in [&["examples/agent_workflow.py"][..], &["-p", "waypoint"]] {
        let mut mypy = Command::new(venv.python());
        mypy.current_dir(root)
            .args(["-m", "mypy", "--strict", "--cache-dir"])
            .arg(venv.scratch("mypy-cache"))
            .args(target);
        run(&mut mypy, &format!("mypy --strict {}", target.join(" ")))?;
    }
    let mut pytest = Command::new(venv.python());
    pytest
        .current_dir(root)
        .args(["-m", "pytest", "-p", "no:cacheprovider", "--basetemp"])
        .arg(venv.scratch("pytest"))
        .arg(Path::new(PACKAGE).join("tests"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("WAYPOINT_BIN", &binary)
        .env("WAYPOINT_TEST_POSTGRES_URL", postgres_url)
        .env("WAYPOINT_TEST_POSTGRES_BIN", postgres_bin)
        .env_remove("WAYPOINT_STORE");
    run(&mut pytest, &format!("pytest {PACKAGE}/tests (file store and PostgreSQL)"))
}
