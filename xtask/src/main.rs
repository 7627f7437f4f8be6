//! Project automation: `cargo xtask tidy`.
fn main() {}
