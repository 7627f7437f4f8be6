//! The service's error: what a library caller can get back from `PlanResumeService`.

use waypoint_domain::{PlanError, PlanId, ResumeIneligibleReason};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("plan {0} not found; `waypoint plan list` shows the plans in this store")]
    NotFound(PlanId),
    #[error("plan {plan_id}: {source}")]
    Plan { plan_id: PlanId, source: PlanError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Broad classes of failure, one per exit code of the CLI contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    NotEligible,
    Conflict,
    StoreUnreadable,
    InvalidCommand,
    Unexpected,
}

impl ServiceError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServiceError::NotFound(_) => ErrorKind::NotFound,
            ServiceError::Plan { source: PlanError::NotEligible { .. }, .. } => ErrorKind::NotEligible,
            ServiceError::Plan { source: PlanError::ConflictingCheckpoint { .. }, .. } => ErrorKind::Conflict,
            ServiceError::Plan { source: PlanError::NotCreated, .. } => ErrorKind::NotFound,
            ServiceError::Plan { source: PlanError::AlreadyExists, .. } => ErrorKind::Conflict,
            ServiceError::Plan { .. } => ErrorKind::InvalidCommand,
            ServiceError::Store(StoreError::Conflict { .. }) => ErrorKind::Conflict,
            ServiceError::Store(
                StoreError::Corrupt { .. } | StoreError::Decode { .. } | StoreError::Io { .. } | StoreError::Locked(_),
            ) => ErrorKind::StoreUnreadable,
            ServiceError::Store(StoreError::TooLarge(_)) => ErrorKind::InvalidCommand,
            ServiceError::Store(_) => ErrorKind::Unexpected,
        }
    }

    /// A stable snake_case code for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::NotFound(_) => "plan_not_found",
            ServiceError::Plan { source, .. } => source.code(),
            ServiceError::Store(StoreError::Conflict { .. }) => "conflict",
            ServiceError::Store(StoreError::Corrupt { .. }) => "store_corrupt",
            ServiceError::Store(StoreError::Decode { .. }) => "store_undecodable",
            ServiceError::Store(StoreError::Io { .. }) => "store_io",
            ServiceError::Store(StoreError::Locked(_)) => "store_locked",
            ServiceError::Store(StoreError::Poisoned(_)) => "store_poisoned",
            ServiceError::Store(StoreError::Unsupported(_)) => "unsupported",
            ServiceError::Store(StoreError::TooLarge(_)) => "too_large",
        }
    }

    /// The reasons a resume was refused, if that is what this error is.
    pub fn reasons(&self) -> Option<&[ResumeIneligibleReason]> {
        match self {
            ServiceError::Plan { source: PlanError::NotEligible { reasons }, .. } => Some(reasons),
            _ => None,
        }
    }
}
