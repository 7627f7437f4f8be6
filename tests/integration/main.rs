//! One integration-test binary: each module is a capability under test.

mod domain_coverage;
mod domain_history;
mod domain_snapshots;
mod replay_property;
mod cli_harness;
mod cli_plumbing;
