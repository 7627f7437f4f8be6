//! What a workflow's caller hands in and its steps get: how to start a workflow
//! ([`WorkflowOptions`]), how to run one step ([`StepOptions`]), what a running step knows
//! about itself ([`StepContext`]), and the token that stops a workflow gracefully
//! ([`ShutdownToken`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use waypoint_domain::{Attempt, DecisionId, PlanId, StepName, StepNumber};

use crate::engine::StepPolicy;

/// A request to stop a running workflow gracefully: the next
/// [`Workflow::step`](super::Workflow::step) records the interruption instead of starting.
/// Cheap to clone; hand one to a signal handler.
#[derive(Debug, Clone, Default)]
pub struct ShutdownToken(Arc<AtomicBool>);

impl ShutdownToken {
    /// Asks the workflow to stop before its next step.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How to start a workflow; [`PlanResumeService::workflow`](crate::PlanResumeService::workflow)
/// uses the defaults.
#[derive(Debug, Clone, Default)]
pub struct WorkflowOptions {
    /// The plan's name, shown by `plan list`; the key when absent.
    pub name: Option<String>,
    /// Start a fresh plan even if the key's workflow finished (its next generation).
    pub new: bool,
    /// Hold the workflow by a lease of this length instead of its run lock: for a runner that
    /// cannot keep a lock for the whole run. Each step's start renews it; a step that runs
    /// longer must call [`Workflow::heartbeat`](super::Workflow::heartbeat). Once it expired,
    /// another runner may take the workflow over, and this one can record nothing more
    /// (`lease_lost`).
    pub lease: Option<Duration>,
}

/// How to run one step; [`StepOptions::named`] is what [`Workflow::step`](super::Workflow::step)
/// uses.
#[derive(Debug, Clone)]
pub struct StepOptions {
    /// The step's name: the same name must come at the same position on every run.
    pub name: String,
    /// Retries, their delay (doubled after each failure, capped at 5 minutes) and a timeout;
    /// a step that runs past its timeout is cancelled (its future is dropped).
    pub policy: StepPolicy,
}

impl StepOptions {
    /// A step with this name, no retries and no timeout.
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into(), policy: StepPolicy::default() }
    }

    /// Tries a failed attempt again up to `retries` times.
    pub fn retries(mut self, retries: u32) -> Self {
        self.policy.retries = retries;
        self
    }

    /// Waits `delay` before the first retry, twice that before the next, and so on.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.policy.retry_delay = delay;
        self
    }

    /// Cancels an attempt that runs longer than `timeout`; it counts as a failed attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.policy.timeout = Some(timeout);
        self
    }
}

/// What a running step knows about itself.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The workflow's key.
    pub plan_id: PlanId,
    /// The step's position, from 1.
    pub step: StepNumber,
    /// The step's name.
    pub name: StepName,
    /// The decision recorded for this attempt of the step.
    pub decision_id: DecisionId,
    /// Which attempt this is, counted across runs.
    pub attempt: Attempt,
    /// True when an earlier run started this step but did not record its completion: its effects
    /// may be partly done, so make it idempotent.
    pub rerun: bool,
}
