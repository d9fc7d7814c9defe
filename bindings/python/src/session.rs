//! The IO-free layer for Python programs that own their MQTT client (paho-mqtt and the like):
//! `Mirror` (the DDP state machine alone) and `Session` (topics, encoding, classification).
//! Both are thin shells over mode-core: no protocol logic lives here.

use mode_core::ddp::{Applied, Mirror as CoreMirror};
use mode_core::proto::{Event, Qos};
use mode_core::session::{Incoming, Outgoing, Session as CoreSession};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors::{decode_error, encode_error};
use crate::json;
use crate::types::{BulkResponse, Command, KvChange};

/// A QoS level from Python: 0 or 1 (MODE has no QoS 2).
pub fn qos_arg(qos: u8) -> PyResult<Qos> {
    Qos::from_level(qos).ok_or_else(|| {
        PyValueError::new_err(format!("qos {qos} is not possible: MODE accepts 0 or 1"))
    })
}

/// The payload bytes of str or bytes.
fn payload_arg(payload: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
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

/// `(topic, payload, qos)` for Python.
type Publish<'py> = (String, Bound<'py, PyBytes>, u8);

fn outgoing<'py>(py: Python<'py>, out: Outgoing) -> Publish<'py> {
    (out.topic, PyBytes::new(py, &out.payload), out.qos.level())
}

/// A sans-IO MODE session: which topics to subscribe to, what to publish for an event, a kv
/// write or a bulk request (as `(topic, payload, qos)`), and what an incoming publish means.
#[pyclass(module = "mode._mode")]
pub struct Session {
    inner: CoreSession,
}

#[pymethods]
impl Session {
    #[new]
    #[pyo3(signature = (device_id, request_seed = None))]
    fn new(device_id: u64, request_seed: Option<u64>) -> Self {
        Session {
            inner: CoreSession::new(device_id, request_seed.unwrap_or_else(rand::random)),
        }
    }

    /// The device this session speaks for.
    #[getter]
    fn device_id(&self) -> u64 {
        self.inner.device_id()
    }

    /// Every topic to subscribe to, all at QoS 0.
    fn subscriptions(&self) -> Vec<String> {
        self.inner.subscriptions()
    }

    /// Call when the SUBSCRIBE to the kv topic is sent (every reconnect).
    fn on_subscribed(&mut self) {
        self.inner.on_subscribed();
    }

    /// Starts listening for responses of bulk-data `label`; returns the topic to subscribe to.
    fn watch_bulk_responses(&mut self, py: Python<'_>, label: &str) -> PyResult<String> {
        self.inner
            .watch_bulk_responses(label)
            .map_err(|e| encode_error(py, e))
    }

    /// What an incoming publish means: a `Command`, a list of `KvChange` (a DDP sync message,
    /// already applied to the session's mirror), a `BulkResponse`, or None for a publish that
    /// is not this session's. Raises `ProtocolError` for one of ours that does not decode.
    fn handle<'py>(
        &mut self,
        py: Python<'py>,
        topic: &str,
        payload: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let bytes = payload_arg(payload)?;
        match self.inner.handle(topic, &bytes) {
            Incoming::Command(command) => {
                Ok(Bound::new(py, Command::from_core(py, &command)?)?.into_any())
            }
            Incoming::Kv(applied) => Ok(changes_of(py, &applied)?.into_pyobject(py)?.into_any()),
            Incoming::BulkResponse { response, .. } => {
                Ok(Bound::new(py, BulkResponse::from_core(py, &response)?)?.into_any())
            }
            Incoming::Unrelated { .. } => Ok(py.None().into_bound(py)),
            Incoming::Invalid { error, .. } => Err(decode_error(py, error)),
        }
    }

    /// `(topic, payload, qos)` of an event.
    #[pyo3(signature = (event_type, data = None, qos = 1))]
    fn event<'py>(
        &self,
        py: Python<'py>,
        event_type: &str,
        data: Option<&Bound<'py, PyAny>>,
        qos: u8,
    ) -> PyResult<Publish<'py>> {
        let event = Event::new(event_type, json::object_arg(data)?);
        let out = self
            .inner
            .event(&event, qos_arg(qos)?)
            .map_err(|e| encode_error(py, e))?;
        Ok(outgoing(py, out))
    }

    /// `(topic, payload, qos)` that sets `key` to `value` in the cloud store.
    fn kv_set<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Publish<'py>> {
        let out = self
            .inner
            .kv_set(key, json::from_py(value)?)
            .map_err(|e| encode_error(py, e))?;
        Ok(outgoing(py, out))
    }

    /// `(topic, payload, qos)` that deletes `key` from the cloud store.
    fn kv_delete<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Publish<'py>> {
        let out = self.inner.kv_delete(key).map_err(|e| encode_error(py, e))?;
        Ok(outgoing(py, out))
    }

    /// `(topic, payload, qos)` of raw bulk data for the module of `label`.
    #[pyo3(signature = (label, data, qos = 0))]
    fn bulk_data<'py>(
        &self,
        py: Python<'py>,
        label: &str,
        data: Vec<u8>,
        qos: u8,
    ) -> PyResult<Publish<'py>> {
        let out = self
            .inner
            .bulk_data(label, &data, qos_arg(qos)?)
            .map_err(|e| encode_error(py, e))?;
        Ok(outgoing(py, out))
    }

    /// A bulk-data request: `(request_id, (topic, payload, qos))`. Also watches the label's
    /// responses: subscribe to the topics of `subscriptions()` again if it is new.
    #[pyo3(signature = (label, payload = None, qos = 1))]
    fn bulk_request<'py>(
        &mut self,
        py: Python<'py>,
        label: &str,
        payload: Option<&Bound<'py, PyAny>>,
        qos: u8,
    ) -> PyResult<(String, Publish<'py>)> {
        let payload = match payload {
            Some(p) => json::from_py(p)?,
            None => serde_json::Value::Object(Default::default()),
        };
        self.inner
            .watch_bulk_responses(label)
            .map_err(|e| encode_error(py, e))?;
        let (id, out) = self
            .inner
            .bulk_request(label, payload, qos_arg(qos)?)
            .map_err(|e| encode_error(py, e))?;
        Ok((id, outgoing(py, out)))
    }

    /// The value of `key` in the session's mirror, or `default`.
    #[pyo3(signature = (key, default = None))]
    fn kv_get<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.inner.mirror().get(key) {
            Some(value) => json::to_py(py, value),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    /// The session's mirror contents as a dict.
    fn kv_snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        match self.inner.mirror().snapshot() {
            serde_json::Value::Object(map) => json::map_to_py(py, &map),
            _ => Ok(PyDict::new(py)),
        }
    }

    /// The mirror's revision.
    #[getter]
    fn kv_rev(&self) -> u64 {
        self.inner.mirror().rev()
    }
}
