//! One integration-test binary: each module is a capability under test.

mod domain_coverage;
mod domain_history;
mod domain_snapshots;
mod replay_property;
mod cli_harness;
mod cli_plumbing;
mod store_child;
mod store_concurrency;
mod store_kill_loop;
mod store_locks;
mod cli_runner;
mod cli_reads;
mod cli_bad_input;
