//! The managed client for Python, `mode._mode.Client`: a mode-client `Client` on a
//! `mode.Runtime` (runtime.rs) shared with other devices, whose dispatcher thread hands this
//! device's notifications (notify.rs) to the `mode` package. Its keyword options are
//! `mode.DeviceOptions` (`_options.py`); how its calls wait or complete is calls.rs. The IO
//! threads never run Python code except to complete an asyncio future.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mode_client::{
    Client as CoreClient, ClientConfig, ClientError, Delivery, FullQueuePolicy, SyncPolicy,
    Transport,
};
use mode_core::backoff::BackoffPolicy;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::calls::{Convert, Inner, none};
use crate::errors::{choose, client_error, config_error, raise};
use crate::json;
use crate::mirror::qos_arg;
use crate::runtime::{Runtime, lock};
use crate::types::BulkResponse;

/// One device's connection (the native half of `mode.Device` and `mode.AsyncDevice`).
#[pyclass(module = "mode._mode", frozen)]
pub struct Client {
    inner: Arc<Inner>,
    transport: &'static str,
}

impl Drop for Client {
    fn drop(&mut self) {
        // Forgotten without close() (perhaps inside a GC pass): stop without waiting. The core
        // client closes at once when its last handle goes, with this object.
        self.inner.stop();
    }
}

fn secs(what: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        PyValueError::new_err(format!("{what} must be a number of seconds >= 0, got {s}"))
    })
}

