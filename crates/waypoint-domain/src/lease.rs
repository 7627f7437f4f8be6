//! Leases: how a runner that holds no run lock holds a plan for a while, and how the fold keeps
//! the plan's current lease. Expiry is judged against a time the caller reads from the store's
//! clock; the domain itself reads no clock.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::PlanEvent;
use crate::ids::RunnerId;

/// A plan held by `runner` until `expires_at`, on the store's clock. While it is live the plan is
/// `still_running`; once it has expired without a renewal the runner is taken to be gone, and
/// another runner may resume the plan and take it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The runner that holds the plan.
    pub runner: RunnerId,
    /// When the lease runs out unless renewed: an absolute UTC time the caller computed from the
    /// store's clock.
    #[serde(with = "crate::timestamp")]
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// Whether the lease still holds at `now` (the store's clock): up to, not including,
    /// `expires_at`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }

    /// Whether `runner` is the one holding this lease.
    pub fn is_held_by(&self, runner: &RunnerId) -> bool {
        &self.runner == runner
    }
}

/// Folds `event` into the plan's current lease. A lease-bearing start, resume or step start
/// sets it (a resume or phase start without one clears it), a renewal moves its expiry, and
/// everything that takes the plan out of `processing` ends it.
pub(crate) fn fold(lease: &mut Option<Lease>, event: &PlanEvent) {
    match event {
        PlanEvent::PhaseStarted(e) => *lease = e.lease.clone(),
        PlanEvent::Resumed(e) => *lease = e.lease.clone(),
        PlanEvent::StepStarted(e) => {
            if let Some(new) = &e.lease {
                *lease = Some(new.clone());
            }
        }
        PlanEvent::LeaseRenewed(e) => *lease = Some(Lease { runner: e.runner.clone(), expires_at: e.expires_at }),
        PlanEvent::Interrupted(_)
        | PlanEvent::PlanErrored(_)
        | PlanEvent::PlanConstrained(_)
        | PlanEvent::PhaseCompleted(_)
        | PlanEvent::PlanApplied(_)
        | PlanEvent::PlanCancelled(_)
        | PlanEvent::ApprovalRequested(_)
        | PlanEvent::StepRejected(_) => *lease = None,
        // Named one by one, so a new event type has to say what it does to a lease.
        PlanEvent::PlanCreated(_)
        | PlanEvent::PlanForked(_)
        | PlanEvent::TotalStepsSet(_)
        | PlanEvent::StepCompleted(_)
        | PlanEvent::StepAttemptFailed(_)
        | PlanEvent::StepApproved(_)
        | PlanEvent::PauseRequested(_)
        | PlanEvent::PlanSubmitted(_) => {}
    }
}
