//! The lifecycle state machine: phases, processing states, and which moves between them are allowed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::PlanError;

/// The phase a plan is in. A new plan is in `action`; phases advance `action` → `strategize` →
/// `execute` → `apply`, and `execute` and `apply` may revert to `strategize` to re-plan (see
/// [`check_phase_transition`]). Step counting restarts with each phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before any work: the plan exists but no phase has started. Only ever `queued`.
    Action,
    /// Working out what to do.
    Strategize,
    /// Doing it.
    Execute,
    /// Making the result take effect. It ends `applied` (terminal), never `complete`.
    Apply,
}

/// Where a plan stands within its phase. Not every state fits every phase: see
/// [`Phase::allows`]. `applied` and `cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingState {
    /// Waiting to run: a new plan or fork, or one whose runner recorded an interruption.
    Queued,
    /// A runner is (or was, if it crashed) working on the phase's steps.
    Processing,
    /// The phase finished (`strategize` and `execute` only); the next move is a new phase.
    Complete,
    /// The phase failed; the plan keeps the message and can resume (or, from `execute` and
    /// `apply`, revert to re-plan).
    Errored,
    /// Stopped for good by an operator. Terminal.
    Cancelled,
    /// The `apply` phase took effect. Terminal.
    Applied,
    /// The `apply` phase was refused by a constraint; the plan keeps the message and can resume
    /// or revert to re-plan.
    Constrained,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 4] = [Phase::Action, Phase::Strategize, Phase::Execute, Phase::Apply];

    /// The stable snake_case name, as stored and printed.
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
    /// To the next phase; the current one must be `complete` (from `action`: `queued`).
    Advance,
    /// Back to `strategize`, from `execute` or `apply`.
    Revert,
}

/// Decides whether a plan in `(from, state)` may enter phase `to`: the edge must exist
/// ([`PlanError::InvalidPhaseTransition`] otherwise) and `state` must allow it
/// ([`PlanError::TransitionNotAllowedInState`] otherwise).
///
/// ```
/// use waypoint_domain::{check_phase_transition, Phase, ProcessingState, TransitionKind};
///
/// let kind = check_phase_transition(Phase::Execute, ProcessingState::Errored, Phase::Strategize);
/// assert_eq!(kind, Ok(TransitionKind::Revert));
/// assert!(check_phase_transition(Phase::Strategize, ProcessingState::Processing, Phase::Execute).is_err());
/// ```
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
    /// Every processing state.
    pub const ALL: [ProcessingState; 7] = [
        ProcessingState::Queued,
        ProcessingState::Processing,
        ProcessingState::Complete,
        ProcessingState::Errored,
        ProcessingState::Cancelled,
        ProcessingState::Applied,
        ProcessingState::Constrained,
    ];

    /// The stable snake_case name, as stored and printed.
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
