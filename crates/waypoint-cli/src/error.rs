//! The CLI's one error type: a stable code, a message, and the exit code of the contract.

use serde_json::{json, Map, Value};
use std::path::Path;
use waypoint_application::engine::EngineError;
use waypoint_application::{ErrorKind, ServiceError, StoreError};

use waypoint_domain::{ChangedStep, PlanError, PlanId, ResumeIneligibleReason, ResumeSummary, StepChange, StepNumber};

use crate::text::{local_time, shown_path};

/// Exit codes, as `waypoint --help` and the contract list them. A service error's code follows
/// its kind, as [`ErrorKind::exit_code`] gives it to the Python package (a unit test keeps the
/// two equal).
pub mod exit {
    pub const OK: u8 = 0;
    pub const UNEXPECTED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const NOT_ELIGIBLE: u8 = 4;
    pub const CONFLICT: u8 = 5;
    pub const STORE_UNREADABLE: u8 = 6;
    pub const INVALID_COMMAND: u8 = 7;
    pub const SIGINT: u8 = 130;
    pub const SIGTERM: u8 = 143;
}

/// A failure that ends the command: printed once (a line on stderr, and in JSON mode an error
/// object on stdout) and turned into the exit code.
#[derive(Debug)]
pub struct CliError {
    pub exit: u8,
    pub code: &'static str,
    pub message: String,
    pub reasons: Vec<ResumeIneligibleReason>,
    /// Extra keys for the JSON error object, such as `plan_id` or `step`.
    /// In the order added; a key added again replaces its value. (A list, not a map: an error
    /// travels in every `Result` of the binary, so it stays small.)
    pub details: Vec<(String, Value)>,
    /// Lines that show where the problem is (a TOML error's line with a caret under the column),
    /// printed on stderr before the one-line message.
    pub context: Option<String>,
}

impl CliError {
    pub fn new(exit: u8, code: &'static str, message: impl Into<String>) -> Self {
        let message = bounded(message.into());
        Self { exit, code, message, reasons: Vec::new(), details: Vec::new(), context: None }
    }

    pub fn usage(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, code, message)
    }

    pub fn unexpected(message: impl Into<String>) -> Self {
        Self::new(exit::UNEXPECTED, "unexpected", message)
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        let value = match value.into() {
            Value::String(text) => Value::String(bounded(text)),
            other => other,
        };
        match self.details.iter_mut().find(|(k, _)| k == key) {
            Some((_, held)) => *held = value,
            None => self.details.push((key.to_owned(), value)),
        }
        self
    }

    pub fn with_context(mut self, context: String) -> Self {
        self.context = Some(context);
        self
    }

    pub fn with_reasons(mut self, reasons: Vec<ResumeIneligibleReason>) -> Self {
        self.reasons = reasons;
        self
    }

    /// `{"error": {"code", "message", "reasons"?, …details}}`.
    pub fn to_json(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(self.message));
        if self.exit == exit::NOT_ELIGIBLE || !self.reasons.is_empty() {
            error.insert("reasons".into(), json!(self.reasons));
        }
        for (key, value) in &self.details {
            error.insert(key.clone(), value.clone());
        }
        json!({ "error": error })
    }
}

/// The most characters of an error's message (or of one of its text details) that the binary
/// prints, on a terminal or in a JSON document: a 100 KB argument echoed whole helps nobody.
pub const MAX_ERROR_CHARS: usize = 2000;

/// `text`, or its beginning and end around a note of how much was cut when it is longer than
/// [`MAX_ERROR_CHARS`].
fn bounded(text: String) -> String {
    let count = text.chars().count();
    if count <= MAX_ERROR_CHARS {
        return text;
    }
    let note = format!(" …({} characters cut)… ", count - (MAX_ERROR_CHARS - 100));
    let keep = (MAX_ERROR_CHARS - 100) / 2;
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(count - keep).collect();
    format!("{head}{note}{tail}")
}

