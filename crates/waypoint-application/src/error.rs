//! The service's error: what a library caller can get back from `PlanResumeService`.

use waypoint_domain::{describe_changes, ChangedStep, PlanError, PlanId, ResumeIneligibleReason, StepNumber};

use crate::ports::RunLockError;
use crate::store::{Removal, StoreError};

/// Why a use case failed. Nothing was recorded unless the variant says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The store holds no plan with this id.
    #[error("plan {0} not found")]
    NotFound(PlanId),
    /// The plan existed and was removed by retention: not found, with when and where to.
    #[error(
        "plan {} was removed by retention at {}; its {} events are archived in {}",
        .0.plan_id,
        .0.removed_at.format("%Y-%m-%d %H:%M:%S UTC"),
        .0.version,
        .0.archive
    )]
    Removed(Removal),
    /// Retention could not archive a plan: the archive already holds another plan under its id
    /// (other events). Nothing was removed from the store.
    #[error(
        "the archive {archive} already holds another plan {plan_id} (with other events); nothing was removed from the store"
    )]
    ArchiveConflict {
        /// The plan that could not be archived.
        plan_id: PlanId,
        /// The archive, as the caller named it.
        archive: String,
    },
    /// A fork would keep steps whose definition changed since they completed (or the
    /// definition can no longer be read): the fork could never resume. Nothing was written.
    #[error("plan {plan_id}: {}", definition_changed_text(.at_step, .changed, .unreadable))]
    DefinitionChanged {
        /// The plan forked from.
        plan_id: PlanId,
        /// The last step the fork would keep.
        at_step: StepNumber,
        /// The kept steps that changed, in step order.
        changed: Vec<ChangedStep>,
        /// Why the definition could not be read, when it could not.
        unreadable: Option<String>,
    },
    /// The plan refused the command.
    #[error("plan {plan_id}: {source}")]
    Plan {
        /// The plan that refused.
        plan_id: PlanId,
        /// Why.
        source: PlanError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The plan's run lock could not be taken or was lost.
    #[error(transparent)]
    RunLock(RunLockError),
    /// A lease so long that its expiry falls outside the calendar the store keeps.
    #[error("a lease of {} seconds is too long; ask for a shorter one and renew it", .duration.as_secs())]
    LeaseTooLong {
        /// The duration asked for.
        duration: std::time::Duration,
    },
}

impl From<RunLockError> for ServiceError {
    fn from(error: RunLockError) -> Self {
        match error {
            RunLockError::Store(store) => ServiceError::Store(store),
            other => ServiceError::RunLock(other),
        }
    }
}

/// Broad classes of failure, one per exit code of the CLI contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The plan does not exist (exit 3).
    NotFound,
    /// The plan cannot resume; the reasons say why (exit 4).
    NotEligible,
    /// A concurrent change, a conflicting checkpoint, a busy run lock, or a lease another runner
    /// holds now (exit 5).
    Conflict,
    /// The store cannot be read, is damaged, or cannot be reached (exit 6).
    StoreUnreadable,
    /// The command does not fit the plan's state, or its input is invalid (exit 7).
    InvalidCommand,
    /// Anything else (exit 1).
    Unexpected,
}

impl ErrorKind {
    /// The exit code of the CLI contract for this class; the Python package's exceptions carry
    /// it too (`.exit_code`).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::NotFound => 3,
            ErrorKind::NotEligible => 4,
            ErrorKind::Conflict => 5,
            ErrorKind::StoreUnreadable => 6,
            ErrorKind::InvalidCommand => 7,
            ErrorKind::Unexpected => 1,
        }
    }
}