/// How the outbox syncs, before `outbox_group_commit` is known.
#[derive(Clone, Copy)]
enum Sync {
    Group,
    EveryMessage,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (
        device_id, api_key, *, transport = "mqtt", host = None, port = None, api_url = None,
        mqtt_ws_url = None, ws_url = None, plain = false, tls = true, ca_file = None, client_cert = None, client_key = None,
        danger_accept_invalid_certs = false, keepalive = 60.0, connect_timeout = 10.0,
        request_timeout = 30.0, queue_size = 10_000, full_queue_policy = "block",
        max_message_size = 1_048_576, max_inflight = 100, backoff_unit = 1.0, backoff_cap = 60.0,
        outbox_dir = None, outbox_max_bytes = 67_108_864, outbox_sync = "group",
        outbox_group_commit = 0.0, runtime
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        device_id: u64,
        api_key: String,
        transport: &str,
        host: Option<String>,
        port: Option<u16>,
        api_url: Option<String>,
        mqtt_ws_url: Option<String>,
        ws_url: Option<String>,
        plain: bool,
        tls: bool,
        ca_file: Option<std::path::PathBuf>,
        client_cert: Option<std::path::PathBuf>,
        client_key: Option<std::path::PathBuf>,
        danger_accept_invalid_certs: bool,
        keepalive: f64,
        connect_timeout: f64,
        request_timeout: f64,
        queue_size: usize,
        full_queue_policy: &str,
        max_message_size: usize,
        max_inflight: u16,
        backoff_unit: f64,
        backoff_cap: f64,
        outbox_dir: Option<std::path::PathBuf>,
        outbox_max_bytes: usize,
        outbox_sync: &str,
        outbox_group_commit: f64,
        runtime: PyRef<'_, Runtime>,
    ) -> PyResult<Self> {
        let rt = runtime.shared.clone();
        if rt.is_closed() {
            return Err(raise(py, "ClosedError", ("the runtime is closed",)));
        }
        let (transport, transport_name) = choose(
            py,
            "transport",
            transport,
            &[
                ("mqtt", (Transport::Mqtt, "mqtt")),
                (
                    "mqtt-websocket",
                    (Transport::MqttWebSocket, "mqtt-websocket"),
                ),
                // The name before the naming table, kept for code written against it.
                ("mqtt-ws", (Transport::MqttWebSocket, "mqtt-websocket")),
                ("http", (Transport::Http, "http")),
            ],
        )?;
        let full_queue = choose(
            py,
            "full_queue_policy",
            full_queue_policy,
            &[
                ("block", FullQueuePolicy::Block),
                ("drop-oldest", FullQueuePolicy::DropOldest),
                ("error", FullQueuePolicy::Error),
            ],
        )?;
        let mut b = ClientConfig::builder(device_id, api_key)
            .transport(transport)
            .keepalive(secs("keepalive", keepalive)?)
            .connect_timeout(secs("connect_timeout", connect_timeout)?)
            .request_timeout(secs("request_timeout", request_timeout)?)
            .queue_size(queue_size)
            .full_queue_policy(full_queue)
            .max_message_size(max_message_size)
            .max_inflight(max_inflight)
            .danger_accept_invalid_certs(danger_accept_invalid_certs)
            .backoff(BackoffPolicy {
                unit: secs("backoff_unit", backoff_unit)?,
                cap: secs("backoff_cap", backoff_cap)?,
                ..BackoffPolicy::default()
            });
        // `tls=False`: the name `plain=True` had before the naming table, kept.
        if plain || !tls {
            b = b.plain();
        }
        // `host`/`port` name the server of the chosen transport (mode-client derives its URL;
        // without `api_url` a non-HTTP server leaves `info()` a clear ConfigError); explicit
        // URLs win.
        match (host, port) {
            (Some(host), port) => b = b.server(host, port),
            (None, Some(port)) => b = b.mqtt_port(port),
            (None, None) => {}
        }
        if let Some(url) = api_url {
            b = b.api_url(url);
        }
        // `ws_url`: the name `mqtt_ws_url` had before the naming table, kept.
        if let Some(url) = mqtt_ws_url.or(ws_url) {
            b = b.mqtt_ws_url(url);
        }
        if let Some(ca) = ca_file {
            b = b.ca_file(ca);
        }
        let sync = match choose(
            py,
            "outbox_sync",
            outbox_sync,
            &[
                ("group", Sync::Group),
                ("every-message", Sync::EveryMessage),
            ],
        )? {
            Sync::Group => {
                SyncPolicy::GroupCommit(secs("outbox_group_commit", outbox_group_commit)?)
            }
            Sync::EveryMessage => SyncPolicy::EveryMessage,
        };
        if let Some(dir) = outbox_dir {
            b = b
                .outbox_dir(dir)
                .outbox_max_bytes(outbox_max_bytes)
                .outbox_sync(sync);
        }
        match (client_cert, client_key) {
            (Some(cert), Some(key)) => b = b.client_cert(cert, key),
            (None, None) => {}
            _ => {
                return Err(PyValueError::new_err(
                    "client_cert and client_key go together: pass both PEM files or neither",
                ));
            }
        }
        let config = b.build().map_err(|e| config_error(py, e))?;
        Ok(Client {
            inner: Arc::new(Inner::new(rt, config, full_queue)),
            transport: transport_name,
        })
    }

    /// Starts connecting in the background; `dispatch(kind, payload)` receives every
    /// notification on the dispatcher thread.
    fn start(&self, py: Python<'_>, dispatch: Py<PyAny>) -> PyResult<()> {
        let config = lock(&self.inner.config).take();
        let Some(config) = config else {
            return Err(raise(
                py,
                "ModeError",
                ("the device is already started or closed",),
            ));
        };
        if self.inner.is_closed() {
            return Err(raise(py, "ClosedError", ("the device is closed",)));
        }
        let rt = &self.inner.rt;
        let (client, notifications) =
            CoreClient::connect_in(&rt.core, config).map_err(|e| client_error(py, e))?;
        let _ = self.inner.client.set(client);
        let slot = rt.attach(notifications, dispatch, self.inner.stop.clone());
        let _ = self.inner.slot.set(slot);
        Ok(())
    }

    /// True while connected and subscribed.
    #[getter]
    fn connected(&self) -> bool {
        self.inner
            .client
            .get()
            .is_some_and(CoreClient::is_connected)
    }

