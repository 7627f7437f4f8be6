//! Run locks: one OS file lock per plan, held while a runner works on it and released by the OS
//! when the process dies, so a crashed runner never leaves a plan looking busy.

use std::collections::BTreeSet;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use waypoint_application::RunLockProbe;
use waypoint_domain::PlanId;

use crate::error::FileStoreError;
use crate::fsutil;
use crate::layout::Layout;

/// The run locks this process holds, by (store directory, plan). An OS lock cannot tell its own
/// holder from another (flock conflicts between two descriptors of one process too), so the
/// probe consults this first: "held" means held by someone else.
static HELD: Mutex<BTreeSet<(PathBuf, String)>> = Mutex::new(BTreeSet::new());

fn held() -> std::sync::MutexGuard<'static, BTreeSet<(PathBuf, String)>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// The run-lock port over OS file locks in `<store>/locks/<plan id>.lock`.
#[derive(Debug, Clone)]
pub struct FileRunLocks {
    /// The store directory as the registry keys it.
    key: PathBuf,
    layout: Layout,
    read_only: bool,
}

/// Proof that this process holds a plan's run lock. Dropping it releases the lock.
#[derive(Debug)]
pub struct RunLockGuard {
    file: File,
    key: (PathBuf, String),
    plan_id: PlanId,
}

impl RunLockGuard {
    pub fn plan_id(&self) -> &PlanId {
        &self.plan_id
    }
}

impl Drop for RunLockGuard {
    fn drop(&mut self) {
        let _ = self.file.unlock();
        held().remove(&self.key);
    }
}

impl FileRunLocks {
    pub(crate) fn new(dir: &Path, read_only: bool) -> Self {
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self { layout: Layout::new(dir), key, read_only }
    }

    /// Takes `plan_id`'s run lock without waiting. Fails with `RunLockBusy` when another
    /// process, or another runner in this one, holds it.
    pub fn acquire(&self, plan_id: &PlanId) -> Result<RunLockGuard, FileStoreError> {
        if self.read_only {
            return Err(FileStoreError::ReadOnly { path: self.key.clone() });
        }
        let key = (self.key.clone(), plan_id.as_str().to_owned());
        if held().contains(&key) {
            return Err(FileStoreError::RunLockBusy { plan_id: plan_id.clone() });
        }
        let locks_dir = self.layout.locks_dir();
        fsutil::ensure_dir(&locks_dir)?;
        let path = self.layout.run_lock(plan_id);
        let (file, created) = fsutil::open_or_create(&path)?;
        if created {
            fsutil::sync_dir(&locks_dir)?;
        }
        // A probe in another process holds the lock shared for a moment: retry briefly before
        // calling the plan busy. A real runner holds it far longer than these retries last.
        for attempt in 0..5 {
            match file.try_lock() {
                Ok(()) => {
                    let mut held = held();
                    if !held.insert(key.clone()) {
                        let _ = file.unlock();
                        return Err(FileStoreError::RunLockBusy { plan_id: plan_id.clone() });
                    }
                    return Ok(RunLockGuard { file, key, plan_id: plan_id.clone() });
                }
                Err(TryLockError::WouldBlock) if attempt < 4 => std::thread::sleep(Duration::from_millis(5)),
                Err(TryLockError::WouldBlock) => break,
                Err(TryLockError::Error(e)) => return Err(FileStoreError::io("cannot take the run lock", &path, e)),
            }
        }
        Err(FileStoreError::RunLockBusy { plan_id: plan_id.clone() })
    }

    /// Whether a runner other than this process holds `plan_id`'s run lock. Creates nothing.
    pub fn is_held_by_another(&self, plan_id: &PlanId) -> Result<bool, FileStoreError> {
        if held().contains(&(self.key.clone(), plan_id.as_str().to_owned())) {
            return Ok(false);
        }
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

impl RunLockProbe for FileRunLocks {
    fn is_held(&self, plan_id: &PlanId) -> bool {
        // When the lock cannot be probed, say "held": a false "gone" would let two runners work
        // on one plan, a false "held" only delays a resume.
        self.is_held_by_another(plan_id).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests;
