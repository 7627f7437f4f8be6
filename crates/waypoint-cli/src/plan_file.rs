//! Plan files: the TOML that `waypoint run` executes, parsed and checked before anything is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use waypoint_domain::{Artifact, Fingerprint, PlanName, TotalSteps};

use crate::error::CliError;
use crate::outputs::hex;

/// Plan files larger than this are refused: they are hand-written lists of steps, not data.
const MAX_PLAN_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlanFile {
    name: String,
    dir: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    steps: Vec<RawStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    run: String,
    #[serde(default)]
    outputs: Vec<String>,
}

/// A plan file, checked: at least one step, every step named, paths resolved.
#[derive(Debug, Clone)]
pub struct PlanFile {
    /// The file's absolute path, recorded as the plan's source.
    pub path: PathBuf,
    pub name: PlanName,
    /// Where steps run: `dir` relative to the plan file, or the plan file's folder.
    pub workdir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub steps: Vec<Step>,
    /// sha256 of the file's bytes: a resume refuses a changed file.
    pub fingerprint: Fingerprint,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub run: String,
    /// Absolute paths of the files the step declares it writes.
    pub outputs: Vec<PathBuf>,
}

impl PlanFile {
    /// Reads and checks `path`. Errors are usage errors: nothing has been written yet.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let shown = path.display();
        let unreadable = |detail: String| {
            CliError::usage("plan_file_unreadable", format!("cannot read plan file {shown}: {detail}"))
                .with("path", shown.to_string())
        };
        let absolute = std::fs::canonicalize(path).map_err(|e| unreadable(e.to_string()))?;
        let meta = std::fs::metadata(&absolute).map_err(|e| unreadable(e.to_string()))?;
        if !meta.is_file() {
            return Err(unreadable("it is not a file".into()));
        }
        if meta.len() > MAX_PLAN_FILE_BYTES {
            return Err(unreadable(format!("it is larger than {MAX_PLAN_FILE_BYTES} bytes")));
        }
        let bytes = std::fs::read(&absolute).map_err(|e| unreadable(e.to_string()))?;
        Self::parse(&absolute, &bytes)
    }

    /// Parses the bytes of the plan file at `absolute`.
    pub fn parse(absolute: &Path, bytes: &[u8]) -> Result<Self, CliError> {
        let shown = absolute.display();
        let invalid = |detail: String| {
            CliError::usage("plan_file_invalid", format!("plan file {shown} is invalid: {detail}"))
                .with("path", shown.to_string())
        };
        let text = std::str::from_utf8(bytes).map_err(|_| invalid("it is not UTF-8 text".into()))?;
        let raw: RawPlanFile = toml::from_str(text).map_err(|e| invalid(crate::error::one_line(&e.to_string())))?;
        let name = PlanName::parse(&raw.name).map_err(|e| invalid(e.to_string()))?;
        if raw.steps.is_empty() {
            return Err(invalid("it has no steps; add at least one [[steps]] table with `name` and `run`".into()));
        }
        if u32::try_from(raw.steps.len()).is_err() {
            return Err(invalid("it has too many steps".into()));
        }
        let base = absolute.parent().unwrap_or(Path::new("/"));
        let workdir = match &raw.dir {
            Some(dir) => base.join(dir),
            None => base.to_path_buf(),
        };
        let mut steps = Vec::with_capacity(raw.steps.len());
        for (index, step) in raw.steps.into_iter().enumerate() {
            let n = index + 1;
            if step.name.trim().is_empty() {
                return Err(invalid(format!("step {n} has an empty name")));
            }
            if step.name.chars().any(char::is_control) {
                return Err(invalid(format!("step {n} has a control character in its name")));
            }
            if step.run.trim().is_empty() {
                return Err(invalid(format!("step {n} ({}) has an empty `run` command", step.name)));
            }
            let mut outputs = Vec::with_capacity(step.outputs.len());
            for output in &step.outputs {
                let path = workdir.join(output);
                if output.is_empty() || Artifact::parse(&path.display().to_string()).is_err() {
                    return Err(invalid(format!(
                        "step {n} ({}) declares an unusable output path {output:?}",
                        step.name
                    )));
                }
                outputs.push(path);
            }
            steps.push(Step { name: step.name, run: step.run, outputs });
        }
        let fingerprint = fingerprint_of(bytes);
        Ok(PlanFile { path: absolute.to_path_buf(), name, workdir, env: raw.env, steps, fingerprint })
    }

    pub fn total_steps(&self) -> TotalSteps {
        let n = u32::try_from(self.steps.len()).expect("checked when parsed");
        TotalSteps::new(n).expect("checked when parsed: at least one step")
    }

    /// The plan file's path as the plan's recorded source.
    pub fn source(&self) -> Result<Artifact, CliError> {
        Artifact::parse(&self.path.display().to_string()).map_err(|e| {
            CliError::usage("plan_file_unreadable", format!("the plan file's path cannot be recorded: {e}"))
        })
    }
}

/// The fingerprint of a plan file's bytes: sha256, in hex.
pub fn fingerprint_of(bytes: &[u8]) -> Fingerprint {
    Fingerprint::parse(&hex(&Sha256::digest(bytes))).expect("hex is a valid fingerprint")
}
