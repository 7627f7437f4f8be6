//! `ResumeSummary`: what a resume preview shows, built from state and the eligibility verdict.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::eligibility::{ResumeEligibility, ResumeIneligibleReason};
use crate::ids::{CheckpointId, DecisionId, PlanId, SnapshotId, StepNumber, TotalSteps};
use crate::lifecycle::{Phase, ProcessingState};
use crate::state::PlanState;

/// Why and when the plan stopped. `inferred` is true when no interruption was recorded and the
/// runner is gone: a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterruptionSummary {
    pub reason: String,
    pub at: Option<DateTime<Utc>>,
    pub inferred: bool,
}

/// The reason given for an interruption that was inferred rather than recorded.
pub const CRASH_REASON: &str = "crash";

/// Field order and names are part of the CLI's JSON contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeSummary {
    pub plan_id: PlanId,
    pub phase: Phase,
    pub state: ProcessingState,
    pub eligible: bool,
    pub reasons: Vec<ResumeIneligibleReason>,
    pub interrupted: bool,
    pub interruption: Option<InterruptionSummary>,
    pub last_completed_step: Option<StepNumber>,
    pub total_steps: Option<TotalSteps>,
    pub next_step: Option<StepNumber>,
    pub remaining_steps: Option<u32>,
    pub progress_percent: Option<u8>,
    pub last_checkpoint_id: Option<CheckpointId>,
    pub decision_id: Option<DecisionId>,
    pub snapshot_id: Option<SnapshotId>,
    pub uncertain_step: Option<StepNumber>,
    pub resume_count: u32,
}

impl ResumeSummary {
    /// `last_activity_at` is when the plan's last event was recorded: the best guess of when a
    /// crashed runner stopped.
    pub fn build(
        plan_id: &PlanId,
        plan: &PlanState,
        eligibility: &ResumeEligibility,
        last_activity_at: Option<DateTime<Utc>>,
    ) -> Self {
        let meta = &plan.resume;
        let last = meta.last_checkpoint();
        let interruption = if eligibility.crash_inferred {
            Some(InterruptionSummary { reason: CRASH_REASON.to_owned(), at: last_activity_at, inferred: true })
        } else {
            meta.interruption.as_ref().map(|i| InterruptionSummary {
                reason: i.reason.to_string(),
                at: Some(i.at),
                inferred: false,
            })
        };
        ResumeSummary {
            plan_id: plan_id.clone(),
            phase: plan.phase,
            state: plan.state,
            eligible: eligibility.eligible,
            reasons: eligibility.reasons.clone(),
            interrupted: meta.interrupted || eligibility.crash_inferred,
            interruption,
            last_completed_step: meta.last_completed_step,
            total_steps: meta.total_steps,
            // A finished phase or plan has no step to run next: its next move is a new phase.
            next_step: meta
                .next_step()
                .filter(|_| !plan.state.is_terminal() && plan.state != ProcessingState::Complete),
            remaining_steps: meta.remaining_steps(),
            progress_percent: meta.progress_percent(),
            last_checkpoint_id: meta.last_checkpoint_id,
            decision_id: last.map(|c| c.decision_id.clone()),
            snapshot_id: last.and_then(|c| c.snapshot_id.clone()),
            uncertain_step: meta.uncertain_step,
            resume_count: meta.resume_count,
        }
    }
}
