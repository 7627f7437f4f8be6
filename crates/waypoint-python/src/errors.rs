//! The exception family: one Python class per family of Rust errors (`create_exception!`), each
//! raised with `.code` (the CLI's JSON code) and `.exit_code` (the CLI's exit code), and
//! `.reasons` for a refused resume. Messages are the library's, which are the CLI's less its
//! advice about commands.
//!
//! Errors cross `Python::detach` as [`Failure`], plain data, and become exceptions once the
//! thread holds the interpreter again.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyList;
use pyo3::{create_exception, PyTypeInfo};
use waypoint_application::{EngineError, ErrorKind, ServiceError, StoreError};
use waypoint_domain::{InvalidValue as DomainInvalidValue, PlanId, ResumeIneligibleReason, StepNumber};
use waypoint_stores::{LocationError, OpenError};

create_exception!(
    waypoint,
    WaypointError,
    PyException,
    "Every error Waypoint raises: `.code` is the CLI's JSON code, `.exit_code` the CLI's exit code."
);
create_exception!(
    waypoint,
    InvalidValue,
    WaypointError,
    "A value is not valid: an id, a name, a store location (exit 2)."
);
create_exception!(
    waypoint,
    OutputTooLarge,
    InvalidValue,
    "A step output or recorded output is larger than 1 MiB of JSON."
);
create_exception!(
    waypoint,
    PlanNotFound,
    WaypointError,
    "The store holds no such plan, or retention removed it (exit 3)."
);
create_exception!(waypoint, NotEligible, WaypointError, "The plan cannot resume; `.reasons` says why (exit 4).");
create_exception!(
    waypoint,
    Conflict,
    WaypointError,
    "A concurrent change, a different checkpoint, a taken id or a lost lock (exit 5)."
);
create_exception!(waypoint, StillRunning, Conflict, "Another process runs the plan now (exit 5, `run_lock_busy`).");
create_exception!(waypoint, InvalidState, WaypointError, "The plan's state refuses the command (exit 7).");
create_exception!(
    waypoint,
    StepMismatch,
    InvalidState,
    "A step is called by another name than the one recorded at its position."
);
create_exception!(waypoint, StoreUnavailable, WaypointError, "The store cannot be opened or reached (exit 6).");
create_exception!(waypoint, StoreCorrupt, WaypointError, "The store is damaged or cannot be decoded (exit 6).");
create_exception!(waypoint, Waiting, WaypointError, "The workflow waits for an approval (exit 0, `waiting`).");

/// Which class an error is raised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Base,
    InvalidValue,
    OutputTooLarge,
    PlanNotFound,
    NotEligible,
    Conflict,
    StillRunning,
    InvalidState,
    StepMismatch,
    StoreUnavailable,
    StoreCorrupt,
    Waiting,
}

/// An error on its way to Python: its class, code, exit code, message and reasons.
#[derive(Debug, Clone)]
pub struct Failure {
    pub family: Family,
    pub code: &'static str,
    pub exit_code: u8,
    pub message: String,
    pub reasons: Vec<ResumeIneligibleReason>,
}

impl Failure {
    pub fn new(family: Family, code: &'static str, exit_code: u8, message: impl Into<String>) -> Self {
        Self { family, code, exit_code, message: one_line(&message.into()), reasons: Vec::new() }
    }

    fn with_reasons(mut self, reasons: Vec<ResumeIneligibleReason>) -> Self {
        self.reasons = reasons;
        self
    }

    /// A refusal of the plan's state (exit 7, `invalid_state`).
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(Family::InvalidState, "invalid_state", ErrorKind::InvalidCommand.exit_code(), message)
    }

    /// The workflow reached an approval nobody has decided (exit 0, `waiting`): the question is
    /// recorded and the run ends; run it again once someone approved.
    pub fn waiting(plan_id: &PlanId, step: StepNumber, question: &str) -> Self {
        let message = format!(
            "workflow {plan_id} waits at step {step} for a person to answer {question:?}; approve it (`waypoint plan approve {plan_id}`), then run it again"
        );
        Self::new(Family::Waiting, "waiting", 0, message)
    }

    /// Another process holds the plan (exit 5, `run_lock_busy`, reason `still_running`).
    pub fn still_running(plan_id: &PlanId) -> Self {
        let message = format!("plan {plan_id} is being run by another process; wait for it to stop, then try again");
        Self::new(Family::StillRunning, "run_lock_busy", ErrorKind::Conflict.exit_code(), message)
            .with_reasons(vec![ResumeIneligibleReason::StillRunning])
    }
}

