//! Stores by location: a `--store` value (a directory, or a `postgres://` URL) parsed into a
//! [`StoreLocation`] and opened as one [`AnyStore`] behind the store port. The one place a
//! location picks a store, shared by the `waypoint` binary and the Python package, so both open
//! the same store, with the same run locks, from the same words.
//!
//! ```
//! use waypoint_stores::StoreLocation;
//!
//! let dir = tempfile::tempdir()?;
//! let location = StoreLocation::parse(dir.path().join("store").to_str().unwrap())?;
//! let store = location.open()?; // created on first use
//! # let _ = store;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eventually::store::{EventStore, EventStream, Expected, Select};
use futures::future::BoxFuture;
use waypoint_application::{
    PlanStore, PlanView, RecordedEvent, Removal, RemovalReport, RunLocks, StepLog, StoreError, StoreStats, StoredEvent,
    VerifyReport,
};
use waypoint_domain::{Attempt, PlanId, StepNumber};
use waypoint_store_file::{FileStore, FileStoreError};
use waypoint_store_postgres::PostgresStore;

/// Every store a location can name, behind the one port. Adding a store is a variant here, a
/// line in `delegate!` and a case in [`StoreLocation::parse`].
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// The embedded file log in a directory.
    File(FileStore),
    /// The PostgreSQL store, for plans shared by many machines.
    Postgres(PostgresStore),
}

macro_rules! delegate {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            AnyStore::File($s) => $call,
            AnyStore::Postgres($s) => $call,
        }
    };
}

impl EventStore for AnyStore {
    type SourceId = PlanId;
    type Event = RecordedEvent;
    type Error = StoreError;

    fn append(
        &mut self,
        source_id: PlanId,
        version: Expected,
        events: Vec<RecordedEvent>,
    ) -> BoxFuture<'_, Result<u32, StoreError>> {
        delegate!(self, s => s.append(source_id, version, events))
    }

    fn stream(&self, source_id: PlanId, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        delegate!(self, s => s.stream(source_id, select))
    }

    fn stream_all(&self, select: Select) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        delegate!(self, s => s.stream_all(select))
    }

    fn remove(&mut self, source_id: PlanId) -> BoxFuture<'_, Result<(), StoreError>> {
        delegate!(self, s => s.remove(source_id))
    }
}

impl PlanStore for AnyStore {
    fn run_locks(&self) -> Arc<dyn RunLocks> {
        delegate!(self, s => PlanStore::run_locks(s))
    }

