//! The composition root: which store a `--store` value names, how it is opened, and the service
//! built over it with the snapshot probe and the actor. Nothing above this module knows which
//! store it has: commands see one [`AnyStore`] behind the port.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eventually::store::{EventStore, EventStream, Expected, Select};
use futures::future::BoxFuture;
use waypoint_application::{
    PlanResumeService, PlanStore, PlanView, RecordedEvent, RunLockError, RunLockGuard, RunLocks, ServiceError,
    StoreError, StoreStats, VerifyReport,
};
use waypoint_domain::{Actor, PlanId, ResumeIneligibleReason, RunnerId};
use waypoint_store_file::{FileStore, FileStoreError};
use waypoint_store_postgres::PostgresStore;

use crate::definition::PlanFileProbe;
use crate::error::{exit, CliError};
use crate::outputs::OutputsProbe;
use crate::sidecar::{Sidecar, StepAwareRunLocks};
use crate::text::shown_path;

/// Every store the binary can open, behind the one port. Adding a store is a variant here, a
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
    ) -> BoxFuture<'a, Result<waypoint_application::RemovalReport, StoreError>> {
        delegate!(self, s => s.remove_plans(plans, removed_at, archive))
    }

    fn removal<'a>(
        &'a self,
        plan_id: &'a PlanId,
    ) -> BoxFuture<'a, Result<Option<waypoint_application::Removal>, StoreError>> {
        delegate!(self, s => s.removal(plan_id))
    }

    fn removals_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<waypoint_application::Removal>, StoreError>> {
        delegate!(self, s => s.removals_with_prefix(prefix))
    }

    fn import_plans(
        &self,
        histories: Vec<Vec<waypoint_application::StoredEvent>>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        delegate!(self, s => s.import_plans(histories))
    }

    fn put_step_log<'a>(
        &'a self,
        plan_id: &'a PlanId,
        log: waypoint_application::StepLog,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        delegate!(self, s => s.put_step_log(plan_id, log))
    }

    fn step_logs<'a>(
        &'a self,
        plan_id: &'a PlanId,
        step: Option<waypoint_domain::StepNumber>,
        attempt: Option<waypoint_domain::Attempt>,
    ) -> BoxFuture<'a, Result<Vec<waypoint_application::StepLog>, StoreError>> {
        delegate!(self, s => s.step_logs(plan_id, step, attempt))
    }
}

pub type Service = PlanResumeService<AnyStore>;

/// A parsed `--store` value: a directory, or a PostgreSQL URL.
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

