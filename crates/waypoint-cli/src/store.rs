//! The composition root: the store a `--store` value names (parsed and opened by
//! `waypoint-stores`, which the Python package shares), and the service built over it with the
//! CLI's run locks, probes and actor. Nothing above this module knows which store it has:
//! commands see one [`AnyStore`] behind the port.

use std::path::{Path, PathBuf};

use futures::executor::block_on;
use waypoint_application::{PlanResumeService, PlanStore, RunLockError, RunLockGuard, ServiceError, StoreError};
use waypoint_domain::{Actor, PlanId, ResumeIneligibleReason, RunnerId};
use waypoint_store_file::{FileStore, FileStoreError};
use waypoint_stores::OpenError;
pub use waypoint_stores::{AnyStore, StoreLocation};

use crate::definition::PlanFileProbe;
use crate::error::{exit, CliError};
use crate::outputs::OutputsProbe;
use crate::sidecar::{Sidecar, StepAwareRunLocks};
use crate::text::shown_path;

pub type Service = PlanResumeService<AnyStore>;

/// What the binary does with a store location beyond opening it: the sidecar beside it, the
/// default archive, and opening it composed into the CLI's service (its run locks, probes and
/// actor), with errors in the CLI's words.
pub trait LocationExt {
    /// What is kept beside this store for plan-file runs (attempt locks, step outputs, logs).
    fn sidecar(&self) -> Sidecar;
    /// Where `store compact` archives by default.
    fn default_archive(&self) -> Result<PathBuf, CliError>;
    /// Opens for writing, creating the store if needed. For `create` and `run`.
    fn open_for_write(&self) -> Result<Service, CliError>;
    /// Opens for writing a plan that must already exist.
    fn open_existing_for_write(&self, plan_id: &PlanId) -> Result<Service, CliError>;
    /// Opens without writing a byte; `None` when there is no store yet.
    fn open_read_only(&self) -> Result<Option<Service>, CliError>;
    /// Opens read-only a store that must hold `plan_id`, checking recorded outputs' digests.
    fn open_read_only_for_preview(&self, plan_id: &PlanId) -> Result<Service, CliError>;
    /// Opens read-only checking recorded outputs' digests; `None` when there is no store yet.
    fn open_read_only_with_digests(&self) -> Result<Option<Service>, CliError>;
    /// Opens read-only a store that must hold `plan_id`.
    fn open_read_only_for(&self, plan_id: &PlanId) -> Result<Service, CliError>;
}

impl LocationExt for StoreLocation {
    /// What is kept beside this store for plan-file runs (attempt locks, step outputs, logs).
    fn sidecar(&self) -> Sidecar {
        match self {
            StoreLocation::Dir(dir) => crate::sidecar::beside_dir(dir),
            StoreLocation::Postgres(url) => crate::sidecar::for_server(&waypoint_store_postgres::redact(url)),
        }
    }

