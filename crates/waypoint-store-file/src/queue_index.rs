//! The file store's claim index (ADR 0017): each queue's plans ([`in_queue`]: submitted to it,
//! not yet finished or failed) with their compact views, oldest submission first (ties by plan
//! id), so a worker's poll reads its own queue and nothing of the other plans.
//!
//! It lives in the memory of the process that polls, never on disk: the first poll builds it
//! from the open catalog (the checkpoint's open rows and the records after them), and every
//! record this process folds afterwards, its own appends and the ones it catches up on from
//! other processes alike (`State::apply`), marks its plan *unsure*. The next poll catches up,
//! reads the compact view of each unsure plan (its summary snapshot and records, through its
//! index: that plan's files only) and places it again. Retention's removals mark their plans
//! too. Nothing is lost when it is dropped: it is rebuilt from the catalog at the next poll, as
//! it is when a poll fails half way, or when a process that stopped polling has marked more
//! plans than [`MAX_UNSURE`].

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use waypoint_application::{in_queue, PlanView};
use waypoint_domain::{PlanId, QueueName};

use crate::error::FileStoreError;
use crate::state::{Shared, State};

/// Unsure plans past which the index is dropped (and rebuilt by the next poll) rather than
/// grown: a process that polled once and then only writes keeps flat memory.
pub(crate) const MAX_UNSURE: usize = 65_536;

/// A queue's order: the submission's time, then the plan id.
type Key = (DateTime<Utc>, PlanId);

/// Every queue's plans, as of the last poll, and the plans that changed since.
#[derive(Debug, Default)]
pub(crate) struct QueueIndex {
    queues: HashMap<QueueName, BTreeMap<Key, PlanView>>,
    /// Where each indexed plan sits, to take it out again.
    placed: HashMap<PlanId, (QueueName, DateTime<Utc>)>,
    /// Plans with records folded since they were last placed.
    unsure: HashSet<PlanId>,
}

impl QueueIndex {
    /// The index of `views`, the compact views of every plan that may still move.
    pub(crate) fn build(views: impl IntoIterator<Item = PlanView>) -> Self {
        let mut index = QueueIndex::default();
        for view in views {
            index.place(view.plan_id.clone(), Some(view));
        }
        index
    }

    /// Marks `plan_id` as changed since it was placed. `false` once more than [`MAX_UNSURE`]
    /// plans are marked: the caller drops the index.
    pub(crate) fn touch(&mut self, plan_id: &PlanId) -> bool {
        if !self.unsure.contains(plan_id) {
            self.unsure.insert(plan_id.clone());
        }
        self.unsure.len() <= MAX_UNSURE
    }

    /// The plans marked since the last call.
    pub(crate) fn take_unsure(&mut self) -> Vec<PlanId> {
        self.unsure.drain().collect()
    }

    /// Puts `plan_id` where its current compact view says: in its queue, or (not in a queue, or
    /// `None`: no such plan any more) nowhere.
    pub(crate) fn place(&mut self, plan_id: PlanId, view: Option<PlanView>) {
        if let Some((queue, at)) = self.placed.remove(&plan_id) {
            if let Some(plans) = self.queues.get_mut(&queue) {
                plans.remove(&(at, plan_id.clone()));
                if plans.is_empty() {
                    self.queues.remove(&queue);
                }
            }
        }
        let Some(view) = view else { return };
        let (Some(queue), Some(submission)) = (in_queue(&view.state), view.state.submission.as_ref()) else { return };
        let (queue, at) = (queue.clone(), submission.at);
        self.placed.insert(plan_id.clone(), (queue.clone(), at));
        self.queues.entry(queue).or_default().insert((at, plan_id), view);
    }

    /// `queue`'s plans, oldest submission first.
    pub(crate) fn plans(&self, queue: &QueueName) -> Vec<PlanView> {
        self.queues.get(queue).map(|plans| plans.values().cloned().collect()).unwrap_or_default()
    }
}

impl Shared {
    /// `queue`'s plans (`PlanStore::queue_plans`) from the claim index, built from the open
    /// catalog if this process has none, after placing again every plan that changed since the
    /// last poll. The caller has caught up with the log.
    pub(crate) fn queue_plans(&self, state: &mut State, queue: &QueueName) -> Result<Vec<PlanView>, FileStoreError> {
        // Taken out while it is brought up to date: a failure below drops it, and the next poll
        // builds it again.
        let mut index = match state.queues.take() {
            Some(index) => index,
            None => QueueIndex::build(self.list(state, true)?),
        };
        for plan_id in index.take_unsure() {
            let view = self.summary(state, &plan_id)?;
            index.place(plan_id, view);
        }
        let plans = index.plans(queue);
        state.queues = Some(index);
        Ok(plans)
    }
}

#[cfg(test)]
mod tests;