    /// The device id.
    #[getter]
    fn device_id(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.client(py)?.device_id())
    }

    /// The transport: "mqtt", "mqtt-websocket" or "http" (given as "mqtt-ws", also "mqtt-websocket").
    #[getter]
    fn transport(&self) -> &'static str {
        self.transport
    }

    /// Queues an event; returns True, or False when it waits for queue room and `on_done`
    /// will be called with `(ok, result)`. `on_delivered(error, seconds)` is called on the
    /// runtime's dispatcher when the cloud acknowledged it (error None) or it was dropped or
    /// given up, with the seconds since this call.
    #[pyo3(signature = (event_type, data = None, qos = 1, on_done = None, on_delivered = None))]
    fn send_event(
        &self,
        py: Python<'_>,
        event_type: String,
        data: Option<&Bound<'_, PyAny>>,
        qos: u8,
        on_done: Option<Py<PyAny>>,
        on_delivered: Option<Py<PyAny>>,
    ) -> PyResult<bool> {
        let data = json::object_arg(data)?;
        let qos = qos_arg(qos)?;
        self.queue(py, on_done, on_delivered, move |c| async move {
            c.send_event(&event_type, data, qos).await
        })
    }

    /// Queues a DDP write of `key` (see `send_event` for the result).
    #[pyo3(signature = (key, value, on_done = None, on_delivered = None))]
    fn kv_set(
        &self,
        py: Python<'_>,
        key: String,
        value: &Bound<'_, PyAny>,
        on_done: Option<Py<PyAny>>,
        on_delivered: Option<Py<PyAny>>,
    ) -> PyResult<bool> {
        let value = json::from_py(value)?;
        self.queue(py, on_done, on_delivered, move |c| async move {
            c.kv_set(&key, value).await
        })
    }

    /// Queues a DDP delete of `key`.
    #[pyo3(signature = (key, on_done = None, on_delivered = None))]
    fn kv_delete(
        &self,
        py: Python<'_>,
        key: String,
        on_done: Option<Py<PyAny>>,
        on_delivered: Option<Py<PyAny>>,
    ) -> PyResult<bool> {
        self.queue(py, on_done, on_delivered, move |c| async move {
            c.kv_delete(&key).await
        })
    }

    /// Queues raw bulk data for the module of `label`.
    #[pyo3(signature = (label, data, qos = 0, on_done = None))]
    fn send_bulk_data(
        &self,
        py: Python<'_>,
        label: String,
        data: Vec<u8>,
        qos: u8,
        on_done: Option<Py<PyAny>>,
    ) -> PyResult<bool> {
        let qos = qos_arg(qos)?;
        self.queue(py, on_done, None, move |c| async move {
            c.send_bulk_data(&label, &data, qos).await
        })
    }

    /// Sends a bulk-data request and waits up to `timeout` s for its `BulkResponse` (or, with
    /// `on_done`, returns None at once and calls it later).
    #[pyo3(signature = (label, payload = None, timeout = 10.0, on_done = None))]
    fn bulk_request(
        &self,
        py: Python<'_>,
        label: String,
        payload: Option<&Bound<'_, PyAny>>,
        timeout: f64,
        on_done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let payload = match payload {
            Some(p) => json::from_py(p)?,
            None => serde_json::Value::Object(Default::default()),
        };
        let timeout = secs("timeout", timeout)?;
        let convert: Convert<mode_core::proto::BulkDataResponse> =
            |py, r| Ok(Py::new(py, BulkResponse::from_core(py, &r)?)?.into_any());
        self.run(py, on_done, convert, move |c| async move {
            c.bulk_request(&label, payload, timeout).await
        })
    }

    /// What the cloud knows of the device (`GET /devices/{id}`), as a dict.
    #[pyo3(signature = (on_done = None))]
    fn info(&self, py: Python<'_>, on_done: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        let convert: Convert<mode_core::proto::DeviceInfo> =
            |py, info| Ok(json::map_to_py(py, &info.raw)?.into_any().unbind());
        self.run(
            py,
            on_done,
            convert,
            |c| async move { c.device_info().await },
        )
    }

    /// The value of `key` in the local mirror; raises KeyError if it holds none.
    fn kv_get<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        match self.client(py)?.kv_get(key) {
            Some(value) => json::to_py(py, &value),
            None => Err(pyo3::exceptions::PyKeyError::new_err(key.to_owned())),
        }
    }

    /// The local mirror as a dict, keys in order.
    fn kv_snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        match self.client(py)?.kv_snapshot() {
            serde_json::Value::Object(map) => json::map_to_py(py, &map),
            _ => Ok(PyDict::new(py)),
        }
    }

    /// The mirror's revision, None before the first reload.
    fn kv_rev(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        Ok(self.client(py)?.kv_rev())
    }

    /// The client's counters, as a `mode.Stats`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::types::stats(py, &self.client(py)?.stats())
    }

    /// Delivers what is queued (up to `timeout` s), disconnects; with `on_done`, returns at
    /// once and calls it when done. Call `shutdown()` after. Raises TimeoutError when messages
    /// were left undelivered.
    #[pyo3(signature = (timeout = 5.0, on_done = None))]
    fn close(
        &self,
        py: Python<'_>,
        timeout: f64,
        on_done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let timeout = secs("timeout", timeout)?;
        let client = match self.inner.client.get() {
            Some(client) if !self.inner.is_closed() => client.clone(),
            // Never started (it never will be now), or already shut down: nothing to deliver.
            _ => {
                lock(&self.inner.config).take();
                return match on_done {
                    Some(cb) => cb.call1(py, (true, py.None())),
                    None => Ok(py.None()),
                };
            }
        };
        let closing = async move { client.close(timeout).await };
        self.inner.run(py, closing, on_done, none)
    }

    /// Stops handing this device's notifications to Python (after `close`: once the last
    /// one that arrived was handed over, unless called from a handler, or once the dispatcher
    /// ran nothing for `handover` s, stuck in a handler; 0: never waits). Idempotent.
    #[pyo3(signature = (handover = 10.0))]
    fn shutdown(&self, py: Python<'_>, handover: f64) -> PyResult<()> {
        let handover = secs("handover", handover)?;
        lock(&self.inner.config).take();
        self.inner.shutdown(py, handover);
        Ok(())
    }

    /// True once `shutdown` ran (or the device was never startable again).
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }
}

