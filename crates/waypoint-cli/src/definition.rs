//! The definition probe for plan files: a plan made by `waypoint run` records its plan file's
//! path; the probe reads that file as it is now and gives its per-step fingerprints to the one
//! eligibility function, so `show`, listings, a resume and its preview judge drift alike.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use waypoint_application::DefinitionProbe;
use waypoint_domain::{CurrentDefinition, Phase, PlanId, PlanState};

use crate::outputs::open_regular;
use crate::plan_file::{PlanFile, MAX_PLAN_FILE_BYTES};

/// Reads each plan file at most once per process (a listing of many plans of one file reads it
/// once).
#[derive(Debug, Default)]
pub struct PlanFileProbe {
    cache: Mutex<HashMap<PathBuf, CurrentDefinition>>,
}

impl DefinitionProbe for PlanFileProbe {
    fn current(&self, _plan_id: &PlanId, plan: &PlanState) -> Option<CurrentDefinition> {
        let path = plan_file_path(plan)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        Some(cache.entry(path.to_path_buf()).or_insert_with(|| read_definition(path)).clone())
    }
}

/// The plan file of a plan made by `waypoint run`: its source is the file's absolute path (a
/// library workflow's source is `workflow:KEY`, which names no file). Its steps are the
/// strategize phase; a plan moved on to another phase by hand is a plain plan from then on.
pub fn plan_file_path(plan: &PlanState) -> Option<&Path> {
    let path = Path::new(plan.source.as_ref()?.as_str());
    (plan.phase == Phase::Strategize && path.is_absolute()).then_some(path)
}

/// Reads and parses the plan file at `path` as it is now.
pub fn read_plan_file(path: &Path) -> Result<PlanFile, String> {
    use std::io::Read;
    let (file, meta) = open_regular(path).map_err(|e| format!("the plan file {e}"))?;
    if meta.len() > MAX_PLAN_FILE_BYTES {
        return Err(format!("the plan file is larger than {MAX_PLAN_FILE_BYTES} bytes"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PLAN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("the plan file cannot be read ({e})"))?;
    PlanFile::parse(path, &bytes).map_err(|e| e.message)
}

fn read_definition(path: &Path) -> CurrentDefinition {
    match read_plan_file(path) {
        Ok(file) => {
            CurrentDefinition::Known { fingerprint: Some(file.fingerprint.clone()), steps: file.step_definitions() }
        }
        Err(reason) => CurrentDefinition::Unreadable(reason),
    }
}
