//! The steps' logs in the file store: one file per stream of each attempt, under the store's own
//! layout (`logs/<plan>/<step>-<attempt>.out|err`), so any process that can open the store reads
//! them. Files are 0600 and folders 0700 whatever the umask, opened without following links, and
//! replaced whole (a temporary file in `tmp/`, fsync, rename, directory fsync), so a reader sees
//! the previous log or the new one, never part of either. The file's header is in `format`.
//!
//! Logs are not events: no record, checkpoint, index or `verify` covers them. Retention deletes a
//! removed plan's folder when it finishes the plan's batch (after the commit, or on the open that
//! finishes a batch a crash interrupted); a log written while its plan is being removed finds the
//! removal when it is done and deletes what it wrote.

use std::fs;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};

use waypoint_application::{LogStream, StepLog};
use waypoint_domain::{Attempt, PlanId, StepNumber};

use crate::error::FileStoreError;
use crate::fsutil;
use crate::layout::{self, Layout};
use crate::state::Shared;

mod format;

/// Numbers this process's step-log temporaries, so that no two writes share one.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

impl Shared {
    /// Replaces what is stored for `log`'s (step, attempt, stream) of `plan_id`; durable when it
    /// returns. Refuses a log over the port's limits, a plan retention removed and a plan the
    /// store does not hold, writing nothing.
    pub(crate) fn put_step_log(&self, plan_id: &PlanId, log: &StepLog) -> Result<(), FileStoreError> {
        if let Some(detail) = log.over_limits(plan_id) {
            return Err(FileStoreError::TooLarge(detail));
        }
        if self.read_only {
            return Err(FileStoreError::ReadOnly { path: self.layout.dir().to_path_buf() });
        }
        self.refuse_plan_not_held(plan_id)?;
        let dir = self.layout.plan_logs(plan_id);
        let checked = [self.layout.logs_dir(), dir.clone()];
        // Before anything is created: a link planted at `logs/` (or at the plan's folder) would
        // have the plan's folder made through it, somewhere else. Again once it exists.
        fsutil::refuse_symlinks(&checked)?;
        fsutil::ensure_dir(&dir)?;
        fsutil::refuse_symlinks(&checked)?;
        let temp = self.layout.step_log_temp(
            plan_id,
            log.step,
            log.attempt,
            log.stream,
            NEXT_TEMP.fetch_add(1, Ordering::Relaxed),
        );
        let path = self.layout.step_log(plan_id, log.step, log.attempt, log.stream);
        let written = fsutil::write_atomically_via(
            &self.layout.tmp_dir(),
            temp,
            &dir,
            &path,
            &format::encode(log.cut, &log.bytes),
        );
        // A removal of this plan may have committed meanwhile and deleted the folder before the
        // rename (which then failed) or after it; or it deletes the folder once this returns.
        // Either way nothing of a removed plan is left behind, and the caller hears why.
        if let Some(removal) = self.removal(plan_id)? {
            remove_plan_logs(&self.layout, plan_id)?;
            return Err(FileStoreError::Removed { plan_id: plan_id.clone(), removed_at: removal.removed_at });
        }
        written
    }

    /// `plan_id`'s step logs, only those of `step` and `attempt` where given, in the port's
    /// order. A plan retention removed has none, even while its batch is still being finished.
    pub(crate) fn step_logs(
        &self,
        plan_id: &PlanId,
        step: Option<StepNumber>,
        attempt: Option<Attempt>,
    ) -> Result<Vec<StepLog>, FileStoreError> {
        let dir = self.layout.plan_logs(plan_id);
        fsutil::refuse_symlinks(&[self.layout.logs_dir(), dir.clone()])?;
        let wanted: Vec<(StepNumber, Attempt, LogStream)> = match (step, attempt) {
            (Some(step), Some(attempt)) => LogStream::ALL.iter().map(|&stream| (step, attempt, stream)).collect(),
            _ => {
                let entries = match fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(FileStoreError::io("cannot list a plan's step logs", &dir, e)),
                };
                let mut wanted = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(|e| FileStoreError::io("cannot list a plan's step logs", &dir, e))?;
                    let Some(key) = entry.file_name().to_str().and_then(layout::parse_step_log) else { continue };
                    if step.is_none_or(|step| step == key.0) && attempt.is_none_or(|attempt| attempt == key.1) {
                        wanted.push(key);
                    }
                }
                wanted
            }
        };
        let mut logs = Vec::with_capacity(wanted.len());
        for (step, attempt, stream) in wanted {
            let path = self.layout.step_log(plan_id, step, attempt, stream);
            // Gone since the listing: a removal of the plan deleted it.
            let Some(file) =
                fsutil::read_file(&path).map_err(|e| FileStoreError::io("cannot read a step log", &path, e))?
            else {
                continue;
            };
            let (cut, bytes) =
                format::decode(&file).map_err(|damage| FileStoreError::corrupt(&path, damage.offset, damage.detail))?;
            logs.push(StepLog { step, attempt, stream, bytes, cut });
        }
        if !logs.is_empty() && self.removal(plan_id)?.is_some() {
            return Ok(Vec::new());
        }
        logs.sort_by_key(StepLog::key);
        Ok(logs)
    }

    /// Refuses a step log of a plan retention removed, or of a plan the store does not hold.
    fn refuse_plan_not_held(&self, plan_id: &PlanId) -> Result<(), FileStoreError> {
        let removed = |removal: waypoint_application::Removal| FileStoreError::Removed {
            plan_id: plan_id.clone(),
            removed_at: removal.removed_at,
        };
        if let Some(removal) = self.removal(plan_id)? {
            return Err(removed(removal));
        }
        let version = {
            let mut state = self.lock_state();
            self.catch_up_shared(&mut state)?;
            self.current_version(&mut state, plan_id)?
        };
        if version == 0 {
            // No version: never created, or removed by a removal that committed since the
            // check above.
            return Err(match self.removal(plan_id)? {
                Some(removal) => removed(removal),
                None => FileStoreError::PlanNotFound { plan_id: plan_id.clone() },
            });
        }
        Ok(())
    }
}

/// Deletes every step log of `plan_id` and its folder; nothing there is fine. Retention calls it
/// for each plan of a batch it finishes. Entries are deleted, never followed.
pub(crate) fn remove_plan_logs(layout: &Layout, plan_id: &PlanId) -> Result<(), FileStoreError> {
    let dir = layout.plan_logs(plan_id);
    let fail = |path: &std::path::Path, e| FileStoreError::io("cannot delete a removed plan's step logs", path, e);
    match fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(&dir, e)),
        Ok(meta) if !meta.is_dir() => {
            return forget_entry(fs::remove_file(&dir)).map_err(|e| fail(&dir, e));
        }
        Ok(_) => {}
    }
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(&dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| fail(&dir, e))?;
        let path = entry.path();
        let removed = match entry.file_type() {
            // Not something the store writes; removed without following any link inside.
            Ok(kind) if kind.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        forget_entry(removed).map_err(|e| fail(&path, e))?;
    }
    match fs::remove_dir(&dir) {
        // A log written at this moment is deleted, with the folder, by its own writer, which
        // finds the removal once it has renamed its file into place.
        Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {}
        other => forget_entry(other).map_err(|e| fail(&dir, e))?,
    }
    fsutil::sync_dir(&layout.logs_dir())
}

/// A deletion that found nothing to delete did its job.
fn forget_entry(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests;
