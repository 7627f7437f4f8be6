//! Step definitions: commands (`Given`/`When`), checks (`Then`), named steps (outputs, attempts,
//! drift) and forks.

mod checks;
mod commands;
mod forks;
mod outputs;
