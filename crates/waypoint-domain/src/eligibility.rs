//! The one eligibility function. Every surface (resume, dry run, listing, the library) calls it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::definition::{check_definition, ChangedStep, CurrentDefinition};
use crate::ids::Fingerprint;
use crate::lifecycle::{Phase, ProcessingState};
use crate::state::PlanState;

/// Why a plan cannot resume. The serde form is the stable snake_case code; the variant order is
/// the order [`evaluate_eligibility`] reports them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeIneligibleReason {
    /// `terminal_state`: the plan is `applied` or `cancelled`.
    TerminalState,
    /// `action_phase`: no phase has started, so nothing has run; start a phase instead.
    ActionPhase,
    /// `still_running`: the plan is `processing`, not interrupted, and its run lock is held, or
    /// a runner holds it by a lease that has not expired, or (without a lease) the move to
    /// `processing` named no runner (a lockless worker must record its own interruption).
    StillRunning,
    /// `nothing_to_resume`: the phase is `complete`, or the total is known and reached.
    NothingToResume,
    /// `definition_changed`: a completed step's definition changed, moved or was removed, the
    /// definition cannot be read, or (without per-step definitions) the whole-plan fingerprints
    /// differ.
    DefinitionChanged,
    /// `snapshot_missing`: the snapshot probe found the last checkpoint's snapshot or artifacts
    /// gone or changed.
    SnapshotMissing,
    /// `waiting_for_approval`: the plan stopped before a step that asks a person, and nobody
    /// has approved or rejected it yet.
    WaitingForApproval,
    /// `approval_rejected`: someone rejected the step the plan waited at; the plan failed for
    /// good (fork it, or start a new one).
    ApprovalRejected,
}

impl ResumeIneligibleReason {
    /// Every reason, in reporting order.
    pub const ALL: [ResumeIneligibleReason; 8] = [
        ResumeIneligibleReason::TerminalState,
        ResumeIneligibleReason::ActionPhase,
        ResumeIneligibleReason::StillRunning,
        ResumeIneligibleReason::NothingToResume,
        ResumeIneligibleReason::DefinitionChanged,
        ResumeIneligibleReason::SnapshotMissing,
        ResumeIneligibleReason::WaitingForApproval,
        ResumeIneligibleReason::ApprovalRejected,
    ];

    /// The stable snake_case code scripts match on.
    pub fn code(self) -> &'static str {
        match self {
            ResumeIneligibleReason::TerminalState => "terminal_state",
            ResumeIneligibleReason::ActionPhase => "action_phase",
            ResumeIneligibleReason::StillRunning => "still_running",
            ResumeIneligibleReason::NothingToResume => "nothing_to_resume",
            ResumeIneligibleReason::DefinitionChanged => "definition_changed",
            ResumeIneligibleReason::SnapshotMissing => "snapshot_missing",
            ResumeIneligibleReason::WaitingForApproval => "waiting_for_approval",
            ResumeIneligibleReason::ApprovalRejected => "approval_rejected",
        }
    }

    /// One sentence a person can act on.
    pub fn explanation(self) -> &'static str {
        match self {
            ResumeIneligibleReason::TerminalState => "the plan was applied or cancelled; start a new plan",
            ResumeIneligibleReason::ActionPhase => "nothing has run yet; start a phase instead",
            ResumeIneligibleReason::StillRunning => {
                "a runner is still working on the plan; wait for it (or for its lease to expire) or record its interruption"
            }
            ResumeIneligibleReason::NothingToResume => "every step has completed; start the next phase",
            ResumeIneligibleReason::DefinitionChanged => {
                "the plan definition changed where it already ran, or cannot be read; restore it or start a new plan"
            }
            ResumeIneligibleReason::SnapshotMissing => {
                "the last checkpoint's snapshot or artifacts are gone or changed; restore them or start over"
            }
            ResumeIneligibleReason::WaitingForApproval => {
                "a step waits for a person's decision; approve it (or reject it) first"
            }
            ResumeIneligibleReason::ApprovalRejected => {
                "the step it waited at was rejected; fork the plan or start a new one"
            }
        }
    }
}

impl fmt::Display for ResumeIneligibleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What the snapshot probe found for the last checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotCheck {
    /// No probe is configured, or the last checkpoint names nothing to check.
    #[default]
    NotChecked,
    /// The snapshot and artifacts are there, as recorded.
    Present,
    /// The snapshot or an artifact is gone or changed: the plan is `snapshot_missing`.
    Missing,
}

