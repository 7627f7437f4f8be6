//! Step definitions: commands (`Given`/`When`), checks (`Then`), named steps (outputs, attempts,
//! drift), workflows over the step engine, forks, leases, queues and retention.

mod checks;
mod commands;
mod engine;
mod forks;
mod leases;
mod outputs;
mod people;
mod queues;
mod retention;