impl StoreLocation {
    pub fn parse(value: &str) -> Result<Self, CliError> {
        if value.is_empty() {
            return Err(CliError::usage("invalid_store", "--store is empty; give a directory path"));
        }
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Ok(Self::Postgres(value.to_owned()));
        }
        if let Some((scheme, _)) = value.split_once("://") {
            return Err(CliError::usage(
                "unsupported_store",
                format!(
                    "{}:// stores are not supported; give a directory path or a postgres:// URL to --store",
                    short_scheme(scheme)
                ),
            ));
        }
        // `postgres:/user:pw@host/db` (one slash) and the like look like a URL gone wrong, not a
        // folder: making a folder of that name would put the password in a path.
        if let Some((scheme, _)) = value.split_once(':') {
            let url_like = !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if url_like && (value.contains('@') || scheme.to_ascii_lowercase().starts_with("postgres")) {
                return Err(CliError::usage(
                    "invalid_store",
                    format!(
                        "--store looks like a URL with a malformed or unknown scheme ({}:…); write postgres://USER@HOST/DB, or a directory path",
                        short_scheme(scheme)
                    ),
                ));
            }
        }
        Ok(Self::Dir(PathBuf::from(value)))
    }

    /// The location as messages show it (never with a password).
    pub fn display(&self) -> String {
        match self {
            StoreLocation::Dir(dir) => crate::text::shown_path(dir),
            StoreLocation::Postgres(url) => waypoint_store_postgres::redact(url),
        }
    }

    /// What is kept beside this store for plan-file runs (attempt locks, step outputs, logs).
    pub fn sidecar(&self) -> Sidecar {
        match self {
            StoreLocation::Dir(dir) => crate::sidecar::beside_dir(dir),
            StoreLocation::Postgres(url) => crate::sidecar::for_server(&waypoint_store_postgres::redact(url)),
        }
    }

    /// Where `store compact` archives by default: `<name>.archive` beside a directory store (never
    /// inside it, where the store's own files are), and `archive/` in a server store's sidecar.
    pub fn default_archive(&self) -> Result<PathBuf, CliError> {
        match self {
            StoreLocation::Dir(dir) => {
                let absolute = std::fs::canonicalize(dir).or_else(|_| std::path::absolute(dir)).map_err(|e| {
                    CliError::unexpected(format!("cannot resolve the store path {}: {e}", shown_path(dir)))
                })?;
                match (absolute.parent(), absolute.file_name()) {
                    (Some(parent), Some(name)) => {
                        let mut archive = name.to_os_string();
                        archive.push(".archive");
                        Ok(parent.join(archive))
                    }
                    _ => Err(CliError::usage(
                        "invalid_archive",
                        format!(
                            "the store at {} has no folder beside it for an archive; give --archive",
                            shown_path(dir)
                        ),
                    )),
                }
            }
            StoreLocation::Postgres(_) => Ok(self.sidecar().root().join("archive")),
        }
    }

    /// Opens for writing, creating the store if needed. For `create` and `run`.
    pub fn open_for_write(&self) -> Result<Service, CliError> {
        match self {
            StoreLocation::Dir(dir) => {
                let store = FileStore::open(dir).map_err(|e| file_store_error(dir, e))?;
                Ok(compose(AnyStore::File(store), self.sidecar(), OutputsProbe::Digest))
            }
            StoreLocation::Postgres(url) => Ok(compose(connect(url)?, self.sidecar(), OutputsProbe::Digest)),
        }
    }

    /// Opens for writing a plan that must already exist: a store that does not exist yet cannot
    /// hold it, and is not created just to say so.
    pub fn open_existing_for_write(&self, plan_id: &PlanId) -> Result<Service, CliError> {
        match self {
            StoreLocation::Dir(dir) if !dir.exists() => Err(plan_not_found(plan_id)),
            _ => self.open_for_write(),
        }
    }

    /// Opens without writing a byte; `None` when there is no store yet (it holds no plans).
    /// Recorded outputs are only checked for presence: reading every plan's outputs again on
    /// each listing would cost what the outputs weigh.
    pub fn open_read_only(&self) -> Result<Option<Service>, CliError> {
        self.open_read_only_with(OutputsProbe::Presence)
    }

    /// Opens read-only a store that must hold `plan_id`, checking recorded outputs' digests: for
    /// a resume's preview, which must say what the resume would.
    pub fn open_read_only_for_preview(&self, plan_id: &PlanId) -> Result<Service, CliError> {
        self.open_read_only_with(OutputsProbe::Digest)?.ok_or_else(|| plan_not_found(plan_id))
    }

    /// Opens read-only, checking recorded outputs' digests as a resume's preview does; `None`
    /// when there is no store yet. For the dashboard's `--read-only` previews.
    pub fn open_read_only_with_digests(&self) -> Result<Option<Service>, CliError> {
        self.open_read_only_with(OutputsProbe::Digest)
    }

    fn open_read_only_with(&self, outputs: OutputsProbe) -> Result<Option<Service>, CliError> {
        match self {
            StoreLocation::Dir(dir) => match FileStore::open_read_only(dir) {
                Ok(store) => Ok(Some(compose(AnyStore::File(store), self.sidecar(), outputs))),
                // Nothing there: no plans. Something that is not a directory: not a store.
                Err(FileStoreError::NotFound { .. }) if !dir.exists() => Ok(None),
                Err(FileStoreError::NotFound { .. }) => Err(CliError::new(
                    exit::STORE_UNREADABLE,
                    "store_unreadable",
                    format!("cannot open the store at {}: it is not a directory; check --store", shown_path(dir)),
                )
                .with("store", shown_path(dir))),
                Err(e) => Err(file_store_error(dir, e)),
            },
            StoreLocation::Postgres(url) => Ok(Some(compose(connect(url)?, self.sidecar(), outputs))),
        }
    }

    /// Opens read-only a store that must hold `plan_id`.
    pub fn open_read_only_for(&self, plan_id: &PlanId) -> Result<Service, CliError> {
        self.open_read_only()?.ok_or_else(|| plan_not_found(plan_id))
    }
}

