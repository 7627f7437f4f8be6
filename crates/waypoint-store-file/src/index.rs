//! Per-plan offset indexes, `index/<plan id>.idx`: a 32-byte header binding the file to its
//! store (see `binding.rs`), then entry `v` (24 bytes at `32 + (v - 1) * 24`): the byte offset,
//! global position, version and checksum of the plan's record at version `v`, and a checksum of
//! the entry. The index is derived data: every entry is checked against the record it points to,
//! and a bad or missing one sends the reader back to the log. An index of another store (or of
//! an older layout, without the header) reads as empty and is rewritten.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;

use waypoint_domain::PlanId;

use crate::binding::{self, StoreId, FILE_HEADER_LEN};
use crate::error::FileStoreError;
use crate::layout::Layout;
use crate::{crc, fsutil};

pub const ENTRY_LEN: u64 = 24;
const HEADER_LEN: u64 = FILE_HEADER_LEN as u64;
use crate::format::INDEX_MAGIC as MAGIC;
const FORMAT: u32 = 2;
/// Index files kept open at once, whatever the process's file limit allows: past this the
/// least useful is closed (its entries synced first when a sync is pending).
const MAX_OPEN: usize = 16;
/// More dirty files than this at a sync: one `syncfs` instead of one `fdatasync` each.
const SYNC_EACH_UP_TO: usize = 64;

/// One index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// The plan-stream version of the record; entry `v` sits at slot `v - 1` of the file.
    pub version: u32,
    /// The record's global position in the log.
    pub position: u32,
    /// Where the record starts in the log.
    pub offset: u64,
    /// The record's CRC32C: binds the entry to this log's record, not just to its place.
    pub crc: u32,
}

impl IndexEntry {
    fn encode(self) -> [u8; ENTRY_LEN as usize] {
        let mut out = [0u8; ENTRY_LEN as usize];
        out[..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.position.to_le_bytes());
        out[12..16].copy_from_slice(&self.version.to_le_bytes());
        out[16..20].copy_from_slice(&self.crc.to_le_bytes());
        let check = crc::checksum(&out[..20]);
        out[20..].copy_from_slice(&check.to_le_bytes());
        out
    }

    /// `None` for an entry never written (zeros), damaged, or not about `version`.
    fn decode(bytes: &[u8], version: u32) -> Option<Self> {
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        if crc::checksum(&bytes[..20]) != word(20) {
            return None;
        }
        let offset = u64::from_le_bytes(bytes[..8].try_into().ok()?);
        let (position, stored_version, crc) = (word(8), word(12), word(16));
        (stored_version == version && position != 0).then_some(IndexEntry { version, position, offset, crc })
    }
}

fn entry_at(version: u32) -> u64 {
    HEADER_LEN + u64::from(version - 1) * ENTRY_LEN
}

/// Opens `plan_id`'s index if it exists and belongs to `store`.
fn open_matching(layout: &Layout, plan_id: &PlanId, store: &StoreId) -> Result<Option<(File, u64)>, FileStoreError> {
    let path = layout.plan_index(plan_id);
    let Some(file) = fsutil::open_existing_read_only(&path)? else { return Ok(None) };
    let len = file.metadata().map_err(|e| FileStoreError::io("cannot read a plan index", &path, e))?.len();
    let mut header = [0u8; FILE_HEADER_LEN];
    crate::storage::count_read(FILE_HEADER_LEN);
    if len < HEADER_LEN || file.read_exact_at(&mut header, 0).is_err() {
        return Ok(None);
    }
    Ok(binding::header_matches(&header, MAGIC, FORMAT, store).then_some((file, len)))
}

fn read_range(file: &File, path: &std::path::Path, bytes: &mut [u8], start: u64) -> Result<usize, FileStoreError> {
    let mut filled = 0;
    while filled < bytes.len() {
        match file.read_at(&mut bytes[filled..], start + filled as u64) {
            Ok(0) => break,
            Ok(n) => {
                crate::storage::count_read(n);
                filled += n
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FileStoreError::io("cannot read a plan index", path, e)),
        }
    }
    Ok(filled)
}