impl Client {
    fn client(&self, py: Python<'_>) -> PyResult<&CoreClient> {
        if self.inner.is_closed() {
            return Err(raise(py, "ClosedError", ("the device is closed",)));
        }
        self.inner.client.get().ok_or_else(|| {
            raise(
                py,
                "ModeError",
                ("the device is not connected yet: call connect() first",),
            )
        })
    }

    /// Queues what `send` asks of the core client (see `Inner::queue`).
    fn queue<F>(
        &self,
        py: Python<'_>,
        on_done: Option<Py<PyAny>>,
        on_delivered: Option<Py<PyAny>>,
        send: impl FnOnce(CoreClient) -> F,
    ) -> PyResult<bool>
    where
        F: Future<Output = Result<Delivery, ClientError>> + Send + 'static,
    {
        let client = self.client(py)?.clone();
        self.inner.queue(py, send(client), on_done, on_delivered)
    }

    /// Runs what `call` asks of the core client (see `Inner::run`).
    fn run<T, F>(
        &self,
        py: Python<'_>,
        on_done: Option<Py<PyAny>>,
        convert: Convert<T>,
        call: impl FnOnce(CoreClient) -> F,
    ) -> PyResult<Py<PyAny>>
    where
        F: Future<Output = Result<T, ClientError>> + Send + 'static,
        T: Send + 'static,
    {
        let client = self.client(py)?.clone();
        self.inner.run(py, call(client), on_done, convert)
    }
}
