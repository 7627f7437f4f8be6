//! `ResumeSummary`: what a resume preview shows, built from state and the eligibility verdict.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::approval::PAUSED_REASON;
use crate::definition::ChangedStep;
use crate::eligibility::{ResumeEligibility, ResumeIneligibleReason};
use crate::ids::{CheckpointId, DecisionId, PlanId, SnapshotId, StepName, StepNumber, TotalSteps};
use crate::lease::Lease;
use crate::lifecycle::{Phase, ProcessingState};
use crate::queue::QueueName;
use crate::state::PlanState;

/// Why and when the plan stopped. `inferred` is true when no interruption was recorded and the
/// runner is gone: a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterruptionSummary {
    /// The recorded reason, or when inferred [`CRASH_REASON`] ([`LEASE_EXPIRED_REASON`] for a
    /// runner whose lease expired).
    pub reason: String,
    /// When it stopped: the recorded time; for a crash the time of the plan's last event (`None`
    /// when the caller does not know it); for an expired lease the time it expired.
    #[serde(serialize_with = "crate::timestamp::serialize_text_option")]
    pub at: Option<DateTime<Utc>>,
    /// No interruption was recorded: the runner is gone and a crash is assumed.
    pub inferred: bool,
}

/// The reason given for an interruption that was inferred rather than recorded.
pub const CRASH_REASON: &str = "crash";

/// The reason given for an interruption inferred because the runner's lease expired without a
/// renewal.
pub const LEASE_EXPIRED_REASON: &str = "lease_expired";

/// Where a plan state stands, in one plain word for people. Decided from the state and the
/// eligibility verdict, first match wins:
///
/// - `applied`, `cancelled`: the plan is in that terminal state.
/// - `not_started`: the plan is still in `action` (no phase has started).
/// - `waiting`: it stopped before a step that asks a person, and nobody has decided yet.
/// - `failed`: the phase is `errored` or `constrained`; the summary's `error` says why.
/// - `completed`: the phase is `complete`, or every known step has completed.
/// - `crashed`: `processing`, but the runner that took the run lock is gone, or its lease
///   expired, and no interruption was recorded (the interruption is inferred).
/// - `running`: `processing` otherwise: its runner holds the run lock or a live lease, or a
///   lockless external worker moved it there.
/// - `paused`: `queued` after someone paused it (the interruption's reason is `paused`).
/// - `interrupted`: `queued` after any other recorded interruption.
/// - `queued`: submitted to a queue (in `action`), not yet claimed by a worker.
/// - `not_started`: `queued` without an interruption (a phase that never ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// `running`: `processing`, with a live runner or a lockless worker.
    Running,
    /// `interrupted`: `queued` after a recorded interruption; it can resume.
    Interrupted,
    /// `crashed`: `processing`, but its runner is gone (or its lease expired) without recording
    /// an interruption.
    Crashed,
    /// `failed`: `errored` or `constrained`.
    Failed,
    /// `completed`: the phase is `complete`, or every known step has completed.
    Completed,
    /// `cancelled`: stopped for good.
    Cancelled,
    /// `applied`: took effect; nothing more to do.
    Applied,
    /// `not_started`: in `action`, or `queued` in a phase that never ran.
    NotStarted,
    /// `waiting`: stopped before a step that asks a person; nobody has decided yet.
    Waiting,
    /// `paused`: someone paused it; it continues when run again.
    Paused,
    /// `queued`: submitted to a queue, not yet claimed by a worker.
    Queued,
}

impl PlanStatus {
    /// Every status.
    pub const ALL: [PlanStatus; 11] = [
        PlanStatus::Running,
        PlanStatus::Interrupted,
        PlanStatus::Crashed,
        PlanStatus::Failed,
        PlanStatus::Completed,
        PlanStatus::Cancelled,
        PlanStatus::Applied,
        PlanStatus::NotStarted,
        PlanStatus::Waiting,
        PlanStatus::Paused,
        PlanStatus::Queued,
    ];

    /// The status of `plan` given its eligibility verdict (which knows whether a crash is inferred).
    pub fn of(plan: &PlanState, eligibility: &ResumeEligibility) -> Self {
        use ProcessingState::*;
        match plan.state {
            Applied => return PlanStatus::Applied,
            Cancelled => return PlanStatus::Cancelled,
            _ => {}
        }
        if plan.phase == Phase::Action && plan.submission.is_some() {
            return PlanStatus::Queued;
        }
        if plan.phase == Phase::Action {
            return PlanStatus::NotStarted;
        }
        if plan.approval.as_ref().is_some_and(|a| a.is_pending()) {
            return PlanStatus::Waiting;
        }
        let paused = plan.resume.interruption.as_ref().is_some_and(|i| i.reason.as_str() == PAUSED_REASON);
        match plan.state {
            Errored | Constrained => PlanStatus::Failed,
            _ if plan.state == Complete || plan.resume.all_steps_completed() => PlanStatus::Completed,
            Processing if eligibility.crash_inferred => PlanStatus::Crashed,
            Processing => PlanStatus::Running,
            _ if plan.resume.interrupted && paused => PlanStatus::Paused,
            _ if plan.resume.interrupted => PlanStatus::Interrupted,
            _ => PlanStatus::NotStarted,
        }
    }

