//! Step definitions: commands (`Given`/`When`), checks (`Then`), named steps (outputs, attempts,
//! drift), forks, leases and retention.

mod checks;
mod commands;
mod forks;
mod leases;
mod outputs;
mod retention;
