//! Ports to the world outside the log: the clock, the run locks and the snapshot probe.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use waypoint_domain::{Checkpoint, CurrentDefinition, PlanId, PlanState, RunnerId, SnapshotCheck};

use crate::store::StoreError;

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        // Not `Utc::now()`, which panics when the clock reads before 1970; a store refuses
        // to record at such a time with a typed error instead.
        DateTime::<Utc>::from(std::time::SystemTime::now())
    }
}

/// A clock that only moves when told to: for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a run lock could not be taken or kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunLockError {
    /// Someone else holds the plan's run lock: a runner is working on it.
    #[error("plan {plan_id} is being run by another runner")]
    Busy {
        /// The plan whose lock is taken.
        plan_id: PlanId,
    },
    /// The lock was held once and is no longer: its connection or lease ended. The holder must
    /// start no further step; anything it appends after another runner took over is refused by
    /// the expected-version check.
    #[error("the run lock of plan {plan_id} was lost: {detail}")]
    Lost {
        /// The plan whose lock was lost.
        plan_id: PlanId,
        /// What the store saw.
        detail: String,
    },
    /// The store could not be asked.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The run-lock port: one lock per plan, held while a runner works on it and released when the
/// holder's process (or connection) dies, so a crashed runner never leaves a plan looking busy.
/// Every store implements it (see [`crate::PlanStore::run_locks`]).
pub trait RunLocks: Send + Sync + std::fmt::Debug {
    /// Takes `plan_id`'s run lock without waiting, for `runner`. Someone else holding it is
    /// [`RunLockError::Busy`]: also another runner in this very process.
    fn acquire(&self, plan_id: &PlanId, runner: &RunnerId) -> Result<RunLockGuard, RunLockError>;

    /// Whether anyone holds `plan_id`'s run lock now, this process included. Creates nothing.
    fn probe(&self, plan_id: &PlanId) -> Result<bool, StoreError>;

    /// [`Self::probe`] for eligibility: when the lock cannot be probed, say "held". A false
    /// "gone" would let two runners work on one plan; a false "held" only delays a resume.
    fn is_held(&self, plan_id: &PlanId) -> bool {
        self.probe(plan_id).unwrap_or(true)
    }
}

/// What a store keeps for a held run lock. Dropping it releases the lock.
pub trait HeldRunLock: Send + std::fmt::Debug {
    /// `Ok` while the lock is still held. Stores whose locks cannot be lost while the process
    /// lives (OS file locks) always answer `Ok`.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Proof that the caller holds a plan's run lock. Dropping it releases the lock.
#[derive(Debug)]
pub struct RunLockGuard {
    plan_id: PlanId,
    runner: RunnerId,
    held: Box<dyn HeldRunLock>,
}

impl RunLockGuard {
    /// Wraps what a store keeps for a lock it granted.
    pub fn new(plan_id: PlanId, runner: RunnerId, held: impl HeldRunLock + 'static) -> Self {
        Self { plan_id, runner, held: Box::new(held) }
    }

    /// The plan this lock is for.
    pub fn plan_id(&self) -> &PlanId {
        &self.plan_id
    }

    /// The runner recorded as holding it.
    pub fn runner(&self) -> &RunnerId {
        &self.runner
    }

    /// Fails with [`RunLockError::Lost`] when the lock is no longer held. A runner checks before
    /// each step and starts none once the lock is lost.
    pub fn check(&self) -> Result<(), RunLockError> {
        self.held.check().map_err(|detail| RunLockError::Lost { plan_id: self.plan_id.clone(), detail })
    }
}

/// Run locks held in this process's memory: the run-lock port of [`crate::InMemoryStore`]. Each
/// clone shares the same set of held locks.
#[derive(Debug, Clone, Default)]
pub struct InMemoryRunLocks(Arc<Mutex<HashSet<PlanId>>>);

#[derive(Debug)]
struct InMemoryHeld {
    locks: InMemoryRunLocks,
    plan_id: PlanId,
}

impl HeldRunLock for InMemoryHeld {}

impl Drop for InMemoryHeld {
    fn drop(&mut self) {
        self.locks.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.plan_id);
    }
}

impl RunLocks for InMemoryRunLocks {
    fn acquire(&self, plan_id: &PlanId, runner: &RunnerId) -> Result<RunLockGuard, RunLockError> {
        if !self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(plan_id.clone()) {
            return Err(RunLockError::Busy { plan_id: plan_id.clone() });
        }
        let held = InMemoryHeld { locks: self.clone(), plan_id: plan_id.clone() };
        Ok(RunLockGuard::new(plan_id.clone(), runner.clone(), held))
    }

    fn probe(&self, plan_id: &PlanId) -> Result<bool, StoreError> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).contains(plan_id))
    }
}

/// Can the workspace state named by a checkpoint still be found, unchanged?
pub trait SnapshotProbe: Send + Sync + std::fmt::Debug {
    /// What the probe finds for `checkpoint` of `plan_id`.
    fn check(&self, plan_id: &PlanId, checkpoint: &Checkpoint) -> SnapshotCheck;
}

/// No probe configured: snapshots are not checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSnapshotProbe;

impl SnapshotProbe for NoSnapshotProbe {
    fn check(&self, _plan_id: &PlanId, _checkpoint: &Checkpoint) -> SnapshotCheck {
        SnapshotCheck::NotChecked
    }
}

/// A probe that knows a set of present snapshot ids: for tests.
#[derive(Debug, Clone, Default)]
pub struct InMemorySnapshots(Arc<Mutex<HashMap<String, bool>>>);

impl InMemorySnapshots {
    /// Marks `snapshot_id` as present or gone.
    pub fn set_present(&self, snapshot_id: &str, present: bool) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(snapshot_id.to_owned(), present);
    }
}

impl SnapshotProbe for InMemorySnapshots {
    fn check(&self, _plan_id: &PlanId, checkpoint: &Checkpoint) -> SnapshotCheck {
        let Some(snapshot) = &checkpoint.snapshot_id else {
            return SnapshotCheck::NotChecked;
        };
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).get(snapshot.as_str()) {
            Some(false) | None => SnapshotCheck::Missing,
            Some(true) => SnapshotCheck::Present,
        }
    }
}

/// Where a plan's definition lives and what it says now: the input of the per-step definition
/// check, so that every surface (show, listings, a resume and its preview) judges drift the same
/// way through [`crate::PlanResumeService`].
pub trait DefinitionProbe: Send + Sync + std::fmt::Debug {
    /// The definition of `plan_id` as it is now, or `None` when this probe does not know where
    /// the plan's definition lives (the caller's fingerprint, if any, is then compared whole).
    fn current(&self, plan_id: &PlanId, plan: &PlanState) -> Option<CurrentDefinition>;
}

/// No probe configured: only a caller's whole-plan fingerprint is compared.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDefinitionProbe;

impl DefinitionProbe for NoDefinitionProbe {
    fn current(&self, _plan_id: &PlanId, _plan: &PlanState) -> Option<CurrentDefinition> {
        None
    }
}
