//! Workers and queues (ADR 0017): submitting a plan with its whole definition, claiming the
//! oldest claimable plan of a queue under a lease, and reading a queue's standing. A claim is the
//! step engine's continue under a lease ([`PlanResumeService::prepare_continue_held`]): the
//! worker that claims runs the plan through the engine like every other surface, and the
//! expected-version check fences every claim, so two claimants never both win one plan.

use eventually::store::Select;
use futures::TryStreamExt;
use waypoint_domain::{
    PlanCommand, PlanEvent, PlanId, PlanSubmitted, QueueName, QueueStanding, ResumeSummary, SubmittedDefinition,
};

use crate::engine::{EngineError, EngineRun, Hold, Prepared, RunDefinition};
use crate::error::ServiceError;
use crate::service::{LeaseRequest, PlanResumeService};
use crate::store::{PlanStore, PlanView, QueueLimit, StoreError, StoredEvent};

/// What [`PlanResumeService::submit`] records: the plan's definition as the engine runs it, and
/// the definition whole, for the workers.
#[derive(Debug, Clone)]
pub struct Submit {
    /// The plan's id: its key.
    pub plan_id: PlanId,
    /// The definition's name, source, fingerprint and steps, as `plan_created` records them.
    pub definition: RunDefinition,
    /// The definition whole.
    pub submitted: SubmittedDefinition,
    /// The queue it waits in.
    pub queue: QueueName,
    /// The working folder its folders are relative to, as the submitter named it.
    pub workdir: Option<String>,
}

/// A plan a worker claimed: its run, started under the worker's lease, and how it stood before.
#[derive(Debug)]
pub struct Claimed<S> {
    /// The run, held by the worker's lease.
    pub run: EngineRun<S>,
    /// The plan's summary before the claim (`queued`, `crashed` or `interrupted`).
    pub before: Box<ResumeSummary>,
}

/// One queue as `queue list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOverview {
    /// The queue.
    pub queue: QueueName,
    /// Its limit on running plans, if it has one.
    pub limit: Option<u32>,
    /// Plans a worker may claim now.
    pub claimable: usize,
    /// Plans a runner holds.
    pub running: usize,
    /// Plans in the queue that nobody claims (paused, or waiting for a person).
    pub settled: usize,
}

impl<S: PlanStore> PlanResumeService<S> {
    /// Records a plan in `submit.queue` with its whole definition: `plan_created` and
    /// `plan_submitted` in one append. Idempotent by key: a plan (or a removed plan) that already
    /// has the id is given back as it is, with `false`.
    pub async fn submit(&self, submit: Submit) -> Result<(PlanView, bool), ServiceError> {
        let Submit { plan_id, definition, submitted, queue, workdir } = submit;
        if let Some(existing) = self.existing(&plan_id).await? {
            return Ok((existing, false));
        }
        let at = self.now();
        let commands = vec![
            PlanCommand::Create {
                name: Some(definition.name.clone()),
                total_steps: definition.total_steps(),
                fingerprint: definition.fingerprint.clone(),
                source: Some(definition.source.clone()),
                steps: definition.steps.clone(),
                at,
            },
            PlanCommand::Submit { queue, definition: submitted, workdir, at },
        ];
        match self.execute_on(&plan_id, None, commands).await {
            Ok((view, _)) => Ok((view, true)),
            // A submit of the same key won the race: the plan exists now.
            Err(ServiceError::Store(StoreError::Conflict { .. })) => match self.existing(&plan_id).await? {
                Some(existing) => Ok((existing, false)),
                None => Err(ServiceError::NotFound(plan_id)),
            },
            Err(other) => Err(other),
        }
    }

