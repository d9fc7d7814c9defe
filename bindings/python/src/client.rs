//! The managed client for Python: a mode-core `Client` on a `mode.Runtime` (runtime.rs) shared
//! with other devices, whose dispatcher thread hands this device's notifications to the `mode`
//! package. Every wait releases the GIL and wakes every 100 ms to let Ctrl-C through; the IO
//! threads never run Python code except to complete an asyncio future.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use mode_client::{
    Client as CoreClient, ClientConfig, ClientError, Delivery, DisconnectReason, FullQueuePolicy,
    Notification, SyncPolicy, Transport,
};
use mode_core::backoff::BackoffPolicy;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::Notify;

use crate::errors::{client_error, config_error, raise};
use crate::json;
use crate::mirror::qos_arg;
use crate::runtime::{Job, Runtime, Shared, Slot, lock};
use crate::types::{BulkResponse, Command, KvChange};

/// How often a blocking wait comes back to check for Ctrl-C.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

struct Inner {
    rt: Arc<Shared>,
    config: Mutex<Option<ClientConfig>>,
    client: OnceLock<CoreClient>,
    stopping: AtomicBool,
    /// Set once `shutdown` ran.
    closed: AtomicBool,
    /// Ends the move of notifications to the dispatcher.
    stop: Arc<Notify>,
    slot: OnceLock<Arc<Slot>>,
}

/// Counts one blocking wait for as long as it lives.
struct WaitGuard<'a>(&'a Shared);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.waits.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Inner {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.rt.is_closed()
    }

    /// Waits for `fut` with the GIL released, checking for signals every 100 ms. Fails with
    /// `ClosedError` once the device or its runtime is shutting down, so no wait outlives the
    /// IO threads.
    fn wait<F>(&self, py: Python<'_>, fut: F) -> PyResult<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        self.rt.waits.fetch_add(1, Ordering::SeqCst);
        let _guard = WaitGuard(&self.rt);
        let mut fut = pin!(fut);
        loop {
            if self.stopping.load(Ordering::SeqCst) || self.rt.is_closed() {
                return Err(raise(
                    py,
                    "ClosedError",
                    ("the device was closed while waiting",),
                ));
            }
            let step = py.detach(|| {
                self.rt
                    .handle
                    .block_on(async { tokio::time::timeout(SIGNAL_CHECK, fut.as_mut()).await })
            });
            match step {
                Ok(output) => return Ok(output),
                Err(_) => py.check_signals()?,
            }
        }
    }

    /// Ends the move of notifications and waits until the dispatcher handed over the last
    /// one (not on the dispatcher itself: from a handler it returns at once). Idempotent.
    fn shutdown(&self, py: Python<'_>, handover: Duration) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_one();
        if !self.closed.swap(true, Ordering::AcqRel)
            && !handover.is_zero()
            && !self.rt.on_dispatcher()
            && let Some(slot) = self.slot.get()
        {
            self.rt.wait_finished(py, slot, handover);
        }
    }
}

/// One device's connection (the native half of `mode.Device` and `mode.AsyncDevice`).
#[pyclass(module = "mode._mode", frozen)]
pub struct Client {
    inner: Arc<Inner>,
    full_queue: FullQueuePolicy,
}

impl Drop for Client {
    fn drop(&mut self) {
        // Forgotten without close() (perhaps inside a GC pass): stop without waiting. The core
        // client closes at once when its last handle goes, with this object.
        self.inner.stopping.store(true, Ordering::Release);
        self.inner.stop.notify_one();
    }
}

fn secs(what: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        PyValueError::new_err(format!("{what} must be a number of seconds >= 0, got {s}"))
    })
}

