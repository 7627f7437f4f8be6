//! Run locks across machines: one session advisory lock per plan, each held on a connection of
//! its own. PostgreSQL releases a session lock when its session ends, so a runner whose process
//! dies or whose connection breaks never leaves its plan looking busy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::Client;
use waypoint_application::{HeldQueueLock, HeldRunLock, QueueLock, RunLockError, RunLockGuard, RunLocks, StoreError};
use waypoint_domain::{PlanId, QueueName, RunnerId};

use crate::error::PgStoreError;
use crate::pool::{Pool, Pooled};

/// How long a guard's check waits for the server to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The run-lock port over PostgreSQL advisory locks. Two acquires conflict even inside one
/// process (each lock has a session of its own), and a probe sees every holder, this process
/// included.
#[derive(Debug, Clone)]
pub struct PgRunLocks {
    pool: Arc<Pool>,
}

/// Proof that this process holds a plan's run lock, and the session that holds it. Dropping it
/// releases the lock and closes the session.
pub struct PgRunLockGuard {
    plan_id: PlanId,
    key: i64,
    client: Mutex<Client>,
}

impl std::fmt::Debug for PgRunLockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRunLockGuard").field("plan_id", &self.plan_id).field("key", &self.key).finish_non_exhaustive()
    }
}

/// The lock's key in the one-key advisory space: FNV-1a (64 bit) of a prefix and the plan id.
/// Computed here, not by the server, so it never depends on a server's hash function.
pub(crate) fn lock_key(plan_id: &PlanId) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"waypoint-run-lock:".iter().chain(plan_id.as_str().as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

impl PgRunLocks {
    pub(crate) fn new(pool: Arc<Pool>) -> Self {
        Self { pool }
    }

    /// Takes `plan_id`'s run lock without waiting, on a new connection that then holds it.
    /// Fails with `RunLockBusy` when any other session, in this process or another, holds it.
    pub fn try_acquire(&self, plan_id: &PlanId) -> Result<PgRunLockGuard, PgStoreError> {
        let key = lock_key(plan_id);
        let mut client = self.pool.connect_client()?;
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .map_err(|e| PgStoreError::from_driver(&self.pool.target, "take a run lock", e))?
            .get(0);
        if !locked {
            return Err(PgStoreError::RunLockBusy { plan_id: plan_id.clone() });
        }
        Ok(PgRunLockGuard { plan_id: plan_id.clone(), key, client: Mutex::new(client) })
    }

    /// Whether any session holds `plan_id`'s run lock. Reads `pg_locks`, so probing never takes
    /// the lock, even for a moment.
    pub fn is_held_by_anyone(&self, plan_id: &PlanId) -> Result<bool, PgStoreError> {
        let key = lock_key(plan_id) as u64;
        let (high, low) = ((key >> 32) as i64, (key & 0xffff_ffff) as i64);
        let mut pooled = self.pool.get()?;
        let row = pooled
            .conn()
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks \
                   WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
                     AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                     AND classid::bigint = $1 AND objid::bigint = $2)",
                &[&high, &low],
            )
            .map_err(|e| PgStoreError::from_driver(&self.pool.target, "probe a run lock", e))?;
        Ok(row.get(0))
    }
}

impl RunLocks for PgRunLocks {
    fn acquire(&self, plan_id: &PlanId, runner: &RunnerId) -> Result<RunLockGuard, RunLockError> {
        match self.try_acquire(plan_id) {
            Ok(guard) => Ok(RunLockGuard::new(plan_id.clone(), runner.clone(), guard)),
            Err(PgStoreError::RunLockBusy { plan_id }) => Err(RunLockError::Busy { plan_id }),
            Err(other) => Err(RunLockError::Store(StoreError::from(other))),
        }
    }

    fn probe(&self, plan_id: &PlanId) -> Result<bool, StoreError> {
        Ok(self.is_held_by_anyone(plan_id)?)
    }
}

impl PgRunLockGuard {
    /// The plan whose run lock this guard holds.
    pub fn plan_id(&self) -> &PlanId {
        &self.plan_id
    }

    /// Whether the lock is still held: its session must still answer. A runner checks this
    /// before each step and stops when it fails; appends it makes after losing the lock are
    /// refused anyway, because another runner's events moved the plan's version.
    pub fn check(&self) -> Result<(), PgStoreError> {
        let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if !client.is_closed() && client.is_valid(CHECK_TIMEOUT).is_ok() {
            Ok(())
        } else {
            Err(PgStoreError::RunLockLost { plan_id: self.plan_id.clone() })
        }
    }
}

impl HeldRunLock for PgRunLockGuard {
    fn check(&self) -> Result<(), String> {
        PgRunLockGuard::check(self).map_err(|_| "its PostgreSQL session ended".to_owned())
    }
}

impl Drop for PgRunLockGuard {
    fn drop(&mut self) {
        let client = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        // Unlock before closing: closing alone also releases the lock, but the server may
        // notice the closed socket a moment after a waiting runner retries.
        let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&self.key]);
    }
}

/// The claim lock of a queue (ADR 0017), in the two-key advisory space (run locks use the
/// one-key space): 'WPQC' and a hash of the queue's name.
const QUEUE_LOCK_CLASS: i32 = 0x5750_5143;

fn queue_key(queue: &QueueName) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in queue.as_str().as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash as i32
}

/// A held claim lock: the pooled session that holds the advisory lock. Unlocked and given back
/// to the pool on drop (an idle worker claims every few hundred milliseconds: a session of its
/// own each time would cost a connection per poll); a session whose unlock fails is closed, which
/// releases the lock too. PostgreSQL releases it when the session ends, so a worker that dies
/// while claiming never blocks a queue.
struct PgClaimLock {
    key: i32,
    pooled: Option<Pooled>,
}

impl std::fmt::Debug for PgClaimLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgClaimLock").field("key", &self.key).finish_non_exhaustive()
    }
}

impl HeldQueueLock for PgClaimLock {}

impl Drop for PgClaimLock {
    fn drop(&mut self) {
        let Some(mut pooled) = self.pooled.take() else { return };
        let unlocked =
            pooled.conn().client.query_one("SELECT pg_advisory_unlock($1, $2)", &[&QUEUE_LOCK_CLASS, &self.key]);
        if !matches!(unlocked.map(|row| row.get::<_, bool>(0)), Ok(true)) {
            pooled.discard();
        }
    }
}

/// Waits for `queue`'s claim lock on a pooled session, which then holds it.
pub(crate) fn lock_queue(pool: &Arc<Pool>, queue: &QueueName) -> Result<QueueLock, PgStoreError> {
    let key = queue_key(queue);
    let mut pooled = pool.get()?;
    let taken = pooled.conn().client.execute("SELECT pg_advisory_lock($1, $2)", &[&QUEUE_LOCK_CLASS, &key]);
    if taken.is_err() {
        // A pooled session may have died while idle (the server restarted): one fresh try.
        pooled.discard();
        let mut fresh = pool.get_fresh()?;
        fresh
            .conn()
            .client
            .execute("SELECT pg_advisory_lock($1, $2)", &[&QUEUE_LOCK_CLASS, &key])
            .map_err(|e| PgStoreError::from_driver(&pool.target, "take a queue's claim lock", e))?;
        return Ok(QueueLock::new(queue.clone(), PgClaimLock { key, pooled: Some(fresh) }));
    }
    Ok(QueueLock::new(queue.clone(), PgClaimLock { key, pooled: Some(pooled) }))
}
