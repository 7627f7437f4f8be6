//! Retention in the file store (ADR 0010): removing finished plans' records from the log without
//! moving any other record, so no offset, position, index entry or snapshot of a kept plan
//! changes and writers are never held up for longer than one append.
//!
//! A removal is a *batch*. Its records are not rewritten but declared removed: the batch file
//! lists the byte ranges (holes) they occupy, every reader steps over those ranges, and the
//! ranges are then punched out of the log file (`fallocate(PUNCH_HOLE)`), which gives their
//! blocks back to the file system while the file keeps its length. Files:
//!
//! ```text
//! <store>/retention/batches        commit records: `started`, `committed` and `done` per batch
//! <store>/retention/<n>.batch      batch n: its plans, holes, time and archive (written first)
//! <store>/removed/<bucket>.rm      tombstones, in 4096 buckets by a hash of the plan id
//! ```
//!
//! Order of work, so that a crash anywhere loses no kept record and leaves each plan either
//! whole or removed: a `started` record takes the batch's number (never used twice); tombstones
//! (from then on appends to those plans are refused); a version check under the write lock; the
//! batch file; the `committed` record (the commit point); then punching, deleting the plans'
//! derived files and step logs, rewriting the catalog, and the `done` record. A tombstone whose
//! batch never committed is void once no removal is running. A committed batch without its
//! `done` record is finished by the next writable open or removal. The records themselves are
//! in `format`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use waypoint_application::{Removal, RemovalReport};
use waypoint_domain::PlanId;

mod format;

pub use format::{all_holes, covers, removed_position, Hole, Holes};
use format::{
    append_commit, append_frames, bucket_of, read_batch, read_commits, read_frames, Batch, Commit, Range, Tombstone,
    BATCH_MAGIC, TOMBSTONE_MAGIC,
};

use crate::catalog;
use crate::error::FileStoreError;
use crate::layout::RowsKind;
use crate::log::{RecordReader, FIRST_RECORD};
use crate::recovery::Access;
use crate::state::{FlockGuard, Shared};
use crate::{frame, fsutil};

/// What a committed batch's commit record says.
#[derive(Debug, Clone)]
struct Committed {
    log_end: u64,
    done: bool,
    removed_at: DateTime<Utc>,
    archive: String,
}

/// What this process knows of the store's removals.
#[derive(Debug, Default)]
pub(crate) struct Retention {
    /// Bytes of `retention/batches` read so far.
    read_len: u64,
    /// Committed batches by number.
    committed: BTreeMap<u64, Committed>,
    /// The highest batch number taken (started), committed or not.
    last_batch: u64,
    /// Holes of the batches loaded so far (those a catch-up of this process may cross).
    holes: Arc<Holes>,
    loaded: HashSet<u64>,
    /// Plans of committed batches that did not finish: their catalog rows may still be there.
    unfinished: HashMap<PlanId, u64>,
    /// The commit records have been read once (at open).
    initialized: bool,
    /// Plans removed since this process opened, that its state may still hold: the next
    /// catch-up forgets them.
    to_forget: Vec<PlanId>,
}

impl Retention {
    /// Whether any batch ever committed: until then no read needs a tombstone check.
    pub(crate) fn any(&self) -> bool {
        !self.committed.is_empty()
    }

    /// Whether `plan_id` belongs to a committed batch that has not finished: its rows and index
    /// files may still be there, and must not be believed.
    pub(crate) fn hides_row(&self, plan_id: &PlanId) -> bool {
        self.unfinished.contains_key(plan_id)
    }

    /// Plans removed since this process opened, to drop from its state.
    pub(crate) fn take_forgotten(&mut self) -> Vec<PlanId> {
        std::mem::take(&mut self.to_forget)
    }
}

