//! Step definitions: commands (`Given`/`When`), checks (`Then`), named steps (outputs, attempts,
//! drift), workflows over the step engine, forks, leases and retention.

mod checks;
mod commands;
mod engine;
mod forks;
mod leases;
mod outputs;
mod people;
mod retention;
