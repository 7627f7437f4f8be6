//! What Waypoint keeps beside the store for plan-file runs, outside the event log: each plan's
//! attempt lock and its steps' output files. Every such path is built here. (Step logs are the
//! store's: they go through the store port.)
//!
//! For a directory store it lives in the store's directory: `runs/<plan>/` (the files behind
//! `$WAYPOINT_OUTPUT` and `$WAYPOINT_OUTPUTS`) and `locks/<plan>.attempt` (the attempt lock,
//! kept out of the folder a step is told about, so that a step removing that folder cannot
//! remove the lock that keeps a second attempt from starting beside it). A plan id is
//! `[A-Za-z0-9_-]{1,64}`, so no path can leave those folders.

use std::fs::{DirBuilder, File, TryLockError};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use waypoint_application::{RunLockError, RunLockGuard, RunLocks, StoreError};
use waypoint_domain::{PlanId, RunnerId};

use crate::supervise::GRACE;

/// The folder beside one store.
#[derive(Debug, Clone)]
pub struct Sidecar {
    root: PathBuf,
    /// The topmost folder that must be this user's alone, when it lies above `root` (a shared
    /// temporary directory's `waypoint-<uid>`).
    private_from: Option<PathBuf>,
}

impl Sidecar {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), private_from: None }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `runs/<plan>/`: files that exist for a plan's runs. The folder's name is the file store
    /// layout's, so a directory store knows every entry of its folder.
    pub fn run_dir(&self, plan_id: &PlanId) -> PathBuf {
        waypoint_store_file::plan_run_folder(&self.root, plan_id)
    }

    /// The OS file lock a step's supervisor holds while any process of the step lives:
    /// `locks/<plan>.attempt`, beside the store's run locks and outside the run folder.
    pub fn attempt_lock(&self, plan_id: &PlanId) -> PathBuf {
        waypoint_store_file::plan_attempt_lock(&self.root, plan_id)
    }

    /// The file a step appends its outputs to (`$WAYPOINT_OUTPUT`): one per plan, emptied
    /// before each attempt (attempts of a plan never run at once) and read after it. One file
    /// rather than one per attempt: creating a file is a good part of what a short step costs.
    pub fn output_file(&self, plan_id: &PlanId) -> PathBuf {
        self.run_dir(plan_id).join("step.output")
    }

    /// The completed steps' outputs, as JSON, for the next step (`$WAYPOINT_OUTPUTS`).
    pub fn outputs_file(&self, plan_id: &PlanId) -> PathBuf {
        self.run_dir(plan_id).join("outputs.json")
    }

    /// Creates a plan's folders (mode 0700, like the store). Only runs write here, and only in
    /// folders this user owns and nobody else can write: a folder another local user created
    /// first (to plant links) is refused, never written through.
    pub fn prepare(&self, plan_id: &PlanId) -> std::io::Result<()> {
        let run_dir = self.run_dir(plan_id);
        self.prepare_folder(&run_dir, run_dir.parent())?;
        let lock = self.attempt_lock(plan_id);
        match lock.parent() {
            Some(locks) => self.prepare_folder(locks, Some(locks)),
            None => Ok(()),
        }
    }

    /// Creates `folder` and checks every folder from it up to the first this sidecar owns
    /// outright (`top`; beside a directory store `runs/` or `locks/`, the store itself being the
    /// store's to check). The top one is checked before anything is created inside it.
    fn prepare_folder(&self, folder: &Path, top: Option<&Path>) -> std::io::Result<()> {
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        let top = self.top(top);
        builder.create(top)?;
        check_private(top)?;
        builder.create(folder)?;
        check_chain(folder, top)
    }

    /// Checks that a plan's run folder is still what [`Self::prepare`] made: every folder from
    /// it up to the sidecar's own is a real, private folder. A step may have replaced one with a
    /// link (`runs/` itself, or `runs/<plan>/`): the files behind `$WAYPOINT_OUTPUT` are then
    /// never read through it. Creates nothing.
    pub fn check_run_folder(&self, plan_id: &PlanId) -> std::io::Result<()> {
        let run_dir = self.run_dir(plan_id);
        check_chain(&run_dir, self.top(run_dir.parent()))
    }

    /// The first folder above a plan's that this sidecar owns outright: where its own folders
    /// start (`private_from`), else `top`, else its root.
    fn top<'a>(&'a self, top: Option<&'a Path>) -> &'a Path {
        self.private_from.as_deref().or(top).unwrap_or(&self.root)
    }

    /// Whether a step of the plan may still be running: its supervisor holds the attempt lock.
    /// Creates nothing. When the lock cannot be asked, say "running": a false "stopped" could
    /// start a second attempt next to a live one.
    pub fn attempt_running(&self, plan_id: &PlanId) -> bool {
        let file = match File::open(self.attempt_lock(plan_id)) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(_) => return true,
        };
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(TryLockError::WouldBlock) | Err(TryLockError::Error(_)) => true,
        }
    }
}

