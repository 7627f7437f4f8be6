//! Plan files: the TOML that `waypoint run` executes, parsed and checked before anything is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use waypoint_application::engine::{parse_duration, RunDefinition, StepPolicy};
use waypoint_domain::{Artifact, Fingerprint, PlanName, StepDefinition, StepName};

use crate::error::CliError;
use crate::text::hex;
use crate::text::{escape_controls, shown_path};

/// Plan files larger than this are refused: they are hand-written lists of steps, not data.
pub const MAX_PLAN_FILE_BYTES: u64 = 1024 * 1024;

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
    timeout: Option<String>,
    retries: Option<u32>,
    retry_delay: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    dir: Option<String>,
    approval: Option<String>,
}

/// The delay before a step's first retry when `retry_delay` is not given.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// At most this many retries per step: a step is not a polling loop.
const MAX_RETRIES: u32 = 100;

/// A plan file, checked: at least one step, every step named, paths resolved.
#[derive(Debug, Clone)]
pub struct PlanFile {
    /// The file's absolute path, recorded as the plan's source.
    pub path: PathBuf,
    pub name: PlanName,
    pub steps: Vec<Step>,
    /// sha256 of the file's bytes: a resume refuses a changed file.
    pub fingerprint: Fingerprint,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    /// The name as the log records it.
    pub step_name: StepName,
    pub run: String,
    /// Absolute paths of the files the step declares it writes.
    pub outputs: Vec<PathBuf>,
    /// Where the step runs: the plan's folder, joined with the step's own `dir`.
    pub workdir: PathBuf,
    /// The plan's `[env]` with the step's `env` over it.
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    /// How many times a failed attempt is tried again.
    pub retries: u32,
    /// The delay before the first retry; doubled after each further failed attempt.
    pub retry_delay: Duration,
    /// The question a person must answer (approve) before the step runs, if it asks one.
    pub approval: Option<String>,
    /// sha256 over the step's canonical definition: a completed step whose fingerprint changed
    /// blocks a resume; a pending one does not.
    pub fingerprint: Fingerprint,
}

impl Step {
    /// The step's retries, retry delay and timeout, as the step engine takes them.
    pub fn policy(&self) -> StepPolicy {
        StepPolicy { retries: self.retries, retry_delay: self.retry_delay, timeout: self.timeout }
    }
}

/// Everything that decides what a step does, in a fixed order: the bytes its fingerprint is
/// taken over.
#[derive(Serialize)]
struct CanonicalStep<'a> {
    name: &'a str,
    run: &'a str,
    outputs: &'a [PathBuf],
    dir: &'a Path,
    env: &'a BTreeMap<String, String>,
    timeout_ms: Option<u128>,
    retries: u32,
    retry_delay_ms: u128,
    // Absent from steps without one, so their fingerprints stay what they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<&'a str>,
}

impl PlanFile {
    /// Reads and checks `path`. Errors are usage errors: nothing has been written yet.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let shown = shown_path(path);
        let unreadable = |detail: String| {
            CliError::usage("plan_file_unreadable", format!("cannot read plan file {shown}: {detail}"))
                .with("path", shown.clone())
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
        let file = Self::parse(&absolute, &bytes)?;
        file.check_runnable()?;
        Ok(file)
    }