impl From<waypoint_stores::LocationError> for CliError {
    fn from(err: waypoint_stores::LocationError) -> Self {
        let message = match &err {
            waypoint_stores::LocationError::UnsupportedScheme { scheme } => {
                format!("{scheme}:// stores are not supported; give a directory path or a postgres:// URL to --store")
            }
            waypoint_stores::LocationError::Malformed { scheme } => format!(
                "--store looks like a URL with a malformed or unknown scheme ({scheme}:…); write postgres://USER@HOST/DB, or a directory path"
            ),
            _ => "--store is empty; give a directory path".to_owned(),
        };
        CliError::usage(err.code(), message)
    }
}

impl From<ServiceError> for CliError {
    fn from(err: ServiceError) -> Self {
        let remedy = remedy(&err);
        CliError::service(err, &remedy)
    }
}

impl CliError {
    /// The service's failure `err`, with `remedy` (`; what to do next`) after what happened.
    pub fn service(err: ServiceError, remedy: &str) -> Self {
        let exit = match err.kind() {
            ErrorKind::NotFound => exit::NOT_FOUND,
            ErrorKind::NotEligible => exit::NOT_ELIGIBLE,
            ErrorKind::Conflict => exit::CONFLICT,
            ErrorKind::StoreUnreadable => exit::STORE_UNREADABLE,
            ErrorKind::InvalidCommand => exit::INVALID_COMMAND,
            ErrorKind::Unexpected => exit::UNEXPECTED,
        };
        let reasons = err.reasons().map(<[_]>::to_vec).unwrap_or_default();
        let message = format!("{}{remedy}", one_line(&said(&err)));
        let mut cli = CliError::new(exit, err.code(), message).with_reasons(reasons);
        match &err {
            ServiceError::NotFound(id)
            | ServiceError::Plan { plan_id: id, .. }
            | ServiceError::Store(StoreError::Removed { plan_id: id, .. }) => {
                cli = cli.with("plan_id", id.as_str());
            }
            ServiceError::Removed(removal) => {
                cli = cli
                    .with("plan_id", removal.plan_id.as_str())
                    .with("removed_at", removal.removed_at.to_rfc3339())
                    .with("archive", removal.archive.as_str());
            }
            _ => {}
        }
        if let ServiceError::Store(StoreError::Removed { removed_at, .. }) = &err {
            cli = cli.with("removed_at", removed_at.to_rfc3339());
        }
        if let Some(changed) = changed_since_completed(&err) {
            let listed = serde_json::to_value(changed).expect("changed steps serialize");
            cli = cli.with("changed_steps", listed).with("from_step", changed[0].step.get());
        }
        cli
    }
}

/// The steps whose change since they completed refused a resume, when that is what `err` is.
pub fn changed_since_completed(err: &ServiceError) -> Option<&[ChangedStep]> {
    match err {
        ServiceError::Plan { source: PlanError::NotEligible { changed_steps, .. }, .. }
            if !changed_steps.is_empty() =>
        {
            Some(changed_steps)
        }
        _ => None,
    }
}

/// What happened, in words: the library's message, except where the binary words it better.
fn said(err: &ServiceError) -> String {
    match err {
        // Times as people read them everywhere in this binary: local, to the second.
        ServiceError::Store(StoreError::Removed { plan_id, removed_at }) => {
            format!("plan {plan_id} was removed by retention at {}; its id is not used again", local_time(*removed_at))
        }
        ServiceError::Removed(removal) => format!(
            "plan {} was removed by retention at {}; its {} events are archived in {}",
            removal.plan_id,
            local_time(removal.removed_at),
            removal.version,
            removal.archive
        ),
        _ => err.to_string(),
    }
}

