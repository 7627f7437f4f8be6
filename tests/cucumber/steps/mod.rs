//! Step definitions: commands (`Given`/`When`) and checks (`Then`).

mod checks;
mod commands;
