//! The store port's part for workers and queues (ADR 0017): which plans a queue's claim index
//! holds, the claim lock's guard, and queue limits.

use serde::{Deserialize, Serialize};
use waypoint_domain::{PlanState, ProcessingState, QueueName};

use super::PlanView;

/// The queue `plan` is in, when it is in one: it was submitted to that queue and has neither
/// finished nor failed (it waits to be claimed, runs, or stopped and may be claimed again). The
/// one rule every store's claim index follows.
pub fn in_queue(plan: &PlanState) -> Option<&QueueName> {
    let open = matches!(plan.state, ProcessingState::Queued | ProcessingState::Processing);
    plan.submission.as_ref().filter(|_| open).map(|s| &s.queue)
}

/// Orders a queue's plans as workers claim them: oldest submission first, ties by plan id.
pub(crate) fn sort_oldest_first(views: &mut [PlanView]) {
    views.sort_by(|a, b| {
        let key = |v: &PlanView| v.state.submission.as_ref().map(|s| s.at);
        key(a).cmp(&key(b)).then_with(|| a.plan_id.cmp(&b.plan_id))
    });
}

/// A queue's limit on its running plans, held across every worker of every machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLimit {
    /// The queue.
    pub queue: QueueName,
    /// At most this many of its plans run at once.
    pub limit: u32,
}

/// What a store keeps for a held claim lock. Dropping it releases the lock.
pub trait HeldQueueLock: Send + std::fmt::Debug {}

/// Proof that the caller holds a queue's claim lock ([`super::PlanStore::lock_queue`]).
/// Dropping it releases the lock.
#[derive(Debug)]
pub struct QueueLock {
    queue: QueueName,
    _held: Box<dyn HeldQueueLock>,
}

impl QueueLock {
    /// Wraps what a store keeps for a claim lock it granted.
    pub fn new(queue: QueueName, held: impl HeldQueueLock + 'static) -> Self {
        Self { queue, _held: Box::new(held) }
    }

    /// The queue whose claims this lock serialises.
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }
}
