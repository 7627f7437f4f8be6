//! Retention on PostgreSQL: removing finished plans in batches, each one transaction that checks
//! their versions under their catalog rows' locks, deletes their events, view snapshots and step
//! logs, and leaves those rows as tombstones, then vacuuming the log. See the Retention section
//! of ADR 0007.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use waypoint_application::{Removal, RemovalReport};
use waypoint_domain::PlanId;

use crate::error::PgStoreError;
use crate::pool::Conn;
use crate::store::{timestamp, to_u32, AppendFailure, BeginFailed, Failed, OpenTransaction, PostgresStore};

/// Plans removed per transaction by retention: bounds how many catalog rows one transaction
/// locks and how long it holds them, while keeping the round trips per plan small.
pub const REMOVAL_BATCH: usize = 500;

impl PostgresStore {
    /// Retention: removes every event (and step log) of each `(plan, version)` whose catalog row
    /// still says `version`, turning the row into the plan's tombstone, [`REMOVAL_BATCH`] plans per
    /// transaction; then vacuums the log so the space is reusable. A batch that fails is rolled
    /// back whole; the batches before it stay done. See the port's `PlanStore::remove_plans`.
    pub fn remove_plan_events(
        &self,
        plans: &[(PlanId, u32)],
        removed_at: DateTime<Utc>,
        archive: &str,
    ) -> Result<RemovalReport, PgStoreError> {
        // The size is only for the report: a failure to measure it is "cannot tell", not an error.
        let before = self.events_size().ok();
        let removed_at = timestamp(removed_at);
        let mut chosen = Vec::with_capacity(plans.len());
        for batch in plans.chunks(REMOVAL_BATCH) {
            chosen.extend(self.remove_batch(batch, &removed_at, archive)?);
        }
        let mut report = RemovalReport::default();
        for ((plan_id, _), removed) in plans.iter().zip(chosen) {
            if removed { &mut report.removed } else { &mut report.skipped }.push(plan_id.clone());
        }
        if !report.removed.is_empty() {
            // Every batch has committed: a vacuum that fails loses nothing, it only leaves the
            // space for autovacuum to make reusable, and the report says it cannot tell.
            let after = self.vacuum_events().and_then(|()| self.events_size()).ok();
            if let (Some(before), Some(after)) = (before, after) {
                report.reclaimed_bytes = before.saturating_sub(after);
            }
        }
        Ok(report)
    }

    /// One batch of [`Self::remove_plan_events`] in one transaction; says for each entry whether
    /// it was removed.
    fn remove_batch(
        &self,
        batch: &[(PlanId, u32)],
        removed_at: &str,
        archive: &str,
    ) -> Result<Vec<bool>, PgStoreError> {
        self.write(|conn| self.remove_batch_once(conn, batch, removed_at, archive))
    }

    fn remove_batch_once(
        &self,
        conn: &mut Conn,
        batch: &[(PlanId, u32)],
        removed_at: &str,
        archive: &str,
    ) -> Result<Vec<bool>, AppendFailure> {
        let fail = |context| {
            let target = &self.pool().target;
            move |e| Failed(PgStoreError::from_driver(target, context, e))
        };
        let Conn { client, statements: st, .. } = conn;
        client
            .batch_execute("BEGIN")
            .map_err(|e| BeginFailed(PgStoreError::from_driver(&self.pool().target, "begin a removal", e)))?;
        let mut tx = OpenTransaction { client, committed: false };
        let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
        // From here until the commit no append to these plans can move them: the version
        // compared below is the one removed.
        let rows = tx.client.query(&st.lock_for_removal, &[&ids]).map_err(fail("lock the plans to remove"))?;
        let held: HashMap<&str, (i64, bool)> = rows.iter().map(|row| (row.get(0), (row.get(1), row.get(2)))).collect();
        let mut chosen = vec![false; batch.len()];
        let mut doomed: Vec<&str> = Vec::new();
        let mut taken: HashSet<&str> = HashSet::new();
        let mut events: i64 = 0;
        for ((plan_id, version), chosen) in batch.iter().zip(chosen.iter_mut()) {
            let Some(&(held_version, removed)) = held.get(plan_id.as_str()) else { continue };
            if !removed && *version > 0 && held_version == i64::from(*version) && taken.insert(plan_id.as_str()) {
                *chosen = true;
                doomed.push(plan_id.as_str());
                events += held_version;
            }
        }
        if doomed.is_empty() {
            // Dropping the transaction rolls it back: it only took locks.
            return Ok(chosen);
        }
        let row =
            tx.client.query_one(&st.remove_plans, &[&doomed, &removed_at, &archive]).map_err(fail("remove plans"))?;
        let (tombstones, deleted): (i64, i64) = (row.get(0), row.get(1));
        if tombstones != doomed.len() as i64 || deleted != events {
            return Err(Failed(PgStoreError::Corrupt {
                location: "waypoint_events".into(),
                detail: format!(
                    "removing {} plans found {deleted} events and {tombstones} catalog rows, where the rows' \
                     versions add up to {events} events; nothing was removed",
                    doomed.len()
                ),
            }));
        }
        tx.client.batch_execute("COMMIT").map_err(fail("commit a removal (it may or may not have been applied)"))?;
        tx.committed = true;
        Ok(chosen)
    }

