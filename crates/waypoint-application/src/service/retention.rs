//! Retention (ADR 0010): archive the events and step logs of finished plans older than a cutoff,
//! then remove them from the store, leaving tombstones. Nothing that may still move is ever
//! chosen, and nothing is removed before its archived copy is durable.

use chrono::{DateTime, Duration, Utc};
use eventually::store::Select;
use futures::TryStreamExt;
use waypoint_domain::PlanId;

use super::PlanResumeService;
use crate::error::ServiceError;
use crate::store::{PlanStore, PlanView, StoreError, StoredEvent};

/// Plans archived per durable write of the archive: bounds the memory a compaction holds.
const ARCHIVE_BATCH: usize = 256;

/// What to compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactRequest {
    /// Only plans whose last activity is older than this are removed.
    pub older_than: Duration,
    /// List what would be removed and write nothing (neither archive nor store).
    pub dry_run: bool,
}

/// What a compaction did, or for a dry run would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    /// The plans removed (dry run: that would be removed), oldest activity first.
    pub removed: Vec<PlanId>,
    /// Plans chosen that moved before they could be removed, and so were kept.
    pub kept: Vec<PlanId>,
    /// Where the removed events were archived, as the caller named the archive.
    pub archive: String,
    /// Bytes the store gave back; 0 for a dry run.
    pub reclaimed_bytes: u64,
    /// Plans whose last activity was before this were chosen.
    pub cutoff: DateTime<Utc>,
    /// Nothing was written.
    pub dry_run: bool,
}

/// How far a compaction is, for progress reports on long runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactProgress {
    /// `done` of `total` chosen plans have been archived.
    Archived {
        /// Plans archived so far.
        done: usize,
        /// Plans chosen.
        total: usize,
    },
    /// Every chosen plan is archived; the store is removing them.
    Removing {
        /// Plans being removed.
        total: usize,
    },
}

/// Whether retention may remove `view` when plans last active before `cutoff` are due: finished
/// ([`waypoint_domain::PlanState::is_finished`]) and old enough. A resumable, running, queued,
/// failed or between-phases plan never is.
pub fn is_due(view: &PlanView, cutoff: DateTime<Utc>) -> bool {
    view.state.is_finished() && view.last_activity_at < cutoff
}

impl<S: PlanStore> PlanResumeService<S> {
    /// Retention: archives into `archive` (named `location` in tombstones and reports) every
    /// event of each finished plan last active more than `older_than` ago, then removes those
    /// plans from the store. See [`Self::compact_with_progress`].
    pub async fn compact<A: PlanStore>(
        &self,
        request: CompactRequest,
        archive: &A,
        location: &str,
    ) -> Result<Compaction, ServiceError> {
        self.compact_with_progress(request, archive, location, &mut |_| {}).await
    }

    /// [`Self::compact`], reporting progress as it goes.
    ///
    /// Order of work, so that a crash at any moment loses nothing: each plan's history is read
    /// and checked again (it must still be due), written to the archive durably, then its step
    /// logs are copied into the archive, and only then is it removed (logs included), at exactly
    /// the version archived; a plan that moved meanwhile is kept. A crash after archiving leaves
    /// the plan in both places, and the next compaction finds the archived copy already there,
    /// writes its logs again and goes on. A dry run reads and chooses, and writes nothing.
    pub async fn compact_with_progress<A: PlanStore>(
        &self,
        request: CompactRequest,
        archive: &A,
        location: &str,
        progress: &mut dyn FnMut(CompactProgress),
    ) -> Result<Compaction, ServiceError> {
        let now = self.clock.now();
        let cutoff = now - request.older_than;
        let mut due: Vec<PlanView> = self.store.catalog().await?.into_iter().filter(|v| is_due(v, cutoff)).collect();
        due.sort_by(|a, b| a.last_activity_at.cmp(&b.last_activity_at).then_with(|| a.plan_id.cmp(&b.plan_id)));
        let mut compaction = Compaction {
            removed: Vec::new(),
            kept: Vec::new(),
            archive: location.to_owned(),
            reclaimed_bytes: 0,
            cutoff,
            dry_run: request.dry_run,
        };
        if request.dry_run {
            compaction.removed = due.into_iter().map(|view| view.plan_id).collect();
            return Ok(compaction);
        }
        let total = due.len();
        let mut targets: Vec<(PlanId, u32)> = Vec::with_capacity(total);
        for (batch_no, batch) in due.chunks(ARCHIVE_BATCH).enumerate() {
            let mut histories = Vec::with_capacity(batch.len());
            for view in batch {
                let events: Vec<StoredEvent> =
                    self.store.stream(view.plan_id.clone(), Select::All).await?.try_collect().await?;
                // Decide on the history that is archived, not on the catalog read before it.
                match PlanView::replay(&events).filter(|v| is_due(v, cutoff)) {
                    Some(current) => {
                        targets.push((current.plan_id, current.version));
                        histories.push(events);
                    }
                    None => compaction.kept.push(view.plan_id.clone()),
                }
            }
            let archived: Vec<PlanId> =
                histories.iter().filter_map(|history| Some(history.first()?.source_id().clone())).collect();
            archive.import_plans(histories).await.map_err(|error| match error {
                StoreError::Conflict { plan_id, .. } => {
                    ServiceError::ArchiveConflict { plan_id, archive: location.to_owned() }
                }
                other => ServiceError::Store(other),
            })?;
            // The steps' logs follow their plans' histories (the archive holds the plans now, so
            // it takes their logs), one plan at a time so at most one plan's logs are in memory.
            for plan_id in &archived {
                for log in self.store.step_logs(plan_id, None, None).await? {
                    archive.put_step_log(plan_id, log).await?;
                }
            }
            progress(CompactProgress::Archived { done: (total).min((batch_no + 1) * ARCHIVE_BATCH), total });
        }
        progress(CompactProgress::Removing { total: targets.len() });
        let report = self.store.remove_plans(&targets, now, location).await?;
        compaction.removed = report.removed;
        compaction.kept.extend(report.skipped);
        compaction.reclaimed_bytes = report.reclaimed_bytes;
        Ok(compaction)
    }
}

#[cfg(test)]
mod tests;