impl Shared {
    pub(crate) fn lock_retention(&self) -> std::sync::MutexGuard<'_, Retention> {
        self.retention.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads commits written since the last look, and loads the holes of every batch whose
    /// ranges lie past `from` (where a scan of this process starts). Cheap when nothing changed:
    /// one `stat`.
    pub(crate) fn refresh_retention(&self, from: u64) -> Result<Arc<Holes>, FileStoreError> {
        let mut retention = self.lock_retention();
        let read_len = retention.read_len;
        let (commits, len) = read_commits(&self.layout, read_len)?;
        retention.read_len = len;
        let mut fresh = Vec::new();
        for commit in commits {
            match commit {
                Commit::Started { batch } => retention.last_batch = retention.last_batch.max(batch),
                Commit::Committed { batch, log_end, removed_at, archive } => {
                    retention.last_batch = retention.last_batch.max(batch);
                    retention.committed.insert(batch, Committed { log_end, done: false, removed_at, archive });
                    fresh.push(batch);
                }
                Commit::Done { batch } => {
                    if let Some(entry) = retention.committed.get_mut(&batch) {
                        entry.done = true;
                    }
                    retention.unfinished.retain(|_, of| *of != batch);
                }
            }
        }
        // Only a batch that has not finished can have left rows or index files of its plans
        // behind, and only a batch committed while this process was open can have left its
        // plans in this process's memory: a store opened after many removals reads their commit
        // records, not their batch files.
        let opened_before = retention.initialized;
        retention.initialized = true;
        for batch in fresh {
            let unfinished = retention.committed.get(&batch).is_some_and(|c| !c.done);
            if !unfinished && !opened_before {
                continue;
            }
            let plans: Vec<PlanId> = read_batch(&self.layout, batch)?.plans.into_iter().map(|(id, _)| id).collect();
            if opened_before {
                retention.to_forget.extend(plans.iter().cloned());
            }
            if unfinished {
                retention.unfinished.extend(plans.into_iter().map(|plan| (plan, batch)));
            }
        }
        let wanted: Vec<u64> = retention
            .committed
            .iter()
            .filter(|(batch, c)| c.log_end > from && !retention.loaded.contains(batch))
            .map(|(batch, _)| *batch)
            .collect();
        if !wanted.is_empty() {
            let mut holes = (*retention.holes).clone();
            for batch in wanted {
                holes.extend(read_batch(&self.layout, batch)?.holes.into_iter().map(|h| (h.offset, h)));
                retention.loaded.insert(batch);
            }
            retention.holes = Arc::new(holes);
        }
        Ok(retention.holes.clone())
    }

    /// Holes for a scan of the whole log.
    pub(crate) fn holes_from_start(&self) -> Result<Arc<Holes>, FileStoreError> {
        self.refresh_retention(0)
    }

    /// The tombstone of `plan_id`, if its batch committed. Cheap for stores that never removed
    /// anything: no file is opened.
    pub(crate) fn removal(&self, plan_id: &PlanId) -> Result<Option<Removal>, FileStoreError> {
        if !self.lock_retention().any() {
            self.refresh_retention(u64::MAX)?;
            if !self.lock_retention().any() {
                return Ok(None);
            }
        }
        let Some(tombstone) = self.read_tombstone(plan_id)? else { return Ok(None) };
        if tombstone.batch > self.lock_retention().last_batch {
            // Written by a removal that may have committed since.
            self.refresh_retention(u64::MAX)?;
        }
        let retention = self.lock_retention();
        Ok(retention.committed.get(&tombstone.batch).map(|batch| Removal {
            plan_id: plan_id.clone(),
            version: tombstone.version,
            removed_at: batch.removed_at,
            archive: batch.archive.clone(),
        }))
    }

    /// The removals of the plans whose id starts with `prefix`, in id order: the candidates from
    /// each committed batch's plans, each confirmed by its tombstone (a plan that moved before
    /// its batch committed was not removed).
    pub(crate) fn removals_with_prefix(&self, prefix: &str) -> Result<Vec<Removal>, FileStoreError> {
        self.refresh_retention(u64::MAX)?;
        let batches: Vec<u64> = self.lock_retention().committed.keys().copied().collect();
        let mut candidates = BTreeSet::new();
        for batch in batches {
            let plans = read_batch(&self.layout, batch)?.plans;
            candidates.extend(plans.into_iter().map(|(id, _)| id).filter(|id| id.as_str().starts_with(prefix)));
        }
        candidates.iter().filter_map(|id| self.removal(id).transpose()).collect()
    }

    /// The last tombstone entry of `plan_id`, unless it was revoked.
    fn read_tombstone(&self, plan_id: &PlanId) -> Result<Option<Tombstone>, FileStoreError> {
        let path = self.layout.tombstones(bucket_of(plan_id));
        let bytes = match fsutil::read_file(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(e) => return Err(FileStoreError::io("cannot read a tombstone bucket", &path, e)),
        };
        let (entries, _) = read_frames::<Tombstone>(&bytes, TOMBSTONE_MAGIC, &path, 0)?;
        Ok(entries.into_iter().rev().find(|t| t.plan == *plan_id).filter(|t| t.batch != 0))
    }

