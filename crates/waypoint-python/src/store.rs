//! A store opened by location (`waypoint-stores`, as the CLI opens it) and the service over it:
//! `waypoint._native.Store`. Workflows begin here (the step engine's `prepare_run` and
//! `start`), and the lifecycle service's methods answer with the serde JSON of the Rust
//! results, which the pure-Python package turns into frozen dataclasses: the same JSON the CLI
//! prints, from the same types.

use std::future::Future;

use chrono::{DateTime, Utc};
use eventually::versioning::Versioned;
use futures::executor::block_on;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use serde::Serialize;
use serde_json::Value;
use waypoint_application::{
    NewPlan, PlanResumeService, Prepared, ResumeRequest, RunDefinition, ServiceError, StepCheckpoint, StepStart,
    StoredEvent, WorkflowKey,
};
use waypoint_domain::{
    Actor, DecisionId, EventId, Message, Phase, PlanId, PlanName, RunnerId, SnapshotId, StepName, StepNumber,
    StepOutput, TotalSteps,
};
use waypoint_stores::{AnyStore, StoreLocation};

use crate::errors::Failure;
use crate::json;
use crate::run::NativeRun;

type Service = PlanResumeService<AnyStore>;

/// An open store: `waypoint._native.Store`.
#[pyclass(module = "waypoint._native", name = "Store", frozen)]
#[derive(Debug)]
pub struct NativeStore {
    service: Service,
    location: String,
}

/// Opens the store at `location` (a directory, created on first use, or a `postgres://` URL),
/// naming `actor` in the events it records.
#[pyfunction]
pub fn open_store(py: Python<'_>, location: &str, actor: &str) -> PyResult<NativeStore> {
    let parsed = StoreLocation::parse(location).map_err(Failure::from)?;
    // A host name that is not valid text for an actor must not keep the store closed.
    let actor = Actor::parse(actor).or_else(|_| Actor::parse("python")).map_err(Failure::from)?;
    let shown = parsed.display();
    let store = py.detach(|| parsed.open()).map_err(Failure::from)?;
    let service = PlanResumeService::new(store).with_actor(actor);
    Ok(NativeStore { service, location: shown })
}

impl NativeStore {
    /// Runs `call` on the service with the interpreter detached, and answers with its result as
    /// JSON text.
    fn call<T, F, Fut>(&self, py: Python<'_>, call: F) -> PyResult<String>
    where
        T: Serialize,
        F: FnOnce(Service) -> Fut + Send,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let service = self.service.clone();
        let text = py.detach(move || -> Result<String, Failure> {
            let value = block_on(call(service))?;
            serde_json::to_string(&value).map_err(|e| Failure::invalid_state(format!("cannot encode a result: {e}")))
        })?;
        Ok(text)
    }
}

#[pymethods]
impl NativeStore {
    /// The location as messages show it (never with a password).
    #[getter]
    fn location(&self) -> &str {
        &self.location
    }

    /// Starts the workflow keyed `key`, continues it, or replays it when it finished (`new`
    /// starts the key's next plan instead), under the plan's run lock.
    #[pyo3(signature = (key, name=None, new=false))]
    fn begin(&self, py: Python<'_>, key: &str, name: Option<&str>, new: bool) -> PyResult<NativeRun> {
        let key = WorkflowKey::new(PlanId::parse(key).map_err(Failure::from)?);
        let name = PlanName::lossy(name.unwrap_or(key.first().as_str()));
        let runner = RunnerId::parse(&format!("python-{}", std::process::id())).map_err(Failure::from)?;
        let service = self.service.clone();
        let run = py.detach(move || -> Result<NativeRun, Failure> {
            block_on(async {
                let definition = RunDefinition::unnamed_steps(name, key.source());
                match service.prepare_run(&key, definition, runner, new).await? {
                    Prepared::Fresh(ready) | Prepared::Continue(ready, _) => Ok(NativeRun::live(ready.start().await?)),
                    Prepared::Finished(finished) => Ok(NativeRun::replay(*finished)),
                    Prepared::Removed(removal) => Err(ServiceError::Removed(removal).into()),
                }
            })
        })?;
        Ok(run)
    }

