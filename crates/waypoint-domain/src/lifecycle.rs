//! The lifecycle state machine: phases, processing states, and which moves between them are allowed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::PlanError;

/// The phase a plan is in. A new plan is in `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Action,
    Strategize,
    Execute,
    Apply,
}

/// Where a plan stands within its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingState {
    Queued,
    Processing,
    Complete,
    Errored,
    Cancelled,
    Applied,
    Constrained,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::Action, Phase::Strategize, Phase::Execute, Phase::Apply];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Action => "action",
            Phase::Strategize => "strategize",
            Phase::Execute => "execute",
            Phase::Apply => "apply",
        }
    }

    /// Whether `(self, state)` is a pair a plan can be in.
    pub fn allows(self, state: ProcessingState) -> bool {
        use ProcessingState::*;
        match self {
            Phase::Action => state == Queued,
            Phase::Strategize | Phase::Execute => {
                matches!(state, Queued | Processing | Complete | Errored | Cancelled)
            }
            Phase::Apply => matches!(state, Queued | Processing | Applied | Constrained | Errored | Cancelled),
        }
    }

    /// The kind of move from `self` to `to`, or `None` if there is no such edge at all.
    pub fn transition_to(self, to: Phase) -> Option<TransitionKind> {
        use Phase::*;
        match (self, to) {
            (Action, Strategize) | (Strategize, Execute) | (Execute, Apply) => Some(TransitionKind::Advance),
            (Execute, Strategize) | (Apply, Strategize) => Some(TransitionKind::Revert),
            _ => None,
        }
    }
}

/// Advancing moves forward through the phases; reverting goes back to `strategize` to re-plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionKind {
    Advance,
    Revert,
}

/// Decides whether a plan in `(from, state)` may enter phase `to`.
pub fn check_phase_transition(from: Phase, state: ProcessingState, to: Phase) -> Result<TransitionKind, PlanError> {
    use ProcessingState::*;
    let kind = from.transition_to(to).ok_or(PlanError::InvalidPhaseTransition { from, to })?;
    let allowed = match (kind, from) {
        (TransitionKind::Advance, Phase::Action) => state == Queued,
        (TransitionKind::Advance, _) => state == Complete,
        (TransitionKind::Revert, Phase::Execute) => matches!(state, Complete | Errored | Queued),
        (TransitionKind::Revert, _) => matches!(state, Constrained | Errored),
    };
    if allowed {
        Ok(kind)
    } else {
        Err(PlanError::TransitionNotAllowedInState { from, to, state })
    }
}

impl ProcessingState {
    pub const ALL: [ProcessingState; 7] = [
        ProcessingState::Queued,
        ProcessingState::Processing,
        ProcessingState::Complete,
        ProcessingState::Errored,
        ProcessingState::Cancelled,
        ProcessingState::Applied,
        ProcessingState::Constrained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProcessingState::Queued => "queued",
            ProcessingState::Processing => "processing",
            ProcessingState::Complete => "complete",
            ProcessingState::Errored => "errored",
            ProcessingState::Cancelled => "cancelled",
            ProcessingState::Applied => "applied",
            ProcessingState::Constrained => "constrained",
        }
    }

    /// A terminal plan accepts no command, only reads.
    pub fn is_terminal(self) -> bool {
        matches!(self, ProcessingState::Applied | ProcessingState::Cancelled)
    }
}

macro_rules! display_from_str {
    ($ty:ty, $what:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    format!("unknown {} {s:?}; expected one of {}", $what, names.join(", "))
                })
            }
        }
    };
}

display_from_str!(Phase, "phase");
display_from_str!(ProcessingState, "processing state");
