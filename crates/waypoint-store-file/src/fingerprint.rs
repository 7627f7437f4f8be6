//! What the store directory holds, as one digest (equal exactly when no byte changed) and as a
//! size on disk: the store's answers to the port's `content_fingerprint` and `stats`.

use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::Path;

use crate::error::FileStoreError;

/// A digest of every file under `dir`: its path relative to `dir`, its length and its bytes, in
/// path order. Lock files are included: a probe must not even create one.
pub fn of_dir(dir: &Path) -> Result<String, FileStoreError> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut files = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    for path in files_under(dir)? {
        files += 1;
        path.strip_prefix(dir).unwrap_or(&path).hash(&mut hasher);
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(FileStoreError::io("cannot read a store file", &path, e)),
        };
        loop {
            let n = file.read(&mut buffer).map_err(|e| FileStoreError::io("cannot read a store file", &path, e))?;
            if n == 0 {
                break;
            }
            buffer[..n].hash(&mut hasher);
        }
    }
    Ok(format!("file:{files}:{:016x}", hasher.finish()))
}

/// The bytes allocated on disk to every file under `dir` (what `du` counts).
pub fn disk_usage(dir: &Path) -> Result<u64, FileStoreError> {
    let mut total = 0;
    for path in files_under(dir)? {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(FileStoreError::io("cannot stat", &path, e)),
        };
        // Allocated bytes, not lengths: the log keeps its length when retention punches holes.
        total += std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    }
    Ok(total)
}

/// Every regular file under `dir`, sorted. Symbolic links are listed, never followed. Other
/// processes write while this runs: a file or directory gone between its listing and its use
/// (a temporary renamed into place, a removed plan's step logs) is simply not there, and the
/// callers skip it.
fn files_under(dir: &Path) -> Result<Vec<std::path::PathBuf>, FileStoreError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(FileStoreError::io("cannot list a store directory", &current, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| FileStoreError::io("cannot list a store directory", &current, e))?;
            let kind = match entry.file_type() {
                Ok(kind) => kind,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(FileStoreError::io("cannot stat", entry.path(), e)),
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}
