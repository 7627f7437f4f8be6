//! File-system helpers that keep the durability and permission rules in one place: files 0600,
//! directories 0700 whatever the umask, and a directory fsync after every create or rename.

use std::fs::{self, File, OpenOptions, Permissions, TryLockError};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::FileStoreError;
use crate::layout;

/// `O_NOFOLLOW`: the store opens no file through a symbolic link (it never creates one, so one
/// found inside the store was planted, and following it would write elsewhere).
fn no_follow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

pub const FILE_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o700;

/// Makes `path` (and any missing parent) a directory with mode 0700, syncing each parent in
/// which a directory was created. If it fails part way, the directories it made are removed.
pub fn ensure_dir(path: &Path) -> Result<(), FileStoreError> {
    ensure_dir_made(path).map(drop)
}

/// [`ensure_dir`], returning the outermost directory it created, if any.
pub fn ensure_dir_made(path: &Path) -> Result<Option<PathBuf>, FileStoreError> {
    let mut made = Vec::new();
    match make_dirs(path, &mut made) {
        Ok(()) => Ok(made.first().cloned()),
        Err(e) => {
            for dir in made.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
            Err(e)
        }
    }
}

fn make_dirs(path: &Path, made: &mut Vec<PathBuf>) -> Result<(), FileStoreError> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && fs::symlink_metadata(parent).is_err() {
            make_dirs(parent, made)?;
        }
    }
    match fs::create_dir(path) {
        Ok(()) => {
            made.push(path.to_path_buf());
            fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
                .map_err(|e| FileStoreError::io("cannot set the store directory's permissions", path, e))?;
            if let Some(parent) = path.parent() {
                let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // The store directory itself may be reached through a link the user made; the
            // entries inside it are checked by `refuse_symlinks`.
            if !path.is_dir() {
                return Err(FileStoreError::io("the store path exists and is not a directory", path, e));
            }
            Ok(())
        }
        Err(e) => Err(FileStoreError::io("cannot create the store directory", path, e)),
    }
}

/// Refuses a symbolic link at any of `paths` (entries of the store directory the store may
/// open): one found there was not made by the store.
pub fn refuse_symlinks(paths: &[PathBuf]) -> Result<(), FileStoreError> {
    for path in paths {
        if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(FileStoreError::Symlink { path: path.clone() });
        }
    }
    Ok(())
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
    let created = match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(no_follow())
        .open(path)
    {
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
                .custom_flags(no_follow())
                .open(path)
                .map_err(|e| FileStoreError::io("cannot open a store file", path, e))?;
            Ok((file, false))
        }
    }
}

/// Opens `path` read-only; `None` when it does not exist.
pub fn open_existing_read_only(path: &Path) -> Result<Option<File>, FileStoreError> {
    match OpenOptions::new().read(true).custom_flags(no_follow()).open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileStoreError::io("cannot open a store file", path, e)),
    }
}

/// Reads a whole file; `None` when it does not exist.
pub fn read_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut file = match OpenOptions::new().read(true).custom_flags(no_follow()).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    crate::storage::count_read(bytes.len());
    Ok(Some(bytes))
}

/// Creates the temporary file for `path` in `tmp_dir` (the store's `tmp/`), replacing a
/// leftover of this process, never following a link.
fn create_temp(tmp_dir: &Path, path: &Path) -> Result<(File, PathBuf), FileStoreError> {
    create_temp_at(tmp_dir, layout::temp_for(tmp_dir, path))
}

/// Creates the temporary file `tmp` in `tmp_dir`, replacing a leftover of this process.
fn create_temp_at(tmp_dir: &Path, tmp: PathBuf) -> Result<(File, PathBuf), FileStoreError> {
    ensure_dir(tmp_dir)?;
    let _ = fs::remove_file(&tmp);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(no_follow())
        .open(&tmp)
        .map_err(|e| FileStoreError::io("cannot create a temporary file", &tmp, e))?;
    Ok((file, tmp))
}

