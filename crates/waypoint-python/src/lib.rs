//! `waypoint._native`: the compiled half of the `waypoint` Python package. It holds no rule of
//! its own: stores are opened by location as the CLI opens them (`waypoint-stores`), workflows
//! run through the step engine of the application crate, and the lifecycle service answers
//! with the serde JSON of the Rust results. The pure-Python package in `python/waypoint/` is
//! the public face: context managers, the step decorator, dataclasses, and the executor that
//! calls functions and times async steps.
//!
//! Every call that reaches a store detaches from the interpreter (`Python::detach`), so other
//! Python threads run meanwhile.

mod errors;
mod json;
mod run;
mod store;

use std::sync::Mutex;

use pyo3::prelude::*;
use waypoint_telemetry::Telemetry;

/// Trace export for the workflows this interpreter runs, from import to exit (ADR 0016).
static TELEMETRY: Mutex<Option<Telemetry>> = Mutex::new(None);

/// The module: the store, the run, the exception family. Importing it sets up trace export and
/// operator logs as `OTEL_*` and `WAYPOINT_LOG` ask, and the interpreter's exit flushes them.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<store::NativeStore>()?;
    module.add_class::<run::NativeRun>()?;
    module.add_function(wrap_pyfunction!(store::open_store, module)?)?;
    module.add_function(wrap_pyfunction!(flush_traces, module)?)?;
    errors::register(module)?;
    waypoint_telemetry::init_logs();
    let telemetry = Telemetry::from_env();
    if telemetry.enabled() {
        *TELEMETRY.lock().unwrap_or_else(|p| p.into_inner()) = Some(telemetry);
        let flush = module.getattr("flush_traces")?;
        module.py().import("atexit")?.call_method1("register", (flush,))?;
    }
    Ok(())
}

/// Exports the spans not yet sent (within two seconds) and stops trace export; called at the
/// interpreter's exit. Nothing happens when traces are off or were already flushed.
#[pyfunction]
fn flush_traces(py: Python<'_>) {
    let telemetry = TELEMETRY.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(telemetry) = telemetry {
        py.detach(|| telemetry.shutdown());
    }
}