impl From<ServiceError> for Failure {
    fn from(error: ServiceError) -> Self {
        let kind = error.kind();
        let code = error.code();
        let family = match kind {
            ErrorKind::NotFound => Family::PlanNotFound,
            ErrorKind::NotEligible => Family::NotEligible,
            ErrorKind::Conflict if code == "run_lock_busy" => Family::StillRunning,
            ErrorKind::Conflict => Family::Conflict,
            ErrorKind::StoreUnreadable if matches!(code, "store_corrupt" | "store_undecodable") => Family::StoreCorrupt,
            ErrorKind::StoreUnreadable => Family::StoreUnavailable,
            ErrorKind::InvalidCommand if code == "step_mismatch" => Family::StepMismatch,
            ErrorKind::InvalidCommand => Family::InvalidState,
            ErrorKind::Unexpected => Family::Base,
        };
        let reasons = error.reasons().map(<[_]>::to_vec).unwrap_or_default();
        Failure::new(family, code, kind.exit_code(), error.to_string()).with_reasons(reasons)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        ServiceError::Store(error).into()
    }
}

impl From<EngineError> for Failure {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::StillRunning { plan_id } => Failure::still_running(&plan_id),
            // Still waiting for a person: the same answer as when the run stopped to ask.
            EngineError::NotResumable { plan_id, summary, .. } if summary.waiting_for.is_some() => {
                let waiting = summary.waiting_for.expect("checked");
                Failure::waiting(&plan_id, waiting.step, &waiting.question)
            }
            EngineError::NotResumable { plan_id, reasons, .. } => {
                let codes: Vec<&str> = reasons.iter().map(|r| r.code()).collect();
                let message = format!("plan {plan_id} cannot resume: {}", codes.join(", "));
                Failure::new(Family::NotEligible, "not_eligible", ErrorKind::NotEligible.exit_code(), message)
                    .with_reasons(reasons)
            }
            error @ EngineError::StepMismatch { .. } => Failure::new(
                Family::StepMismatch,
                "step_mismatch",
                ErrorKind::InvalidCommand.exit_code(),
                error.to_string(),
            ),
            error @ EngineError::StepFailed { .. } => {
                Failure::new(Family::Base, "step_failed", ErrorKind::Unexpected.exit_code(), error.to_string())
            }
            EngineError::RunLock(lost) => ServiceError::RunLock(lost).into(),
            EngineError::Service(error) => error.into(),
            other => Failure::new(Family::Base, "unexpected", ErrorKind::Unexpected.exit_code(), other.to_string()),
        }
    }
}

impl From<DomainInvalidValue> for Failure {
    fn from(error: DomainInvalidValue) -> Self {
        let family = match error {
            DomainInvalidValue::OutputTooLarge { .. } => Family::OutputTooLarge,
            _ => Family::InvalidValue,
        };
        Failure::new(family, error.code(), USAGE, error.to_string())
    }
}

impl From<LocationError> for Failure {
    fn from(error: LocationError) -> Self {
        Failure::new(Family::InvalidValue, error.code(), USAGE, error.to_string())
    }
}

impl From<OpenError> for Failure {
    fn from(error: OpenError) -> Self {
        let unreadable = ErrorKind::StoreUnreadable.exit_code();
        match error {
            OpenError::Location(error) => error.into(),
            OpenError::File { dir, source } => {
                let inner = Failure::from(StoreError::from(source));
                let family =
                    if inner.family == Family::StoreCorrupt { Family::StoreCorrupt } else { Family::StoreUnavailable };
                let message =
                    format!("cannot open the store at {}: {}", waypoint_stores::shown_path(&dir), inner.message);
                Failure::new(family, "store_unreadable", unreadable, message)
            }
            error @ OpenError::NotADirectory { .. } => {
                Failure::new(Family::StoreUnavailable, "store_unreadable", unreadable, error.to_string())
            }
            OpenError::Postgres { source, .. } => source.into(),
            other => Failure::new(Family::StoreUnavailable, "store_unreadable", unreadable, other.to_string()),
        }
    }
}

