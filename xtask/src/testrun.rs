//! `cargo xtask test`: the README's test command. Starts a throwaway PostgreSQL (initdb in a
//! temporary directory, a server on 127.0.0.1 at a free port), runs `cargo test --workspace
//! --locked` against it with `WAYPOINT_TEST_POSTGRES_URL` set, then stops the server and removes
//! its files, also when the tests fail or Ctrl-C is pressed. No server, no test run: the
//! PostgreSQL suite never skips.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use waypoint_store_postgres::testing::{find_server_binaries, TestCluster, BIN_VAR, URL_VAR};

const USAGE: &str = "usage: cargo xtask test [cargo test arguments…]

Starts a throwaway PostgreSQL server (the binaries from $WAYPOINT_TEST_POSTGRES_BIN or
/usr/lib/postgresql/*/bin; install them with e.g. `apt-get install postgresql`), runs
`cargo test --workspace --locked` with WAYPOINT_TEST_POSTGRES_URL pointing at it, passing any
further arguments on, and removes the server again. As root, the server runs as user `postgres`.";

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
    println!("== cargo test --workspace --locked {}", args.join(" "));
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["test", "--workspace", "--locked"])
        .args(args)
        .env(URL_VAR, cluster.url())
        .env(BIN_VAR, &bin)
        .status();
    let code = match status {
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
    println!("== stopping PostgreSQL and removing {}", cluster.dir().display());
    drop(cluster);
    code
}
