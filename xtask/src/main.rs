//! Project automation, run as `cargo xtask <command>`: checks and tools that need no install step.
//!
//! Each command is one arm of the `match` in `main` and one row of `COMMANDS`, which the usage
//! message is built from. `tidy` needs std only; `replay` and `bench` use the workspace's own crates.

mod bench;
mod proc_status;
mod python;
mod replay;
mod testrun;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Every command, with the one line the usage message shows for it.
const COMMANDS: &[(&str, &str)] = &[
    ("test", "run the workspace's and the Python package's tests against a throwaway PostgreSQL"),
    ("tidy", "check .rs file headers, forbidden test attributes and crate dependency direction"),
    ("replay", "rebuild every projection from the log; --verify compares them with the stored ones"),
    ("bench", "measure speed and memory against same-run baselines; --quick for a smoke run"),
];

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    match command.as_deref() {
        Some("test") => testrun::main(&workspace_root(), &rest),
        Some("tidy") => tidy::main(&workspace_root(), &rest),
        Some("replay") => replay::main(&rest),
        Some("bench") => bench::main(&workspace_root(), &rest),
        Some("help" | "-h" | "--help") => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        None => {
            eprint!("{}", usage());
            ExitCode::from(2)
        }
        Some(other) => {
            eprint!("unknown command {other:?}\n\n{}", usage());
            ExitCode::from(2)
        }
    }
}

fn usage() -> String {
    let mut text = String::from("usage: cargo xtask <command> [args]\n\ncommands:\n");
    let width = COMMANDS.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, about) in COMMANDS {
        text.push_str(&format!("  {name:<width$}  {about}\n"));
    }
    text
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}
