//! Workers and queues in the file store (ADR 0017): a queue's claim lock is an OS file lock on
//! `queues/<queue>.claim` (released by the OS when a worker dies), and the queues' limits live in
//! `queues/limits.json`, rewritten atomically under `queues/limits.lock`. The claim index is kept
//! in the memory of each process that polls (`queue_index.rs`): every worker of a file store runs
//! on the one machine that holds the directory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use waypoint_application::{QueueLimit, QueueLock};
use waypoint_domain::QueueName;

use crate::error::FileStoreError;
use crate::fsutil;
use crate::layout::Layout;
use crate::runlock::HeldFileLock;

/// `queues/limits.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LimitsFile {
    format: u32,
    limits: BTreeMap<QueueName, u32>,
}

const LIMITS_FORMAT: u32 = 1;

/// Waits (at most `timeout`) for `queue`'s claim lock and takes it.
pub(crate) fn lock_claims(
    layout: &Layout,
    queue: &QueueName,
    timeout: std::time::Duration,
) -> Result<QueueLock, FileStoreError> {
    fsutil::ensure_dir(&layout.queues_dir())?;
    let path = layout.queue_claim_lock(queue);
    let file = fsutil::open_lock_file(&path)?;
    fsutil::lock_bounded(&file, &path, true, timeout)?;
    Ok(QueueLock::new(queue.clone(), HeldFileLock(file)))
}

fn read_file(layout: &Layout) -> Result<LimitsFile, FileStoreError> {
    let path = layout.queue_limits();
    match fsutil::read_file(&path) {
        Ok(Some(bytes)) => {
            let file: LimitsFile = serde_json::from_slice(&bytes).map_err(|e| FileStoreError::Corrupt {
                path: path.clone(),
                offset: 0,
                detail: format!("the queue limits do not parse: {e}"),
            })?;
            if file.format != LIMITS_FORMAT {
                return Err(FileStoreError::Corrupt {
                    path,
                    offset: 0,
                    detail: format!("queue limits of format {}, this build reads {LIMITS_FORMAT}", file.format),
                });
            }
            Ok(file)
        }
        Ok(None) => Ok(LimitsFile { format: LIMITS_FORMAT, limits: BTreeMap::new() }),
        Err(e) => Err(FileStoreError::io("cannot read the queue limits", &path, e)),
    }
}

/// Every queue's limit, by name.
pub(crate) fn read_limits(layout: &Layout) -> Result<Vec<QueueLimit>, FileStoreError> {
    let file = read_file(layout)?;
    Ok(file.limits.into_iter().map(|(queue, limit)| QueueLimit { queue, limit }).collect())
}

/// Sets (or, with `None`, clears) `queue`'s limit; durable when it returns.
pub(crate) fn write_limit(
    layout: &Layout,
    queue: &QueueName,
    limit: Option<u32>,
    timeout: std::time::Duration,
) -> Result<(), FileStoreError> {
    fsutil::ensure_dir(&layout.queues_dir())?;
    let lock_path = layout.queue_limits_lock();
    let lock = fsutil::open_lock_file(&lock_path)?;
    fsutil::lock_bounded(&lock, &lock_path, true, timeout)?;
    let mut file = read_file(layout)?;
    match limit {
        Some(limit) => file.limits.insert(queue.clone(), limit),
        None => file.limits.remove(queue),
    };
    let bytes = serde_json::to_vec_pretty(&file).expect("limits serialize");
    fsutil::ensure_dir(&layout.tmp_dir())?;
    let written = fsutil::write_atomically(&layout.tmp_dir(), &layout.queues_dir(), &layout.queue_limits(), &bytes);
    let _ = lock.unlock();
    written
}