    /// Where `store compact` archives by default: `<name>.archive` beside a directory store (never
    /// inside it, where the store's own files are), and `archive/` in a server store's sidecar.
    fn default_archive(&self) -> Result<PathBuf, CliError> {
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
    fn open_for_write(&self) -> Result<Service, CliError> {
        // A writer reads through its own open; a read-only one kept for reuse is let go first.
        drop(take_kept_read_only());
        let store = self.open().map_err(open_error)?;
        Ok(compose(store, self.sidecar(), OutputsProbe::Digest))
    }

    /// Opens for writing a plan that must already exist: a store that does not exist yet cannot
    /// hold it, and is not created just to say so.
    fn open_existing_for_write(&self, plan_id: &PlanId) -> Result<Service, CliError> {
        match self {
            StoreLocation::Dir(dir) if !dir.exists() => Err(plan_not_found(plan_id)),
            _ => self.open_for_write(),
        }
    }

    /// Opens without writing a byte; `None` when there is no store yet (it holds no plans).
    /// Recorded outputs are only checked for presence: reading every plan's outputs again on
    /// each listing would cost what the outputs weigh.
    fn open_read_only(&self) -> Result<Option<Service>, CliError> {
        open_read_only_with(self, OutputsProbe::Presence)
    }

    /// Opens read-only a store that must hold `plan_id`, checking recorded outputs' digests: for
    /// a resume's preview, which must say what the resume would.
    fn open_read_only_for_preview(&self, plan_id: &PlanId) -> Result<Service, CliError> {
        open_read_only_with(self, OutputsProbe::Digest)?.ok_or_else(|| plan_not_found(plan_id))
    }

    /// Opens read-only, checking recorded outputs' digests as a resume's preview does; `None`
    /// when there is no store yet. For the dashboard's `--read-only` previews.
    fn open_read_only_with_digests(&self) -> Result<Option<Service>, CliError> {
        open_read_only_with(self, OutputsProbe::Digest)
    }

    /// Opens read-only a store that must hold `plan_id`.
    fn open_read_only_for(&self, plan_id: &PlanId) -> Result<Service, CliError> {
        self.open_read_only()?.ok_or_else(|| plan_not_found(plan_id))
    }
}

/// Opens `location` without writing a byte, composed with `outputs` as its snapshot probe. A
/// store kept by [`keep_read_only`] is taken instead of opening again.
fn open_read_only_with(location: &StoreLocation, outputs: OutputsProbe) -> Result<Option<Service>, CliError> {
    let store = match take_kept_read_only() {
        Some(kept) => Some(kept),
        None => location.open_read_only_if_present().map_err(open_error)?,
    };
    Ok(store.map(|store| compose(store, location.sidecar(), outputs)))
}

/// A read-only store this process opened and has not finished with. A command opens its store
/// once: resolving a plan id opens it, and the command's own read takes it from here (a read
/// catches up with the log first, so it sees what was written meanwhile), rather than opening
/// and catching up with the log's tail, or connecting to the server, a second time.
static KEPT_READ_ONLY: std::sync::Mutex<Option<AnyStore>> = std::sync::Mutex::new(None);

/// Keeps `store` (opened read-only on this process's one `--store`) for the next read-only open.
pub fn keep_read_only(store: AnyStore) {
    *KEPT_READ_ONLY.lock().unwrap_or_else(|p| p.into_inner()) = Some(store);
}

fn take_kept_read_only() -> Option<AnyStore> {
    KEPT_READ_ONLY.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// A store that could not be opened, in the CLI's words: exit 6 naming the store (never a
/// password), with what to do next.
fn open_error(error: OpenError) -> CliError {
    match error {
        OpenError::Location(e) => CliError::from(e),
        OpenError::File { dir, source } => file_store_error(&dir, source),
        // Something that is not a directory: not a store.
        OpenError::NotADirectory { dir } => CliError::new(
            exit::STORE_UNREADABLE,
            "store_unreadable",
            format!("cannot open the store at {}: it is not a directory; check --store", shown_path(&dir)),
        )
        .with("store", shown_path(&dir)),
        // A server that cannot be reached is exit 6, `store_unavailable`, naming where.
        OpenError::Postgres { location, source } => CliError::from(ServiceError::Store(source)).with("store", location),
        other => CliError::unexpected(other.to_string()),
    }
}

fn compose(store: AnyStore, sidecar: Sidecar, outputs: OutputsProbe) -> Service {
    let run_locks = StepAwareRunLocks::new(store.run_locks(), sidecar);
    PlanResumeService::new(store)
        .with_run_locks(run_locks)
        .with_snapshot_probe(outputs)
        .with_definition_probe(PlanFileProbe::default())
        .with_actor(actor())
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

/// The shortest part of an id that names a plan, as git abbreviates.
const MIN_PREFIX: usize = 4;

/// The full id of the plan `given` names: itself when a plan has that id, otherwise the one plan
/// whose id starts with it (at least [`MIN_PREFIX`] characters), or the one plan retention
/// removed whose id starts with it (then: where its events are). Only a given id that is not a
/// full id costs a read of the catalog. `plan` commands and the dashboard both resolve ids here.
pub fn resolve_plan_id(service: &Service, given: &PlanId) -> Result<PlanId, CliError> {
    match block_on(service.load_summary(given)) {
        Ok(_) => return Ok(given.clone()),
        Err(ServiceError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if given.as_str().len() < MIN_PREFIX {
        return Err(CliError::new(
            exit::NOT_FOUND,
            "plan_not_found",
            format!(
                "plan {given} not found; an id given in part needs at least {MIN_PREFIX} characters; \
                 `waypoint plan list` shows the ids"
            ),
        )
        .with("plan_id", given.as_str()));
    }
    let store_error = |e| CliError::from(ServiceError::from(e));
    let mut candidates: Vec<PlanId> = block_on(service.store().catalog())
        .map_err(store_error)?
        .into_iter()
        .map(|view| view.plan_id)
        .filter(|id| id.as_str().starts_with(given.as_str()))
        .collect();
    candidates.sort();
    if candidates.is_empty() {
        let mut removed = block_on(service.store().removals_with_prefix(given.as_str())).map_err(store_error)?;
        if removed.len() == 1 {
            return Err(ServiceError::Removed(removed.remove(0)).into());
        }
        candidates = removed.into_iter().map(|r| r.plan_id).collect();
    }
    match candidates.len() {
        0 => Ok(given.clone()),
        1 => Ok(candidates.remove(0)),
        _ => {
            let listed: Vec<&str> = candidates.iter().map(PlanId::as_str).collect();
            Err(CliError::usage(
                "ambiguous_id",
                format!(
                    "{given} is the start of {} plan ids: {}; give more of the id",
                    listed.len(),
                    listed.join(", ")
                ),
            )
            .with("candidates", listed))
        }
    }
}
