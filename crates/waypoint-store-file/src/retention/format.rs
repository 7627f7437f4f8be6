//! The on-disk records of retention (ADR 0010): holes, batch files, the commit log
//! (`retention/batches`) and the tombstone buckets, with their framing. A torn last frame is a
//! write a crash interrupted; damage before a whole frame is corruption.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use waypoint_domain::PlanId;

use crate::error::FileStoreError;
use crate::layout::Layout;
use crate::{frame, fsutil};

pub(crate) use crate::format::{
    RETENTION_BATCH_MAGIC as BATCH_MAGIC, RETENTION_COMMIT_MAGIC as COMMIT_MAGIC, TOMBSTONE_MAGIC,
};

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
pub(crate) type Range = (u64, u64);

/// Holes by start offset: what a reader steps over.
pub type Holes = BTreeMap<u64, Hole>;

/// A batch as written before its commit: its plans and holes (its time, archive and the log's
/// length at the time are in its commit record).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Batch {
    pub(crate) batch: u64,
    pub(crate) plans: Vec<(PlanId, u32)>,
    pub(crate) holes: Vec<Hole>,
    /// Byte ranges inside holes left unpunched: records a derived file's binding reads (the
    /// first record names the store, the checkpoint head vouches for its last record).
    pub(crate) keep: Vec<Range>,
}

/// A line of `retention/batches`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Commit {
    /// The batch number is taken; its tombstones may follow.
    Started { batch: u64 },
    /// The commit point: the batch file is written and its plans are removed.
    Committed { batch: u64, log_end: u64, removed_at: DateTime<Utc>, archive: String },
    /// Its holes are punched and its plans' derived files are gone.
    Done { batch: u64 },
}

/// One tombstone entry of a bucket file; the last entry of a plan wins. Batch 0 revokes: the
/// plan moved before its removal committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Tombstone {
    pub(crate) plan: PlanId,
    pub(crate) batch: u64,
    pub(crate) version: u32,
}

/// Tombstone buckets: few enough that each holds many tombstones per file-system block, enough
/// that a lookup reads little.
pub(crate) const BUCKETS: u32 = 4096;

pub(crate) fn bucket_of(plan_id: &PlanId) -> u16 {
    (crate::crc::checksum(plan_id.as_str().as_bytes()) % BUCKETS) as u16
}

/// Reads the frames of `retention/batches` from `from`; a torn last frame (a crash while
/// committing) is not a commit. Returns the commits and the length read.
pub(crate) fn read_commits(layout: &Layout, from: u64) -> Result<(Vec<Commit>, u64), FileStoreError> {
    let path = layout.retention_commits();
    let Some(file) = fsutil::open_existing_read_only(&path)? else { return Ok((Vec::new(), 0)) };
    let len = file.metadata().map_err(|e| FileStoreError::io("cannot read the retention log", &path, e))?.len();
    if len <= from {
        return Ok((Vec::new(), from));
    }
    let mut bytes = vec![0u8; (len - from) as usize];
    file.read_exact_at(&mut bytes, from).map_err(|e| FileStoreError::io("cannot read the retention log", &path, e))?;
    let (out, valid) = read_frames(&bytes, COMMIT_MAGIC, &path, from)?;
    Ok((out, from + valid))
}

/// The whole frames at the start of `bytes`, and how many bytes they take. A frame cut short or
/// damaged at the very end is a write that a crash interrupted (never acknowledged): it ends the
/// list. Damage with whole frames after it is corruption.
pub(crate) fn read_frames<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    magic: [u8; 4],
    path: &Path,
    base: u64,
) -> Result<(Vec<T>, u64), FileStoreError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 12 <= bytes.len() {
        let body_len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let Some(frame_bytes) = bytes.get(at..at + 12 + body_len) else { break };
        match frame::decode::<T>(magic, frame_bytes) {
            Some(value) => out.push(value),
            None if at + 12 + body_len == bytes.len() => break,
            None => return Err(FileStoreError::corrupt(path, base + at as u64, "a damaged retention record")),
        }
        at += 12 + body_len;
    }
    Ok((out, at as u64))
}

/// Appends `frames` to the file at `path` after its whole frames (cutting a torn tail), without
/// syncing it.
pub(crate) fn append_frames(path: &Path, magic: [u8; 4], frames: &[u8]) -> Result<(), FileStoreError> {
    let (file, _) = fsutil::open_or_create(path)?;
    let bytes = fsutil::read_file(path)
        .map_err(|e| FileStoreError::io("cannot read a tombstone bucket", path, e))?
        .unwrap_or_default();
    let (_, valid) = read_frames::<serde_json::Value>(&bytes, magic, path, 0)?;
    file.set_len(valid).map_err(|e| FileStoreError::io("cannot trim a tombstone bucket", path, e))?;
    file.write_all_at(frames, valid).map_err(|e| FileStoreError::io("cannot write a tombstone bucket", path, e))
}

pub(crate) fn append_commit(layout: &Layout, commit: Commit, known_len: u64) -> Result<u64, FileStoreError> {
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

pub(crate) fn read_batch(layout: &Layout, batch: u64) -> Result<Batch, FileStoreError> {
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