    /// The stable snake_case word, as printed and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Running => "running",
            PlanStatus::Interrupted => "interrupted",
            PlanStatus::Crashed => "crashed",
            PlanStatus::Failed => "failed",
            PlanStatus::Completed => "completed",
            PlanStatus::Cancelled => "cancelled",
            PlanStatus::Applied => "applied",
            PlanStatus::NotStarted => "not_started",
            PlanStatus::Waiting => "waiting",
            PlanStatus::Paused => "paused",
            PlanStatus::Queued => "queued",
        }
    }
}

impl std::fmt::Display for PlanStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The plan and step a forked plan was copied from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkedFrom {
    /// The source plan.
    pub plan_id: PlanId,
    /// The last source step the fork copied (`None`: it copied none); the fork resumes at the
    /// step after it.
    pub step: Option<StepNumber>,
}

/// Where a plan stands and whether, and from where, it can resume: what `resume --dry-run`,
/// `show` and `list` print. Built by [`ResumeSummary::build`] from the state and the eligibility
/// verdict, so every surface shows the same answer.
///
/// Field order and names are part of the CLI's JSON contract; new fields go at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeSummary {
    /// The plan.
    pub plan_id: PlanId,
    /// Its current phase.
    pub phase: Phase,
    /// Its state within the phase.
    pub state: ProcessingState,
    /// It may resume now.
    pub eligible: bool,
    /// Every reason it may not, in the stable order.
    pub reasons: Vec<ResumeIneligibleReason>,
    /// It stopped: an interruption was recorded, or a crash is inferred.
    pub interrupted: bool,
    /// Why and when it stopped, recorded or inferred.
    pub interruption: Option<InterruptionSummary>,
    /// The current phase's last completed step.
    pub last_completed_step: Option<StepNumber>,
    /// The current phase's total, when known.
    pub total_steps: Option<TotalSteps>,
    /// The step a resume runs first; `None` when the phase or plan is finished (its next move
    /// is a new phase, or nothing).
    pub next_step: Option<StepNumber>,
    /// Steps left to the total, when known.
    pub remaining_steps: Option<u32>,
    /// Completed steps as a percentage of the total, rounded down, when known.
    pub progress_percent: Option<u8>,
    /// The last checkpoint's id.
    pub last_checkpoint_id: Option<CheckpointId>,
    /// The last checkpoint's decision.
    pub decision_id: Option<DecisionId>,
    /// The last checkpoint's snapshot.
    pub snapshot_id: Option<SnapshotId>,
    /// A step that started but did not complete: its outcome is unknown and a resume runs it
    /// again.
    pub uncertain_step: Option<StepNumber>,
    /// How many times the plan was resumed.
    pub resume_count: u32,
    /// One plain word for people; see [`PlanStatus`].
    pub status: PlanStatus,
    /// The plan this one was forked from, if it is a fork.
    pub forked_from: Option<ForkedFrom>,
    /// Steps whose definition differs from the recorded one (see [`ChangedStep`]); empty when the
    /// definition was not checked or nothing changed.
    pub changed_steps: Vec<ChangedStep>,
    /// The last error's message, when the plan failed (`errored` or `constrained`).
    pub error: Option<String>,
    /// The lease a runner holds the plan by (its runner and expiry on the store's clock), while
    /// it is `processing` under one; live or expired, as `status` says.
    pub lease: Option<Lease>,
    /// The step the plan waits at for a person's decision, while it is `waiting`.
    pub waiting_for: Option<WaitingFor>,
    /// The queue the plan was submitted to, when it was submitted for workers to run.
    #[serde(default)]
    pub queue: Option<QueueName>,
}

/// The step a `waiting` plan waits at, and what the person is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingFor {
    /// The step.
    pub step: StepNumber,
    /// Its name.
    pub name: Option<StepName>,
    /// The question.
    pub question: String,
}

impl ResumeSummary {
    /// The summary of `plan` (whose id is `plan_id`) under `eligibility`, its verdict.
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
        let status = PlanStatus::of(plan, eligibility);
        let expired_lease = plan.lease.as_ref().filter(|_| eligibility.lease_expired);
        let interruption = if let Some(lease) = expired_lease {
            Some(InterruptionSummary {
                reason: LEASE_EXPIRED_REASON.to_owned(),
                at: Some(lease.expires_at),
                inferred: true,
            })
        } else if eligibility.crash_inferred {
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
            status,
            forked_from: plan.forked_from.clone(),
            changed_steps: eligibility.changed_steps.clone(),
            error: plan.last_error.as_ref().filter(|_| status == PlanStatus::Failed).map(|m| m.to_string()),
            lease: plan.lease.clone(),
            waiting_for: plan.approval.as_ref().filter(|a| a.is_pending()).map(|a| WaitingFor {
                step: a.step,
                name: a.name.clone(),
                question: a.question.to_string(),
            }),
            queue: plan.submission.as_ref().map(|s| s.queue.clone()),
        }
    }
}
