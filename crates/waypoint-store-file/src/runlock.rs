//! Run locks: one OS file lock per plan, held while a runner works on it and released by the OS
//! when the process dies, so a crashed runner never leaves a plan looking busy.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::Duration;

use waypoint_application::{HeldRunLock, RunLockError, RunLockGuard, RunLocks, StoreError};
use waypoint_domain::{PlanId, RunnerId};

use crate::error::FileStoreError;
use crate::fsutil;
use crate::layout::Layout;

/// The run-lock port over OS file locks in `<store>/locks/<plan id>.lock`. An OS file lock
/// belongs to an open file description, so two acquires conflict even inside one process, and a
/// probe from the holder's own process sees the lock held.
#[derive(Debug, Clone)]
pub struct FileRunLocks {
    layout: Layout,
    read_only: bool,
}

/// The open lock file of a held run lock (or a queue's claim lock). Dropping it (or the process
/// dying) releases the lock.
#[derive(Debug)]
pub(crate) struct HeldFileLock(pub(crate) File);

impl HeldRunLock for HeldFileLock {}

impl waypoint_application::HeldQueueLock for HeldFileLock {}

impl Drop for HeldFileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl FileRunLocks {
    pub(crate) fn new(dir: &Path, read_only: bool) -> Self {
        Self { layout: Layout::new(dir), read_only }
    }

    /// Takes `plan_id`'s run lock without waiting. Fails with `RunLockBusy` when anyone, this
    /// process included, holds it.
    pub fn try_acquire(&self, plan_id: &PlanId, runner: &RunnerId) -> Result<RunLockGuard, FileStoreError> {
        if self.read_only {
            return Err(FileStoreError::ReadOnly { path: self.layout.locks_dir() });
        }
        let locks_dir = self.layout.locks_dir();
        fsutil::ensure_dir(&locks_dir)?;
        let path = self.layout.run_lock(plan_id);
        let (file, created) = fsutil::open_or_create(&path)?;
        if created {
            fsutil::sync_dir(&locks_dir)?;
        }
        // A probe holds the lock shared for a moment: retry briefly before calling the plan
        // busy. A real runner holds it far longer than these retries last.
        for attempt in 0..5 {
            match file.try_lock() {
                Ok(()) => return Ok(RunLockGuard::new(plan_id.clone(), runner.clone(), HeldFileLock(file))),
                Err(TryLockError::WouldBlock) if attempt < 4 => std::thread::sleep(Duration::from_millis(5)),
                Err(TryLockError::WouldBlock) => break,
                Err(TryLockError::Error(e)) => return Err(FileStoreError::io("cannot take the run lock", &path, e)),
            }
        }
        Err(FileStoreError::RunLockBusy { plan_id: plan_id.clone() })
    }

    /// Whether anyone holds `plan_id`'s run lock. Creates nothing.
    pub fn is_held_by_anyone(&self, plan_id: &PlanId) -> Result<bool, FileStoreError> {
        let path = self.layout.run_lock(plan_id);
        let Some(file) = fsutil::open_existing_read_only(&path)? else { return Ok(false) };
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                Ok(false)
            }
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(e)) => Err(FileStoreError::io("cannot probe the run lock", &path, e)),
        }
    }
}

impl RunLocks for FileRunLocks {
    fn acquire(&self, plan_id: &PlanId, runner: &RunnerId) -> Result<RunLockGuard, RunLockError> {
        self.try_acquire(plan_id, runner).map_err(|e| match e {
            FileStoreError::RunLockBusy { plan_id } => RunLockError::Busy { plan_id },
            other => RunLockError::Store(StoreError::from(other)),
        })
    }

    fn probe(&self, plan_id: &PlanId) -> Result<bool, StoreError> {
        Ok(self.is_held_by_anyone(plan_id)?)
    }
}

#[cfg(test)]
mod tests;