/// Writes `bytes` to `path` atomically: a 0600 temporary file in `tmp_dir`, fsync, rename,
/// directory fsync.
pub fn write_atomically(tmp_dir: &Path, dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), FileStoreError> {
    use std::io::Write;
    let (mut file, tmp) = create_temp(tmp_dir, path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(|e| FileStoreError::io("cannot set a store file's permissions", &tmp, e))?;
    file.write_all(bytes).map_err(|e| FileStoreError::io("cannot write a temporary file", &tmp, e))?;
    file.sync_all().map_err(|e| FileStoreError::io("cannot sync a temporary file", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| FileStoreError::io("cannot rename a temporary file into place", path, e))?;
    sync_dir(dir)
}

/// [`write_atomically`] through the temporary file `tmp` in `tmp_dir`, for files that several
/// threads may write at once under one name and so need temporaries of their own names. A
/// failed write removes its temporary: names that are never used twice would not be replaced.
pub fn write_atomically_via(
    tmp_dir: &Path,
    tmp: PathBuf,
    dir: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<(), FileStoreError> {
    use std::io::Write;
    let (mut file, tmp) = create_temp_at(tmp_dir, tmp)?;
    let written = file
        .set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(|e| FileStoreError::io("cannot set a store file's permissions", &tmp, e))
        .and_then(|()| file.write_all(bytes).map_err(|e| FileStoreError::io("cannot write a temporary file", &tmp, e)))
        .and_then(|()| file.sync_all().map_err(|e| FileStoreError::io("cannot sync a temporary file", &tmp, e)))
        .and_then(|()| {
            fs::rename(&tmp, path).map_err(|e| FileStoreError::io("cannot rename a temporary file into place", path, e))
        });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// Replaces `path` with `bytes` through a temporary file and a rename, without any fsync: for
/// derived files bound to a log record, which are checked when read, so a stale or torn one
/// after a crash is refolded rather than trusted.
pub fn write_replacing(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), FileStoreError> {
    use std::io::Write;
    let (mut file, tmp) = create_temp(tmp_dir, path)?;
    file.write_all(bytes).map_err(|e| FileStoreError::io("cannot write a temporary file", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| FileStoreError::io("cannot rename a temporary file into place", path, e))
}

/// Removes temporary files left in `tmp_dir` by processes that died mid-write (or older than
/// an hour, whoever wrote them): a live process's temporaries are its own business.
pub fn remove_stale_temporaries(tmp_dir: &Path) {
    let Ok(entries) = fs::read_dir(tmp_dir) else { return };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = layout::temp_owner(&name.to_string_lossy()) else { continue };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| SystemTime::now().duration_since(t).is_ok_and(|age| age > Duration::from_secs(3600)));
        if pid != me && (old || !process_alive(pid)) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether a process with this pid exists (signal 0 reaches it or is refused).
pub fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else { return false };
    !matches!(rustix::process::test_kill_process(pid), Err(rustix::io::Errno::SRCH))
}

/// Takes `file`'s OS lock, exclusive or shared, waiting at most `timeout`; past that, a typed
/// error names the lock and its holder (an exclusive holder writes its pid into the file).
pub fn lock_bounded(file: &File, path: &Path, exclusive: bool, timeout: Duration) -> Result<(), FileStoreError> {
    let started = Instant::now();
    let mut pause = Duration::from_micros(100);
    loop {
        let attempt = if exclusive { file.try_lock() } else { file.try_lock_shared() };
        match attempt {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(FileStoreError::io("cannot lock the store", path, e)),
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(FileStoreError::LockTimeout {
                lock: path.to_path_buf(),
                holder: holder_of(file),
                waited_ms: waited.as_millis() as u64,
            });
        }
        std::thread::sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Who holds a lock on `file`, as the kernel's lock table (`/proc/locks`) says: no holder has
/// to write anything, so taking a lock costs nothing more on the append path.
fn holder_of(file: &File) -> String {
    use std::os::unix::fs::MetadataExt;
    let unknown = || "another process (the kernel's lock table does not say which)".to_owned();
    let Ok(meta) = file.metadata() else { return unknown() };
    let key = format!("{:02x}:{:02x}:{}", rustix::fs::major(meta.dev()), rustix::fs::minor(meta.dev()), meta.ino());
    let table = fs::read_to_string("/proc/locks").unwrap_or_default();
    let mut pids: Vec<u32> = table
        .lines()
        .filter(|line| !line.contains("->"))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&key.as_str()))
                .then(|| fields.get(4)?.parse().ok())
                .flatten()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    match &pids[..] {
        [] => unknown(),
        [pid] => format!("process {pid}"),
        more => format!("processes {}", more.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")),
    }
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
