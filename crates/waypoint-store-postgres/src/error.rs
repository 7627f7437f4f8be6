//! The PostgreSQL store's error, and how it maps onto the store port's `StoreError`.

use waypoint_application::StoreError;
use waypoint_domain::{DecodeError, PlanId};

/// Every failure of the PostgreSQL store. Connection strings in messages are redacted.
#[derive(Debug, thiserror::Error)]
pub enum PgStoreError {
    /// The server could not be reached, or the connection broke: retrying later may succeed.
    #[error(
        "PostgreSQL at {target} is unavailable ({context}): {source}; check that the server is running and reachable"
    )]
    Unavailable { target: String, context: &'static str, source: postgres::Error },
    #[error("invalid PostgreSQL connection string {target}: {detail}")]
    InvalidUrl { target: String, detail: String },
    /// The server answered with an error that is not about the connection.
    #[error("PostgreSQL at {target} refused to {context}: {source}")]
    Query { target: String, context: &'static str, source: postgres::Error },
    #[error("plan {plan_id} changed concurrently: expected version {expected}, found {actual}; reload and try again")]
    Conflict { plan_id: PlanId, expected: u32, actual: u32 },
    #[error(
        "the database at {target} has Waypoint schema version {found}, newer than this build's {supported}; use a newer waypoint"
    )]
    SchemaTooNew { target: String, found: i32, supported: i32 },
    #[error("the database is inconsistent at {location}: {detail}")]
    Corrupt { location: String, detail: String },
    #[error("cannot decode the event of plan {plan_id} version {version} at position {position}: {source}")]
    Decode { plan_id: String, version: i64, position: i64, source: DecodeError },
    #[error("{0}")]
    TooLarge(String),
    #[error("plan {plan_id} is being run by another process; wait for it to stop, or resume it once it has")]
    RunLockBusy { plan_id: PlanId },
    #[error("the run lock of plan {plan_id} was lost with its connection; stop working on the plan")]
    RunLockLost { plan_id: PlanId },
}

impl PgStoreError {
    /// Whether retrying once PostgreSQL is back could succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, PgStoreError::Unavailable { .. })
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
            e @ (PgStoreError::RunLockBusy { .. } | PgStoreError::RunLockLost { .. }) => {
                StoreError::Locked(e.to_string())
            }
            PgStoreError::Unavailable { target, context, source } => {
                StoreError::Unavailable { location: target, detail: format!("{context}: {source}") }
            }
            e @ (PgStoreError::InvalidUrl { .. } | PgStoreError::Query { .. } | PgStoreError::SchemaTooNew { .. }) => {
                StoreError::io("the PostgreSQL store failed", std::io::Error::other(e.to_string()))
            }
        }
    }
}
