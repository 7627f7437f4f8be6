//! One integration-test binary: each module is a capability under test.
mod cli_harness;
mod cli_plumbing;
