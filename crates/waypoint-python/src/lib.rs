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

use pyo3::prelude::*;

/// The module: the store, the run, the exception family.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<store::NativeStore>()?;
    module.add_class::<run::NativeRun>()?;
    module.add_function(wrap_pyfunction!(store::open_store, module)?)?;
    errors::register(module)?;
    Ok(())
}
