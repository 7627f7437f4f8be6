//! Step definitions: commands (`Given`/`When`), checks (`Then`), and named steps (outputs, attempts, drift).

mod checks;
mod commands;
mod outputs;
