//! `waypoint-supervise LOCK -- PROGRAM ARGS…`: the step supervisor on its own (see
//! `supervise.rs` and ADR 0008). The runner starts it once per attempt; it links only the
//! supervisor's code, so it starts in a fraction of the time the whole `waypoint` binary takes.

use std::process::ExitCode;

// The runner's half of the module (its registry of live supervisors, the report reader) is not
// used by the supervisor itself.
#[allow(dead_code)]
#[path = "../supervise.rs"]
mod supervise;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    supervise::main(&args)
}