    fn write_tombstones(&self, entries: &[Tombstone]) -> Result<(), FileStoreError> {
        let mut by_bucket: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        for entry in entries {
            by_bucket.entry(bucket_of(&entry.plan)).or_default().extend(frame::encode(TOMBSTONE_MAGIC, entry));
        }
        fsutil::ensure_dir(&self.layout.removed_dir())?;
        for (bucket, frames) in by_bucket {
            append_frames(&self.layout.tombstones(bucket), TOMBSTONE_MAGIC, &frames)?;
        }
        sync_file_system(&self.layout.removed_dir())
    }

    /// Whether an append to `plan_id` must be refused, and since when: it was removed, or a
    /// removal that is running right now decided on its version. Checked under the write lock.
    /// A tombstone of a removal that died before its commit is void: no process holds
    /// `checkpoint.lock` for it any more.
    pub(crate) fn append_refused(&self, plan_id: &PlanId) -> Result<Option<DateTime<Utc>>, FileStoreError> {
        if !self.layout.removed_dir().exists() {
            return Ok(None);
        }
        if self.read_tombstone(plan_id)?.is_none() {
            return Ok(None);
        }
        if let Some(removal) = self.removal(plan_id)? {
            return Ok(Some(removal.removed_at));
        }
        let running = self.try_checkpoint_lock()?.is_none();
        Ok(running.then(Utc::now))
    }

    /// Removes each `(plan, version)` whose current version is exactly that, leaving tombstones;
    /// see the module docs for the order of work.
    pub(crate) fn remove_plans(
        &self,
        plans: &[(PlanId, u32)],
        removed_at: DateTime<Utc>,
        archive: &str,
    ) -> Result<RemovalReport, FileStoreError> {
        if self.read_only {
            return Err(FileStoreError::ReadOnly { path: self.layout.dir().to_path_buf() });
        }
        let lock = fsutil::open_lock_file(&self.layout.checkpoint_lock())?;
        fsutil::lock_bounded(&lock, &self.layout.checkpoint_lock(), true, self.options.lock_timeout)?;
        let _unlock = FlockGuard(&lock);
        self.finish_unfinished()?;

        // Everything folded into the indexes, so the version check below reads them.
        let mut state = self.lock_state();
        self.catch_up_shared(&mut state)?;
        self.checkpoint_locked(&mut state)?;
        let bytes_before = crate::fingerprint::disk_usage(self.layout.dir())?;
        let mut report = RemovalReport::default();
        let mut chosen: Vec<(PlanId, u32)> = Vec::new();
        let mut seen = HashSet::new();
        for (plan_id, version) in plans {
            let current = self.current_version(&mut state, plan_id)?;
            if current == 0 || current != *version || !seen.insert(plan_id.clone()) {
                report.skipped.push(plan_id.clone());
            } else {
                chosen.push((plan_id.clone(), *version));
            }
        }
        drop(state);
        if chosen.is_empty() {
            return Ok(report);
        }

        // The batch takes its number for good, so a crashed batch's tombstones never count.
        self.refresh_retention(u64::MAX)?;
        let (batch, read_len) = {
            let retention = self.lock_retention();
            (retention.last_batch + 1, retention.read_len)
        };
        let len = append_commit(&self.layout, Commit::Started { batch }, read_len)?;
        {
            let mut retention = self.lock_retention();
            retention.read_len = len;
            retention.last_batch = batch;
        }
        // Tombstones first: from here on, no append to these plans is accepted.
        let entries: Vec<Tombstone> =
            chosen.iter().map(|(plan, version)| Tombstone { plan: plan.clone(), batch, version: *version }).collect();
        self.write_tombstones(&entries)?;

        // An append that won the race to one of them before its tombstone landed is in the log
        // now: under the write lock (briefly) the records since the checkpoint say which.
        let keep_last = catalog::read_head(&self.layout)?.map(|head| head.last.offset);
        let (log_end, moved) = {
            let mut state = self.lock_state();
            let write_lock = self.write_lock.as_ref().expect("a writable store holds write.lock");
            fsutil::lock_bounded(write_lock, &self.layout.write_lock(), true, self.options.lock_timeout)?;
            let _unlock = FlockGuard(write_lock);
            self.catch_up(&mut state, Access::Exclusive)?;
            let moved: HashSet<PlanId> =
                chosen.iter().filter(|(id, _)| state.tail.contains_key(id)).map(|(id, _)| id.clone()).collect();
            (state.end, moved)
        };
        if !moved.is_empty() {
            let revoked: Vec<Tombstone> =
                moved.iter().map(|plan| Tombstone { plan: plan.clone(), batch: 0, version: 0 }).collect();
            self.write_tombstones(&revoked)?;
        }
        chosen.retain(|(id, _)| {
            let keep = !moved.contains(id);
            if !keep {
                report.skipped.push(id.clone());
            }
            keep
        });
        if chosen.is_empty() {
            return Ok(report);
        }

        let ids: HashSet<&PlanId> = chosen.iter().map(|(id, _)| id).collect();
        let (holes, keep) = self.find_holes(&ids, log_end, keep_last)?;
        let record = Batch { batch, plans: chosen.clone(), holes, keep };
        fsutil::ensure_dir(&self.layout.retention_dir())?;
        fsutil::write_atomically(
            &self.layout.tmp_dir(),
            &self.layout.retention_dir(),
            &self.layout.retention_batch(batch),
            &frame::encode(BATCH_MAGIC, &record),
        )?;
        let read_len = {
            self.refresh_retention(u64::MAX)?;
            self.lock_retention().read_len
        };
        let commit = Commit::Committed { batch, log_end, removed_at, archive: archive.to_owned() };
        let len = append_commit(&self.layout, commit, read_len)?;
        {
            let mut retention = self.lock_retention();
            retention.read_len = len;
            let committed = Committed { log_end, done: false, removed_at, archive: archive.to_owned() };
            retention.committed.insert(batch, committed);
            retention.unfinished.extend(chosen.iter().map(|(id, _)| (id.clone(), batch)));
        }
        self.finish_batch(&record)?;
        report.removed = chosen.into_iter().map(|(id, _)| id).collect();
        let bytes_after = crate::fingerprint::disk_usage(self.layout.dir())?;
        report.reclaimed_bytes = bytes_before.saturating_sub(bytes_after);
        Ok(report)
    }

