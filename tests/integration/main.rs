//! One integration-test binary: each module is a capability under test.

mod bench_smoke;
mod cli_bad_input;
mod cli_harness;
mod cli_plumbing;
mod cli_reads;
mod cli_runner;
mod cli_store;
mod domain_coverage;
mod domain_history;
mod domain_snapshots;
mod replay_cli;
mod replay_property;
mod service_async;
mod service_create;
mod store_child;
mod store_concurrency;
mod store_fixture_layout;
mod store_hardening;
mod store_kill_loop;
mod store_locks;
mod store_scale;
