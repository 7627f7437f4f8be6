//! The PostgreSQL store's error, and how it maps onto the store port's `StoreError`.

use chrono::{DateTime, Utc};
use waypoint_application::StoreError;
use waypoint_domain::{DecodeError, PlanId};

/// Every failure of the PostgreSQL store. Connection strings in messages are redacted. Converts
/// into the port's [`StoreError`], which is what callers of the service see.
#[derive(Debug, thiserror::Error)]
pub enum PgStoreError {
    /// The server could not be reached, or the connection broke: retrying later may succeed.
    #[error(
        "PostgreSQL at {target} is unavailable ({context}): {}; check that the server is running and reachable",
        describe(.source)
    )]
    Unavailable {
        /// The connection string, password masked.
        target: String,
        /// What the store was doing (`"connect"`, `"read the log"`).
        context: &'static str,
        /// The driver's error.
        source: postgres::Error,
    },
    /// The server accepted the connection but did not answer in time (a hung server, a proxy
    /// that accepts and forwards nowhere, a firewall that drops packets after the handshake).
    #[error(
        "PostgreSQL at {target} did not answer within {} ({context}); check that the server is running and not overloaded, or set connect_timeout in the connection string",
        waypoint_application::engine::format_duration(*.waited)
    )]
    NoAnswer {
        /// The connection string, password masked.
        target: String,
        /// What the store was doing.
        context: &'static str,
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// The connection string does not parse.
    #[error("invalid PostgreSQL connection string {target}: {detail}")]
    InvalidUrl {
        /// The connection string, password masked.
        target: String,
        /// What the parser said.
        detail: String,
    },
    /// The password file (`PGPASSFILE`, `~/.pgpass`) cannot be used: others may read it, or it
    /// cannot be read.
    #[error("the PostgreSQL password file {path} {detail}")]
    PasswordFile {
        /// The file.
        path: String,
        /// What is wrong with it, and the remedy.
        detail: String,
    },
    /// The server answered with an error that is not about the connection.
    #[error("PostgreSQL at {target} refused to {context}: {}", describe(.source))]
    Query {
        /// The connection string, password masked.
        target: String,
        /// What the store was doing.
        context: &'static str,
        /// The driver's error.
        source: postgres::Error,
    },
    /// An append expected another version of the plan: someone appended in between. Nothing
    /// was written.
    #[error("plan {plan_id} changed concurrently: expected version {expected}, found {actual}; reload and try again")]
    Conflict {
        /// The plan appended to.
        plan_id: PlanId,
        /// The version the append expected.
        expected: u32,
        /// The plan's version in the database.
        actual: u32,
    },
    /// The database was migrated by a newer Waypoint; this build neither reads nor writes it.
    #[error(
        "the database at {target} has Waypoint schema version {found}, newer than this build's {supported}; use a newer waypoint"
    )]
    SchemaTooNew {
        /// The connection string, password masked.
        target: String,
        /// The database's schema version.
        found: i32,
        /// This build's, [`SCHEMA_VERSION`](crate::SCHEMA_VERSION).
        supported: i32,
    },
    /// Stored rows break an invariant the store keeps (a catalog row that disagrees with the
    /// log, a value out of range).
    #[error("the database is inconsistent at {location}: {detail}")]
    Corrupt {
        /// Which table, plan or row.
        location: String,
        /// What is wrong.
        detail: String,
    },
    /// A stored event's data cannot be decoded (see [`DecodeError`]).
    #[error("cannot decode the event of plan {plan_id} version {version} at position {position}: {source}")]
    Decode {
        /// The event's plan id, as stored.
        plan_id: String,
        /// The event's version in its plan.
        version: i64,
        /// The event's global position.
        position: i64,
        /// Why it cannot be decoded.
        source: DecodeError,
    },
    /// An append past a numbering limit: a plan's versions or the log's global positions would
    /// pass `u32::MAX`. The message says which, and what to start afresh.
    #[error("{0}")]
    TooLarge(String),
    /// The plan was removed by retention: its id stays taken and nothing is appended to it.
    #[error("plan {plan_id} was removed by retention at {removed_at}; its id is not reused")]
    Removed {
        /// The removed plan.
        plan_id: PlanId,
        /// When it was removed.
        removed_at: DateTime<Utc>,
    },
    /// The database holds no plan with this id, and the operation needs one (a step log belongs
    /// to a plan). Nothing was written.
    #[error("plan {plan_id} not found in the store; create the plan before writing anything of its steps")]
    PlanNotFound {
        /// The plan asked for.
        plan_id: PlanId,
    },
    /// Another session, in this process or another, holds the plan's run lock.
    #[error("plan {plan_id} is being run by another process; wait for it to stop, or resume it once it has")]
    RunLockBusy {
        /// The plan whose lock is held.
        plan_id: PlanId,
    },
    /// The session that held the plan's run lock is gone, and the lock with it.
    #[error("the run lock of plan {plan_id} was lost with its connection; stop working on the plan")]
    RunLockLost {
        /// The plan whose lock was lost.
        plan_id: PlanId,
    },
}