    /// Scans the log up to `log_end` for the records of `ids`, merging neighbours into holes.
    /// The first record and the record the checkpoint head vouches for stay unpunched.
    fn find_holes(
        &self,
        ids: &HashSet<&PlanId>,
        log_end: u64,
        keep_last: Option<u64>,
    ) -> Result<(Vec<Hole>, Vec<Range>), FileStoreError> {
        let Some(file) = &self.log else { return Ok((Vec::new(), Vec::new())) };
        let holes = self.holes_from_start()?;
        let mut reader = RecordReader::new(file.clone(), self.log_path.clone(), FIRST_RECORD, log_end).skipping(holes);
        let mut out: Vec<Hole> = Vec::new();
        let mut keep = Vec::new();
        let mut extend = false;
        while let Some(item) = reader.next() {
            let (offset, raw) = match item? {
                Ok(record) => record,
                Err(bad) => return Err(FileStoreError::corrupt(&self.log_path, bad.offset, bad.error.to_string())),
            };
            let end = reader.offset();
            let removed = PlanId::parse(&raw.plan_id).is_ok_and(|id| ids.contains(&id));
            if !removed {
                extend = false;
                continue;
            }
            if offset == FIRST_RECORD || Some(offset) == keep_last {
                keep.push((offset, end));
            }
            match out.last_mut() {
                // Contiguous with the previous removed record, with no hole of an earlier batch
                // between them.
                Some(last) if extend && last.end == offset && reader.skipped() == 0 => {
                    last.end = end;
                    last.count += 1;
                }
                _ => out.push(Hole { offset, end, first_position: raw.position, count: 1 }),
            }
            extend = true;
        }
        Ok((out, keep))
    }

