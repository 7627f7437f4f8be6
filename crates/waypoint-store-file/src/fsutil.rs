//! File-system helpers that keep the durability and permission rules in one place: files 0600,
//! directories 0700 whatever the umask, and a directory fsync after every create or rename.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::FileStoreError;
use crate::layout;

pub const FILE_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o700;

/// Makes `path` (and any missing parent) a directory with mode 0700, syncing each parent in
/// which a directory was created.
pub fn ensure_dir(path: &Path) -> Result<(), FileStoreError> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            ensure_dir(parent)?;
        }
    }
    match fs::create_dir(path) {
        Ok(()) => {
            fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
                .map_err(|e| FileStoreError::io("cannot set the store directory's permissions", path, e))?;
            if let Some(parent) = path.parent() {
                let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !path.is_dir() {
                return Err(FileStoreError::io("the store path exists and is not a directory", path, e));
            }
            Ok(())
        }
        Err(e) => Err(FileStoreError::io("cannot create the store directory", path, e)),
    }
}

/// Flushes a directory's entries, so a created or renamed file survives a crash.
pub fn sync_dir(path: &Path) -> Result<(), FileStoreError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| FileStoreError::io("cannot sync the directory", path, e))
}

/// Opens `path` for reading and writing, creating it with mode 0600 if missing. Returns the
/// file and whether it was created (the caller then syncs the directory).
pub fn open_or_create(path: &Path) -> Result<(File, bool), FileStoreError> {
    let created = match OpenOptions::new().read(true).write(true).create_new(true).mode(FILE_MODE).open(path) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
        Err(e) => return Err(FileStoreError::io("cannot create a store file", path, e)),
    };
    match created {
        Some(file) => {
            // The umask may have narrowed or (via a default ACL) widened the mode: set it outright.
            file.set_permissions(Permissions::from_mode(FILE_MODE))
                .map_err(|e| FileStoreError::io("cannot set a store file's permissions", path, e))?;
            Ok((file, true))
        }
        None => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| FileStoreError::io("cannot open a store file", path, e))?;
            Ok((file, false))
        }
    }
}

/// Opens `path` read-only; `None` when it does not exist.
pub fn open_existing_read_only(path: &Path) -> Result<Option<File>, FileStoreError> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileStoreError::io("cannot open a store file", path, e)),
    }
}

/// Reads a whole file; `None` when it does not exist.
pub fn read_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => {
            crate::storage::count_read(bytes.len());
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` atomically: a 0600 temporary file, fsync, rename, directory fsync.
pub fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), FileStoreError> {
    use std::io::Write;
    let tmp = layout::temp_for(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(|e| FileStoreError::io("cannot create a temporary file", &tmp, e))?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(|e| FileStoreError::io("cannot set a store file's permissions", &tmp, e))?;
    file.write_all(bytes).map_err(|e| FileStoreError::io("cannot write a temporary file", &tmp, e))?;
    file.sync_all().map_err(|e| FileStoreError::io("cannot sync a temporary file", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| FileStoreError::io("cannot rename a temporary file into place", path, e))?;
    sync_dir(dir)
}

/// Replaces `path` with `bytes` through a temporary file and a rename, without any fsync: for
/// derived files bound to a log record, which are checked when read, so a stale or torn one
/// after a crash is refolded rather than trusted.
pub fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), FileStoreError> {
    let tmp = layout::temp_for(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(|e| FileStoreError::io("cannot create a temporary file", &tmp, e))?;
    use std::io::Write;
    file.write_all(bytes).map_err(|e| FileStoreError::io("cannot write a temporary file", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| FileStoreError::io("cannot rename a temporary file into place", path, e))
}

/// Opens (creating if missing) a lock file, syncing its directory when it was created.
pub fn open_lock_file(path: &Path) -> Result<File, FileStoreError> {
    let (file, created) = open_or_create(path)?;
    if created {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(file)
}
