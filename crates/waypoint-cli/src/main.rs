//! `waypoint`: the command line of Waypoint. Parses arguments, runs one command, prints its result,
//! and turns any failure into the contract's exit code (see `waypoint --help`).

mod attempt;
mod capture;
mod cli;
mod commands;
mod compact;
mod definition;
mod error;
mod keys;
mod logs;
mod operate;
mod outputs;
mod plan_file;
mod progress;
mod render;
mod runner;
mod sidecar;
mod signals;
mod steps;
mod store;
mod supervise;
mod text;
mod ui;
mod web;
mod worker;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::ErrorKind as ClapErrorKind;
use clap::Parser;

use crate::cli::{Cli, Format};
use crate::error::{exit, CliError};
use crate::ui::Ui;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == supervise::ARG) {
        return supervise::main();
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err, json_requested(&args)),
    };
    // Traces and operator logs, as OTEL_* and WAYPOINT_LOG ask (ADR 0016): the engine makes the
    // spans; here they are exported, under the trace this process was started in, if any.
    waypoint_telemetry::init_logs();
    let telemetry = waypoint_telemetry::Telemetry::from_env();
    let parent = telemetry.parent_from_env();
    let ui = Ui::new(cli.format, cli.verbose);
    let code = match commands::execute(cli, &ui).and_then(|()| ui::stdout_failure().map_or(Ok(()), Err)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            ui.error(&err);
            ExitCode::from(err.exit)
        }
    };
    drop(parent);
    telemetry.shutdown();
    code
}

/// Help and version go to stdout with exit 0; every other parse failure is a usage error (exit 2),
/// in JSON mode with an error object on stdout too.
fn usage_error(err: &clap::Error, json: bool) -> ExitCode {
    if matches!(err.kind(), ClapErrorKind::DisplayHelp | ClapErrorKind::DisplayVersion) {
        let _ = err.print();
        return ExitCode::from(exit::OK);
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_owned();
    let ui = Ui::new(if json { Format::Json } else { Format::Rich }, false);
    let bad_value = matches!(err.kind(), ClapErrorKind::ValueValidation | ClapErrorKind::InvalidValue);
    let error = CliError::usage(if bad_value { "invalid_value" } else { "usage" }, first);
    // A bad value says all there is to say in one line; other mistakes deserve clap's usage text.
    if bad_value {
        ui.error(&error);
    } else {
        if json {
            ui.json_document(&error.to_json());
        }
        let _ = err.print();
    }
    ExitCode::from(exit::USAGE)
}

/// Whether the arguments ask for JSON, read without clap (which has just refused them). As in
/// clap, the last `--format` wins.
fn json_requested(args: &[OsString]) -> bool {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let mut json = false;
    for (i, arg) in args.iter().enumerate() {
        if let Some(value) = arg.strip_prefix("--format=") {
            json = value == "json";
        } else if *arg == "--format" {
            json = args.get(i + 1) == Some(&"json");
        }
    }
    json
}