    /// Parses the bytes of the plan file at `absolute`.
    pub fn parse(absolute: &Path, bytes: &[u8]) -> Result<Self, CliError> {
        let shown = shown_path(absolute);
        let invalid = |detail: String| {
            CliError::usage("plan_file_invalid", format!("plan file {shown} is invalid: {}", cap_detail(&detail)))
                .with("path", shown.clone())
        };
        let text = std::str::from_utf8(bytes).map_err(|_| invalid("it is not UTF-8 text".into()))?;
        // TOML's own message is several lines (the offending line and a caret under the column):
        // the message says where and what in one line; the lines with the caret are shown above
        // it, with control characters escaped and their length capped.
        let raw: RawPlanFile = toml::from_str(text).map_err(|e| {
            let full = e.to_string();
            let lines: Vec<&str> = full.lines().filter(|l| !l.trim().is_empty()).collect();
            let summary = match (lines.first(), lines.last()) {
                (Some(first), Some(last)) if lines.len() > 1 => format!("{first}: {last}"),
                _ => full.clone(),
            };
            invalid(escape_controls(&summary)).with_context(cap_detail(&escape_controls_keep_lines(&full)))
        })?;
        let name = PlanName::parse(&raw.name).map_err(|e| invalid(e.to_string()))?;
        if raw.steps.is_empty() {
            return Err(invalid("it has no steps; add at least one [[steps]] table with `name` and `run`".into()));
        }
        if u32::try_from(raw.steps.len()).is_err() {
            return Err(invalid("it has too many steps".into()));
        }
        check_env(&raw.env).map_err(|e| invalid(format!("its [env] {e}")))?;
        let base = absolute.parent().unwrap_or(Path::new("/"));
        let workdir = match &raw.dir {
            Some(dir) if dir.contains('\0') => return Err(invalid("its `dir` contains a NUL character".into())),
            Some(dir) => base.join(dir),
            None => base.to_path_buf(),
        };
        let mut steps = Vec::with_capacity(raw.steps.len());
        // Each name's step number, so that a repeated name is found in one look, not a scan.
        let mut named: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (index, step) in raw.steps.into_iter().enumerate() {
            let n = index + 1;
            if step.name.trim().is_empty() {
                return Err(invalid(format!("step {n} has an empty name")));
            }
            let step_name =
                StepName::parse(&step.name).map_err(|e| invalid(format!("step {n} has an unusable name: {e}")))?;
            let label = format!("step {n} ({})", escape_controls(&step.name));
            // Later steps find outputs by step name (`$WAYPOINT_OUTPUTS`): two steps of one name
            // would hide the first one's.
            if let Some(first) = named.insert(step.name.clone(), n) {
                return Err(invalid(format!(
                    "steps {first} and {n} are both named {:?}; give every step its own name",
                    escape_controls(&step.name)
                )));
            }
            if step.run.trim().is_empty() {
                return Err(invalid(format!("{label} has an empty `run` command")));
            }
            if step.run.contains('\0') {
                return Err(invalid(format!("{label} has a NUL character in its `run` command")));
            }
            check_env(&step.env).map_err(|e| invalid(format!("{label}'s `env` {e}")))?;
            let step_dir = match &step.dir {
                Some(dir) if dir.contains('\0') => {
                    return Err(invalid(format!("{label}'s `dir` contains a NUL character")))
                }
                Some(dir) => workdir.join(dir),
                None => workdir.clone(),
            };
            let mut outputs = Vec::with_capacity(step.outputs.len());
            for output in &step.outputs {
                let path = step_dir.join(output);
                if output.is_empty() || Artifact::parse(&path.display().to_string()).is_err() {
                    return Err(invalid(format!("{label} declares an unusable output path {output:?}")));
                }
                outputs.push(path);
            }
            let timeout = match &step.timeout {
                Some(text) => Some(parse_duration(text).filter(|d| !d.is_zero()).ok_or_else(|| {
                    invalid(format!(
                        "{label} has an unusable `timeout` {text:?}; write it like \"90s\", \"5m\" or \"1h\""
                    ))
                })?),
                None => None,
            };
            let retries = step.retries.unwrap_or(0);
            if retries > MAX_RETRIES {
                return Err(invalid(format!("{label} asks for {retries} retries; at most {MAX_RETRIES}")));
            }
            let retry_delay = match &step.retry_delay {
                Some(text) => parse_duration(text).ok_or_else(|| {
                    invalid(format!(
                        "{label} has an unusable `retry_delay` {text:?}; write it like \"2s\" or \"500ms\""
                    ))
                })?,
                None => DEFAULT_RETRY_DELAY,
            };
            if let Some(question) = &step.approval {
                if waypoint_domain::Message::parse(question).is_err() {
                    return Err(invalid(format!(
                        "{label} has an unusable `approval` question; write one line of plain text"
                    )));
                }
            }
            let mut env = raw.env.clone();
            env.extend(step.env);
            let canonical = CanonicalStep {
                name: &step.name,
                run: &step.run,
                outputs: &outputs,
                dir: &step_dir,
                env: &env,
                timeout_ms: timeout.map(|t| t.as_millis()),
                retries,
                retry_delay_ms: retry_delay.as_millis(),
                approval: step.approval.as_deref(),
            };
            let encoded = serde_json::to_vec(&canonical).expect("a step definition serializes");
            steps.push(Step {
                name: step.name,
                step_name,
                run: step.run,
                outputs,
                workdir: step_dir,
                env,
                timeout,
                retries,
                retry_delay,
                approval: step.approval,
                fingerprint: fingerprint_of(&encoded),
            });
        }
        let fingerprint = fingerprint_of(bytes);
        Ok(PlanFile { path: absolute.to_path_buf(), name, steps, fingerprint })
    }

