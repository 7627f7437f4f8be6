//! The file store's error, and how it maps onto the store port's `StoreError`.

use std::path::PathBuf;

use waypoint_application::StoreError;
use waypoint_domain::{DecodeError, PlanId};

#[derive(Debug, thiserror::Error)]
pub enum FileStoreError {
    #[error("no store at {path}; check the path, or run a command that writes to create it")]
    NotFound { path: PathBuf },
    #[error("{context} ({path}): {source}")]
    Io { context: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{path} is corrupt at byte offset {offset}: {detail}")]
    Corrupt { path: PathBuf, offset: u64, detail: String },
    #[error("cannot decode the record of plan {plan_id} version {version} at {path} byte offset {offset}: {source}")]
    Decode { path: PathBuf, offset: u64, plan_id: String, version: u32, source: DecodeError },
    #[error("the store at {path} is {detail}; wait for that to finish and try again")]
    Locked { path: PathBuf, detail: &'static str },
    #[error("plan {plan_id} is being run by another process; wait for it to stop, or resume it once it has")]
    RunLockBusy { plan_id: PlanId },
    #[error("an earlier write to {path} could not be made durable ({detail}); reopen the store before writing again")]
    Poisoned { path: PathBuf, detail: String },
    #[error("plan {plan_id} changed concurrently: expected version {expected}, found {actual}; reload and try again")]
    Conflict { plan_id: PlanId, expected: u32, actual: u32 },
    #[error("{0}")]
    TooLarge(String),
    #[error("the store at {path} was opened read-only; open it for writing to append")]
    ReadOnly { path: PathBuf },
    #[error("cannot repair the store at {path}: {detail}")]
    Repair { path: PathBuf, detail: String },
    #[error("{path} is a symbolic link; the store never creates one and does not follow one: put the real file or directory in its place")]
    Symlink { path: PathBuf },
    #[error("waited {waited_ms} ms for {lock}, held by {holder}; that process may be stopped or hung: let it finish, resume it, or end it, then try again")]
    LockTimeout { lock: PathBuf, holder: String, waited_ms: u64 },
    #[error(
        "{context} ({path}): no space left on device; nothing acknowledged was lost (the failed write was taken back)"
    )]
    NoSpace { context: &'static str, path: PathBuf, source: std::io::Error },
    #[error(
        "the system clock reads {at}, before 1970; events are not recorded at such a time: set the clock and try again"
    )]
    ClockBeforeEpoch { at: String },
}

impl FileStoreError {
    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::StorageFull {
            return FileStoreError::NoSpace { context, path, source };
        }
        // ELOOP from O_NOFOLLOW: the last component is a symbolic link.
        if source.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            return FileStoreError::Symlink { path };
        }
        FileStoreError::Io { context, path, source }
    }

    /// The same error again, for each caller of a group commit that failed as a whole.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            FileStoreError::NotFound { path } => FileStoreError::NotFound { path: path.clone() },
            FileStoreError::Io { context, path, source } => FileStoreError::Io {
                context,
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            FileStoreError::Corrupt { path, offset, detail } => {
                FileStoreError::Corrupt { path: path.clone(), offset: *offset, detail: detail.clone() }
            }
            FileStoreError::Decode { path, offset, plan_id, version, source } => FileStoreError::Decode {
                path: path.clone(),
                offset: *offset,
                plan_id: plan_id.clone(),
                version: *version,
                source: source.clone(),
            },
            FileStoreError::Locked { path, detail } => FileStoreError::Locked { path: path.clone(), detail },
            FileStoreError::RunLockBusy { plan_id } => FileStoreError::RunLockBusy { plan_id: plan_id.clone() },
            FileStoreError::Poisoned { path, detail } => {
                FileStoreError::Poisoned { path: path.clone(), detail: detail.clone() }
            }
            FileStoreError::Conflict { plan_id, expected, actual } => {
                FileStoreError::Conflict { plan_id: plan_id.clone(), expected: *expected, actual: *actual }
            }
            FileStoreError::TooLarge(detail) => FileStoreError::TooLarge(detail.clone()),
            FileStoreError::ReadOnly { path } => FileStoreError::ReadOnly { path: path.clone() },
            FileStoreError::Repair { path, detail } => {
                FileStoreError::Repair { path: path.clone(), detail: detail.clone() }
            }
            FileStoreError::Symlink { path } => FileStoreError::Symlink { path: path.clone() },
            FileStoreError::LockTimeout { lock, holder, waited_ms } => {
                FileStoreError::LockTimeout { lock: lock.clone(), holder: holder.clone(), waited_ms: *waited_ms }
            }
            FileStoreError::NoSpace { context, path, source } => FileStoreError::NoSpace {
                context,
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            FileStoreError::ClockBeforeEpoch { at } => FileStoreError::ClockBeforeEpoch { at: at.clone() },
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, detail: impl Into<String>) -> Self {
        FileStoreError::Corrupt { path: path.into(), offset, detail: detail.into() }
    }
}

impl From<FileStoreError> for StoreError {
    fn from(error: FileStoreError) -> Self {
        match error {
            FileStoreError::NotFound { path } => StoreError::io(
                format!("no store at {}", path.display()),
                std::io::Error::new(std::io::ErrorKind::NotFound, "store directory not found"),
            ),
            FileStoreError::Io { context, path, source } => {
                StoreError::io(format!("{context} ({})", path.display()), source)
            }
            FileStoreError::Corrupt { path, offset, detail } => {
                StoreError::Corrupt { location: format!("{} byte offset {offset}", path.display()), detail }
            }
            FileStoreError::Decode { path, offset, plan_id, version, source } => StoreError::Decode {
                location: format!("{} byte offset {offset} (plan {plan_id} version {version})", path.display()),
                source,
            },
            e @ (FileStoreError::Locked { .. } | FileStoreError::RunLockBusy { .. }) => {
                StoreError::Locked(e.to_string())
            }
            e @ FileStoreError::Poisoned { .. } => StoreError::Poisoned(e.to_string()),
            FileStoreError::Conflict { plan_id, expected, actual } => {
                StoreError::Conflict { plan_id, expected, actual }
            }
            FileStoreError::TooLarge(detail) => StoreError::TooLarge(detail),
            FileStoreError::ReadOnly { .. } => StoreError::Unsupported("the store was opened read-only"),
            FileStoreError::Repair { path, detail } => {
                StoreError::Corrupt { location: path.display().to_string(), detail }
            }
            e @ FileStoreError::Symlink { .. } => {
                StoreError::io(e.to_string(), std::io::Error::from(std::io::ErrorKind::InvalidInput))
            }
            e @ FileStoreError::LockTimeout { .. } => StoreError::Locked(e.to_string()),
            FileStoreError::NoSpace { context, path, source } => StoreError::io(
                format!(
                    "{context} ({}); nothing acknowledged was lost (the failed write was taken back)",
                    path.display()
                ),
                source,
            ),
            e @ FileStoreError::ClockBeforeEpoch { .. } => {
                StoreError::io(e.to_string(), std::io::Error::from(std::io::ErrorKind::InvalidInput))
            }
        }
    }
}