    /// The tombstone of a plan removed by retention.
    pub fn tombstone(&self, plan_id: &PlanId) -> Result<Option<Removal>, PgStoreError> {
        self.read(|conn| {
            let row = conn
                .client
                .query_opt(&conn.statements.removal, &[&plan_id.as_str()])
                .map_err(self.fail("read a plan's tombstone"))?;
            row.map(|row| {
                Ok(Removal {
                    plan_id: plan_id.clone(),
                    version: to_u32(row.get(0), "version")?,
                    removed_at: parse_removed_at(plan_id, row.get(1))?,
                    archive: row.get(2),
                })
            })
            .transpose()
        })
    }

    /// The tombstones of the removed plans whose id starts with `prefix`, in id order.
    pub fn tombstones_with_prefix(&self, prefix: &str) -> Result<Vec<Removal>, PgStoreError> {
        self.read(|conn| {
            let rows = conn
                .client
                .query(&conn.statements.removals_with_prefix, &[&prefix])
                .map_err(self.fail("read the tombstones of an id prefix"))?;
            rows.iter()
                .map(|row| {
                    let plan_id = PlanId::parse(row.get(0)).map_err(|e| PgStoreError::Corrupt {
                        location: "waypoint_plans".into(),
                        detail: e.to_string(),
                    })?;
                    Ok(Removal {
                        version: to_u32(row.get(1), "version")?,
                        removed_at: parse_removed_at(&plan_id, row.get(2))?,
                        archive: row.get(3),
                        plan_id,
                    })
                })
                .collect()
        })
    }

    /// The log's size on disk: the table, its indexes and its TOAST table.
    fn events_size(&self) -> Result<u64, PgStoreError> {
        self.read(|conn| {
            let row = conn
                .client
                .query_one("SELECT pg_total_relation_size('waypoint_events')", &[])
                .map_err(self.fail("measure the log"))?;
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        })
    }

    /// A plain `VACUUM` of the log (it cannot run inside a transaction): the space of removed
    /// events becomes reusable, and empty pages at the table's end go back to the file system.
    fn vacuum_events(&self) -> Result<(), PgStoreError> {
        let mut pooled = self.pool().get()?;
        pooled.conn().client.batch_execute("VACUUM waypoint_events").map_err(self.fail("vacuum the log"))
    }
}

/// A tombstone's `removed_at`, written by [`timestamp`].
pub(crate) fn parse_removed_at(plan_id: &PlanId, text: &str) -> Result<DateTime<Utc>, PgStoreError> {
    DateTime::parse_from_rfc3339(text).map(|at| at.with_timezone(&Utc)).map_err(|e| PgStoreError::Corrupt {
        location: format!("the tombstone of plan {plan_id} (waypoint_plans)"),
        detail: format!("removed_at is not RFC 3339: {e}"),
    })
}
