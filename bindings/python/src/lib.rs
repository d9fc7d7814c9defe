//! `mode._mode`, the native half of the `mode` Python package: the managed client, the IO-free
//! engine and mirror, and the typed values they hand out. All protocol logic is mode-core's.

mod calls;
mod client;
mod engine;
mod errors;
mod json;
mod log;
mod mirror;
mod notify;
mod runtime;
mod types;

use pyo3::prelude::*;

#[pymodule]
fn _mode(m: &Bound<'_, PyModule>) -> PyResult<()> {
    log::install();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<client::Client>()?;
    m.add_class::<runtime::Runtime>()?;
    m.add_class::<engine::Engine>()?;
    m.add_class::<mirror::Mirror>()?;
    m.add_class::<types::Command>()?;
    m.add_class::<types::KvChange>()?;
    m.add_class::<types::BulkResponse>()?;
    m.add("Stats", types::stats_class(m.py())?)?;
    Ok(())
}
