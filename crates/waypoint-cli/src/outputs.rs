//! Step outputs: the digest that becomes a step's snapshot id, and the probe that checks on resume
//! that a recorded snapshot is still there, unchanged.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use waypoint_application::SnapshotProbe;
use waypoint_domain::{Checkpoint, PlanId, SnapshotCheck, SnapshotId};

use crate::text::hex;

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
        write!(f, "output {} {}", crate::text::shown_path(&self.path), self.detail)
    }
}

/// `sha256:<hex>` over each path and its content, in order. Paths are part of the digest so that
/// renaming an output counts as a change.
pub fn digest_outputs(paths: &[PathBuf]) -> Result<SnapshotId, OutputError> {
    let mut hasher = Sha256::new();
    for path in paths {
        let fail = |detail: String| OutputError { path: path.clone(), detail };
        let (mut file, meta) = open_regular(path).map_err(fail)?;
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

/// Opens `path` for reading only if it is a regular file. The open never blocks (a FIFO or a
/// device given as an output is refused, never waited on) and the type is checked on the open
/// file, so a swap between check and open cannot slip past.
pub fn open_regular(path: &Path) -> Result<(std::fs::File, std::fs::Metadata), String> {
    open_regular_with(path, rustix::fs::OFlags::empty())
}

/// [`open_regular`] with `extra` open flags (`NOFOLLOW` for a file Waypoint made itself, which a
/// step may have replaced with a link to something it should not hand over).
fn open_regular_with(path: &Path, extra: rustix::fs::OFlags) -> Result<(std::fs::File, std::fs::Metadata), String> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY | extra;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP if extra.contains(OFlags::NOFOLLOW) => {
            "is a symbolic link, which is never followed (append to the file; do not replace it)".to_owned()
        }
        e => format!("cannot be read ({})", std::io::Error::from(e)),
    })?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| format!("cannot be read ({e})"))?;
    if !meta.is_file() {
        return Err("is not a regular file; declare files as outputs".into());
    }
    Ok((file, meta))
}

/// Whether every path is, right now, a regular file: the cheap check a listing makes, without
/// reading any content (the digest is checked when a resume or its preview needs it).
pub fn all_regular_files(paths: &[PathBuf]) -> bool {
    paths.iter().all(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
}

/// Checks a checkpoint whose snapshot id is a digest Waypoint computed over its artifacts: every
/// artifact must still exist with the same content. Other snapshot ids (chosen by a plumbing
/// caller) name something this probe cannot see, so they are not checked.
///
/// `Digest` reads every byte (for a resume and its preview); `Presence` only checks that each
/// artifact is still a regular file (for `show` and listings, which must not re-hash every plan's
/// outputs on every call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputsProbe {
    #[default]
    Digest,
    Presence,
}

impl SnapshotProbe for OutputsProbe {
    fn check(&self, _plan_id: &PlanId, checkpoint: &Checkpoint) -> SnapshotCheck {
        let Some(snapshot) = &checkpoint.snapshot_id else {
            return SnapshotCheck::NotChecked;
        };
        if !snapshot.as_str().starts_with(DIGEST_PREFIX) || checkpoint.artifacts.is_empty() {
            return SnapshotCheck::NotChecked;
        }
        let paths: Vec<PathBuf> = checkpoint.artifacts.iter().map(|a| Path::new(a.as_str()).to_path_buf()).collect();
        if *self == OutputsProbe::Presence {
            return if all_regular_files(&paths) { SnapshotCheck::Present } else { SnapshotCheck::Missing };
        }
        match digest_outputs(&paths) {
            Ok(digest) if &digest == snapshot => SnapshotCheck::Present,
            _ => SnapshotCheck::Missing,
        }
    }
}

/// The largest `$WAYPOINT_OUTPUT` file read: a step's recorded output is at most 1 MiB.
pub const MAX_STEP_OUTPUT_BYTES: u64 = 1024 * 1024;

/// Reads what a step appended to `$WAYPOINT_OUTPUT`: `key=value` lines, or `key<<DELIM` then
/// lines up to a line that is exactly `DELIM` (as GitHub Actions reads `$GITHUB_OUTPUT`). A later
/// key wins. An absent file is no output.
pub fn read_step_outputs(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    // Waypoint made this file: a link in its place was planted by the step, and following it
    // would record whatever it points at (a credentials file) in the log for good.
    let (file, meta) = match open_regular_with(path, rustix::fs::OFlags::NOFOLLOW) {
        Ok(opened) => opened,
        Err(_) if !path.exists() => return Ok(serde_json::Map::new()),
        Err(e) => return Err(format!("$WAYPOINT_OUTPUT {e}")),
    };
    if meta.len() > MAX_STEP_OUTPUT_BYTES {
        return Err(format!("its outputs are larger than {MAX_STEP_OUTPUT_BYTES} bytes (output_too_large)"));
    }
    let mut text = String::new();
    file.take(MAX_STEP_OUTPUT_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("$WAYPOINT_OUTPUT cannot be read as UTF-8 text ({e})"))?;
    parse_step_outputs(&text)
}

/// Parses the text of a `$WAYPOINT_OUTPUT` file.
pub fn parse_step_outputs(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut outputs = serde_json::Map::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        match (eq, heredoc) {
            (Some(eq), Some(h)) if eq < h => {
                insert_output(&mut outputs, &line[..eq], line[eq + 1..].to_owned())?;
            }
            (_, Some(h)) => {
                let (key, delimiter) = (&line[..h], &line[h + 2..]);
                if delimiter.is_empty() {
                    return Err(format!("output {key:?} has an empty delimiter after <<"));
                }
                let mut value = Vec::new();
                loop {
                    match lines.next() {
                        Some(l) if l == delimiter => break,
                        Some(l) => value.push(l),
                        None => return Err(format!("output {key:?} never ends: no line {delimiter:?}")),
                    }
                }
                insert_output(&mut outputs, key, value.join("\n"))?;
            }
            (Some(eq), None) => insert_output(&mut outputs, &line[..eq], line[eq + 1..].to_owned())?,
            (None, None) => {
                return Err(format!(
                    "output line {:?} is neither key=value nor key<<DELIMITER",
                    crate::text::escape_controls(line)
                ))
            }
        }
    }
    Ok(outputs)
}

fn insert_output(
    outputs: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    value: String,
) -> Result<(), String> {
    if key.is_empty() || key.chars().any(char::is_control) {
        return Err(format!("output key {:?} is empty or has control characters", crate::text::escape_controls(key)));
    }
    outputs.insert(key.to_owned(), serde_json::Value::String(value));
    Ok(())
}
