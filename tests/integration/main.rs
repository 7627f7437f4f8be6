//! One integration-test binary: each module is a capability under test.