type Convert<T> = fn(Python<'_>, T) -> PyResult<Py<PyAny>>;

fn none(py: Python<'_>, (): ()) -> PyResult<Py<PyAny>> {
    Ok(py.None())
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (
        device_id, api_key, *, transport = "mqtt", host = None, port = None, api_url = None,
        ws_url = None, tls = true, ca_file = None, client_cert = None, client_key = None,
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
        ws_url: Option<String>,
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
        let transport = match transport {
            "mqtt" => Transport::Mqtt,
            "mqtt-ws" => Transport::MqttWebSocket,
            "http" => Transport::Http,
            other => {
                return Err(PyValueError::new_err(format!(
                    "transport {other:?} is unknown: use \"mqtt\", \"mqtt-ws\" or \"http\""
                )));
            }
        };
        let full_queue = match full_queue_policy {
            "block" => FullQueuePolicy::Block,
            "drop-oldest" => FullQueuePolicy::DropOldest,
            "error" => FullQueuePolicy::Error,
            other => {
                return Err(PyValueError::new_err(format!(
                    "full_queue_policy {other:?} is unknown: use \"block\", \"drop-oldest\" or \"error\""
                )));
            }
        };
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
        if !tls {
            b = b.plain_tcp();
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
        if let Some(url) = ws_url {
            b = b.mqtt_ws_url(url);
        }
        if let Some(ca) = ca_file {
            b = b.extra_ca_file(ca);
        }
        let sync = match outbox_sync {
            "group" => SyncPolicy::GroupCommit(secs("outbox_group_commit", outbox_group_commit)?),
            "every-message" => SyncPolicy::EveryMessage,
            other => {
                return Err(PyValueError::new_err(format!(
                    "outbox_sync {other:?} is unknown: use \"group\" or \"every-message\""
                )));
            }
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
            inner: Arc::new(Inner {
                rt,
                config: Mutex::new(Some(config)),
                client: OnceLock::new(),
                stopping: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                stop: Arc::new(Notify::new()),
                slot: OnceLock::new(),
            }),
            full_queue,
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
        let client = self.client(py)?.clone();
        self.queue(
            py,
            async move { client.send_event(&event_type, data, qos).await },
            on_done,
            on_delivered,
        )
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
        let client = self.client(py)?.clone();
        self.queue(
            py,
            async move { client.kv_set(&key, value).await },
            on_done,
            on_delivered,
        )
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
        let client = self.client(py)?.clone();
        self.queue(
            py,
            async move { client.kv_delete(&key).await },
            on_done,
            on_delivered,
        )
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
        let client = self.client(py)?.clone();
        self.queue(
            py,
            async move { client.send_bulk_data(&label, &data, qos).await },
            on_done,
            None,
        )
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
        let client = self.client(py)?.clone();
        let convert: Convert<mode_core::proto::BulkDataResponse> =
            |py, r| Ok(Py::new(py, BulkResponse::from_core(py, &r)?)?.into_any());
        self.run(
            py,
            async move { client.bulk_request(&label, payload, timeout).await },
            on_done,
            convert,
        )
    }

    /// What the cloud knows of the device (`GET /devices/{id}`), as a dict.
    #[pyo3(signature = (on_done = None))]
    fn info(&self, py: Python<'_>, on_done: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        let client = self.client(py)?.clone();
        let convert: Convert<mode_core::proto::DeviceInfo> =
            |py, info| Ok(json::map_to_py(py, &info.raw)?.into_any().unbind());
        self.run(
            py,
            async move { client.device_info().await },
            on_done,
            convert,
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

    /// The client's counters, as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.client(py)?.stats();
        crate::types::stats_dict(py, &s)
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
        let Some(client) = self.inner.client.get().cloned() else {
            lock(&self.inner.config).take();
            return match on_done {
                Some(cb) => cb.call1(py, (true, py.None())),
                None => Ok(py.None()),
            };
        };
        if self.inner.is_closed() {
            return match on_done {
                Some(cb) => cb.call1(py, (true, py.None())),
                None => Ok(py.None()),
            };
        }
        self.run(
            py,
            async move { client.close(timeout).await },
            on_done,
            none,
        )
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

    /// Runs `fut` to completion: here with the GIL released, or (with `on_done`) on the IO
    /// runtime, calling `on_done(ok, value)` when it ends.
    fn run<T, F>(
        &self,
        py: Python<'_>,
        fut: F,
        on_done: Option<Py<PyAny>>,
        convert: Convert<T>,
    ) -> PyResult<Py<PyAny>>
    where
        F: Future<Output = Result<T, ClientError>> + Send + 'static,
        T: Send + 'static,
    {
        match on_done {
            None => match self.inner.wait(py, fut)? {
                Ok(value) => convert(py, value),
                Err(err) => Err(client_error(py, err)),
            },
            Some(cb) if self.inner.stopping.load(Ordering::SeqCst) => {
                let closed = raise(py, "ClosedError", ("the device is closed",));
                cb.call1(py, (false, closed.into_value(py)))?;
                Ok(py.None())
            }
            Some(cb) => {
                self.inner.rt.handle.spawn(async move {
                    let outcome = fut.await;
                    // None: the interpreter is shutting down and nobody awaits any more.
                    let _ = Python::try_attach(|py| complete(py, &cb, outcome, convert));
                });
                Ok(py.None())
            }
        }
    }

    /// Queues a message: the future completes on its first poll unless the queue is full
    /// under the Block policy, when it waits (here, or on the runtime with `on_done`).
    /// With `on_delivered`, a task on the IO runtime awaits the message's outcome and queues
    /// the call for the dispatcher (a task only for the messages someone asked about).
    fn queue<F>(
        &self,
        py: Python<'_>,
        fut: F,
        on_done: Option<Py<PyAny>>,
        on_delivered: Option<Py<PyAny>>,
    ) -> PyResult<bool>
    where
        F: Future<Output = Result<Delivery, ClientError>> + Send + 'static,
    {
        let started = Instant::now();
        let rt = self.inner.rt.clone();
        let track = move |delivery: Delivery| {
            if let Some(callback) = on_delivered {
                let jobs = rt.jobs.clone();
                rt.handle.spawn(async move {
                    let outcome = delivery.await;
                    let elapsed = started.elapsed();
                    let job = Job::Delivered {
                        callback,
                        outcome,
                        elapsed,
                    };
                    let _ = jobs.send(job).await;
                });
            }
        };
        let mut fut = Box::pin(fut);
        if let Poll::Ready(outcome) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            track(outcome.map_err(|e| client_error(py, e))?);
            return Ok(true);
        }
        debug_assert_eq!(self.full_queue, FullQueuePolicy::Block);
        let waits_here = on_done.is_none();
        let waited = async move { fut.await.map(track) };
        self.run(py, waited, on_done, none)?;
        Ok(waits_here)
    }
}

fn complete<T>(
    py: Python<'_>,
    cb: &Py<PyAny>,
    outcome: Result<T, ClientError>,
    convert: Convert<T>,
) {
    let (ok, value) = match outcome
        .map_err(|e| client_error(py, e))
        .and_then(|v| convert(py, v))
    {
        Ok(value) => (true, value),
        Err(err) => (false, err.into_value(py).into_any()),
    };
    // A failure here means the event loop is closed: nobody is waiting for the result.
    let _ = cb.call1(py, (ok, value));
}

fn disconnect_kind(reason: &DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::AuthFailed(_) => "auth",
        DisconnectReason::Tls(_) => "tls",
        DisconnectReason::Network(_) => "network",
        DisconnectReason::KeepaliveTimeout(_) => "keepalive",
        DisconnectReason::Closed => "closed",
    }
}

pub(crate) fn deliver(py: Python<'_>, dispatch: &Py<PyAny>, note: Notification) {
    let args = match notification_args(py, note) {
        Ok(args) => args,
        Err(err) => {
            err.write_unraisable(py, Some(dispatch.bind(py)));
            return;
        }
    };
    if let Err(err) = dispatch.call1(py, args) {
        // The package's dispatcher logs handler errors itself; this is a last resort.
        err.write_unraisable(py, Some(dispatch.bind(py)));
    }
}

fn notification_args(py: Python<'_>, note: Notification) -> PyResult<(&'static str, Py<PyAny>)> {
    let kv =
        |rev: u64, reload: bool, changes: Vec<KvChange>| -> PyResult<(&'static str, Py<PyAny>)> {
            Ok((
                "kv",
                (rev, reload, changes)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind(),
            ))
        };
    Ok(match note {
        Notification::Connected => ("connected", py.None()),
        Notification::Disconnected { reason, retry_in } => {
            let retry = retry_in.map(|d| d.as_secs_f64());
            let payload = (disconnect_kind(&reason), reason.to_string(), retry);
            (
                "disconnected",
                payload.into_pyobject(py)?.into_any().unbind(),
            )
        }
        Notification::Command(command) => (
            "command",
            Py::new(py, Command::from_core(py, &command)?)?.into_any(),
        ),
        Notification::KvReloaded { rev, diff } => kv(rev, true, KvChange::list(py, &diff)?)?,
        Notification::KvChanged { rev, change } => {
            kv(rev, false, vec![KvChange::from_core(py, &change)?])?
        }
        Notification::BulkResponse { response, .. } => (
            "bulk_response",
            Py::new(py, BulkResponse::from_core(py, &response)?)?.into_any(),
        ),
        Notification::Error { topic, error } => (
            "warning",
            format!("ignored a malformed message on {topic}: {error}")
                .into_pyobject(py)?
                .into_any()
                .unbind(),
        ),
        Notification::MessageDropped { topic, total } => (
            "warning",
            format!(
                "dropped a queued message for {topic}: the queue is full ({total} dropped so far)"
            )
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        ),
        Notification::Lagged { missed } => (
            "warning",
            format!("handlers fell behind: {missed} notifications were dropped")
                .into_pyobject(py)?
                .into_any()
                .unbind(),
        ),
    })
}