    /// Creates a plan in `action`; answers its summary.
    #[pyo3(signature = (plan_id=None, name=None, total_steps=None))]
    fn create_plan(
        &self,
        py: Python<'_>,
        plan_id: Option<&str>,
        name: Option<&str>,
        total_steps: Option<u32>,
    ) -> PyResult<String> {
        let id = plan_id.map(PlanId::parse).transpose().map_err(Failure::from)?;
        let name = name.map(PlanName::parse).transpose().map_err(Failure::from)?;
        let total_steps = total_steps.map(TotalSteps::new).transpose().map_err(Failure::from)?;
        self.call(py, move |service| async move {
            let view = service.create_plan(NewPlan { id, name, total_steps, ..NewPlan::default() }).await?;
            Ok(service.build_resume_summary(&view.plan_id, None).await?)
        })
    }

    /// Enters `phase` (`strategize`, `execute` or `apply`); answers the resume metadata.
    fn start_phase(&self, py: Python<'_>, plan_id: &str, phase: &str) -> PyResult<String> {
        let plan_id = parse_plan(plan_id)?;
        let phase = match phase {
            "strategize" => Phase::Strategize,
            "execute" => Phase::Execute,
            "apply" => Phase::Apply,
            other => {
                let message = format!("phase {other:?} is not one of strategize, execute, apply");
                return Err(Failure::new(crate::errors::Family::InvalidValue, "invalid_value", 2, message).into());
            }
        };
        self.call(py, move |service| async move { Ok(service.start_phase(&plan_id, phase, None).await?.state.resume) })
    }

    /// Sets how many steps the current phase has; answers the resume metadata.
    fn set_total_steps(&self, py: Python<'_>, plan_id: &str, n: u32) -> PyResult<String> {
        let plan_id = parse_plan(plan_id)?;
        let total = TotalSteps::new(n).map_err(Failure::from)?;
        self.call(py, move |service| async move { Ok(service.set_total_steps(&plan_id, total).await?.state.resume) })
    }

    /// Records that a step started; answers the resume metadata.
    fn record_step_started(&self, py: Python<'_>, plan_id: &str, step: u32, decision_id: &str) -> PyResult<String> {
        let plan_id = parse_plan(plan_id)?;
        let start = StepStart::new(parse_step(step)?, DecisionId::parse(decision_id).map_err(Failure::from)?);
        self.call(
            py,
            move |service| async move { Ok(service.record_step_started(&plan_id, start).await?.state.resume) },
        )
    }

    /// Records that a step completed; answers its checkpoint.
    #[pyo3(signature = (plan_id, step, decision_id, snapshot_id=None, name=None, output=None))]
    #[allow(clippy::too_many_arguments)]
    fn record_step_checkpoint(
        &self,
        py: Python<'_>,
        plan_id: &str,
        step: u32,
        decision_id: &str,
        snapshot_id: Option<&str>,
        name: Option<&str>,
        output: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let plan_id = parse_plan(plan_id)?;
        let mut checkpoint =
            StepCheckpoint::new(parse_step(step)?, DecisionId::parse(decision_id).map_err(Failure::from)?);
        checkpoint.snapshot_id = snapshot_id.map(SnapshotId::parse).transpose().map_err(Failure::from)?;
        checkpoint.name = name.map(StepName::parse).transpose().map_err(Failure::from)?;
        checkpoint.output = match output.filter(|o| !o.is_none()) {
            None => None,
            Some(value) => {
                let json = json::to_json(value)
                    .map_err(|e| PyTypeError::new_err(format!("the output is {e}; outputs are recorded as JSON")))?;
                Some(StepOutput::new(json).map_err(Failure::from)?)
            }
        };
        self.call(py, move |service| async move {
            Ok(service.record_step_checkpoint(&plan_id, checkpoint).await?.checkpoint)
        })
    }

    /// Records a graceful shutdown, taking the plan's run lock first (as `plan interrupt` does):
    /// a plan a runner holds now is `StillRunning`. `false` when it was already recorded.
    #[pyo3(signature = (plan_id, reason=None))]
    fn record_shutdown(&self, py: Python<'_>, plan_id: &str, reason: Option<&str>) -> PyResult<bool> {
        let plan_id = parse_plan(plan_id)?;
        let reason = Message::parse(reason.unwrap_or("interrupted by operator")).map_err(Failure::from)?;
        let runner = RunnerId::parse(&format!("python-{}", std::process::id())).map_err(Failure::from)?;
        let service = self.service.clone();
        let appended = py.detach(move || -> Result<bool, Failure> {
            block_on(async {
                service.load_summary(&plan_id).await?;
                let _lock = match service.acquire_run_lock(&plan_id, &runner) {
                    Ok(lock) => lock,
                    Err(ServiceError::RunLock(waypoint_application::RunLockError::Busy { .. })) => {
                        return Err(Failure::still_running(&plan_id));
                    }
                    Err(other) => return Err(other.into()),
                };
                Ok(service.record_shutdown(&plan_id, reason).await?)
            })
        })?;
        Ok(appended)
    }

