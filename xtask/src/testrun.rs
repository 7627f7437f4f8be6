//! `cargo xtask test`: the README's test command. Starts a throwaway PostgreSQL (initdb in a
//! temporary directory, a server on 127.0.0.1 at a free port), runs `cargo test --workspace
//! --locked` against it with `WAYPOINT_TEST_POSTGRES_URL` set, then the Python package's tests
//! (`python.rs`: the wheel built with maturin into a throwaway virtualenv, `mypy --strict`,
//! pytest on the file store and the same server), then builds the fuzz target from its lock
//! file, then stops the server and removes its files,
//! also when the tests fail or Ctrl-C is pressed. No server, no test run: the PostgreSQL suite
//! never skips, and neither does the Python one for a missing tool.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use waypoint_store_postgres::testing::{find_server_binaries, TestCluster, BIN_VAR, URL_VAR};

const USAGE: &str = "usage: cargo xtask test [cargo test arguments…]

Starts a throwaway PostgreSQL server (the binaries from $WAYPOINT_TEST_POSTGRES_BIN or
/usr/lib/postgresql/*/bin; install them with e.g. `apt-get install postgresql`), runs
`cargo test --workspace --locked` with WAYPOINT_TEST_POSTGRES_URL pointing at it, passing any
further arguments on (with -p/--package, only those packages: `cargo xtask test -p waypoint-python`
runs the Python suite alone), then builds the Python package's wheel with maturin into a
throwaway virtualenv, runs `mypy --strict` on the examples and pytest on crates/waypoint-python/tests
against the file store and the same server, then (a whole run) builds the file store's fuzz target
from its own lock file, and removes the server again. maturin, pytest and mypy
must be installed in python3 (or $WAYPOINT_PYTHON): `python3 -m pip install maturin pytest mypy`.
As root, the server runs as user `postgres`.";

pub fn main(root: &Path, args: &[String]) -> ExitCode {
    if args.first().is_some_and(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    // Ctrl-C reaches cargo, the tests and the server too; this process only has to survive it
    // to clean up, so the signal just sets a flag.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, interrupted.clone()) {
            eprintln!("xtask test: cannot handle signal {signal}: {e}");
        }
    }
    let bin = match find_server_binaries() {
        Ok(bin) => bin,
        Err(e) => {
            eprintln!("xtask test: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cluster = match TestCluster::start(&bin) {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!("xtask test: cannot start a throwaway PostgreSQL with {}: {e}", bin.display());
            return ExitCode::FAILURE;
        }
    };
    println!("== {} started on 127.0.0.1:{} (data in {})", cluster.version(), cluster.port(), cluster.dir().display());
    println!("== {URL_VAR}={}", cluster.url());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // `-p NAME` narrows the run to those packages; otherwise every package's tests run.
    let narrowed = args.iter().any(|a| a == "-p" || a == "--package" || a.starts_with("--package="));
    let scope: &[&str] = if narrowed { &["test", "--locked"] } else { &["test", "--workspace", "--locked"] };
    println!("== cargo {} {}", scope.join(" "), args.join(" "));
    let status = Command::new(cargo)
        .current_dir(root)
        .args(scope)
        .args(args)
        .env(URL_VAR, cluster.url())
        .env(BIN_VAR, &bin)
        .status();
    let mut code = match status {
        Ok(status) if status.success() && !interrupted.load(Ordering::SeqCst) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("xtask test: cargo test {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xtask test: cannot run cargo test: {e}");
            ExitCode::FAILURE
        }
    };
    if code == ExitCode::SUCCESS {
        if let Err(e) = crate::python::test(root, &cluster.url(), &bin) {
            eprintln!("xtask test: the Python package: {e}");
            code = ExitCode::FAILURE;
        }
        if interrupted.load(Ordering::SeqCst) {
            code = ExitCode::FAILURE;
        }
    }
    if code == ExitCode::SUCCESS && !narrowed {
        if let Err(e) = fuzz_target_builds(root) {
            eprintln!("xtask test: the fuzz target: {e}");
            code = ExitCode::FAILURE;
        }
    }
    println!("== stopping PostgreSQL and removing {}", cluster.dir().display());
    drop(cluster);
    code
}

/// The file store's fuzz target (its own workspace, with its own lock file) still builds from its
/// locked dependencies: a dependency the store gains must reach that lock file too. It shares the
/// workspace's target directory, so only the fuzz harness itself is compiled again.
fn fuzz_target_builds(root: &Path) -> Result<(), String> {
    let manifest = root.join("crates/waypoint-store-file/fuzz/Cargo.toml");
    println!("== the fuzz target builds (cargo build --locked --manifest-path {})", manifest.display());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--locked", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build {status}; if its lock file is behind, run `cargo update --offline --manifest-path {}`",
            manifest.display()
        ))
    }
}