    fn content_fingerprint(&self) -> BoxFuture<'_, Result<String, StoreError>> {
        delegate!(self, s => s.content_fingerprint())
    }

    fn now(&self) -> BoxFuture<'_, Result<chrono::DateTime<chrono::Utc>, StoreError>> {
        delegate!(self, s => s.now())
    }

    fn load_view<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<PlanView>, StoreError>> {
        delegate!(self, s => s.load_view(plan_id))
    }

    fn load_summary_view<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<PlanView>, StoreError>> {
        delegate!(self, s => s.load_summary_view(plan_id))
    }

    fn catalog(&self) -> BoxFuture<'_, Result<Vec<PlanView>, StoreError>> {
        delegate!(self, s => s.catalog())
    }

    fn open_catalog(&self) -> BoxFuture<'_, Result<Vec<PlanView>, StoreError>> {
        delegate!(self, s => s.open_catalog())
    }

    fn open_catalog_parts(&self) -> BoxFuture<'_, Result<Vec<Vec<PlanView>>, StoreError>> {
        delegate!(self, s => s.open_catalog_parts())
    }

    fn catalog_page<'a>(
        &'a self,
        query: &'a waypoint_application::CatalogQuery,
    ) -> BoxFuture<'a, Result<Vec<PlanView>, StoreError>> {
        delegate!(self, s => s.catalog_page(query))
    }

    fn walk_catalog<'a>(
        &'a self,
        query: waypoint_application::CatalogQuery,
        visit: &'a mut (dyn FnMut(Vec<PlanView>) -> bool + Send),
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        delegate!(self, s => s.walk_catalog(query, visit))
    }

    fn verify(&self) -> BoxFuture<'_, Result<VerifyReport, StoreError>> {
        delegate!(self, s => s.verify())
    }

    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, StoreError>> {
        delegate!(self, s => s.stats())
    }

    fn remove_plans<'a>(
        &'a self,
        plans: &'a [(PlanId, u32)],
        removed_at: chrono::DateTime<chrono::Utc>,
        archive: &'a str,
    ) -> BoxFuture<'a, Result<RemovalReport, StoreError>> {
        delegate!(self, s => s.remove_plans(plans, removed_at, archive))
    }

    fn removal<'a>(&'a self, plan_id: &'a PlanId) -> BoxFuture<'a, Result<Option<Removal>, StoreError>> {
        delegate!(self, s => s.removal(plan_id))
    }

    fn removals_with_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Removal>, StoreError>> {
        delegate!(self, s => s.removals_with_prefix(prefix))
    }

    fn import_plans(&self, histories: Vec<Vec<StoredEvent>>) -> BoxFuture<'_, Result<(), StoreError>> {
        delegate!(self, s => s.import_plans(histories))
    }

    fn put_step_log<'a>(&'a self, plan_id: &'a PlanId, log: StepLog) -> BoxFuture<'a, Result<(), StoreError>> {
        delegate!(self, s => s.put_step_log(plan_id, log))
    }

    fn step_logs<'a>(
        &'a self,
        plan_id: &'a PlanId,
        step: Option<StepNumber>,
        attempt: Option<Attempt>,
    ) -> BoxFuture<'a, Result<Vec<StepLog>, StoreError>> {
        delegate!(self, s => s.step_logs(plan_id, step, attempt))
    }

    fn queue_plans<'a>(
        &'a self,
        queue: &'a waypoint_application::domain::QueueName,
    ) -> BoxFuture<'a, Result<Vec<waypoint_application::PlanView>, StoreError>> {
        delegate!(self, s => PlanStore::queue_plans(s, queue))
    }

    fn lock_queue<'a>(
        &'a self,
        queue: &'a waypoint_application::domain::QueueName,
    ) -> BoxFuture<'a, Result<waypoint_application::QueueLock, StoreError>> {
        delegate!(self, s => PlanStore::lock_queue(s, queue))
    }

    fn queue_limits(&self) -> BoxFuture<'_, Result<Vec<waypoint_application::QueueLimit>, StoreError>> {
        delegate!(self, s => PlanStore::queue_limits(s))
    }

    fn set_queue_limit<'a>(
        &'a self,
        queue: &'a waypoint_application::domain::QueueName,
        limit: Option<u32>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        delegate!(self, s => PlanStore::set_queue_limit(s, queue, limit))
    }
}

/// A parsed store location: a directory, or a PostgreSQL URL.
#[derive(Clone)]
pub enum StoreLocation {
    /// The embedded file store in this directory.
    Dir(PathBuf),
    /// A PostgreSQL database; the URL may hold a password, so it is never shown as it is.
    Postgres(String),
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreLocation({})", self.display())
    }
}

/// A location that names no store this build can open. Nothing was opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocationError {
    /// The location is the empty string.
    #[error("the store location is empty; give a directory path or a postgres:// URL")]
    Empty,
    /// A URL of a scheme no store serves.
    #[error("{scheme}:// stores are not supported; give a directory path or a postgres:// URL")]
    UnsupportedScheme {
        /// The scheme, as given (at most 40 characters of it).
        scheme: String,
    },
    /// Something like a URL gone wrong (`postgres:/user:pw@host/db`, one slash): never taken
    /// for a directory, whose name would hold the password.
    #[error("the store location looks like a URL with a malformed or unknown scheme ({scheme}:…); write postgres://USER@HOST/DB, or a directory path")]
    Malformed {
        /// What stands before the first ':' (at most 40 characters of it).
        scheme: String,
    },
}

impl LocationError {
    /// A stable snake_case code for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            LocationError::Empty => "invalid_store",
            LocationError::UnsupportedScheme { .. } => "unsupported_store",
            LocationError::Malformed { .. } => "invalid_store",
        }
    }
}

