//! The per-step attempt timeline of a plan, folded from its history: each step of the current
//! phase with its name, status, every attempt (when it started and ended, how it ended) and its
//! recorded output. `waypoint plan show ID --steps` prints it as JSON, the dashboard's
//! `GET /api/v1/plans/ID/steps` serves it and its plan page draws it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use waypoint_application::StoredEvent;
use waypoint_domain::{AttemptFailure, Phase, PlanEvent, PlanId, PlanStatus, StepCompleted};

/// `{"plan_id", "steps": [...]}`.
#[derive(Debug, Clone, Serialize)]
pub struct StepsDoc {
    pub plan_id: PlanId,
    pub steps: Vec<StepEntry>,
}

/// One step of the current phase.
#[derive(Debug, Clone, Serialize)]
pub struct StepEntry {
    pub step: u32,
    pub name: Option<String>,
    /// `completed`, `running`, `failed`, `interrupted`, `crashed`, `cancelled` or `pending`.
    pub status: &'static str,
    pub attempts: Vec<AttemptEntry>,
    /// The recorded output of a completed step.
    pub output: Option<Value>,
}

/// One attempt at a step.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptEntry {
    pub attempt: u32,
    pub started_at: DateTime<Utc>,
    /// `None` while it runs, and when its runner vanished without a word.
    pub ended_at: Option<DateTime<Utc>>,
    /// `running`, `completed`, `failed`, `timeout`, `interrupted`, `crashed` or `cancelled`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Default)]
struct Step {
    name: Option<String>,
    attempts: Vec<AttemptEntry>,
    completed: bool,
    output: Option<Value>,
}

impl Step {
    fn open(&mut self) -> Option<&mut AttemptEntry> {
        self.attempts.last_mut().filter(|a| a.outcome == "running")
    }
}

/// A step a fork copied from its source: completed, with no attempt of this plan.
fn copied_step(steps: &mut BTreeMap<u32, Step>, copied: &StepCompleted) {
    let step = steps.entry(copied.step.get()).or_default();
    step.completed = true;
    step.name = copied.name.as_ref().map(|n| n.as_str().to_owned()).or(step.name.take());
    step.output = copied.output.as_ref().map(|o| o.as_value().clone());
}

