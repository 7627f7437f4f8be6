//! `repair`: the explicit, separate action that cuts a damaged log back to its last good record,
//! after taking a backup, and resets the derived files so the next open rebuilds them.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, Permissions, TryLockError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::FileStoreError;
use crate::fsutil;
use crate::layout::{self, Layout};
use crate::log::{self, RecordReader, FIRST_RECORD};

/// What `repair` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// The log checked (and, if damaged, cut back).
    pub log: PathBuf,
    /// A byte-for-byte copy of the log as it was before the repair changed anything.
    pub backup: Option<PathBuf>,
    /// Where the first damaged record starts; `None` when every record was whole.
    pub damage_at: Option<u64>,
    /// What the damage was.
    pub damage: Option<String>,
    /// Bytes cut off the end of the log, from `damage_at` on. They are kept in `quarantined`.
    pub bytes_removed: u64,
    /// The file under `torn/` holding the bytes cut off, so nothing is destroyed; `None` when
    /// nothing was cut.
    pub quarantined: Option<PathBuf>,
    /// Whole records found after the damage and removed with it: an ordered log cannot keep
    /// them past a hole. They are in the backup and the quarantine file.
    pub intact_records_removed: u64,
    /// Records left in the log.
    pub records_kept: u64,
}

/// Checks every record of the store in `dir`; if one is damaged, backs the log up, cuts it back
/// to the last good record (keeping the cut bytes aside), and resets the checkpoint, indexes and
/// view snapshots, which the next open rebuilds. Needs the store closed by every other process.
pub fn repair(dir: impl AsRef<Path>) -> Result<RepairReport, FileStoreError> {
    let dir = dir.as_ref().to_path_buf();
    if !dir.is_dir() {
        return Err(FileStoreError::NotFound { path: dir });
    }
    let layout = Layout::new(&dir);
    fsutil::refuse_symlinks(&layout.own_entries())?;
    let store_lock = fsutil::open_lock_file(&layout.store_lock())?;
    match store_lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(FileStoreError::Locked {
                path: dir,
                detail: "open in another process (close every waypoint command using it, then repair again)",
            })
        }
        Err(TryLockError::Error(e)) => return Err(FileStoreError::io("cannot lock the store", &dir, e)),
    }
    let write_lock = fsutil::open_lock_file(&layout.write_lock())?;
    fsutil::lock_bounded(&write_lock, &layout.write_lock(), true, crate::StoreOptions::default().lock_timeout)?;
    let log_path = layout.log();
    let mut report = RepairReport {
        log: log_path.clone(),
        backup: None,
        damage_at: None,
        damage: None,
        bytes_removed: 0,
        quarantined: None,
        intact_records_removed: 0,
        records_kept: 0,
    };
    let Some(file) = fsutil::open_existing_read_only(&log_path)? else { return Ok(report) };
    drop(file);
    let (file, _) = fsutil::open_or_create(&log_path)?;
    let file = Arc::new(file);
    let len = file.metadata().map_err(|e| FileStoreError::io("cannot read the log's size", &log_path, e))?.len();
    if !log::check_file_header(&file, &log_path, len)? {
        return Err(FileStoreError::Repair {
            path: log_path,
            detail: "the log is shorter than its header; open the store to start it afresh".into(),
        });
    }
    let damage = scan(&file, &log_path, len, &mut report)?;
    let stamp = layout::stamp_now();
    report.backup = Some(backup(&layout, &stamp)?);
    if let Some((offset, detail)) = damage {
        let mut bytes = vec![0u8; (len - offset) as usize];
        log::read_exact_at(&file, &log_path, &mut bytes, offset)?;
        report.intact_records_removed = count_intact(&bytes);
        let torn_dir = layout.torn_dir();
        fsutil::ensure_dir(&torn_dir)?;
        let aside = layout.repair_cut(offset, &stamp);
        fsutil::write_atomically(&layout.tmp_dir(), &torn_dir, &aside, &bytes)?;
        file.set_len(offset).map_err(|e| FileStoreError::io("cannot cut the log back", &log_path, e))?;
        file.sync_all().map_err(|e| FileStoreError::io("cannot sync the log", &log_path, e))?;
        report.damage_at = Some(offset);
        report.damage = Some(detail);
        report.bytes_removed = len - offset;
        report.quarantined = Some(aside);
    }
    reset_projections(&layout)?;
    Ok(report)
}

