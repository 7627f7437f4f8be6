//! Per-plan offset indexes, `index/<plan id>.idx`: entry `v` (16 bytes at `(v - 1) * 16`) holds
//! the byte offset, global position and version of the plan's record at version `v`. The index
//! is derived data: every entry is checked against the record it points to, and a bad or missing
//! one sends the reader back to the log.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use waypoint_domain::PlanId;

use crate::error::FileStoreError;
use crate::fsutil;
use crate::layout::Layout;

pub const ENTRY_LEN: u64 = 16;
/// Open index files kept at once; past this the cache starts over (file handles are finite).
const MAX_OPEN: usize = 256;

/// One index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub version: u32,
    pub position: u32,
    pub offset: u64,
}

impl IndexEntry {
    fn encode(self) -> [u8; ENTRY_LEN as usize] {
        let mut out = [0u8; ENTRY_LEN as usize];
        out[..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.position.to_le_bytes());
        out[12..].copy_from_slice(&self.version.to_le_bytes());
        out
    }

    /// `None` for an entry never written (zeros) or not about `version`.
    fn decode(bytes: &[u8], version: u32) -> Option<Self> {
        let offset = u64::from_le_bytes(bytes[..8].try_into().ok()?);
        let position = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
        let stored_version = u32::from_le_bytes(bytes[12..16].try_into().ok()?);
        (stored_version == version && position != 0).then_some(IndexEntry { version, position, offset })
    }
}

/// Reads the entries for versions `from..=to`; a missing file or entry reads as `None`.
pub fn read_entries(
    layout: &Layout,
    plan_id: &PlanId,
    from: u32,
    to: u32,
) -> Result<Vec<Option<IndexEntry>>, FileStoreError> {
    let count = (to + 1).saturating_sub(from) as usize;
    let path = layout.plan_index(plan_id);
    let Some(file) = fsutil::open_existing_read_only(&path)? else { return Ok(vec![None; count]) };
    let mut bytes = vec![0u8; count * ENTRY_LEN as usize];
    let start = u64::from(from - 1) * ENTRY_LEN;
    let mut filled = 0;
    while filled < bytes.len() {
        match file.read_at(&mut bytes[filled..], start + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FileStoreError::io("cannot read a plan index", &path, e)),
        }
    }
    Ok((0..count)
        .map(|i| {
            let at = i * ENTRY_LEN as usize;
            if at + ENTRY_LEN as usize > filled {
                return None;
            }
            IndexEntry::decode(&bytes[at..at + ENTRY_LEN as usize], from + i as u32)
        })
        .collect())
}

/// Writes index entries through a small cache of open files, remembering which need an fsync.
#[derive(Debug, Default)]
pub struct IndexWriter {
    open: HashMap<PlanId, File>,
    dirty: HashMap<PlanId, File>,
}

impl IndexWriter {
    pub fn write(&mut self, layout: &Layout, plan_id: &PlanId, entry: IndexEntry) -> Result<(), FileStoreError> {
        let path = layout.plan_index(plan_id);
        if !self.open.contains_key(plan_id) {
            if self.open.len() >= MAX_OPEN {
                self.sync()?;
                self.open.clear();
            }
            let index_dir = layout.index_dir();
            fsutil::ensure_dir(&index_dir)?;
            let (file, created) = fsutil::open_or_create(&path)?;
            if created {
                fsutil::sync_dir(&index_dir)?;
            }
            self.open.insert(plan_id.clone(), file);
        }
        let file = &self.open[plan_id];
        file.write_all_at(&entry.encode(), u64::from(entry.version - 1) * ENTRY_LEN)
            .map_err(|e| FileStoreError::io("cannot write a plan index", &path, e))?;
        if !self.dirty.contains_key(plan_id) {
            let dup = file.try_clone().map_err(|e| FileStoreError::io("cannot reopen a plan index", &path, e))?;
            self.dirty.insert(plan_id.clone(), dup);
        }
        Ok(())
    }

    /// Makes every entry written so far durable.
    pub fn sync(&mut self) -> Result<(), FileStoreError> {
        for (plan_id, file) in self.dirty.drain() {
            file.sync_data().map_err(|e| FileStoreError::io("cannot sync a plan index", plan_id.as_str(), e))?;
        }
        Ok(())
    }
}