/// The timeline of `plan_id` from its history; `status` (the summary's) says whether an attempt
/// still open at the end is running or was left by a runner that is gone.
pub fn steps_doc(plan_id: &PlanId, events: &[StoredEvent], status: PlanStatus) -> StepsDoc {
    let mut steps: BTreeMap<u32, Step> = BTreeMap::new();
    let mut phase: Option<Phase> = None;
    let mut definition: Vec<String> = Vec::new();
    // Right after `PlanForked`, `step_completed` events are the rest of the fork's copies (a fork
    // of large outputs carries them apart): completed steps, not attempts of this plan.
    let mut copying = false;
    for stored in events {
        let at = stored.recorded_at;
        let copy = copying && matches!(stored.event, PlanEvent::StepCompleted(_));
        copying = copy || matches!(stored.event, PlanEvent::PlanForked(_));
        match &stored.event {
            PlanEvent::StepCompleted(copied) if copy => copied_step(&mut steps, copied),
            PlanEvent::PlanCreated(e) => definition = e.steps.iter().map(|s| s.name.as_str().to_owned()).collect(),
            PlanEvent::PlanForked(e) => {
                definition = e.steps.iter().map(|s| s.name.as_str().to_owned()).collect();
                phase = Some(e.phase);
                for copied in &e.checkpoints {
                    copied_step(&mut steps, copied);
                }
            }
            PlanEvent::PhaseStarted(e) => {
                // Step numbers start again in each phase: the timeline is the current phase's.
                if phase.is_some_and(|p| p != e.phase) {
                    steps.clear();
                }
                phase = Some(e.phase);
                close_open(&mut steps, "crashed", None, None, None);
            }
            PlanEvent::Resumed(_) => close_open(&mut steps, "crashed", None, None, None),
            PlanEvent::StepStarted(e) => {
                close_open(&mut steps, "crashed", None, None, None);
                let step = steps.entry(e.step.get()).or_default();
                if let Some(name) = &e.name {
                    step.name = Some(name.as_str().to_owned());
                }
                let attempt = e.attempt.map_or(step.attempts.len() as u32 + 1, |a| a.get());
                step.attempts.push(AttemptEntry {
                    attempt,
                    started_at: at,
                    ended_at: None,
                    outcome: "running",
                    exit_code: None,
                    reason: None,
                });
            }
            PlanEvent::StepCompleted(e) => {
                let step = steps.entry(e.step.get()).or_default();
                if let Some(name) = &e.name {
                    step.name = Some(name.as_str().to_owned());
                }
                step.completed = true;
                step.output = e.output.as_ref().map(|o| o.as_value().clone());
                if let Some(open) = step.open() {
                    open.outcome = "completed";
                    open.ended_at = Some(at);
                } else if step.attempts.iter().all(|a| a.outcome != "completed") {
                    // A checkpoint recorded without a start: an attempt of no length.
                    step.attempts.push(AttemptEntry {
                        attempt: step.attempts.len() as u32 + 1,
                        started_at: at,
                        ended_at: Some(at),
                        outcome: "completed",
                        exit_code: None,
                        reason: None,
                    });
                }
            }
            PlanEvent::StepAttemptFailed(e) => {
                let step = steps.entry(e.step.get()).or_default();
                let (outcome, exit_code) = match &e.reason {
                    AttemptFailure::Exit { code } => ("failed", Some(*code)),
                    AttemptFailure::Timeout => ("timeout", None),
                    _ => ("failed", None),
                };
                let reason = Some(e.reason.to_string());
                match step.attempts.iter_mut().rev().find(|a| a.attempt == e.attempt.get() && a.outcome == "running") {
                    Some(open) => {
                        open.outcome = outcome;
                        open.ended_at = Some(at);
                        open.exit_code = exit_code;
                        open.reason = reason;
                    }
                    None => step.attempts.push(AttemptEntry {
                        attempt: e.attempt.get(),
                        started_at: at,
                        ended_at: Some(at),
                        outcome,
                        exit_code,
                        reason,
                    }),
                }
            }
            PlanEvent::PlanErrored(e) => {
                let (outcome, exit_code, reason) = final_failure(e.message.as_str());
                close_open(&mut steps, outcome, Some(at), exit_code, Some(reason));
            }
            PlanEvent::PlanConstrained(e) => {
                close_open(&mut steps, "failed", Some(at), None, Some(e.message.as_str().to_owned()))
            }
            PlanEvent::Interrupted(e) => {
                close_open(&mut steps, "interrupted", Some(at), None, Some(e.reason.as_str().to_owned()))
            }
            PlanEvent::PlanCancelled(e) => {
                close_open(&mut steps, "cancelled", Some(at), None, e.reason.as_ref().map(|r| r.as_str().to_owned()))
            }
            PlanEvent::TotalStepsSet(_)
            | PlanEvent::PhaseCompleted(_)
            | PlanEvent::PlanApplied(_)
            | PlanEvent::LeaseRenewed(_)
            | PlanEvent::ApprovalRequested(_)
            | PlanEvent::StepApproved(_)
            | PlanEvent::StepRejected(_)
            | PlanEvent::PauseRequested(_)
            | PlanEvent::PlanSubmitted(_) => {}
        }
    }
    // An attempt still open is running, unless its runner is gone.
    if status != PlanStatus::Running {
        close_open(&mut steps, "crashed", None, None, None);
    }
    // Steps the definition names that never ran are pending.
    for (n, name) in (1u32..).zip(definition) {
        let step = steps.entry(n).or_default();
        step.name.get_or_insert(name);
    }
    let steps = steps
        .into_iter()
        .map(|(n, step)| {
            let status = if step.completed {
                "completed"
            } else {
                match step.attempts.last().map(|a| a.outcome) {
                    None => "pending",
                    Some("timeout") => "failed",
                    Some(outcome) => outcome,
                }
            };
            StepEntry { step: n, name: step.name, status, attempts: step.attempts, output: step.output }
        })
        .collect();
    StepsDoc { plan_id: plan_id.clone(), steps }
}

/// Ends every attempt still running with `outcome`.
fn close_open(
    steps: &mut BTreeMap<u32, Step>,
    outcome: &'static str,
    at: Option<DateTime<Utc>>,
    exit_code: Option<i32>,
    reason: Option<String>,
) {
    for step in steps.values_mut() {
        if let Some(open) = step.open() {
            open.outcome = outcome;
            open.ended_at = at;
            open.exit_code = exit_code;
            open.reason = reason.clone();
        }
    }
}

/// How the last attempt ended, read from the plan's error as the step engine words it
/// (`step 2 (train) exited with code 3; stderr ends with: …`): outcome, exit code, and the first
/// line as the reason.
fn final_failure(message: &str) -> (&'static str, Option<i32>, String) {
    let first = message.lines().next().unwrap_or("").trim_end_matches(';');
    let reason = first.split("; stderr ends with").next().unwrap_or(first).to_owned();
    let after_name = reason.split_once(") ").map_or(reason.as_str(), |(_, rest)| rest);
    if let Some(code) = after_name.strip_prefix("exited with code ") {
        let code = code.split(|c: char| !c.is_ascii_digit() && c != '-').next().and_then(|c| c.parse().ok());
        return ("failed", code, reason);
    }
    if after_name.starts_with("timed out") {
        return ("timeout", None, reason);
    }
    ("failed", None, reason)
}
