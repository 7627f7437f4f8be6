//! `waypoint-supervise`: the step supervisor on its own (see `supervise.rs` and ADR 0008). A
//! runner starts it once per run and hands it each attempt over its stdin, a Unix socket; it
//! links only the supervisor's code, so it starts in a fraction of the time the whole `waypoint`
//! binary takes.

use std::process::ExitCode;

// The runner's half of the module (the `Supervisor` handle, its registry of live supervisors) is
// not used by the supervisor itself.
#[allow(dead_code)]
#[path = "../supervise.rs"]
mod supervise;

fn main() -> ExitCode {
    supervise::main()
}