/// The facts from outside the log that eligibility depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EligibilityInputs {
    /// Someone holds the plan's run lock right now.
    pub runner_alive: bool,
    /// The caller's fingerprint of the whole plan definition, to compare with the recorded one.
    /// Ignored when `definition` is given: the definition check decides then.
    pub fingerprint: Option<Fingerprint>,
    /// What the snapshot probe found for the last checkpoint.
    pub snapshot: SnapshotCheck,
    /// The plan definition as a probe found it now, for the per-step definition check.
    pub definition: Option<CurrentDefinition>,
    /// The store's clock now, to judge the plan's lease by. Needed only for a `processing` plan
    /// held by lease; without it such a lease counts as live (a false "gone" would let two
    /// runners work on one plan).
    pub now: Option<DateTime<Utc>>,
}

/// The verdict: eligible, or every reason that applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeEligibility {
    /// The plan may resume: exactly when `reasons` is empty.
    pub eligible: bool,
    /// Every reason that applies, in the order of [`ResumeIneligibleReason::ALL`].
    pub reasons: Vec<ResumeIneligibleReason>,
    /// The plan is `processing` but its runner is gone without recording an interruption.
    pub crash_inferred: bool,
    /// The crash was inferred because the runner's lease expired (rather than its run lock
    /// being free).
    #[serde(default)]
    pub lease_expired: bool,
    /// Every step whose definition differs from the recorded one, in step order. Completed ones
    /// make the plan `definition_changed`; pending ones do not block.
    #[serde(default)]
    pub changed_steps: Vec<ChangedStep>,
}

/// Decides whether `plan` can resume, listing every reason it cannot, in a stable order. The one
/// place this is decided: resume, its dry run, listings and library callers all ask here.
///
/// ```
/// use waypoint_domain::{evaluate_eligibility, EligibilityInputs, PlanState, ResumeIneligibleReason};
/// # use waypoint_domain::{PlanCreated, PlanEvent};
/// # let created = PlanCreated {
/// #     name: None, total_steps: None, fingerprint: None, source: None,
/// #     created_at: chrono::DateTime::UNIX_EPOCH, steps: Vec::new(),
/// # };
/// # let plan = PlanState::fold(None, &PlanEvent::PlanCreated(created)).expect("created");
///
/// // A plan that was created but never started a phase has nothing to resume from.
/// let verdict = evaluate_eligibility(&plan, &EligibilityInputs::default());
/// assert!(!verdict.eligible);
/// assert_eq!(verdict.reasons, [ResumeIneligibleReason::ActionPhase]);
/// ```
pub fn evaluate_eligibility(plan: &PlanState, inputs: &EligibilityInputs) -> ResumeEligibility {
    use ResumeIneligibleReason::*;
    let meta = &plan.resume;
    let processing_uninterrupted = plan.state == ProcessingState::Processing && !meta.interrupted;
    let mut reasons = Vec::new();
    if plan.state.is_terminal() {
        reasons.push(TerminalState);
    }
    if plan.phase == Phase::Action {
        reasons.push(ActionPhase);
    }
    let held = match &plan.lease {
        // A lease is judged on the store's clock; unread, it counts as live.
        Some(lease) => inputs.runner_alive || inputs.now.is_none_or(|now| lease.is_live(now)),
        // A lockless worker moved it to processing: we cannot tell whether it lives, so it must
        // record its own interruption before anyone else may resume.
        None => inputs.runner_alive || plan.runner.is_none(),
    };
    if processing_uninterrupted && held {
        reasons.push(StillRunning);
    }
    if plan.state == ProcessingState::Complete || meta.all_steps_completed() {
        reasons.push(NothingToResume);
    }
    let mut changed_steps = Vec::new();
    let definition_changed = match &inputs.definition {
        Some(current) => {
            let check = check_definition(plan, current);
            changed_steps = check.changed_steps;
            check.definition_changed
        }
        None => matches!((&inputs.fingerprint, &plan.fingerprint), (Some(given), Some(recorded)) if given != recorded),
    };
    if definition_changed {
        reasons.push(DefinitionChanged);
    }
    if inputs.snapshot == SnapshotCheck::Missing {
        reasons.push(SnapshotMissing);
    }
    if plan.approval.as_ref().is_some_and(|a| a.is_pending()) {
        reasons.push(WaitingForApproval);
    }
    if plan.approval.as_ref().is_some_and(|a| a.is_rejected()) && plan.state == ProcessingState::Errored {
        reasons.push(ApprovalRejected);
    }
    let crash_inferred = processing_uninterrupted && !held;
    let lease_expired = crash_inferred && plan.lease.is_some();
    ResumeEligibility { eligible: reasons.is_empty(), reasons, crash_inferred, lease_expired, changed_steps }
}
