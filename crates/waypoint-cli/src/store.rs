//! The composition root: which store a `--store` value names, how it is opened, and the service
//! built over it with the run locks, the snapshot probe and the actor.

use std::path::{Path, PathBuf};

use waypoint_application::{PlanResumeService, StoreError};
use waypoint_domain::{Actor, PlanId, RunnerId};
use waypoint_store_file::{FileStore, FileStoreError, RunLockGuard};

use crate::error::{exit, CliError};
use crate::outputs::OutputsProbe;

pub type Service = PlanResumeService<FileStore>;

/// A parsed `--store` value.
#[derive(Debug, Clone)]
pub struct StoreLocation {
    dir: PathBuf,
}

impl StoreLocation {
    pub fn parse(value: &str) -> Result<Self, CliError> {
        if value.is_empty() {
            return Err(CliError::usage("invalid_store", "--store is empty; give a directory path"));
        }
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Err(CliError::usage(
                "unsupported_store",
                "postgres stores are not supported yet; give a directory path to --store",
            ));
        }
        if let Some((scheme, _)) = value.split_once("://") {
            return Err(CliError::usage(
                "unsupported_store",
                format!("{scheme}:// stores are not supported; give a directory path to --store"),
            ));
        }
        Ok(Self { dir: PathBuf::from(value) })
    }

    /// Opens for writing, creating the directory if needed. For `create` and `run`.
    pub fn open_for_write(&self) -> Result<Service, CliError> {
        let store = FileStore::open(&self.dir).map_err(|e| store_error(&self.dir, e))?;
        Ok(compose(store))
    }

    /// Opens for writing a plan that must already exist: a store that does not exist yet cannot
    /// hold it, and is not created just to say so.
    pub fn open_existing_for_write(&self, plan_id: &PlanId) -> Result<Service, CliError> {
        if !self.dir.exists() {
            return Err(plan_not_found(plan_id));
        }
        self.open_for_write()
    }

    /// Opens without writing a byte; `None` when there is no store yet (it holds no plans).
    pub fn open_read_only(&self) -> Result<Option<Service>, CliError> {
        match FileStore::open_read_only(&self.dir) {
            Ok(store) => Ok(Some(compose(store))),
            // Nothing there: no plans. Something that is not a directory: not a store.
            Err(FileStoreError::NotFound { .. }) if !self.dir.exists() => Ok(None),
            Err(FileStoreError::NotFound { .. }) => Err(CliError::new(
                exit::STORE_UNREADABLE,
                "store_unreadable",
                format!("cannot open the store at {}: it is not a directory; check --store", self.dir.display()),
            )
            .with("store", self.dir.display().to_string())),
            Err(e) => Err(store_error(&self.dir, e)),
        }
    }

    /// Opens read-only a store that must hold `plan_id`.
    pub fn open_read_only_for(&self, plan_id: &PlanId) -> Result<Service, CliError> {
        self.open_read_only()?.ok_or_else(|| plan_not_found(plan_id))
    }
}

fn compose(store: FileStore) -> Service {
    let locks = store.run_locks();
    PlanResumeService::new(store).with_run_locks(locks).with_snapshot_probe(OutputsProbe).with_actor(actor())
}

/// Takes the plan's run lock without waiting; someone else holding it is a conflict.
pub fn acquire_run_lock(service: &Service, plan_id: &PlanId) -> Result<RunLockGuard, CliError> {
    match service.store().run_locks().acquire(plan_id) {
        Ok(guard) => Ok(guard),
        Err(FileStoreError::RunLockBusy { .. }) => Err(CliError::new(
            exit::CONFLICT,
            "run_lock_busy",
            format!("plan {plan_id} is being run by another process; wait for it to stop, then try again"),
        )
        .with("plan_id", plan_id.as_str())
        .with_reasons(vec![waypoint_domain::ResumeIneligibleReason::StillRunning])),
        Err(e) => Err(CliError::from(waypoint_application::ServiceError::from(StoreError::from(e)))),
    }
}

fn plan_not_found(plan_id: &PlanId) -> CliError {
    CliError::from(waypoint_application::ServiceError::NotFound(plan_id.clone()))
}

fn store_error(dir: &Path, error: FileStoreError) -> CliError {
    let message = format!("cannot open the store at {}: {error}", dir.display());
    CliError::new(exit::STORE_UNREADABLE, "store_unreadable", message).with("store", dir.display().to_string())
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