impl PgStoreError {
    /// Whether retrying once PostgreSQL is back could succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, PgStoreError::Unavailable { .. } | PgStoreError::NoAnswer { .. })
    }

    /// Sorts a driver error into `Unavailable` (the connection) or `Query` (the statement).
    pub(crate) fn from_driver(target: &str, context: &'static str, source: postgres::Error) -> Self {
        if is_connection_error(&source) {
            PgStoreError::Unavailable { target: target.to_owned(), context, source }
        } else {
            PgStoreError::Query { target: target.to_owned(), context, source }
        }
    }
}

/// What the driver's error says, in full: the driver's own text names only the kind of failure
/// ("db error", "error connecting to server"); the server's message (with its SQLSTATE, detail
/// and hint) or the cause below (the socket's error) is what tells a person what to fix. A
/// server's message is not secret: it never holds the password.
pub(crate) fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// A broken or refused connection, a server shutting down or not yet accepting connections.
pub(crate) fn is_connection_error(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        // Class 08: connection exception. 57P01-57P03: admin shutdown, crash shutdown, cannot
        // connect now (starting up or in recovery).
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    // No SQLSTATE: the failure happened below the protocol (socket, TLS, timeout).
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    error.to_string().starts_with("error connecting to server")
}

impl From<PgStoreError> for StoreError {
    fn from(error: PgStoreError) -> Self {
        match error {
            PgStoreError::Conflict { plan_id, expected, actual } => StoreError::Conflict { plan_id, expected, actual },
            PgStoreError::Corrupt { location, detail } => StoreError::Corrupt { location, detail },
            PgStoreError::Decode { plan_id, version, position, source } => StoreError::Decode {
                location: format!("position {position} (plan {plan_id} version {version})"),
                source,
            },
            PgStoreError::TooLarge(detail) => StoreError::TooLarge(detail),
            PgStoreError::Removed { plan_id, removed_at } => StoreError::Removed { plan_id, removed_at },
            PgStoreError::PlanNotFound { plan_id } => StoreError::PlanNotFound { plan_id },
            e @ (PgStoreError::RunLockBusy { .. } | PgStoreError::RunLockLost { .. }) => {
                StoreError::Locked(e.to_string())
            }
            PgStoreError::Unavailable { target, context, source } => {
                StoreError::Unavailable { location: target, detail: format!("{context}: {}", describe(&source)) }
            }
            PgStoreError::NoAnswer { target, context, waited } => {
                let detail = PgStoreError::NoAnswer { target: target.clone(), context, waited }.to_string();
                StoreError::Unavailable { location: target, detail }
            }
            e @ (PgStoreError::InvalidUrl { .. }
            | PgStoreError::PasswordFile { .. }
            | PgStoreError::Query { .. }
            | PgStoreError::SchemaTooNew { .. }) => {
                StoreError::io("the PostgreSQL store failed", std::io::Error::other(e.to_string()))
            }
        }
    }
}
