//! Step logs on PostgreSQL: one row of `waypoint_step_logs` per stream of each attempt, so any
//! machine that reaches the database reads them. A put is one upsert that only lands while the
//! plan's catalog row holds events and is no tombstone; retention deletes a plan's logs in the
//! transaction that turns its row into a tombstone (see `pool.rs` and ADR 0007).

use postgres::Row;
use waypoint_application::{LogStream, StepLog};
use waypoint_domain::{Attempt, PlanId, StepNumber};

use crate::error::PgStoreError;
use crate::store::{BeginFailed, PostgresStore};

impl PostgresStore {
    /// Stores `log`, replacing what was stored for its (step, attempt, stream) of `plan_id`;
    /// committed when it returns. Refused, with nothing written, for a log over the port's
    /// limits (`TooLarge`), a plan retention removed (`Removed`) or a plan the database does not
    /// hold (`PlanNotFound`).
    pub fn write_step_log(&self, plan_id: &PlanId, log: &StepLog) -> Result<(), PgStoreError> {
        if let Some(detail) = log.over_limits(plan_id) {
            return Err(PgStoreError::TooLarge(detail));
        }
        let cut = i64::try_from(log.cut).map_err(|_| PgStoreError::TooLarge(format!("cut {} over i64", log.cut)))?;
        let (step, attempt) = (i64::from(log.step.get()), i64::from(log.attempt.get()));
        let stored = self.write(|conn| {
            conn.client
                .execute(
                    &conn.statements.put_step_log,
                    &[&plan_id.as_str(), &step, &attempt, &log.stream.as_str(), &log.bytes, &cut],
                )
                // One statement that replaces a row with the same content: running it again on a
                // fresh connection, after an idle one turned out dead, is as safe as a retried
                // BEGIN.
                .map_err(|e| BeginFailed(PgStoreError::from_driver(&self.pool().target, "store a step log", e)))
        })?;
        if stored > 0 {
            return Ok(());
        }
        match self.tombstone(plan_id)? {
            Some(removal) => Err(PgStoreError::Removed { plan_id: plan_id.clone(), removed_at: removal.removed_at }),
            None => Err(PgStoreError::PlanNotFound { plan_id: plan_id.clone() }),
        }
    }

    /// `plan_id`'s step logs, only those of `step` and `attempt` where given, ordered by step,
    /// attempt and stream (standard output first); none for an unknown or removed plan.
    pub fn read_step_logs(
        &self,
        plan_id: &PlanId,
        step: Option<StepNumber>,
        attempt: Option<Attempt>,
    ) -> Result<Vec<StepLog>, PgStoreError> {
        let step = step.map(|step| i64::from(step.get()));
        let attempt = attempt.map(|attempt| i64::from(attempt.get()));
        self.read(|conn| {
            let rows = conn
                .client
                .query(&conn.statements.step_logs, &[&plan_id.as_str(), &step, &attempt])
                .map_err(self.fail("read step logs"))?;
            rows.iter().map(|row| to_step_log(plan_id, row)).collect()
        })
    }
}

/// A row of `waypoint_step_logs` as a step log; values the table's checks should have kept out
/// are damage.
fn to_step_log(plan_id: &PlanId, row: &Row) -> Result<StepLog, PgStoreError> {
    let corrupt = |detail: String| PgStoreError::Corrupt {
        location: format!("the step logs of plan {plan_id} (waypoint_step_logs)"),
        detail,
    };
    let number = |column: usize, what: &str| {
        let value: i64 = row.get(column);
        u32::try_from(value)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| corrupt(format!("{what} {value} is outside 1..=u32::MAX")))
    };
    let step = StepNumber::new(number(0, "step")?).map_err(|e| corrupt(e.to_string()))?;
    let attempt = Attempt::new(number(1, "attempt")?).map_err(|e| corrupt(e.to_string()))?;
    let stream: &str = row.get(2);
    let stream = LogStream::parse(stream).ok_or_else(|| corrupt(format!("{stream:?} is not a stream")))?;
    let cut: i64 = row.get(4);
    let cut = u64::try_from(cut).map_err(|_| corrupt(format!("cut {cut} is negative")))?;
    Ok(StepLog { step, attempt, stream, bytes: row.get(3), cut })
}

#[cfg(test)]
mod tests;