    async fn existing(&self, plan_id: &PlanId) -> Result<Option<PlanView>, ServiceError> {
        match self.load_summary(plan_id).await {
            Ok(view) => Ok(Some(view)),
            Err(ServiceError::NotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// The submission of `plan_id`: its queue and its definition, whole, as the worker runs it.
    /// `None` for a plan that was not submitted.
    pub async fn submission(&self, plan_id: &PlanId) -> Result<Option<PlanSubmitted>, ServiceError> {
        // Submitted with its creation: the first events hold it.
        let mut stream = self.store().stream(plan_id.clone(), Select::All).await?;
        let mut seen = 0;
        while let Some(stored) = stream.try_next().await? {
            let stored: StoredEvent = stored;
            if let PlanEvent::PlanSubmitted(submitted) = &stored.event {
                return Ok(Some(submitted.clone()));
            }
            seen += 1;
            if seen >= 2 {
                break;
            }
        }
        if seen == 0 {
            return Err(self.not_found(plan_id).await);
        }
        Ok(None)
    }

    /// The plans of `queue` with their summaries and standing, oldest submission first.
    pub async fn queue_plans(&self, queue: &QueueName) -> Result<Vec<(ResumeSummary, QueueStanding)>, ServiceError> {
        let views = self.store().queue_plans(queue).await?;
        let summaries = self.summarize_views(&views).await?;
        Ok(summaries
            .into_iter()
            .map(|summary| {
                let standing = QueueStanding::of(&summary);
                (summary, standing)
            })
            .collect())
    }

    /// Claims the oldest claimable plan of `queue` for `lease`'s runner and starts its run under
    /// that lease: a plan submitted and never claimed, or one whose worker stopped (interrupted)
    /// or vanished (its lease expired). `None` when nothing is claimable, or when the queue runs
    /// as many plans as its limit allows. Claims of one queue are serialised by the store's claim
    /// lock; each is fenced by the expected-version check as well.
    pub async fn claim(&self, queue: &QueueName, lease: LeaseRequest) -> Result<Option<Claimed<S>>, EngineError> {
        // An idle worker polls: when nothing is claimable it need not take the claim lock.
        let claimable = |plans: &[(ResumeSummary, QueueStanding)]| {
            plans.iter().any(|(_, standing)| *standing == QueueStanding::Claimable)
        };
        if !claimable(&self.queue_plans(queue).await?) {
            return Ok(None);
        }
        let _claiming = self.store().lock_queue(queue).await.map_err(ServiceError::from)?;
        // Read again under the lock: what another claimant did meanwhile counts.
        let plans = self.queue_plans(queue).await?;
        let limit = self.queue_limit(queue).await?;
        let running = plans.iter().filter(|(_, standing)| *standing == QueueStanding::Running).count();
        if limit.is_some_and(|limit| running >= limit as usize) {
            return Ok(None);
        }
        for (summary, standing) in plans {
            if standing != QueueStanding::Claimable {
                continue;
            }
            let plan_id = &summary.plan_id;
            let ready = match self.prepare_continue_held(plan_id, None, Hold::Lease(lease.clone())).await {
                Ok(Prepared::Continue(ready, _)) => ready,
                Ok(_) | Err(EngineError::StillRunning { .. } | EngineError::NotResumable { .. }) => continue,
                Err(other) => return Err(other),
            };
            match ready.start().await {
                Ok(run) => return Ok(Some(Claimed { run, before: Box::new(summary) })),
                // Another runner moved the plan first (a claimant that holds no claim lock, an
                // operator's resume): the fence refused this claim; try the next plan.
                Err(EngineError::Service(ServiceError::Store(StoreError::Conflict { .. })))
                | Err(EngineError::StillRunning { .. } | EngineError::NotResumable { .. }) => continue,
                Err(other) => return Err(other),
            }
        }
        Ok(None)
    }

    async fn queue_limit(&self, queue: &QueueName) -> Result<Option<u32>, ServiceError> {
        let limits = self.store().queue_limits().await?;
        Ok(limits.into_iter().find(|l| &l.queue == queue).map(|l| l.limit))
    }

    /// Sets `queue`'s limit on running plans (`None`: no limit).
    pub async fn set_queue_limit(&self, queue: &QueueName, limit: Option<u32>) -> Result<(), ServiceError> {
        Ok(self.store().set_queue_limit(queue, limit).await?)
    }

    /// Every queue that has a limit or holds plans, by name, with what it holds. Reads the open
    /// catalog once to find the queues; an operator's command, not a worker's.
    pub async fn queues(&self) -> Result<Vec<QueueOverview>, ServiceError> {
        let limits = self.store().queue_limits().await?;
        let mut names: Vec<QueueName> = limits.iter().map(|QueueLimit { queue, .. }| queue.clone()).collect();
        for view in self.store().open_catalog().await? {
            if let Some(queue) = crate::store::in_queue(&view.state) {
                names.push(queue.clone());
            }
        }
        names.sort();
        names.dedup();
        let mut overview = Vec::with_capacity(names.len());
        for queue in names {
            let plans = self.queue_plans(&queue).await?;
            let count = |wanted: QueueStanding| plans.iter().filter(|(_, standing)| *standing == wanted).count();
            overview.push(QueueOverview {
                limit: limits.iter().find(|l| l.queue == queue).map(|l| l.limit),
                claimable: count(QueueStanding::Claimable),
                running: count(QueueStanding::Running),
                settled: count(QueueStanding::Settled),
                queue,
            });
        }
        Ok(overview)
    }
}

#[cfg(test)]
mod tests;