    /// Whether the plan can resume, with every reason it cannot.
    fn validate_eligibility(&self, py: Python<'_>, plan_id: &str) -> PyResult<String> {
        let plan_id = parse_plan(plan_id)?;
        self.call(py, move |service| async move { Ok(service.validate_eligibility(&plan_id, None).await?) })
    }

    /// The plan's summary: what `plan show --format json` prints.
    fn build_resume_summary(&self, py: Python<'_>, plan_id: &str) -> PyResult<String> {
        let plan_id = parse_plan(plan_id)?;
        self.call(py, move |service| async move { Ok(service.build_resume_summary(&plan_id, None).await?) })
    }

    /// Previews (`dry_run`) or records a resume; answers the summary after it.
    #[pyo3(signature = (plan_id, dry_run=false))]
    fn resume_plan(&self, py: Python<'_>, plan_id: &str, dry_run: bool) -> PyResult<String> {
        let plan_id = parse_plan(plan_id)?;
        let request = ResumeRequest { dry_run, ..ResumeRequest::default() };
        self.call(py, move |service| async move { Ok(service.resume_plan(&plan_id, request).await?.summary) })
    }

    /// A new plan holding the source's steps before `from_step`, resuming at it (as `plan fork`
    /// does); answers the new plan's summary.
    #[pyo3(signature = (plan_id, from_step, new_id=None))]
    fn fork_plan(&self, py: Python<'_>, plan_id: &str, from_step: u32, new_id: Option<&str>) -> PyResult<String> {
        let source = parse_plan(plan_id)?;
        let from_step = parse_step(from_step)?;
        let new_id = new_id.map(PlanId::parse).transpose().map_err(Failure::from)?;
        let at_step = StepNumber::new(from_step.get() - 1).ok();
        self.call(py, move |service| async move {
            let fork = service.fork_plan(&source, at_step, new_id).await?;
            Ok(service.build_resume_summary(&fork.plan_id, None).await?)
        })
    }

    /// Every plan's summary, newest activity first.
    fn list_plans(&self, py: Python<'_>) -> PyResult<String> {
        self.call(py, |service| async move { Ok(service.list_plans().await?) })
    }

    /// Every plan that can resume now, newest activity first.
    fn list_resumable(&self, py: Python<'_>) -> PyResult<String> {
        self.call(py, |service| async move { Ok(service.list_resumable().await?) })
    }

    /// The plan's events, as `plan history --format json` lists them.
    fn history(&self, py: Python<'_>, plan_id: &str) -> PyResult<String> {
        let plan_id = parse_plan(plan_id)?;
        self.call(py, move |service| async move {
            let events = service.history(&plan_id).await?;
            Ok(events.iter().map(HistoryEntry::of).collect::<Vec<_>>())
        })
    }
}

/// One event as `plan history --format json` prints it (the CLI's `render::HistoryEntry`; the
/// interop tests compare the two).
#[derive(Debug, Serialize)]
struct HistoryEntry {
    version: u32,
    position: u32,
    #[serde(rename = "type")]
    event_type: &'static str,
    schema_version: u16,
    at: DateTime<Utc>,
    data: Value,
    event_id: EventId,
}

impl HistoryEntry {
    fn of(stored: &StoredEvent) -> Self {
        let recorded = &**stored;
        HistoryEntry {
            version: stored.version(),
            position: stored.sequence_number(),
            event_type: recorded.event.event_type().as_str(),
            schema_version: recorded.event.schema_version(),
            at: recorded.recorded_at,
            data: serde_json::from_slice(&recorded.event.encode_data()).unwrap_or(Value::Null),
            event_id: recorded.event_id,
        }
    }
}

fn parse_plan(plan_id: &str) -> Result<PlanId, Failure> {
    PlanId::parse(plan_id).map_err(Failure::from)
}

fn parse_step(step: u32) -> Result<StepNumber, Failure> {
    StepNumber::new(step).map_err(Failure::from)
}
