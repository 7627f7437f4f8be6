//! Definition drift: the pure check of a plan's definition as it is now against what was
//! recorded when the plan was created and when each of its steps completed.

use serde::{Deserialize, Serialize};

use crate::ids::{Fingerprint, StepName, StepNumber};
use crate::state::PlanState;

/// One step of a plan definition as recorded: its name and a digest of what it does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StepDefinition {
    /// The step's name in the definition.
    pub name: StepName,
    /// A digest of what the step does; a change means the step is not the one that ran.
    pub fingerprint: Fingerprint,
}

/// What the checkpoint of one completed step recorded about the step's definition. Kept for
/// every completed step of the current phase, apart from the checkpoints, so a compact view (which
/// keeps only the last checkpoint) still answers the definition check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDigest {
    /// The name the step completed under, if its checkpoint gave one.
    pub name: Option<StepName>,
    /// The step definition's fingerprint when it ran, if its checkpoint gave one.
    pub fingerprint: Option<Fingerprint>,
}

/// The plan definition as a probe finds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrentDefinition {
    /// The whole-plan fingerprint and, when the definition has them, its steps in order (empty
    /// when the caller has no per-step definition).
    Known {
        /// The whole-plan fingerprint now, if the probe computes one.
        fingerprint: Option<Fingerprint>,
        /// The definition's steps now, in order.
        steps: Vec<StepDefinition>,
    },
    /// The definition could not be read (a plan file that is gone or no longer parses). Nothing
    /// can be compared, so the plan counts as changed.
    Unreadable(String),
}

/// How one step differs from what was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepChange {
    /// Same name at the same position, different fingerprint.
    Changed,
    /// Another step (by name) is at this position now: steps were reordered, renamed or inserted.
    Replaced,
    /// No step is at this position any more.
    Removed,
    /// A step beyond the recorded definition.
    Added,
}

/// One step whose definition differs from the recorded one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChangedStep {
    /// The step's position.
    pub step: StepNumber,
    /// For a completed step, the name it ran under; for a pending one, the name it will run
    /// under (or, if it was removed, the name it was recorded with). Absent only when neither is
    /// known.
    pub name: Option<StepName>,
    /// The step had completed: its change makes the plan `definition_changed`.
    pub completed: bool,
    /// How it differs.
    pub change: StepChange,
}

impl ChangedStep {
    /// `step 2 (build) changed`, `step 3 (test) was removed`: the step by number and name, and
    /// how it differs, in the words every surface shows.
    pub fn describe(&self) -> String {
        let how = match self.change {
            StepChange::Changed => "changed",
            StepChange::Replaced => "was replaced by another step",
            StepChange::Removed => "was removed",
            StepChange::Added => "was added",
        };
        match &self.name {
            Some(name) => format!("step {} ({name}) {how}", self.step),
            None => format!("step {} {how}", self.step),
        }
    }
}

/// `step 2 (build) changed and step 3 (test) was removed`: every step of `changed` described.
pub fn describe_changes(changed: &[ChangedStep]) -> String {
    let described: Vec<String> = changed.iter().map(ChangedStep::describe).collect();
    match described.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => described.join(""),
    }
}

/// The verdict of [`check_definition`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionCheck {
    /// Resuming would run the remaining steps against a definition that no longer matches the
    /// completed ones: a completed step changed, was removed or moved, the whole-plan
    /// fingerprint differs (for plans without per-step definitions), or the definition is
    /// unreadable.
    pub definition_changed: bool,
    /// Every step that differs, in step order; the completed ones are why `definition_changed`.
    pub changed_steps: Vec<ChangedStep>,
    /// Why the definition could not be read, when it could not.
    pub unreadable: Option<String>,
}

/// Compares `current` with what `plan` recorded.
///
/// A plan with a per-step record (steps given at creation, or a fingerprint on a completed step's
/// checkpoint) is judged step by step: a completed step whose fingerprint differs from the one
/// recorded when it completed (or, when its checkpoint recorded none, at creation), or whose
/// position now holds another step or none, makes the plan `definition_changed`. Pending steps
/// that changed, were added or removed are listed but do not block: fixing the step that failed
/// is what a resume is for. Steps are matched by position and name.
///
/// A plan without a per-step record, or a caller without per-step definitions, keeps the
/// whole-plan rule: the recorded fingerprint against the current one, when both are known.
pub fn check_definition(plan: &PlanState, current: &CurrentDefinition) -> DefinitionCheck {
    let (fingerprint, steps) = match current {
        CurrentDefinition::Unreadable(reason) => {
            return DefinitionCheck {
                definition_changed: true,
                changed_steps: Vec::new(),
                unreadable: Some(reason.clone()),
            }
        }
        CurrentDefinition::Known { fingerprint, steps } => (fingerprint, steps),
    };
    let meta = &plan.resume;
    // An empty list of steps now means the caller has no per-step definition, not that every
    // step was removed: no plan definition has zero steps.
    let recorded_per_step = !plan.definition.is_empty() || meta.has_step_fingerprints();
    let per_step = recorded_per_step && !steps.is_empty();
    if !per_step {
        let changed = matches!((fingerprint, &plan.fingerprint), (Some(now), Some(then)) if now != then);
        return DefinitionCheck { definition_changed: changed, ..DefinitionCheck::default() };
    }
    let completed = meta.completed_count() as usize;
    let mut changed_steps = Vec::new();
    for index in 0..completed {
        let digest = meta.completed_digest(step_at(index));
        let created = plan.definition.get(index);
        let name = digest.and_then(|d| d.name.as_ref()).or(created.map(|c| &c.name));
        let fingerprint = digest.and_then(|d| d.fingerprint.as_ref()).or(created.map(|c| &c.fingerprint));
        let change = match steps.get(index) {
            None => Some(StepChange::Removed),
            Some(now) if name.is_some_and(|n| *n != now.name) => Some(StepChange::Replaced),
            Some(now) if fingerprint.is_some_and(|f| *f != now.fingerprint) => Some(StepChange::Changed),
            Some(_) => None,
        };
        if let Some(change) = change {
            changed_steps.push(ChangedStep { step: step_at(index), name: name.cloned(), completed: true, change });
        }
    }
    // Pending steps can only be compared with a definition recorded at creation.
    if !plan.definition.is_empty() {
        for index in completed..plan.definition.len().max(steps.len()) {
            let change = match (plan.definition.get(index), steps.get(index)) {
                (Some(then), Some(now)) if then.name != now.name => Some((StepChange::Replaced, &now.name)),
                (Some(then), Some(now)) if then.fingerprint != now.fingerprint => {
                    Some((StepChange::Changed, &now.name))
                }
                (Some(then), None) => Some((StepChange::Removed, &then.name)),
                (None, Some(now)) => Some((StepChange::Added, &now.name)),
                _ => None,
            };
            if let Some((change, name)) = change {
                let name = Some(name.clone());
                changed_steps.push(ChangedStep { step: step_at(index), name, completed: false, change });
            }
        }
    }
    let definition_changed = changed_steps.iter().any(|c| c.completed);
    DefinitionCheck { definition_changed, changed_steps, unreadable: None }
}

/// The step number at a zero-based position of a definition.
fn step_at(index: usize) -> StepNumber {
    // A definition or a phase with more than u32::MAX steps cannot exist in memory.
    let n = u32::try_from(index + 1).expect("fewer than u32::MAX steps");
    StepNumber::new(n).expect("index + 1 is at least 1")
}