/// What to do next, in this binary's own commands. Library errors say what happened; the remedy
/// belongs here, where the commands it names exist.
fn remedy(err: &ServiceError) -> String {
    match err {
        ServiceError::Removed(removal) => format!(
            "; `waypoint --store {} plan show {}` reads it there",
            shell_word(&removal.archive),
            removal.plan_id
        ),
        ServiceError::Store(StoreError::Removed { .. }) => "; give the new plan another id".to_owned(),
        ServiceError::ArchiveConflict { .. } => "; give another archive with --archive".to_owned(),
        ServiceError::Plan { plan_id, source: PlanError::NotEligible { changed_steps, .. } } => {
            rerun_command(plan_id, None, changed_steps)
                .map_or(String::new(), |(from, command)| format!("; `{command}` runs it again from step {from}"))
        }
        _ => fixed_remedy(err).to_owned(),
    }
}

fn fixed_remedy(err: &ServiceError) -> &'static str {
    match err {
        ServiceError::NotFound(_) => "; `waypoint plan list` shows the plans in this store",
        // The error does not say which store: the remedy names what holds for each.
        ServiceError::Store(StoreError::Corrupt { .. }) => {
            "; `waypoint store verify` names the damage; a directory store: copy it aside, then run `waypoint store repair` (it keeps a backup)"
        }
        ServiceError::Store(StoreError::Decode { .. }) => {
            "; upgrade Waypoint, or run `waypoint store verify` to see the damage"
        }
        ServiceError::Store(StoreError::Unavailable { .. }) => "; check that the server is running and reachable",
        ServiceError::Store(StoreError::Poisoned(_)) => "; run the command again, which reopens the store",
        ServiceError::Store(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::StorageFull => {
            "; free space on the disk that holds the store (the copies in its backup/ and torn/ directories may go), then run the command again"
        }
        _ => "",
    }
}

/// The command that runs a plan again from the first of its `changed` steps that its definition
/// still has (a removed step is past its end): `waypoint run --from-step N FILE` for the plan of
/// the plan file at `file`, `waypoint plan fork ID --from-step N` for any other plan.
pub fn rerun_command(plan_id: &PlanId, file: Option<&Path>, changed: &[ChangedStep]) -> Option<(StepNumber, String)> {
    let from = changed.iter().find(|c| c.change != StepChange::Removed)?.step;
    let command = match file {
        Some(file) => format!("waypoint run --from-step {from} {}", shell_word(&shown_path(file))),
        None => format!("waypoint plan fork {plan_id} --from-step {from}"),
    };
    Some((from, command))
}

/// `text` as one shell word: as it is when that is safe, otherwise in single quotes.
fn shell_word(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Messages go on one line of stderr: fold any embedded newlines.
pub fn one_line(text: &str) -> String {
    text.split('\n').map(str::trim_end).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The CLI's error for an engine refusal or failure.
pub fn engine_error(plan_id: &PlanId, error: EngineError) -> CliError {
    match error {
        EngineError::StillRunning { plan_id } => crate::store::run_lock_busy(&plan_id),
        EngineError::Service(service) => service.into(),
        EngineError::RunLock(lost) => ServiceError::RunLock(lost).into(),
        EngineError::NotResumable { plan_id, reasons, summary } => not_resumable(plan_id, reasons, &summary).into(),
        EngineError::StepMismatch { step, recorded, given } => {
            ServiceError::Plan { plan_id: plan_id.clone(), source: PlanError::StepMismatch { step, recorded, given } }
                .into()
        }
        EngineError::StepFailed { message, .. } => CliError::new(exit::UNEXPECTED, "step_failed", message.to_string()),
        other => CliError::unexpected(format!("plan {plan_id}: {other}")),
    }
}

/// A refused resume as the service words it: every reason, and the steps that changed since
/// they completed.
pub fn not_resumable(plan_id: PlanId, reasons: Vec<ResumeIneligibleReason>, summary: &ResumeSummary) -> ServiceError {
    let changed_steps = summary.changed_steps.iter().filter(|c| c.completed).cloned().collect();
    ServiceError::Plan { plan_id, source: PlanError::NotEligible { reasons, changed_steps } }
}
