//! People in the loop: a step that waits for a person's approval, and a pause asked for while a
//! plan runs. What the log says about both, folded into the plan's state; the rules around them
//! are decided in `plan.rs` and judged in `eligibility.rs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::PlanEvent;
use crate::ids::{Actor, Message, StepName, StepNumber};

/// The reason recorded for the interruption of a plan that stopped because someone paused it.
pub const PAUSED_REASON: &str = "paused";

/// The reason recorded for the interruption of a plan that stopped to wait for an approval.
pub const WAITING_REASON: &str = "waiting for approval";

/// A step that asked a person before running, and what they decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The step that waits.
    pub step: StepNumber,
    /// Its name.
    pub name: Option<StepName>,
    /// What the person is asked.
    pub question: Message,
    /// When the run stopped to ask.
    #[serde(with = "crate::timestamp")]
    pub requested_at: DateTime<Utc>,
    /// The decision, once someone made it.
    pub decision: Option<ApprovalDecision>,
}

/// Someone's answer to an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// Approved (the next run goes past the step) or rejected (the plan failed).
    pub approved: bool,
    /// Who decided.
    pub by: Actor,
    /// When.
    #[serde(with = "crate::timestamp")]
    pub at: DateTime<Utc>,
    /// An approval's comment, or a rejection's reason.
    pub note: Option<Message>,
}

impl Approval {
    /// Nobody has decided yet: the plan is `waiting`.
    pub fn is_pending(&self) -> bool {
        self.decision.is_none()
    }

    /// Someone approved it: the step may run.
    pub fn is_approved(&self) -> bool {
        self.decision.as_ref().is_some_and(|d| d.approved)
    }

    /// Someone rejected it: the plan failed with `approval_rejected`.
    pub fn is_rejected(&self) -> bool {
        self.decision.as_ref().is_some_and(|d| !d.approved)
    }
}

/// A pause someone asked for while a runner was working on the plan: the runner stops at its
/// next step boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseRequest {
    /// Who asked.
    pub by: Actor,
    /// Why, if they said.
    pub reason: Option<Message>,
    /// When.
    #[serde(with = "crate::timestamp")]
    pub at: DateTime<Utc>,
}

/// Folds `event` into the plan's approval: a request opens one, a decision closes it, the
/// step's completion (or a new phase) clears it.
pub(crate) fn fold_approval(approval: &mut Option<Approval>, event: &PlanEvent) {
    match event {
        PlanEvent::ApprovalRequested(e) => {
            *approval = Some(Approval {
                step: e.step,
                name: e.name.clone(),
                question: e.question.clone(),
                requested_at: e.at,
                decision: None,
            });
        }
        PlanEvent::StepApproved(e) => decide(approval, e.step, true, &e.by, e.at, e.comment.as_ref()),
        PlanEvent::StepRejected(e) => decide(approval, e.step, false, &e.by, e.at, Some(&e.reason)),
        PlanEvent::StepCompleted(e) if approval.as_ref().is_some_and(|a| a.step == e.step) => *approval = None,
        PlanEvent::PhaseStarted(_) => *approval = None,
        _ => {}
    }
}

fn decide(
    approval: &mut Option<Approval>,
    step: StepNumber,
    approved: bool,
    by: &Actor,
    at: DateTime<Utc>,
    note: Option<&Message>,
) {
    if let Some(waiting) = approval.as_mut().filter(|a| a.step == step) {
        waiting.decision = Some(ApprovalDecision { approved, by: by.clone(), at, note: note.cloned() });
    }
}
