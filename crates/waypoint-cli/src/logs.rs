//! Step logs: each attempt's stdout and stderr, kept beside the store with a cap per stream, and
//! read back by `waypoint plan logs`.
//!
//! A log is written as the step prints (so a killed runner leaves what was printed until then)
//! and never holds more than [`LOG_CAP`] bytes of the stream's end plus one marker line: when the
//! file grows past twice the cap, it is cut back to its last [`LOG_CAP`] bytes, after a first line
//! saying how many bytes were cut.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The most of each stream's end that is kept per attempt: 1 MiB.
pub const LOG_CAP: u64 = 1024 * 1024;

const CUT_PREFIX: &str = "[waypoint: ";
const CUT_SUFFIX: &str = " earlier bytes cut; only the last 1 MiB is kept]\n";

/// One stream's log file, capped.
#[derive(Debug)]
pub struct CappedLog {
    file: Option<File>,
    written: u64,
    cut: u64,
}

impl CappedLog {
    /// Creates (or empties) the log at `path`. A log that cannot be written is skipped: the step
    /// matters more than its log.
    pub fn create(path: PathBuf) -> Self {
        let file = File::options().read(true).write(true).create(true).truncate(true).open(&path).ok();
        Self { file, written: 0, cut: 0 }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let Some(file) = &mut self.file else { return };
        if file.write_all(bytes).is_err() {
            self.file = None;
            return;
        }
        self.written += bytes.len() as u64;
        if self.written > 2 * LOG_CAP && self.keep_tail().is_err() {
            self.file = None;
        }
    }

    /// Cuts the file back to its last `LOG_CAP` bytes of output, after the marker line.
    fn keep_tail(&mut self) -> std::io::Result<()> {
        let Some(file) = &mut self.file else { return Ok(()) };
        let len = file.seek(SeekFrom::End(0))?;
        let mut tail = vec![0u8; LOG_CAP as usize];
        file.seek(SeekFrom::Start(len - LOG_CAP))?;
        file.read_exact(&mut tail)?;
        self.cut += self.written - LOG_CAP;
        let marker = format!("{CUT_PREFIX}{}{CUT_SUFFIX}", self.cut);
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(marker.as_bytes())?;
        file.write_all(&tail)?;
        self.written = LOG_CAP;
        Ok(())
    }
}

/// One attempt's logs found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptLogs {
    pub step: u32,
    pub attempt: u32,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
}

/// Every attempt's logs in `dir` (`<step>-<attempt>.out|err`), in step then attempt order.
pub fn list(dir: &Path) -> std::io::Result<Vec<AttemptLogs>> {
    let mut found: std::collections::BTreeMap<(u32, u32), AttemptLogs> = std::collections::BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some((stem, stream)) = name.rsplit_once('.') else { continue };
        let Some((step, attempt)) = stem.split_once('-') else { continue };
        let (Ok(step), Ok(attempt)) = (step.parse(), attempt.parse()) else { continue };
        let logs = found.entry((step, attempt)).or_insert(AttemptLogs { step, attempt, stdout: None, stderr: None });
        match stream {
            "out" => logs.stdout = Some(path.clone()),
            "err" => logs.stderr = Some(path.clone()),
            _ => {}
        }
    }
    Ok(found.into_values().collect())
}
