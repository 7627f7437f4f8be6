//! Placeholder until the cucumber harness lands.
fn main() {}