/// Creates or replaces the contents of the file at `path` with `bytes`, private to the store's
/// owner (0600, whatever the umask) and never through a symbolic link a step may have planted
/// there.
///
/// The file is written over in place and then cut to its new length, never emptied first: on
/// ext4, a file truncated to nothing and written again is flushed with the next journal commit
/// (`auto_da_alloc`), so every durable append of the store would wait for it, and
/// `$WAYPOINT_OUTPUTS`, rewritten before each step, grows with the plan.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let open = || {
        File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
    };
    let mut file = match open() {
        // A symbolic link an earlier step planted here is removed (the link itself, never what
        // it points at) and the file made anew.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            std::fs::remove_file(path)?;
            open()?
        }
        other => other?,
    };
    // A file that existed keeps its mode through open: make it private too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.set_len(bytes.len() as u64)
}

/// Checks `folder` and every folder above it up to `top` with [`check_private`].
fn check_chain(folder: &Path, top: &Path) -> std::io::Result<()> {
    let mut dir = folder;
    loop {
        check_private(dir)?;
        match dir.parent() {
            Some(parent) if dir != top => dir = parent,
            _ => return Ok(()),
        }
    }
}

/// `dir` is a real folder (not a link) that this user owns and that no one else can write.
fn check_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir)?;
    let mine = meta.uid() == rustix::process::geteuid().as_raw();
    if !meta.is_dir() || !mine || meta.mode() & 0o022 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a private folder of this user (a link, another owner, or writable by others)",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// The store's run locks, plus the attempt lock of a step left running: a plan counts as held
/// while its runner lives or any process of a step it started does. After a runner dies, its
/// step's supervisor stops the step within the grace period; a runner taking the lock meanwhile
/// waits for that, and gives up (busy) only if the step outlives it.
#[derive(Debug)]
pub struct StepAwareRunLocks {
    inner: Arc<dyn RunLocks>,
    sidecar: Sidecar,
}

impl StepAwareRunLocks {
    pub fn new(inner: Arc<dyn RunLocks>, sidecar: Sidecar) -> Self {
        Self { inner, sidecar }
    }
}

/// How long past the grace period a new runner waits for a dead runner's step to be stopped.
const STOP_MARGIN: Duration = Duration::from_secs(2);

impl RunLocks for StepAwareRunLocks {
    fn acquire(&self, plan_id: &PlanId, runner: &RunnerId) -> Result<RunLockGuard, RunLockError> {
        let guard = self.inner.acquire(plan_id, runner)?;
        let deadline = Instant::now() + GRACE + STOP_MARGIN;
        while self.sidecar.attempt_running(plan_id) {
            if Instant::now() >= deadline {
                return Err(RunLockError::Busy { plan_id: plan_id.clone() });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(guard)
    }

    fn probe(&self, plan_id: &PlanId) -> Result<bool, StoreError> {
        Ok(self.inner.probe(plan_id)? || self.sidecar.attempt_running(plan_id))
    }
}

/// Where the sidecar of a directory store is: the store's own directory.
pub fn beside_dir(store: &Path) -> Sidecar {
    // Absolute: steps and their supervisors run in the plan file's folder, where a relative store
    // path (the default `./.waypoint`) would name another place.
    Sidecar::new(std::path::absolute(store).unwrap_or_else(|_| store.to_path_buf()))
}

/// The sidecar of a store that is not a directory (a server, named by its `location` without a
/// password): `$XDG_STATE_HOME/waypoint/<digest of the location>/`, by default under
/// `~/.local/state`. Attempt locks are local to this machine, as the steps they guard are.
pub fn for_server(location: &str) -> Sidecar {
    use sha2::{Digest, Sha256};
    let home_state = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|home| PathBuf::from(home).join(".local").join("state"))
    });
    let digest = crate::text::hex(&Sha256::digest(location.as_bytes()));
    match home_state {
        Some(state) => {
            let waypoint = state.join("waypoint");
            Sidecar { root: waypoint.join(&digest[..16]), private_from: Some(waypoint) }
        }
        // No home (a system service): a folder of this user's own in the temporary directory,
        // which `prepare` refuses unless this user owns it and nobody else can write it.
        None => {
            let own = std::env::temp_dir().join(format!("waypoint-{}", rustix::process::geteuid().as_raw()));
            Sidecar { root: own.join(&digest[..16]), private_from: Some(own) }
        }
    }
}