    /// The work after a batch's commit, idempotent: punch its holes, delete its plans' derived
    /// files and step logs, rewrite the catalog without them, then record it done.
    fn finish_batch(&self, batch: &Batch) -> Result<(), FileStoreError> {
        if let Some(file) = &self.log {
            'punching: for hole in &batch.holes {
                for (from, to) in unkept(hole, &batch.keep) {
                    if !punch(file, &self.log_path, from, to - from)? {
                        break 'punching;
                    }
                }
            }
            file.sync_data().map_err(|e| FileStoreError::io("cannot sync the log", &self.log_path, e))?;
        }
        let removed: HashSet<PlanId> = batch.plans.iter().map(|(id, _)| id.clone()).collect();
        {
            let mut state = self.lock_state();
            state.forget(removed.iter());
            for plan_id in &removed {
                for path in [self.layout.plan_index(plan_id), self.layout.view(plan_id), self.layout.summary(plan_id)] {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(FileStoreError::io("cannot delete a removed plan's file", &path, e)),
                    }
                }
                crate::step_logs::remove_plan_logs(&self.layout, plan_id)?;
            }
            if let Some(mut head) = catalog::read_head(&self.layout)?.filter(|h| Some(h.store) == state.store) {
                let mut stale = Vec::new();
                for kind in [RowsKind::Open, RowsKind::Done] {
                    stale.extend(catalog::rewrite_without(&self.layout, &mut head, kind, &removed)?);
                }
                catalog::write_head(&self.layout, &head)?;
                if !stale.is_empty() {
                    catalog::remove_stale(&self.layout, &head);
                }
                if state.base.as_ref().is_some_and(|b| b.position() <= head.position()) {
                    self.rebase(&mut state, head)?;
                }
            }
        }
        let read_len = self.lock_retention().read_len;
        let len = append_commit(&self.layout, Commit::Done { batch: batch.batch }, read_len)?;
        let mut retention = self.lock_retention();
        retention.read_len = len;
        if let Some(entry) = retention.committed.get_mut(&batch.batch) {
            entry.done = true;
        }
        retention.unfinished.retain(|_, of| *of != batch.batch);
        Ok(())
    }

    /// Finishes every committed batch that a crash left unfinished. Needs `checkpoint.lock`.
    fn finish_unfinished(&self) -> Result<(), FileStoreError> {
        self.refresh_retention(u64::MAX)?;
        let unfinished: Vec<u64> =
            self.lock_retention().committed.iter().filter(|(_, c)| !c.done).map(|(b, _)| *b).collect();
        for batch in unfinished {
            self.finish_batch(&read_batch(&self.layout, batch)?)?;
        }
        Ok(())
    }

    /// On a writable open: finishes a removal that crashed after its commit, unless another
    /// process is checkpointing or removing right now (it will).
    pub(crate) fn recover_retention(&self) -> Result<(), FileStoreError> {
        self.refresh_retention(u64::MAX)?;
        if self.lock_retention().committed.values().all(|c| c.done) {
            return Ok(());
        }
        match self.try_checkpoint_lock()? {
            Some(_held) => self.finish_unfinished(),
            None => Ok(()),
        }
    }
}

/// The parts of `hole` outside the `keep` ranges.
fn unkept(hole: &Hole, keep: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut parts = vec![(hole.offset, hole.end)];
    for &(from, to) in keep {
        parts = parts
            .into_iter()
            .flat_map(|(a, b)| {
                if to <= a || from >= b {
                    vec![(a, b)]
                } else {
                    [(a, from.max(a)), (to.min(b), b)].into_iter().filter(|(x, y)| x < y).collect()
                }
            })
            .collect();
    }
    parts
}

/// Gives the blocks of `[offset, offset + len)` back to the file system; the file keeps its
/// length and the range reads as zeros. `false` on a file system that cannot punch holes: the
/// records stay removed (readers step over them), only their space is not given back.
fn punch(file: &File, path: &Path, offset: u64, len: u64) -> Result<bool, FileStoreError> {
    use rustix::fs::FallocateFlags;
    match rustix::fs::fallocate(file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::OPNOTSUPP) => Ok(false),
        Err(e) => Err(FileStoreError::io("cannot give removed records' space back", path, std::io::Error::from(e))),
    }
}

fn sync_file_system(dir: &Path) -> Result<(), FileStoreError> {
    let handle = File::open(dir).map_err(|e| FileStoreError::io("cannot open a store directory", dir, e))?;
    rustix::fs::syncfs(&handle).map_err(|e| FileStoreError::io("cannot sync the store", dir, std::io::Error::from(e)))
}

#[cfg(test)]
mod tests;