/// Connects to the PostgreSQL store at `url`. A server that cannot be reached is exit 6,
/// `store_unavailable`, naming where (never with the password).
fn connect(url: &str) -> Result<AnyStore, CliError> {
    PostgresStore::connect(url).map(AnyStore::Postgres).map_err(|e| {
        let shown = waypoint_store_postgres::redact(url);
        CliError::from(ServiceError::Store(StoreError::from(e))).with("store", shown)
    })
}

fn compose(store: AnyStore, sidecar: Sidecar, outputs: OutputsProbe) -> Service {
    let run_locks = StepAwareRunLocks::new(store.run_locks(), sidecar);
    PlanResumeService::new(store)
        .with_run_locks(run_locks)
        .with_snapshot_probe(outputs)
        .with_definition_probe(PlanFileProbe::default())
        .with_actor(actor())
}

/// A location's scheme as an error shows it: printable, and short (a 100 KB value is not echoed).
fn short_scheme(scheme: &str) -> String {
    let shown: String = crate::text::escape_controls(scheme).chars().take(40).collect();
    if shown.len() < scheme.len() {
        format!("{shown}…")
    } else {
        shown
    }
}

/// Takes the plan's run lock without waiting, as this process's runner; someone else holding it
/// is a conflict.
pub fn acquire_run_lock(service: &Service, plan_id: &PlanId) -> Result<RunLockGuard, CliError> {
    match service.acquire_run_lock(plan_id, &runner_id()) {
        Ok(guard) => Ok(guard),
        Err(ServiceError::RunLock(RunLockError::Busy { .. })) => Err(run_lock_busy(plan_id)),
        Err(e) => Err(CliError::from(e)),
    }
}

/// Another process runs the plan (exit 5, `run_lock_busy`).
pub fn run_lock_busy(plan_id: &PlanId) -> CliError {
    CliError::new(
        exit::CONFLICT,
        "run_lock_busy",
        format!("plan {plan_id} is being run by another process; wait for it to stop, then try again"),
    )
    .with("plan_id", plan_id.as_str())
    .with_reasons(vec![ResumeIneligibleReason::StillRunning])
}

/// Opens (creating it if missing) the file store that `store compact` archives into.
pub fn open_archive(dir: &Path) -> Result<AnyStore, CliError> {
    FileStore::open(dir).map(AnyStore::File).map_err(|e| {
        let cli = CliError::from(ServiceError::Store(StoreError::from(e)));
        let message = format!("cannot open the archive at {}: {}", shown_path(dir), cli.message);
        CliError::new(exit::STORE_UNREADABLE, "archive_unwritable", message).with("archive", shown_path(dir))
    })
}

fn plan_not_found(plan_id: &PlanId) -> CliError {
    CliError::from(ServiceError::NotFound(plan_id.clone()))
}

fn file_store_error(dir: &Path, error: FileStoreError) -> CliError {
    let cli = CliError::from(ServiceError::Store(StoreError::from(error)));
    let message = format!("cannot open the store at {}: {}", shown_path(dir), cli.message);
    CliError::new(exit::STORE_UNREADABLE, "store_unreadable", message).with("store", shown_path(dir))
}

/// Who this process is, as `Resumed` events name it: `cli:<user>@<host>:<pid>`.
fn actor() -> Actor {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let uname = rustix::system::uname();
    let host = uname.nodename().to_string_lossy().into_owned();
    let text = format!("cli:{user}@{host}:{}", std::process::id());
    Actor::parse(&text).unwrap_or_else(|_| Actor::parse("cli").expect("static actor is valid"))
}

/// The runner id this process records when it takes a plan's run lock.
pub fn runner_id() -> RunnerId {
    RunnerId::parse(&format!("waypoint-{}", std::process::id())).expect("a pid makes a valid runner id")
}
