//! Ports to the world outside the log: the clock, the run lock and the snapshot probe.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use waypoint_domain::{Checkpoint, PlanId, SnapshotCheck};

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to: for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

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

/// Is a runner other than the caller working on this plan right now? The file store answers
/// with OS file locks, which the OS releases when the holder dies.
pub trait RunLockProbe: Send + Sync + std::fmt::Debug {
    fn is_held(&self, plan_id: &PlanId) -> bool;
}

/// No run locks exist: every runner is presumed gone.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRunLocks;

impl RunLockProbe for NoRunLocks {
    fn is_held(&self, _plan_id: &PlanId) -> bool {
        false
    }
}

/// Run locks held in memory, standing in for *other* runners: a plan acquired here reads as
/// held by someone else. For tests and single-process embedding.
#[derive(Debug, Clone, Default)]
pub struct InMemoryRunLocks(Arc<Mutex<HashSet<PlanId>>>);

impl InMemoryRunLocks {
    /// Takes the lock; `false` if someone holds it already.
    pub fn acquire(&self, plan_id: &PlanId) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(plan_id.clone())
    }

    pub fn release(&self, plan_id: &PlanId) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(plan_id);
    }
}

impl RunLockProbe for InMemoryRunLocks {
    fn is_held(&self, plan_id: &PlanId) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).contains(plan_id)
    }
}

/// Can the workspace state named by a checkpoint still be found, unchanged?
pub trait SnapshotProbe: Send + Sync + std::fmt::Debug {
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
