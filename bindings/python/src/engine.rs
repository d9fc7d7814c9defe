//! `mode.Engine`: the protocol engine of mode-core for a Python program that owns its MQTT client
//! (paho-mqtt and the like). The same inputs and outputs as C's `mode_engine_*`; no logic here.
//!
//! Outputs are tuples whose first item names the kind (`("publish", id, topic, payload, qos)`),
//! typed in `_mode.pyi` as unions of `Literal` kinds, so `match` and mypy can both narrow them.

use std::collections::BTreeSet;
use std::time::Duration;

use mode_core::backoff::BackoffPolicy;
use mode_core::engine::{
    DisconnectReason, DropReason, Engine as CoreEngine, EngineConfig, Event, FullQueuePolicy,
    OutboxChange, Publish, SendError, Transmit,
};
use mode_core::time::Instant;
use pyo3::BoundObject;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::errors::{choose, config_error, raise};
use crate::json;
use crate::mirror::{payload_arg, qos_arg};
use crate::types::{BulkResponse, Command, KvChange, stats_dict};

/// A refused send as the matching `mode` exception.
fn send_error(py: Python<'_>, err: SendError) -> PyErr {
    let name = match err {
        SendError::Closed => "ClosedError",
        SendError::QueueFull { .. } => "QueueFullError",
        SendError::TooLarge { .. } | SendError::Encode(_) => "InvalidArgumentError",
    };
    raise(py, name, (err.to_string(),))
}

fn tuple<'py>(py: Python<'py>, items: Vec<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyTuple::new(py, items)?.into_any())
}

fn any<'py, T>(py: Python<'py>, value: T) -> PyResult<Bound<'py, PyAny>>
where
    T: IntoPyObject<'py>,
    PyErr: From<T::Error>,
{
    Ok(value.into_pyobject(py)?.into_any().into_bound())
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().min(u128::from(u64::MAX)) as u64
}

/// `("publish", id, topic, payload, qos)`, the shape of a message in a transmit and a journal.
fn publish_items<'py>(py: Python<'py>, p: Publish) -> PyResult<Vec<Bound<'py, PyAny>>> {
    Ok(vec![
        any(py, p.id)?,
        any(py, p.topic)?,
        PyBytes::new(py, &p.payload).into_any(),
        any(py, p.qos.level())?,
    ])
}

