//! Step definitions: commands (`Given`/`When`), checks (`Then`), named steps (outputs, attempts,
//! drift), forks and retention.

mod checks;
mod commands;
mod forks;
mod outputs;
mod retention;