    /// Checks what only the file system can tell, before anything is written: every step's
    /// folder exists.
    pub fn check_runnable(&self) -> Result<(), CliError> {
        for (n, step) in (1..).zip(&self.steps) {
            if !step.workdir.is_dir() {
                return Err(CliError::usage(
                    "plan_file_invalid",
                    format!(
                        "plan file {} is invalid: step {n} ({}) runs in {}, which is not a directory; create it or fix `dir`",
                        shown_path(&self.path),
                        escape_controls(&step.name),
                        shown_path(&step.workdir)
                    ),
                )
                .with("path", shown_path(&self.path)));
            }
        }
        Ok(())
    }

    /// Each step's name and fingerprint, as `PlanCreated` records them.
    pub fn step_definitions(&self) -> Vec<StepDefinition> {
        self.steps
            .iter()
            .map(|s| StepDefinition { name: s.step_name.clone(), fingerprint: s.fingerprint.clone() })
            .collect()
    }

    /// What the step engine runs: the file's name, path, fingerprint and steps.
    pub fn run_definition(&self) -> Result<RunDefinition, CliError> {
        Ok(RunDefinition {
            name: self.name.clone(),
            source: self.source()?,
            fingerprint: Some(self.fingerprint.clone()),
            steps: self.step_definitions(),
        })
    }

    /// The plan file's path as the plan's recorded source.
    pub fn source(&self) -> Result<Artifact, CliError> {
        Artifact::parse(&self.path.display().to_string()).map_err(|_| {
            CliError::usage(
                "plan_file_unreadable",
                format!(
                    "the plan file's path {} cannot be recorded: a path with control characters or NUL cannot be; rename the file",
                    shown_path(&self.path)
                ),
            )
        })
    }
}

/// The fingerprint of a plan file's bytes: sha256, in hex.
pub fn fingerprint_of(bytes: &[u8]) -> Fingerprint {
    Fingerprint::parse(&hex(&Sha256::digest(bytes))).expect("hex is a valid fingerprint")
}

/// Environment keys must be usable by `sh`: not empty, no `=`, no NUL; values no NUL.
fn check_env(env: &BTreeMap<String, String>) -> Result<(), String> {
    for (key, value) in env {
        if key.is_empty() || key.contains(['=', '\0']) {
            return Err(format!("has an unusable key {:?}; keys are names without `=` or NUL", escape_controls(key)));
        }
        if value.contains('\0') {
            return Err(format!("value of {} contains a NUL character", escape_controls(key)));
        }
    }
    Ok(())
}

/// At most this many characters of an error's detail: a pathological file (a 300,000-deep
/// array) must not print a 600 KB message.
const MAX_DETAIL_CHARS: usize = 2000;

fn cap_detail(detail: &str) -> String {
    if detail.chars().count() <= MAX_DETAIL_CHARS {
        return detail.to_owned();
    }
    let kept: String = detail.chars().take(MAX_DETAIL_CHARS).collect();
    format!("{kept}… (cut)")
}

/// Escapes control characters but keeps the line breaks of a multi-line message.
fn escape_controls_keep_lines(text: &str) -> String {
    text.split('\n').map(escape_controls).collect::<Vec<_>>().join("\n")
}