fn transmit_to_py(py: Python<'_>, transmit: Transmit) -> PyResult<Bound<'_, PyAny>> {
    let mut items = vec![];
    let kind = match transmit {
        Transmit::Connect => "connect",
        Transmit::Subscribe(topics) => {
            items.push(any(py, topics)?);
            "subscribe"
        }
        Transmit::Unsubscribe(topics) => {
            items.push(any(py, topics)?);
            "unsubscribe"
        }
        Transmit::Publish(publish) => {
            items.extend(publish_items(py, publish)?);
            "publish"
        }
        Transmit::Disconnect => "disconnect",
        Transmit::Abort => "abort",
    };
    items.insert(0, any(py, kind)?);
    tuple(py, items)
}

fn disconnect_kind(reason: &DisconnectReason) -> (&'static str, String) {
    match reason {
        DisconnectReason::AuthFailed(text) => ("auth", text.clone()),
        DisconnectReason::Tls(text) => ("tls", text.clone()),
        DisconnectReason::Network(text) => ("network", text.clone()),
        DisconnectReason::KeepaliveTimeout(_) => ("keepalive", reason.to_string()),
        DisconnectReason::Closed => ("closed", reason.to_string()),
    }
}

fn drop_kind(reason: &DropReason) -> (&'static str, String) {
    let kind = match reason {
        DropReason::QueueFull => "queue_full",
        DropReason::Refused(_) => "refused",
        DropReason::Closed => "closed",
    };
    (kind, reason.to_string())
}

fn event_to_py(py: Python<'_>, event: Event) -> PyResult<Bound<'_, PyAny>> {
    let items = match event {
        Event::Connected => vec![any(py, "connected")?],
        Event::Disconnected { reason, retry_in } => {
            let (kind, text) = disconnect_kind(&reason);
            vec![
                any(py, "disconnected")?,
                any(py, kind)?,
                any(py, text)?,
                any(py, retry_in.map(millis))?,
            ]
        }
        Event::Command(command) => vec![
            any(py, "command")?,
            Bound::new(py, Command::from_core(py, &command)?)?.into_any(),
        ],
        Event::Kv {
            rev,
            reload,
            changes,
        } => vec![
            any(py, "kv")?,
            any(py, rev)?,
            any(py, reload)?,
            any(py, KvChange::list(py, &changes)?)?,
        ],
        Event::BulkResponse {
            label,
            response,
            request,
        } => vec![
            any(py, "bulk_response")?,
            any(py, label)?,
            Bound::new(py, BulkResponse::from_core(py, &response)?)?.into_any(),
            any(py, request)?,
        ],
        Event::BulkTimeout { request_id } => {
            vec![any(py, "bulk_timeout")?, any(py, request_id)?]
        }
        Event::Delivered(id) => vec![any(py, "delivered")?, any(py, id)?],
        Event::Dropped { id, topic, reason } => {
            let (kind, text) = drop_kind(&reason);
            vec![
                any(py, "dropped")?,
                any(py, id)?,
                any(py, topic)?,
                any(py, kind)?,
                any(py, text)?,
            ]
        }
        Event::Error { topic, error } => vec![
            any(py, "error")?,
            any(py, topic)?,
            any(py, error.to_string())?,
        ],
        Event::Closed { unsent } => vec![any(py, "closed")?, any(py, unsent)?],
    };
    tuple(py, items)
}

/// One device's connection as a state machine without IO: feed it what the transport saw (with
/// the time, in milliseconds of any monotonic clock), carry out `poll_transmit()`, wake it at
/// `poll_timeout()`, read `poll_event()`.
#[pyclass(module = "mode._mode")]
pub struct Engine {
    inner: CoreEngine,
    /// The latest time passed in: time never goes backwards.
    now: u64,
    /// A send was accepted: `restore` would no longer put its messages first.
    sent_any: bool,
}

impl Engine {
    /// `now_ms` as an instant, refused when earlier than a time already passed in.
    fn at(&mut self, now_ms: u64) -> PyResult<Instant> {
        if now_ms < self.now {
            return Err(PyValueError::new_err(format!(
                "now_ms {now_ms} is earlier than {} passed before: pass the time of one monotonic \
                 clock (e.g. time.monotonic_ns() // 1_000_000)",
                self.now
            )));
        }
        self.now = now_ms;
        Ok(Instant::from_millis(now_ms))
    }

    fn accepted(&mut self, py: Python<'_>, sent: Result<u64, SendError>) -> PyResult<u64> {
        let id = sent.map_err(|e| send_error(py, e))?;
        self.sent_any = true;
        Ok(id)
    }
}

#[pymethods]
impl Engine {
    /// An engine for `device_id` created at `now_ms`; it asks to connect at once. Raises
    /// `ConfigError` for a setting that cannot work.
    #[new]
    #[pyo3(signature = (
        device_id, now_ms, *, seed = None, queue_size = 10_000, full_queue = "error",
        max_inflight = 100, max_message_size = 1_048_576, watchdog_ms = 90_000,
        linger_ms = 2_000, backoff_unit_ms = 1_000, backoff_cap_ms = 60_000,
        backoff_jitter = 0.2, backoff_stable_after_ms = 30_000,
        auth_failure_wait_ms = 60_000, auth_failure_cap_ms = 900_000, journal = false,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        device_id: u64,
        now_ms: u64,
        seed: Option<u64>,
        queue_size: usize,
        full_queue: &str,
        max_inflight: u16,
        max_message_size: usize,
        watchdog_ms: u64,
        linger_ms: u64,
        backoff_unit_ms: u64,
        backoff_cap_ms: u64,
        backoff_jitter: f64,
        backoff_stable_after_ms: u64,
        auth_failure_wait_ms: u64,
        auth_failure_cap_ms: u64,
        journal: bool,
    ) -> PyResult<Self> {
        let ms = Duration::from_millis;
        let mut config = EngineConfig {
            queue_size,
            max_inflight,
            max_message_size,
            backoff: BackoffPolicy {
                cap: ms(backoff_cap_ms.max(backoff_unit_ms)),
                unit: ms(backoff_unit_ms),
                jitter: backoff_jitter,
                stable_after: ms(backoff_stable_after_ms),
                auth_failure_wait: ms(auth_failure_wait_ms),
                auth_failure_cap: ms(auth_failure_cap_ms.max(auth_failure_wait_ms)),
            },
            // 0: no watchdog (the transport detects a dead connection itself), as in C.
            watchdog: (watchdog_ms > 0).then(|| ms(watchdog_ms)),
            linger: ms(linger_ms),
            journal,
            ..EngineConfig::new(device_id, seed.unwrap_or_else(rand::random))
        };
        config
            .check()
            .map_err(|problem| config_error(py, problem.to_string()))?;
        // No "block": the engine never waits; a full queue answers QueueFullError.
        config.full_queue = choose(
            py,
            "full_queue",
            full_queue,
            &[
                ("error", FullQueuePolicy::Error),
                ("drop-oldest", FullQueuePolicy::DropOldest),
            ],
        )?;
        Ok(Engine {
            inner: CoreEngine::new(config, Instant::from_millis(now_ms)),
            now: now_ms,
            sent_any: false,
        })
    }

    /// The device this engine speaks for.
    #[getter]
    fn device_id(&self) -> u64 {
        self.inner.device_id()
    }

    /// True while connected and subscribed (after the "connected" event).
    #[getter]
    fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// True once closed (after the "closed" event): nothing more happens.
    #[getter]
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Messages accepted and not finished.
    #[getter]
    fn pending(&self) -> usize {
        self.inner.pending()
    }

    // -- outputs --------------------------------------------------------------------------------

    /// The next piece of work for the transport, or None: call after every input until None.
    fn poll_transmit<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .poll_transmit()
            .map(|t| transmit_to_py(py, t))
            .transpose()
    }

    /// The next thing for the application, or None.
    fn poll_event<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .poll_event()
            .map(|e| event_to_py(py, e))
            .transpose()
    }

    /// The next change to persist (with `journal=True`): `("added", id, topic, payload, qos)`
    /// or `("done", id)`; None when there is none.
    fn poll_journal<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(change) = self.inner.poll_journal() else {
            return Ok(None);
        };
        let items = match change {
            OutboxChange::Added(publish) => {
                let mut items = vec![any(py, "added")?];
                items.extend(publish_items(py, publish)?);
                items
            }
            OutboxChange::Done(id) => vec![any(py, "done")?, any(py, id)?],
        };
        tuple(py, items).map(Some)
    }

    /// When `handle_timeout` is next due, in the milliseconds passed in; None: no timer.
    fn poll_timeout(&self) -> Option<u64> {
        self.inner.poll_timeout().map(Instant::as_millis)
    }

    /// Puts back what a previous run's journal left, `(id, topic, payload, qos)` each, before
    /// any send: they go first with their ids; new ids continue after them. All or nothing.
    fn restore(
        &mut self,
        py: Python<'_>,
        messages: Vec<(u64, String, Vec<u8>, u8)>,
    ) -> PyResult<()> {
        if self.sent_any {
            return Err(raise(
                py,
                "ModeError",
                ("restore comes before any send: a restored message must go first",),
            ));
        }
        let mut ids = BTreeSet::new();
        let mut restored = Vec::with_capacity(messages.len());
        for (id, topic, payload, qos) in messages {
            if id == 0 || !ids.insert(id) {
                return Err(PyValueError::new_err(format!(
                    "message id {id} is 0 or given twice"
                )));
            }
            restored.push(Publish {
                id,
                topic,
                payload,
                qos: qos_arg(qos)?,
            });
        }
        if restored.len() > self.inner.room() {
            return Err(raise(
                py,
                "QueueFullError",
                (format!(
                    "{} messages to restore, room for {}: raise queue_size",
                    restored.len(),
                    self.inner.room()
                ),),
            ));
        }
        let refused = self.inner.restore(restored);
        if !refused.is_empty() {
            return Err(PyRuntimeError::new_err(
                "the engine refused restored messages",
            ));
        }
        Ok(())
    }

    // -- inputs from the transport --------------------------------------------------------------

    /// The transport is up (MQTT: CONNACK accepted).
    fn connected(&mut self, now_ms: u64) -> PyResult<()> {
        let now = self.at(now_ms)?;
        self.inner.connected(now);
        Ok(())
    }

    /// The subscription was acknowledged (SUBACK).
    fn subscribed(&mut self, now_ms: u64) -> PyResult<()> {
        let now = self.at(now_ms)?;
        self.inner.subscribed(now);
        Ok(())
    }

    /// The connection ended or an attempt failed: `kind` is "auth", "tls" or "network".
    fn disconnected(&mut self, kind: &str, text: &str, now_ms: u64) -> PyResult<()> {
        let reason = match kind {
            "auth" => DisconnectReason::AuthFailed(text.to_owned()),
            "tls" => DisconnectReason::Tls(text.to_owned()),
            "network" => DisconnectReason::Network(text.to_owned()),
            other => {
                return Err(PyValueError::new_err(format!(
                    "disconnect kind {other:?} is not one a transport reports: use \"auth\", \
                     \"tls\" or \"network\""
                )));
            }
        };
        let now = self.at(now_ms)?;
        self.inner.disconnected(reason, now);
        Ok(())
    }

    /// A publish from the cloud (str or bytes payload).
    fn handle_publish(
        &mut self,
        topic: &str,
        payload: &Bound<'_, PyAny>,
        now_ms: u64,
    ) -> PyResult<()> {
        let payload = payload_arg(payload)?;
        let now = self.at(now_ms)?;
        self.inner.handle_publish(topic, &payload, now);
        Ok(())
    }

    /// Something came from the cloud (a PINGRESP, an ack): the connection is alive.
    fn handle_activity(&mut self, now_ms: u64) -> PyResult<()> {
        let now = self.at(now_ms)?;
        self.inner.handle_activity(now);
        Ok(())
    }

    /// The cloud confirmed message `id` (QoS 1: PUBACK; QoS 0: written).
    fn delivered(&mut self, id: u64, now_ms: u64) -> PyResult<()> {
        let now = self.at(now_ms)?;
        self.inner.delivered(id, now);
        Ok(())
    }

    /// The cloud refused message `id` itself: it is dropped ("refused"), the rest go on.
    fn failed(&mut self, id: u64, why: &str, now_ms: u64) -> PyResult<()> {
        let now = self.at(now_ms)?;
        self.inner.failed(id, why, now);
        Ok(())
    }

    /// Time passed: call at `poll_timeout()` (earlier or later is harmless).
    fn handle_timeout(&mut self, now_ms: u64) -> PyResult<()> {
        let now = self.at(now_ms)?;
        self.inner.handle_timeout(now);
        Ok(())
    }

    // -- intents of the application -------------------------------------------------------------

    /// Queues an event; returns its message id.
    #[pyo3(signature = (event_type, data = None, qos = 1))]
    fn send_event(
        &mut self,
        py: Python<'_>,
        event_type: &str,
        data: Option<&Bound<'_, PyAny>>,
        qos: u8,
    ) -> PyResult<u64> {
        let data = json::object_arg(data)?;
        let sent = self.inner.send_event(event_type, data, qos_arg(qos)?);
        self.accepted(py, sent)
    }

    /// Queues a write of `key` = `value` to the cloud store (QoS 1); returns its message id.
    fn kv_set(&mut self, py: Python<'_>, key: &str, value: &Bound<'_, PyAny>) -> PyResult<u64> {
        let sent = self.inner.kv_set(key, json::from_py(value)?);
        self.accepted(py, sent)
    }

    /// Queues a delete of `key` from the cloud store (QoS 1); returns its message id.
    fn kv_delete(&mut self, py: Python<'_>, key: &str) -> PyResult<u64> {
        let sent = self.inner.kv_delete(key);
        self.accepted(py, sent)
    }

    /// Queues raw bytes for the smart module of `label`; returns the message id.
    #[pyo3(signature = (label, data, qos = 0))]
    fn send_bulk_data(
        &mut self,
        py: Python<'_>,
        label: &str,
        data: Vec<u8>,
        qos: u8,
    ) -> PyResult<u64> {
        let sent = self.inner.send_bulk_data(label, &data, qos_arg(qos)?);
        self.accepted(py, sent)
    }

    /// Queues data for routing; returns the message id.
    #[pyo3(signature = (data, qos = 0))]
    fn send_data(&mut self, py: Python<'_>, data: Vec<u8>, qos: u8) -> PyResult<u64> {
        let sent = self.inner.send_data(&data, qos_arg(qos)?);
        self.accepted(py, sent)
    }

    /// Queues a bulk request to `label` (QoS 1) at `now_ms`: `(message_id, request_id)`. Its
    /// answer is a "bulk_response" event with `request` True, or, with `timeout_ms`, a
    /// "bulk_timeout" at `now_ms + timeout_ms` if none came.
    #[pyo3(signature = (label, payload = None, *, now_ms, timeout_ms = None))]
    fn bulk_request(
        &mut self,
        py: Python<'_>,
        label: &str,
        payload: Option<&Bound<'_, PyAny>>,
        now_ms: u64,
        timeout_ms: Option<u64>,
    ) -> PyResult<(u64, String)> {
        let payload = match payload {
            Some(p) => json::from_py(p)?,
            None => serde_json::Value::Object(Default::default()),
        };
        if timeout_ms == Some(0) {
            return Err(PyValueError::new_err(
                "timeout_ms is 0: pass None to wait without a deadline",
            ));
        }
        let now = self.at(now_ms)?;
        let (id, request_id) = self
            .inner
            .bulk_request(label, payload, timeout_ms.map(Duration::from_millis), now)
            .map_err(|e| send_error(py, e))?;
        self.sent_any = true;
        Ok((id, request_id))
    }

    /// Stops waiting for `request_id`: a late response comes with `request` False.
    fn forget_bulk_request(&mut self, request_id: &str) {
        self.inner.forget_bulk_request(request_id);
    }

    /// Starts closing at `now_ms`: sends are refused (ClosedError); queued messages are
    /// delivered until `deadline_ms`, then UNSUBSCRIBE and DISCONNECT. The "closed" event ends
    /// it, by the deadline at the latest (keep calling `handle_timeout`).
    fn close(&mut self, deadline_ms: u64, now_ms: u64) -> PyResult<()> {
        let now = self.at(now_ms)?;
        self.inner.close(Instant::from_millis(deadline_ms), now);
        Ok(())
    }

    /// The counters, as a dict (the keys of `Device.stats`).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, self.inner.stats())
    }

    /// The value of `key` in the DDP mirror, or `default`.
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

    /// The DDP mirror's contents as a dict, keys in order.
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

    fn __repr__(&self) -> String {
        format!(
            "Engine(device_id={}, connected={}, pending={}, closed={})",
            self.inner.device_id(),
            self.inner.is_connected(),
            self.inner.pending(),
            self.inner.is_closed()
        )
    }
}