/// The first damaged record (offset and what is wrong), counting whole records before it.
fn scan(
    file: &Arc<File>,
    path: &Path,
    len: u64,
    report: &mut RepairReport,
) -> Result<Option<(u64, String)>, FileStoreError> {
    let mut versions: HashMap<String, u32> = HashMap::new();
    let mut position = 0u32;
    // Ranges retention removed read as zeros: they are stepped over, not damage.
    let dir = path.parent().unwrap_or(Path::new("."));
    let holes = crate::retention::all_holes(dir)?;
    let mut reader = RecordReader::new(file.clone(), path.to_path_buf(), FIRST_RECORD, len).skipping(holes);
    while let Some(item) = reader.next() {
        let (offset, raw) = match item? {
            Ok(record) => record,
            Err(bad) if bad.error.is_whole() => {
                return Err(FileStoreError::Repair {
                    path: path.to_path_buf(),
                    detail: format!(
                        "the record at byte offset {} is whole but unreadable here ({}); nothing was changed",
                        bad.offset, bad.error
                    ),
                })
            }
            Err(bad) => return Ok(Some((bad.offset, bad.error.to_string()))),
        };
        if raw.position != position + 1 + reader.skipped() {
            return Ok(Some((offset, format!("global position {} follows {position}", raw.position))));
        }
        if waypoint_domain::PlanId::parse(&raw.plan_id).is_err() {
            return Ok(Some((offset, "the record's plan id is invalid".into())));
        }
        let version = versions.entry(raw.plan_id.clone()).or_insert(0);
        if raw.version != *version + 1 {
            return Ok(Some((offset, format!("plan {} version {} follows {version}", raw.plan_id, raw.version))));
        }
        *version = raw.version;
        position = raw.position;
        report.records_kept += 1;
    }
    Ok(None)
}

/// How many whole records lie in `bytes` (found by their magic and checksum).
fn count_intact(bytes: &[u8]) -> u64 {
    let mut count = 0;
    let mut at = 1;
    while at + crate::record::HEADER_LEN <= bytes.len() {
        match crate::record::decode(&bytes[at..]) {
            Ok((_, len)) => {
                count += 1;
                at += len;
            }
            Err(_) => at += 1,
        }
    }
    count
}

fn backup(layout: &Layout, stamp: &str) -> Result<PathBuf, FileStoreError> {
    let backup_dir = layout.backup_dir();
    fsutil::ensure_dir(&backup_dir)?;
    let target = layout.backup(stamp);
    std::fs::copy(layout.log(), &target).map_err(|e| FileStoreError::io("cannot back the log up", &target, e))?;
    let copy = OpenOptions::new()
        .write(true)
        .open(&target)
        .map_err(|e| FileStoreError::io("cannot open the backup", &target, e))?;
    copy.set_permissions(Permissions::from_mode(fsutil::FILE_MODE))
        .map_err(|e| FileStoreError::io("cannot set the backup's permissions", &target, e))?;
    copy.sync_all().map_err(|e| FileStoreError::io("cannot sync the backup", &target, e))?;
    fsutil::sync_dir(&backup_dir)?;
    Ok(target)
}

/// Removes the derived files; the next open rebuilds them from the log.
fn reset_projections(layout: &Layout) -> Result<(), FileStoreError> {
    let remove = |path: PathBuf, is_dir: bool| {
        let result = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FileStoreError::io("cannot reset a derived file", path, e)),
        }
    };
    remove(layout.checkpoint(), false)?;
    remove(layout.index_dir(), true)?;
    remove(layout.views_dir(), true)?;
    remove(layout.catalog_dir(), true)?;
    fsutil::sync_dir(layout.dir())
}

#[cfg(test)]
mod tests;