/// Reads the entries for versions `from..=to`; a missing file or entry reads as `None`.
pub fn read_entries(
    layout: &Layout,
    store: &StoreId,
    plan_id: &PlanId,
    from: u32,
    to: u32,
) -> Result<Vec<Option<IndexEntry>>, FileStoreError> {
    let count = (to + 1).saturating_sub(from) as usize;
    let Some((file, _)) = open_matching(layout, plan_id, store)? else { return Ok(vec![None; count]) };
    let mut bytes = vec![0u8; count * ENTRY_LEN as usize];
    let filled = read_range(&file, &layout.plan_index(plan_id), &mut bytes, entry_at(from))?;
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

/// The plan's last entry at or before global position `upto`, and the first entry past it if
/// any: the plan's version as of `upto`, read from the end of its index. `None` for a plan
/// without an index.
pub fn last_entry(
    layout: &Layout,
    store: &StoreId,
    plan_id: &PlanId,
    upto: u32,
) -> Result<(Option<IndexEntry>, Option<IndexEntry>), FileStoreError> {
    let Some((file, len)) = open_matching(layout, plan_id, store)? else { return Ok((None, None)) };
    let path = layout.plan_index(plan_id);
    let mut count = ((len - HEADER_LEN) / ENTRY_LEN) as u32;
    let mut beyond = None;
    // Entries past `upto` were written by a checkpoint newer than this process's view of the
    // log; they are few, so read backwards in small steps.
    while count > 0 {
        let from = count.saturating_sub(7).max(1);
        let entries = {
            let mut bytes = vec![0u8; (count - from + 1) as usize * ENTRY_LEN as usize];
            let filled = read_range(&file, &path, &mut bytes, entry_at(from))?;
            (from..=count)
                .map(|v| {
                    let at = (v - from) as usize * ENTRY_LEN as usize;
                    (at + ENTRY_LEN as usize <= filled)
                        .then(|| IndexEntry::decode(&bytes[at..at + ENTRY_LEN as usize], v))
                        .flatten()
                })
                .collect::<Vec<_>>()
        };
        for entry in entries.into_iter().rev() {
            match entry {
                Some(entry) if entry.position <= upto => return Ok((Some(entry), beyond)),
                Some(entry) => beyond = Some(entry),
                // A hole: a checkpoint that did not finish; what is below it was vouched for
                // by an earlier one, and the log scan after that one covers the rest.
                None => {}
            }
        }
        count = from - 1;
    }
    Ok((None, beyond))
}

/// Writes index entries through a small cache of open files, remembering which need a sync.
#[derive(Debug, Default)]
pub struct IndexWriter {
    open: HashMap<PlanId, File>,
    dirty: HashSet<PlanId>,
    /// Dirty files were closed before their sync: the next sync flushes the whole file system.
    evicted_dirty: bool,
    /// An index file was created since the last sync: its directory entry needs a sync too.
    created: bool,
}

impl IndexWriter {
    /// Writes the entries of consecutive versions of `plan_id` in one write.
    pub fn write_run(
        &mut self,
        layout: &Layout,
        store: &StoreId,
        plan_id: &PlanId,
        entries: &[IndexEntry],
    ) -> Result<(), FileStoreError> {
        let Some(first) = entries.first() else { return Ok(()) };
        let path = layout.plan_index(plan_id);
        if !self.open.contains_key(plan_id) {
            if self.open.len() >= MAX_OPEN {
                self.evict();
            }
            let (file, created) = open_for_write(layout, store, plan_id)?;
            self.created |= created;
            self.open.insert(plan_id.clone(), file);
        }
        let file = &self.open[plan_id];
        let mut bytes = Vec::with_capacity(entries.len() * ENTRY_LEN as usize);
        for entry in entries {
            bytes.extend_from_slice(&entry.encode());
        }
        file.write_all_at(&bytes, entry_at(first.version))
            .map_err(|e| FileStoreError::io("cannot write a plan index", &path, e))?;
        self.dirty.insert(plan_id.clone());
        Ok(())
    }

    /// Closes `plan_id`'s file without syncing it: the plan was removed, its file deleted.
    pub fn forget(&mut self, plan_id: &PlanId) {
        self.open.remove(plan_id);
        self.dirty.remove(plan_id);
    }

    fn evict(&mut self) {
        for (plan_id, _) in self.open.drain() {
            if self.dirty.remove(&plan_id) {
                self.evicted_dirty = true;
            }
        }
    }

    /// Makes every entry written so far durable.
    pub fn sync(&mut self, layout: &Layout) -> Result<(), FileStoreError> {
        if self.evicted_dirty || self.dirty.len() > SYNC_EACH_UP_TO {
            let dir = layout.index_dir();
            let handle =
                File::open(&dir).map_err(|e| FileStoreError::io("cannot open the index directory", &dir, e))?;
            rustix::fs::syncfs(&handle)
                .map_err(|e| FileStoreError::io("cannot sync the plan indexes", &dir, std::io::Error::from(e)))?;
            self.dirty.clear();
            self.evicted_dirty = false;
            self.created = false;
            return Ok(());
        }
        for plan_id in self.dirty.drain() {
            if let Some(file) = self.open.get(&plan_id) {
                file.sync_data().map_err(|e| FileStoreError::io("cannot sync a plan index", plan_id.as_str(), e))?;
            }
        }
        if std::mem::take(&mut self.created) {
            fsutil::sync_dir(&layout.index_dir())?;
        }
        Ok(())
    }
}

/// Opens `plan_id`'s index for writing, (re)starting it when it is missing, of another store,
/// or of an older layout. Says whether it was created: the directory is synced once, at the
/// next `sync`, not once per file.
fn open_for_write(layout: &Layout, store: &StoreId, plan_id: &PlanId) -> Result<(File, bool), FileStoreError> {
    let path = layout.plan_index(plan_id);
    let index_dir = layout.index_dir();
    fsutil::ensure_dir(&index_dir)?;
    let (file, created) = fsutil::open_or_create(&path)?;
    let mut header = [0u8; FILE_HEADER_LEN];
    let matches = file.read_exact_at(&mut header, 0).is_ok() && binding::header_matches(&header, MAGIC, FORMAT, store);
    if !matches {
        file.set_len(0).map_err(|e| FileStoreError::io("cannot reset a plan index", &path, e))?;
        file.write_all_at(&binding::file_header(MAGIC, FORMAT, store), 0)
            .map_err(|e| FileStoreError::io("cannot write a plan index", &path, e))?;
    }
    Ok((file, created))
}