/// The exit code of a usage error: a malformed value or location.
const USAGE: u8 = 2;

impl From<Failure> for PyErr {
    fn from(failure: Failure) -> PyErr {
        Python::attach(|py| failure.into_pyerr(py))
    }
}

impl Failure {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let error = match self.family {
            Family::Base => WaypointError::new_err(self.message),
            Family::InvalidValue => InvalidValue::new_err(self.message),
            Family::OutputTooLarge => OutputTooLarge::new_err(self.message),
            Family::PlanNotFound => PlanNotFound::new_err(self.message),
            Family::NotEligible => NotEligible::new_err(self.message),
            Family::Conflict => Conflict::new_err(self.message),
            Family::StillRunning => StillRunning::new_err(self.message),
            Family::InvalidState => InvalidState::new_err(self.message),
            Family::StepMismatch => StepMismatch::new_err(self.message),
            Family::StoreUnavailable => StoreUnavailable::new_err(self.message),
            Family::StoreCorrupt => StoreCorrupt::new_err(self.message),
            Family::Waiting => Waiting::new_err(self.message),
        };
        let value = error.value(py);
        let attributes = || -> PyResult<()> {
            value.setattr("code", self.code)?;
            value.setattr("exit_code", self.exit_code)?;
            value.setattr("reasons", reasons(py, &self.reasons)?)?;
            Ok(())
        };
        match attributes() {
            Ok(()) => error,
            Err(failed) => failed,
        }
    }
}

/// `reasons` as `waypoint.ResumeIneligibleReason` members (plain codes if the pure-Python
/// package is not there, as when `_native` is imported alone).
pub fn reasons<'py>(py: Python<'py>, reasons: &[ResumeIneligibleReason]) -> PyResult<Bound<'py, PyList>> {
    let codes: Vec<&str> = reasons.iter().map(|r| r.code()).collect();
    match py.import("waypoint._records").and_then(|m| m.getattr("ResumeIneligibleReason")) {
        Ok(enum_type) => {
            let members = codes.iter().map(|code| enum_type.call1((*code,))).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, members)
        }
        Err(_) => PyList::new(py, codes),
    }
}

/// Registers the classes on the module, with class-level defaults for `.code`, `.exit_code`
/// and `.reasons` (what an instance raised by Python code itself carries).
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let classes: [(&str, Bound<'_, pyo3::types::PyType>, &str, u8); 12] = [
        ("WaypointError", WaypointError::type_object(py), "unexpected", 1),
        ("InvalidValue", InvalidValue::type_object(py), "invalid_value", USAGE),
        ("OutputTooLarge", OutputTooLarge::type_object(py), "output_too_large", USAGE),
        ("PlanNotFound", PlanNotFound::type_object(py), "plan_not_found", 3),
        ("NotEligible", NotEligible::type_object(py), "not_eligible", 4),
        ("Conflict", Conflict::type_object(py), "conflict", 5),
        ("StillRunning", StillRunning::type_object(py), "run_lock_busy", 5),
        ("InvalidState", InvalidState::type_object(py), "invalid_state", 7),
        ("StepMismatch", StepMismatch::type_object(py), "step_mismatch", 7),
        ("StoreUnavailable", StoreUnavailable::type_object(py), "store_unavailable", 6),
        ("StoreCorrupt", StoreCorrupt::type_object(py), "store_corrupt", 6),
        ("Waiting", Waiting::type_object(py), "waiting", 0),
    ];
    for (name, class, code, exit_code) in classes {
        class.setattr("code", code)?;
        class.setattr("exit_code", exit_code)?;
        class.setattr("reasons", PyList::empty(py))?;
        module.add(name, class)?;
    }
    Ok(())
}

/// Messages go on one line, as the CLI prints them.
pub fn one_line(text: &str) -> String {
    if !text.contains('\n') {
        return text.to_owned();
    }
    text.split('\n').map(str::trim_end).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}
