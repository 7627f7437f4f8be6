//! The executable specification: every scenario in `features/`, run once per store.
//!
//! Skipped or undefined steps fail the run, and any failure makes the process exit non-zero.

mod steps;
mod stores;
mod world;

use std::path::PathBuf;

use cucumber::cli::{Opts, Parser as _};
use cucumber::writer::Stats as _;
use cucumber::World as _;
use waypoint_application::domain::ResumeIneligibleReason;

use crate::stores::StoreKind;
use crate::world::{PlanWorld, REACHED};

fn main() {
    let features = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../features");
    let mut failed = Vec::new();
    for &kind in StoreKind::ALL {
        println!("\n=== store: {} ===", kind.name());
        let run = PlanWorld::cucumber()
            .fail_on_skipped()
            .before(move |_, _, _, world| Box::pin(async move { world.open(kind) }))
            .with_cli(cli());
        let writer = futures::executor::block_on(run.run(&features));
        if writer.execution_has_failed() {
            failed.push(kind.name());
        }
    }
    report_reached();
    if !failed.is_empty() {
        eprintln!("the specification failed against: {}", failed.join(", "));
        std::process::exit(1);
    }
}

/// The cucumber options from the command line, or the defaults when the arguments are meant
/// for another test binary (`cargo test <filter>` hands its filter to every target).
fn cli<P, R, W>() -> Opts<P, R, W>
where
    P: cucumber::cli::Args + Default,
    R: cucumber::cli::Args + Default,
    W: cucumber::cli::Args + Default,
{
    Opts::try_parse().unwrap_or_else(|error| {
        // Help and version are not errors: clap prints them on stdout and exits.
        if !error.use_stderr() {
            error.exit();
        }
        eprintln!("ignoring arguments meant for another test binary; run every scenario");
        Opts::default()
    })
}

/// Lists the typed refusals and ineligibility reasons the scenarios reached, and the reasons
/// none reached, so a gap in the specification shows.
fn report_reached() {
    let reached = REACHED.lock().unwrap_or_else(|p| p.into_inner());
    let missing: Vec<&str> =
        ResumeIneligibleReason::ALL.iter().map(|r| r.code()).filter(|code| !reached.contains(*code)).collect();
    println!("\nreached: {}", reached.iter().cloned().collect::<Vec<_>>().join(", "));
    println!("reasons never reached: {}", if missing.is_empty() { "none".to_owned() } else { missing.join(", ") });
}
