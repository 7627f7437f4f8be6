//! The CLI's one error type: a stable code, a message, and the exit code of the contract.

use serde_json::{json, Map, Value};
use waypoint_application::{ErrorKind, ServiceError, StoreError};
use waypoint_domain::ResumeIneligibleReason;

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
    pub details: Map<String, Value>,
    /// Lines that show where the problem is (a TOML error's line with a caret under the column),
    /// printed on stderr before the one-line message.
    pub context: Option<String>,
}

impl CliError {
    pub fn new(exit: u8, code: &'static str, message: impl Into<String>) -> Self {
        Self { exit, code, message: message.into(), reasons: Vec::new(), details: Map::new(), context: None }
    }

    pub fn usage(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, code, message)
    }

    pub fn unexpected(message: impl Into<String>) -> Self {
        Self::new(exit::UNEXPECTED, "unexpected", message)
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
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

impl From<waypoint_stores::LocationError> for CliError {
    fn from(err: waypoint_stores::LocationError) -> Self {
        let message = match &err {
            waypoint_stores::LocationError::UnsupportedScheme { scheme } => {
                format!("{scheme}:// stores are not supported; give a directory path or a postgres:// URL to --store")
            }
            _ => "--store is empty; give a directory path".to_owned(),
        };
        CliError::usage(err.code(), message)
    }
}

impl From<ServiceError> for CliError {
    fn from(err: ServiceError) -> Self {
        let exit = match err.kind() {
            ErrorKind::NotFound => exit::NOT_FOUND,
            ErrorKind::NotEligible => exit::NOT_ELIGIBLE,
            ErrorKind::Conflict => exit::CONFLICT,
            ErrorKind::StoreUnreadable => exit::STORE_UNREADABLE,
            ErrorKind::InvalidCommand => exit::INVALID_COMMAND,
            ErrorKind::Unexpected => exit::UNEXPECTED,
        };
        let reasons = err.reasons().map(<[_]>::to_vec).unwrap_or_default();
        let message = format!("{}{}", one_line(&said(&err)), remedy(&err));
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
        cli
    }
}

/// What happened, in words: the library's message, except where the binary words it better.
fn said(err: &ServiceError) -> String {
    match err {
        // The store's message prints the instant with nanoseconds; people read seconds.
        ServiceError::Store(StoreError::Removed { plan_id, removed_at }) => format!(
            "plan {plan_id} was removed by retention at {}; its id is not used again",
            removed_at.format("%Y-%m-%d %H:%M:%S UTC")
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
        _ => fixed_remedy(err).to_owned(),
    }
}

fn fixed_remedy(err: &ServiceError) -> &'static str {
    match err {
        ServiceError::NotFound(_) => "; `waypoint plan list` shows the plans in this store",
        ServiceError::Store(StoreError::Corrupt { .. }) => {
            "; copy the store aside, then run `waypoint store repair` (it keeps a backup)"
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