impl ServiceError {
    /// The broad class of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServiceError::NotFound(_) | ServiceError::Removed(_) => ErrorKind::NotFound,
            ServiceError::Store(StoreError::PlanNotFound { .. }) => ErrorKind::NotFound,
            ServiceError::Plan { source: PlanError::NotEligible { .. }, .. } => ErrorKind::NotEligible,
            ServiceError::DefinitionChanged { .. } => ErrorKind::NotEligible,
            ServiceError::Plan { source: PlanError::ConflictingCheckpoint { .. }, .. } => ErrorKind::Conflict,
            ServiceError::Plan { source: PlanError::NotCreated, .. } => ErrorKind::NotFound,
            ServiceError::Plan { source: PlanError::AlreadyExists, .. } => ErrorKind::Conflict,
            // Another runner holds the plan now: the same class as a busy run lock.
            ServiceError::Plan { source: PlanError::LeaseLost { .. }, .. } => ErrorKind::Conflict,
            ServiceError::Plan { .. } => ErrorKind::InvalidCommand,
            ServiceError::Store(StoreError::Conflict { .. } | StoreError::Removed { .. }) => ErrorKind::Conflict,
            ServiceError::Store(
                StoreError::Corrupt { .. }
                | StoreError::Decode { .. }
                | StoreError::Io { .. }
                | StoreError::Locked(_)
                | StoreError::Unavailable { .. },
            ) => ErrorKind::StoreUnreadable,
            ServiceError::RunLock(_) | ServiceError::ArchiveConflict { .. } => ErrorKind::Conflict,
            ServiceError::Store(StoreError::TooLarge(_)) | ServiceError::LeaseTooLong { .. } => {
                ErrorKind::InvalidCommand
            }
            ServiceError::Store(_) => ErrorKind::Unexpected,
        }
    }

    /// A stable snake_case code for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::NotFound(_) | ServiceError::Removed(_) => "plan_not_found",
            ServiceError::Store(StoreError::PlanNotFound { .. }) => "plan_not_found",
            ServiceError::Plan { source, .. } => source.code(),
            ServiceError::Store(StoreError::Conflict { .. }) => "conflict",
            ServiceError::Store(StoreError::Corrupt { .. }) => "store_corrupt",
            ServiceError::Store(StoreError::Decode { .. }) => "store_undecodable",
            ServiceError::Store(StoreError::Io { .. }) => "store_io",
            ServiceError::Store(StoreError::Unavailable { .. }) => "store_unavailable",
            ServiceError::Store(StoreError::Locked(_)) => "store_locked",
            ServiceError::Store(StoreError::Poisoned(_)) => "store_poisoned",
            ServiceError::Store(StoreError::Unsupported(_)) => "unsupported",
            ServiceError::Store(StoreError::TooLarge(_)) => "too_large",
            ServiceError::Store(StoreError::Removed { .. }) => "plan_removed",
            ServiceError::ArchiveConflict { .. } => "archive_conflict",
            ServiceError::DefinitionChanged { .. } => "not_eligible",
            ServiceError::RunLock(RunLockError::Busy { .. }) => "run_lock_busy",
            ServiceError::RunLock(_) => "run_lock_lost",
            ServiceError::LeaseTooLong { .. } => "lease_too_long",
        }
    }

    /// The reasons a resume was refused, if that is what this error is.
    pub fn reasons(&self) -> Option<&[ResumeIneligibleReason]> {
        match self {
            ServiceError::Plan { source: PlanError::NotEligible { reasons, .. }, .. } => Some(reasons),
            ServiceError::DefinitionChanged { .. } => Some(&[ResumeIneligibleReason::DefinitionChanged]),
            _ => None,
        }
    }
}

/// `step 2 (build) changed and step 3 (test) was removed since completing`: every changed step
/// by number and name, for a fork that would keep them.
fn definition_changed_text(at_step: &StepNumber, changed: &[ChangedStep], unreadable: &Option<String>) -> String {
    if let Some(reason) = unreadable {
        return format!("its definition cannot be read ({reason}), so steps 1 to {at_step} cannot be checked");
    }
    format!(
        "{} since completing; a fork keeping steps 1 to {at_step} could never resume (definition_changed)",
        describe_changes(changed)
    )
}
