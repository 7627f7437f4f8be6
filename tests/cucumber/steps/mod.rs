//! Step definitions: commands (`Given`/`When`), checks (`Then`), named steps (outputs, attempts,
//! drift), workflows over the step engine, forks and retention.

mod checks;
mod commands;
mod engine;
mod forks;
mod outputs;
mod retention;
