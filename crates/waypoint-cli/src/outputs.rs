//! Step outputs: the digest that becomes a step's snapshot id, and the probe that checks on resume
//! that a recorded snapshot is still there, unchanged.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use waypoint_application::SnapshotProbe;
use waypoint_domain::{Checkpoint, PlanId, SnapshotCheck, SnapshotId};

/// The prefix of snapshot ids that Waypoint computes itself and so can check again.
const DIGEST_PREFIX: &str = "sha256:";

/// Why a declared output could not be digested.
#[derive(Debug)]
pub struct OutputError {
    pub path: PathBuf,
    pub detail: String,
}

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "output {} {}", self.path.display(), self.detail)
    }
}

/// `sha256:<hex>` over each path and its content, in order. Paths are part of the digest so that
/// renaming an output counts as a change.
pub fn digest_outputs(paths: &[PathBuf]) -> Result<SnapshotId, OutputError> {
    let mut hasher = Sha256::new();
    for path in paths {
        let fail = |detail: String| OutputError { path: path.clone(), detail };
        let mut file = std::fs::File::open(path).map_err(|e| fail(format!("cannot be read ({e})")))?;
        let meta = file.metadata().map_err(|e| fail(format!("cannot be read ({e})")))?;
        if !meta.is_file() {
            return Err(fail("is not a regular file; declare files as outputs".into()));
        }
        let name = path.as_os_str().as_encoded_bytes();
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name);
        hasher.update(meta.len().to_le_bytes());
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(|e| fail(format!("cannot be read ({e})")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    let id = format!("{DIGEST_PREFIX}{}", hex(&hasher.finalize()));
    Ok(SnapshotId::parse(&id).expect("a sha256 digest is a valid snapshot id"))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a checkpoint whose snapshot id is a digest Waypoint computed over its artifacts: every
/// artifact must still exist with the same content. Other snapshot ids (chosen by a plumbing
/// caller) name something this probe cannot see, so they are not checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutputsProbe;

impl SnapshotProbe for OutputsProbe {
    fn check(&self, _plan_id: &PlanId, checkpoint: &Checkpoint) -> SnapshotCheck {
        let Some(snapshot) = &checkpoint.snapshot_id else {
            return SnapshotCheck::NotChecked;
        };
        if !snapshot.as_str().starts_with(DIGEST_PREFIX) || checkpoint.artifacts.is_empty() {
            return SnapshotCheck::NotChecked;
        }
        let paths: Vec<PathBuf> = checkpoint.artifacts.iter().map(|a| Path::new(a.as_str()).to_path_buf()).collect();
        match digest_outputs(&paths) {
            Ok(digest) if &digest == snapshot => SnapshotCheck::Present,
            _ => SnapshotCheck::Missing,
        }
    }
}
