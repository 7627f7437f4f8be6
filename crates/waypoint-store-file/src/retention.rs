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
//! <store>/retention/batches        commit records, one frame per committed or finished batch
//! <store>/retention/<n>.batch      batch n: its plans, holes, time and archive (written first)
//! <store>/removed/<plan>.rm        a removed plan's tombstone (names its batch)
//! ```
//!
//! Order of work, so that a crash anywhere loses no kept record and leaves each plan either
//! whole or removed: tombstones first (from then on appends to those plans are refused), a
//! version check under the write lock, the batch file, then the commit record (the commit
//! point); then punching, deleting the plans' derived files and rewriting the catalog, and a
//! `done` record. A tombstone whose batch never committed is void. A committed batch without its
//! `done` record is finished by the next writable open or removal.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use waypoint_application::{Removal, RemovalReport};
use waypoint_domain::PlanId;

use crate::catalog;
use crate::error::FileStoreError;
use crate::layout::Layout;
use crate::layout::RowsKind;
use crate::log::{RecordReader, FIRST_RECORD};
use crate::recovery::Access;
use crate::state::{FlockGuard, Shared};
use crate::{frame, fsutil};

const COMMIT_MAGIC: [u8; 4] = *b"WPRC";
const BATCH_MAGIC: [u8; 4] = *b"WPRB";
const TOMBSTONE_MAGIC: [u8; 4] = *b"WPRT";

/// One removed byte range of the log: whole records, `count` consecutive positions from
/// `first_position`, from `offset` to `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hole {
    pub offset: u64,
    pub end: u64,
    pub first_position: u32,
    pub count: u32,
}

/// A byte range of the log, `(from, to)`.
type Range = (u64, u64);

/// Holes by start offset: what a reader steps over.
pub type Holes = BTreeMap<u64, Hole>;

/// A batch as written before its commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Batch {
    batch: u64,
    removed_at: DateTime<Utc>,
    archive: String,
    /// The log's length when the batch was decided: every hole lies before it.
    log_end: u64,
    plans: Vec<(PlanId, u32)>,
    holes: Vec<Hole>,
    /// Byte ranges inside holes left unpunched: records a derived file's binding reads (the
    /// first record names the store, the checkpoint head vouches for its last record).
    keep: Vec<Range>,
}

