//! `Mirror`, the DDP state machine alone, for Python programs that keep a store in step with
//! the cloud's sync messages themselves; and the argument helpers the other classes share.

use mode_core::ddp::{Applied, Mirror as CoreMirror};
use mode_core::proto::Qos;
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;

use crate::errors::decode_error;
use crate::json;
use crate::types::KvChange;

/// A QoS level from Python: 0 or 1 (MODE has no QoS 2).
pub fn qos_arg(qos: u8) -> PyResult<Qos> {
    Qos::from_level(qos).ok_or_else(|| {
        PyValueError::new_err(format!("qos {qos} is not possible: MODE accepts 0 or 1"))
    })
}

/// The payload bytes of str or bytes.
pub fn payload_arg(payload: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(text) = payload.extract::<String>() {
        return Ok(text.into_bytes());
    }
    payload.extract::<Vec<u8>>()
}

fn changes_of(py: Python<'_>, applied: &Applied) -> PyResult<Vec<KvChange>> {
    KvChange::list(py, applied.changes())
}

/// The device's mirror of its DDP store: apply the cloud's sync messages, read the result.
#[pyclass(module = "mode._mode")]
pub struct Mirror {
    inner: CoreMirror,
}

#[pymethods]
impl Mirror {
    #[new]
    fn new() -> Self {
        Mirror {
            inner: CoreMirror::new(),
        }
    }

    /// Applies one sync message (the payload of `/devices/{id}/kv`) and returns the visible
    /// changes (empty when stale or a duplicate). Raises `ProtocolError` if it does not decode.
    fn apply_json(
        &mut self,
        py: Python<'_>,
        payload: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<KvChange>> {
        let bytes = payload_arg(payload)?;
        let applied = self
            .inner
            .apply_json(&bytes)
            .map_err(|e| decode_error(py, e))?;
        changes_of(py, &applied)
    }

    /// Says the next reload is a new subscription's snapshot (call on every resubscribe).
    fn expect_reload(&mut self) {
        self.inner.expect_reload();
    }

    /// The value of `key`, or `default`.
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.inner.get(key) {
            Some(value) => json::to_py(py, value),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    fn __getitem__<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        match self.inner.get(key) {
            Some(value) => json::to_py(py, value),
            None => Err(PyKeyError::new_err(key.to_owned())),
        }
    }

    fn __contains__(&self, key: &str) -> bool {
        self.inner.contains(key)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The live keys, in key order.
    fn keys(&self) -> Vec<String> {
        self.inner.keys().map(str::to_owned).collect()
    }

    /// The live contents as a dict, keys in order.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json::to_py(py, &self.inner.snapshot())
    }

    /// The highest revision applied.
    #[getter]
    fn rev(&self) -> u64 {
        self.inner.rev()
    }

    /// How many reloads were applied (0: not synced yet).
    #[getter]
    fn reloads(&self) -> u64 {
        self.inner.reloads()
    }

    fn __repr__(&self) -> String {
        format!(
            "Mirror(rev={}, keys={})",
            self.inner.rev(),
            self.inner.len()
        )
    }
}