/// Why a location could not be opened as a store. Messages name the location (never a
/// password) and say what happened; remedies in a program's own words belong to the program.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The location itself is not valid.
    #[error(transparent)]
    Location(#[from] LocationError),
    /// The directory could not be opened as a file store.
    #[error("cannot open the store at {}: {source}", shown_path(dir))]
    File {
        /// The store's directory.
        dir: PathBuf,
        /// What the file store said.
        source: FileStoreError,
    },
    /// The location exists but is not a directory.
    #[error("cannot open the store at {}: it is not a directory", shown_path(dir))]
    NotADirectory {
        /// The path given.
        dir: PathBuf,
    },
    /// The PostgreSQL server could not be reached or refused the connection or migration.
    #[error("{source}")]
    Postgres {
        /// The URL with its password masked.
        location: String,
        /// What the store said, as the port's error.
        source: StoreError,
    },
}

/// A scheme as an error shows it: printable, and short (a 100 KB value is not echoed).
fn shown_scheme(scheme: &str) -> String {
    let printable: String = scheme.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
    if printable.chars().count() > 40 {
        printable.chars().take(40).collect::<String>() + "…"
    } else {
        printable
    }
}

impl StoreLocation {
    /// Reads a location: a `postgres://` or `postgresql://` URL, or else a directory path.
    /// Another `scheme://` is refused rather than taken for a directory of that name.
    pub fn parse(value: &str) -> Result<Self, LocationError> {
        if value.is_empty() {
            return Err(LocationError::Empty);
        }
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Ok(Self::Postgres(value.to_owned()));
        }
        if let Some((scheme, _)) = value.split_once("://") {
            return Err(LocationError::UnsupportedScheme { scheme: shown_scheme(scheme) });
        }
        // `postgres:/user:pw@host/db` (one slash) and the like look like a URL gone wrong, not
        // a folder: making a folder of that name would put the password in a path.
        if let Some((scheme, _)) = value.split_once(':') {
            let url_like = !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if url_like && (value.contains('@') || scheme.to_ascii_lowercase().starts_with("postgres")) {
                return Err(LocationError::Malformed { scheme: shown_scheme(scheme) });
            }
        }
        Ok(Self::Dir(PathBuf::from(value)))
    }

    /// The location as messages show it: never with a password, control characters escaped.
    pub fn display(&self) -> String {
        match self {
            StoreLocation::Dir(dir) => shown_path(dir),
            StoreLocation::Postgres(url) => waypoint_store_postgres::redact(url),
        }
    }

    /// Opens the store for writing: a directory store is created if missing, a PostgreSQL
    /// schema created or upgraded.
    pub fn open(&self) -> Result<AnyStore, OpenError> {
        match self {
            StoreLocation::Dir(dir) => {
                FileStore::open(dir).map(AnyStore::File).map_err(|source| OpenError::File { dir: dir.clone(), source })
            }
            StoreLocation::Postgres(url) => connect(url),
        }
    }

    /// Opens the store without writing a byte; `None` when the directory does not exist (a
    /// store never created holds no plans, and a read does not create one).
    pub fn open_read_only_if_present(&self) -> Result<Option<AnyStore>, OpenError> {
        match self {
            StoreLocation::Dir(dir) => match FileStore::open_read_only(dir) {
                Ok(store) => Ok(Some(AnyStore::File(store))),
                Err(FileStoreError::NotFound { .. }) if !dir.exists() => Ok(None),
                Err(FileStoreError::NotFound { .. }) => Err(OpenError::NotADirectory { dir: dir.clone() }),
                Err(source) => Err(OpenError::File { dir: dir.clone(), source }),
            },
            StoreLocation::Postgres(url) => connect(url).map(Some),
        }
    }
}

/// Parses `location` and opens it for writing ([`StoreLocation::open`]).
pub fn open(location: &str) -> Result<AnyStore, OpenError> {
    StoreLocation::parse(location)?.open()
}

/// Connects to the PostgreSQL store at `url`.
fn connect(url: &str) -> Result<AnyStore, OpenError> {
    PostgresStore::connect(url).map(AnyStore::Postgres).map_err(|e| OpenError::Postgres {
        location: waypoint_store_postgres::redact(url),
        source: StoreError::from(e),
    })
}

/// A path as messages show it: every control character written as an escape.
pub fn shown_path(path: &Path) -> String {
    let text = path.display().to_string();
    if !text.chars().any(char::is_control) {
        return text;
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests;