/// A line of `retention/batches`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Commit {
    Committed { batch: u64, log_end: u64 },
    Done { batch: u64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tombstone {
    batch: u64,
    version: u32,
    removed_at: DateTime<Utc>,
    archive: String,
}

/// What this process knows of the store's removals.
#[derive(Debug, Default)]
pub(crate) struct Retention {
    /// Bytes of `retention/batches` read so far.
    read_len: u64,
    /// Committed batches: the log's length at each, and whether it finished.
    committed: BTreeMap<u64, (u64, bool)>,
    /// Holes of the batches loaded so far (those a catch-up of this process may cross).
    holes: Arc<Holes>,
    loaded: HashSet<u64>,
    /// Plans of committed batches that did not finish: their catalog rows may still be there.
    unfinished_plans: HashSet<PlanId>,
    /// The same, by batch.
    unfinished: HashMap<u64, Vec<PlanId>>,
}

impl Retention {
    /// Whether any batch ever committed: until then no read needs a tombstone check.
    pub(crate) fn any(&self) -> bool {
        !self.committed.is_empty()
    }

    pub(crate) fn hides_row(&self, plan_id: &PlanId) -> bool {
        self.unfinished_plans.contains(plan_id)
    }
}

/// Reads the frames of `retention/batches` from `from`; a torn last frame (a crash while
/// committing) is not a commit. Returns the commits and the length read.
fn read_commits(layout: &Layout, from: u64) -> Result<(Vec<Commit>, u64), FileStoreError> {
    let path = layout.retention_commits();
    let Some(file) = fsutil::open_existing_read_only(&path)? else { return Ok((Vec::new(), 0)) };
    let len = file.metadata().map_err(|e| FileStoreError::io("cannot read the retention log", &path, e))?.len();
    if len <= from {
        return Ok((Vec::new(), from));
    }
    let mut bytes = vec![0u8; (len - from) as usize];
    file.read_exact_at(&mut bytes, from).map_err(|e| FileStoreError::io("cannot read the retention log", &path, e))?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 12 <= bytes.len() {
        let body_len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let Some(frame_bytes) = bytes.get(at..at + 12 + body_len) else { break };
        match frame::decode::<Commit>(COMMIT_MAGIC, frame_bytes) {
            Some(commit) => out.push(commit),
            None if at + 12 + body_len == bytes.len() => break,
            None => {
                return Err(FileStoreError::corrupt(
                    &path,
                    from + at as u64,
                    "a damaged commit record of the retention log",
                ))
            }
        }
        at += 12 + body_len;
    }
    Ok((out, from + at as u64))
}

fn append_commit(layout: &Layout, commit: Commit, known_len: u64) -> Result<u64, FileStoreError> {
    let path = layout.retention_commits();
    fsutil::ensure_dir(&layout.retention_dir())?;
    let (file, created) = fsutil::open_or_create(&path)?;
    // Bytes past what was read whole are a torn commit of a crashed removal: overwrite them.
    file.set_len(known_len).map_err(|e| FileStoreError::io("cannot trim the retention log", &path, e))?;
    let bytes = frame::encode(COMMIT_MAGIC, &commit);
    file.write_all_at(&bytes, known_len).map_err(|e| FileStoreError::io("cannot write the retention log", &path, e))?;
    file.sync_data().map_err(|e| FileStoreError::io("cannot sync the retention log", &path, e))?;
    if created {
        fsutil::sync_dir(&layout.retention_dir())?;
    }
    Ok(known_len + bytes.len() as u64)
}

fn read_batch(layout: &Layout, batch: u64) -> Result<Batch, FileStoreError> {
    let path = layout.retention_batch(batch);
    let bytes = fsutil::read_file(&path)
        .map_err(|e| FileStoreError::io("cannot read a retention batch", &path, e))?
        .ok_or_else(|| FileStoreError::corrupt(&path, 0, "a committed retention batch is missing"))?;
    frame::decode(BATCH_MAGIC, &bytes).ok_or_else(|| FileStoreError::corrupt(&path, 0, "a damaged retention batch"))
}

/// Every hole of every committed batch of the store at `dir`: what a whole-log reader (replay,
/// verify) steps over.
pub fn all_holes(dir: &Path) -> Result<Arc<Holes>, FileStoreError> {
    let layout = Layout::new(dir);
    let (commits, _) = read_commits(&layout, 0)?;
    let mut holes = Holes::new();
    for commit in commits {
        if let Commit::Committed { batch, .. } = commit {
            holes.extend(read_batch(&layout, batch)?.holes.into_iter().map(|h| (h.offset, h)));
        }
    }
    Ok(Arc::new(holes))
}

/// Whether `offset` lies in a hole.
pub fn covers(holes: &Holes, offset: u64) -> bool {
    holes.range(..=offset).next_back().is_some_and(|(_, h)| h.end > offset)
}

/// Whether `position` is one of the positions retention removed.
pub fn removed_position(holes: &Holes, position: u32) -> bool {
    holes.values().any(|h| (h.first_position..h.first_position + h.count).contains(&position))
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
                Commit::Committed { batch, log_end } => {
                    retention.committed.insert(batch, (log_end, false));
                    fresh.push(batch);
                }
                Commit::Done { batch } => {
                    if let Some(entry) = retention.committed.get_mut(&batch) {
                        entry.1 = true;
                    }
                    if let Some(plans) = retention.unfinished.remove(&batch) {
                        for plan_id in plans {
                            retention.unfinished_plans.remove(&plan_id);
                        }
                    }
                }
            }
        }
        // Only a batch that has not finished can have left rows of its plans behind: a store
        // opened after many removals reads their commit records, not their batch files.
        for batch in fresh {
            if retention.committed.get(&batch).is_some_and(|(_, done)| !done) {
                let plans: Vec<PlanId> = read_batch(&self.layout, batch)?.plans.into_iter().map(|(id, _)| id).collect();
                retention.unfinished_plans.extend(plans.iter().cloned());
                retention.unfinished.insert(batch, plans);
            }
        }
        let wanted: Vec<u64> = retention
            .committed
            .iter()
            .filter(|(batch, (log_end, _))| *log_end > from && !retention.loaded.contains(batch))
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
        if !self.lock_retention().committed.contains_key(&tombstone.batch) {
            // Written by a removal that may commit now, or crashed before committing.
            self.refresh_retention(u64::MAX)?;
            if !self.lock_retention().committed.contains_key(&tombstone.batch) {
                return Ok(None);
            }
        }
        Ok(Some(Removal {
            plan_id: plan_id.clone(),
            version: tombstone.version,
            removed_at: tombstone.removed_at,
            archive: tombstone.archive,
        }))
    }

    fn read_tombstone(&self, plan_id: &PlanId) -> Result<Option<Tombstone>, FileStoreError> {
        let path = self.layout.tombstone(plan_id);
        match fsutil::read_file(&path) {
            Ok(bytes) => Ok(bytes.and_then(|b| frame::decode(TOMBSTONE_MAGIC, &b))),
            Err(e) => Err(FileStoreError::io("cannot read a tombstone", &path, e)),
        }
    }

    /// Whether an append to `plan_id` must be refused: it has a tombstone, committed or about to
    /// be (a removal in progress decided on its version). Checked under the write lock.
    pub(crate) fn append_refused(&self, plan_id: &PlanId) -> Result<Option<DateTime<Utc>>, FileStoreError> {
        if !self.layout.removed_dir().exists() {
            return Ok(None);
        }
        Ok(self.read_tombstone(plan_id)?.map(|t| t.removed_at))
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

        let batch = self.lock_retention().committed.keys().next_back().map_or(1, |b| b + 1);
        // Tombstones first: from here on, no append to these plans is accepted.
        fsutil::ensure_dir(&self.layout.removed_dir())?;
        for (plan_id, version) in &chosen {
            let tombstone = Tombstone { batch, version: *version, removed_at, archive: archive.to_owned() };
            let bytes = frame::encode(TOMBSTONE_MAGIC, &tombstone);
            fsutil::write_replacing(&self.layout.tmp_dir(), &self.layout.tombstone(plan_id), &bytes)?;
        }
        sync_file_system(&self.layout.removed_dir())?;

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
        for plan_id in &moved {
            let _ = std::fs::remove_file(self.layout.tombstone(plan_id));
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
        let record =
            Batch { batch, removed_at, archive: archive.to_owned(), log_end, plans: chosen.clone(), holes, keep };
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
        let len = append_commit(&self.layout, Commit::Committed { batch, log_end }, read_len)?;
        {
            let mut retention = self.lock_retention();
            retention.read_len = len;
            retention.committed.insert(batch, (log_end, false));
            retention.unfinished_plans.extend(chosen.iter().map(|(id, _)| id.clone()));
            retention.unfinished.insert(batch, chosen.iter().map(|(id, _)| id.clone()).collect());
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
    /// files, rewrite the catalog without them, then record it done.
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
            for plan_id in &removed {
                state.tail.remove(plan_id);
                state.known.remove(plan_id);
                state.views.remove(plan_id);
                state.summaries.remove(plan_id);
                state.index.forget(plan_id);
            }
            state.tail_len = state.tail.values().map(|t| t.records.len() as u32).sum();
            for plan_id in &removed {
                for path in [self.layout.plan_index(plan_id), self.layout.view(plan_id), self.layout.summary(plan_id)] {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(FileStoreError::io("cannot delete a removed plan's file", &path, e)),
                    }
                }
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
            entry.1 = true;
        }
        retention.unfinished.remove(&batch.batch);
        for plan_id in &removed {
            retention.unfinished_plans.remove(plan_id);
        }
        Ok(())
    }

    /// Finishes every committed batch that a crash left unfinished. Needs `checkpoint.lock`.
    fn finish_unfinished(&self) -> Result<(), FileStoreError> {
        self.refresh_retention(u64::MAX)?;
        let unfinished: Vec<u64> =
            self.lock_retention().committed.iter().filter(|(_, (_, done))| !done).map(|(b, _)| *b).collect();
        for batch in unfinished {
            self.finish_batch(&read_batch(&self.layout, batch)?)?;
        }
        Ok(())
    }

    /// On a writable open: finishes a removal that crashed after its commit, unless another
    /// process is checkpointing or removing right now (it will).
    pub(crate) fn recover_retention(&self) -> Result<(), FileStoreError> {
        self.refresh_retention(u64::MAX)?;
        if self.lock_retention().committed.values().all(|(_, done)| *done) {
            return Ok(());
        }
        let lock = fsutil::open_lock_file(&self.layout.checkpoint_lock())?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(()),
            Err(TryLockError::Error(e)) => {
                return Err(FileStoreError::io("cannot lock the checkpoint", self.layout.checkpoint_lock(), e))
            }
        }
        let _unlock = FlockGuard(&lock);
        self.finish_unfinished()
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
