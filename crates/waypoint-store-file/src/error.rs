//! The file store's error, and how it maps onto the store port's `StoreError`.

use std::path::PathBuf;

use waypoint_application::StoreError;
use waypoint_domain::{DecodeError, PlanId};

/// Why a file-store operation failed. Each variant names the file (and, for damage, the byte
/// offset) involved, and its message says what to do next; `From` maps it onto the port's
/// `StoreError` so the application layer sees one error type for every store.
#[derive(Debug, thiserror::Error)]
pub enum FileStoreError {
    /// A read-only open, an inspection or `repair` found no store directory; only a writing
    /// open creates one.
    #[error("no store at {path}; check the path, or run a command that writes to create it")]
    NotFound {
        /// The directory that is missing.
        path: PathBuf,
    },
    /// The operating system refused a call for a reason with no variant of its own.
    #[error("{context} ({path}): {source}")]
    Io {
        /// What the store was doing, in words for the message.
        context: &'static str,
        /// The file or directory the call was about.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Bytes that were acknowledged (or a derived file that vouches for them) are damaged or
    /// missing. Nothing was changed; `repair` is the way forward.
    #[error("{path} is corrupt at byte offset {offset}: {detail}")]
    Corrupt {
        /// The damaged file, usually the log.
        path: PathBuf,
        /// Where the damage starts in that file.
        offset: u64,
        /// What is wrong there.
        detail: String,
    },
    /// A whole, checksummed record holds an event this build cannot read: an unknown type or a
    /// schema version newer than it knows. Never mistaken for damage, never cut.
    #[error("cannot decode the record of plan {plan_id} version {version} at {path} byte offset {offset}: {source}")]
    Decode {
        /// The log holding the record.
        path: PathBuf,
        /// Where the record starts in the log.
        offset: u64,
        /// The plan the record belongs to, as stored (it may not be a valid id).
        plan_id: String,
        /// The record's version in its plan's stream.
        version: u32,
        /// Why the event did not decode.
        source: DecodeError,
    },
    /// Another process holds a store lock this operation cannot share (an open store against
    /// `repair`, or the other way round).
    #[error("the store at {path} is {detail}; wait for that to finish and try again")]
    Locked {
        /// The store directory.
        path: PathBuf,
        /// What the holder is doing, in words for the message.
        detail: &'static str,
    },
    /// Another runner, in this process or another, holds the plan's run lock.
    #[error("plan {plan_id} is being run by another process; wait for it to stop, or resume it once it has")]
    RunLockBusy {
        /// The plan whose run lock is taken.
        plan_id: PlanId,
    },
    /// An earlier fdatasync failed, so what reached the disk is unknown: this open store refuses
    /// every further append until it is reopened and reads the log again.
    #[error("an earlier write to {path} could not be made durable ({detail}); reopen the store before writing again")]
    Poisoned {
        /// The log that could not be made durable.
        path: PathBuf,
        /// The failure that poisoned the store.
        detail: String,
    },
    /// The optimistic-concurrency check failed: the plan's stream is not at the version the
    /// append expected. Nothing of that append was written.
    #[error("plan {plan_id} changed concurrently: expected version {expected}, found {actual}; reload and try again")]
    Conflict {
        /// The plan appended to.
        plan_id: PlanId,
        /// The version the caller expected the stream to be at.
        expected: u32,
        /// The version the log holds.
        actual: u32,
    },
    /// An event or a field does not fit the record format (a payload over 16 MiB, a name over
    /// 255 bytes), or the log would pass `u32::MAX` records. Nothing was written.
    #[error("{0}")]
    TooLarge(String),
    /// An append or checkpoint on a store opened with `open_read_only`.
    #[error("the store at {path} was opened read-only; open it for writing to append")]
    ReadOnly {
        /// The store directory.
        path: PathBuf,
    },
    /// `repair` refused a log it cannot safely cut (shorter than its header, or holding a whole
    /// record this build cannot read); nothing was changed.
    #[error("cannot repair the store at {path}: {detail}")]
    Repair {
        /// The log repair refused.
        path: PathBuf,
        /// Why, and what to do instead.
        detail: String,
    },
    /// A path inside the store is a symbolic link. The store opens every file without following
    /// links, so a link can never redirect its writes elsewhere.
    #[error("{path} is a symbolic link; the store never creates one and does not follow one: put the real file or directory in its place")]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// A store lock stayed taken for longer than `StoreOptions::lock_timeout`, so the holder may
    /// be stopped or hung.
    #[error("waited {waited_ms} ms for {lock}, held by {holder}; that process may be stopped or hung: let it finish, resume it, or end it, then try again")]
    LockTimeout {
        /// The lock file waited for.
        lock: PathBuf,
        /// Who holds it, as the kernel's lock table tells (the holders' process ids), or a note
        /// that the table does not say.
        holder: String,
        /// How long this process waited before giving up.
        waited_ms: u64,
    },
    /// The disk is full. The failed write was truncated away, so nothing acknowledged was lost
    /// and the store stays usable once space is freed.
    #[error(
        "{context} ({path}): no space left on device; nothing acknowledged was lost (the failed write was taken back)"
    )]
    NoSpace {
        /// What the store was doing, in words for the message.
        context: &'static str,
        /// The file being written.
        path: PathBuf,
        /// The operating system's error (`ENOSPC`).
        source: std::io::Error,
    },
    /// The system clock is before the Unix epoch, which the record format cannot hold; nothing
    /// was written.
    #[error(
        "the system clock reads {at}, before 1970; events are not recorded at such a time: set the clock and try again"
    )]
    ClockBeforeEpoch {
        /// The time the clock gave, as text.
        at: String,
    },
    /// The plan was removed by retention; its id is not reused.
    #[error("plan {plan_id} was removed by retention at {removed_at}; its id is not reused")]
    Removed {
        /// The removed plan.
        plan_id: PlanId,
        /// When it was removed.
        removed_at: chrono::DateTime<chrono::Utc>,
    },
    /// The store holds no plan with this id, and the operation needs one (a step log belongs to
    /// a plan). Nothing was written.
    #[error("plan {plan_id} not found in the store; create the plan before writing anything of its steps")]
    PlanNotFound {
        /// The plan asked for.
        plan_id: PlanId,
    },
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
            FileStoreError::Removed { plan_id, removed_at } => {
                FileStoreError::Removed { plan_id: plan_id.clone(), removed_at: *removed_at }
            }
            FileStoreError::PlanNotFound { plan_id } => FileStoreError::PlanNotFound { plan_id: plan_id.clone() },
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
            FileStoreError::Removed { plan_id, removed_at } => StoreError::Removed { plan_id, removed_at },
            FileStoreError::PlanNotFound { plan_id } => StoreError::PlanNotFound { plan_id },
        }
    }
}
