//! The typed values handed to Python: commands, DDP changes, bulk-data responses, stats. Immutable;
//! their JSON parts are plain Python objects built once.

use mode_core::ddp::Change;
use mode_core::engine::{Counters, Stats};
use mode_core::proto::{BulkDataResponse, Command as CoreCommand};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyInt, PyString, PyType};

use crate::json;

/// A command from the cloud: `action` and its `parameters` (a dict, integers exact).
#[pyclass(module = "mode._mode", frozen, get_all)]
pub struct Command {
    /// What the device is asked to do.
    pub action: String,
    /// The command's arguments.
    pub parameters: Py<PyAny>,
}

#[pymethods]
impl Command {
    #[new]
    #[pyo3(signature = (action, parameters = None))]
    fn new(py: Python<'_>, action: String, parameters: Option<Py<PyAny>>) -> Self {
        let parameters =
            parameters.unwrap_or_else(|| pyo3::types::PyDict::new(py).into_any().unbind());
        Command { action, parameters }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Command(action={:?}, parameters={})",
            self.action,
            self.parameters.bind(py).repr()?
        ))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(other) = other.cast::<Command>() else {
            return Ok(false);
        };
        let other = other.get();
        Ok(
            self.action == other.action
                && self.parameters.bind(py).eq(other.parameters.bind(py))?,
        )
    }
}

impl Command {
    pub fn from_core(py: Python<'_>, command: &CoreCommand) -> PyResult<Self> {
        Ok(Command {
            action: command.action.clone(),
            parameters: json::map_to_py(py, &command.parameters)?
                .into_any()
                .unbind(),
        })
    }
}

/// One visible change of the DDP mirror: `key` now holds `value` (`deleted` false), or was
/// removed (`deleted` true, `value` None); `previous` is what it held (None: nothing).
#[pyclass(module = "mode._mode", frozen, get_all)]
pub struct KvChange {
    /// The key.
    pub key: String,
    /// Its new value (None once deleted; a JSON null set as a value is None too: see `deleted`).
    pub value: Py<PyAny>,
    /// Its value before, None if it had none.
    pub previous: Py<PyAny>,
    /// True when the key was deleted.
    pub deleted: bool,
}

#[pymethods]
impl KvChange {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "KvChange(key={:?}, value={}, previous={}, deleted={})",
            self.key,
            self.value.bind(py).repr()?,
            self.previous.bind(py).repr()?,
            if self.deleted { "True" } else { "False" }
        ))
    }
}

impl KvChange {
    pub fn from_core(py: Python<'_>, change: &Change) -> PyResult<Self> {
        let opt = |v: Option<&serde_json::Value>| -> PyResult<Py<PyAny>> {
            Ok(match v {
                Some(v) => json::to_py(py, v)?.unbind(),
                None => py.None(),
            })
        };
        Ok(match change {
            Change::Set {
                key,
                value,
                previous,
            } => KvChange {
                key: key.clone(),
                value: opt(Some(value))?,
                previous: opt(previous.as_ref())?,
                deleted: false,
            },
            Change::Deleted { key, previous } => KvChange {
                key: key.clone(),
                value: py.None(),
                previous: opt(Some(previous))?,
                deleted: true,
            },
        })
    }

    pub fn list(py: Python<'_>, changes: &[Change]) -> PyResult<Vec<KvChange>> {
        changes.iter().map(|c| KvChange::from_core(py, c)).collect()
    }
}

/// A smart module's answer to a bulk-data request. `status` "OK" means only that the module
/// processed it; the outcome is in `payload`.
#[pyclass(module = "mode._mode", frozen, get_all)]
pub struct BulkResponse {
    /// The id of the request it answers.
    pub request_id: String,
    /// "OK", "INVALID_BULK_DATA_LABEL", "SERVICE_UNAVAILABLE" or what the cloud sent.
    pub status: String,
    /// The module's result (any JSON).
    pub payload: Py<PyAny>,
}

#[pymethods]
impl BulkResponse {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "BulkResponse(request_id={:?}, status={:?}, payload={})",
            self.request_id,
            self.status,
            self.payload.bind(py).repr()?
        ))
    }
}

impl BulkResponse {
    pub fn from_core(py: Python<'_>, response: &BulkDataResponse) -> PyResult<Self> {
        Ok(BulkResponse {
            request_id: response.request_id.clone(),
            status: response.status.as_str().to_owned(),
            payload: json::to_py(py, &response.payload)?.unbind(),
        })
    }
}

/// The engine's counters as a dict, named as mode-core names them (`Counters::named`), and
/// `last_error`: `Engine.stats()`, and the fields of `Stats`.
pub fn stats_dict<'py>(py: Python<'py>, s: &Stats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, value) in s.named() {
        d.set_item(name, value)?;
    }
    d.set_item("last_error", s.last_error.as_deref())?;
    Ok(d)
}

/// `mode.Stats`, what `Client.stats()` returns: a frozen dataclass made once, at import, from
/// the counters' names (`Counters::named`) and `last_error`, so neither this crate nor the
/// Python package writes the list again (the stub lists it for type checkers; stubtest checks
/// that list against this class's `__init__`).
pub fn stats_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static STATS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    STATS
        .get_or_try_init(py, || {
            let int = py.get_type::<PyInt>().into_any();
            let optional_str = py
                .import("typing")?
                .getattr("Optional")?
                .get_item(py.get_type::<PyString>())?;
            let mut fields: Vec<(&str, Bound<'_, PyAny>)> = Counters::default()
                .named()
                .iter()
                .map(|&(name, _)| (name, int.clone()))
                .collect();
            fields.push(("last_error", optional_str));
            let namespace = PyDict::new(py);
            namespace.set_item(
                "__doc__",
                "A snapshot of a device's counters (mode-core's, by the same names) and the \
                 last error seen, as text.",
            )?;
            let options = PyDict::new(py);
            options.set_item("frozen", true)?;
            options.set_item("namespace", namespace)?;
            let class = py
                .import("dataclasses")?
                .getattr("make_dataclass")?
                .call(("Stats", fields), Some(&options))?;
            class.setattr("__module__", "mode._mode")?;
            Ok(class.cast_into::<PyType>()?.unbind())
        })
        .map(|class| class.bind(py))
}

/// A `mode.Stats` of the engine's counters.
pub fn stats<'py>(py: Python<'py>, s: &Stats) -> PyResult<Bound<'py, PyAny>> {
    stats_class(py)?.call((), Some(&stats_dict(py, s)?))
}
