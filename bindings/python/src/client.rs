//! The managed client for Python: a mode-core `Client` on a small tokio runtime of its own, and
//! one dispatcher thread that attaches to Python to hand notifications to the `mode` package.
//! Every wait releases the GIL and wakes every 100 ms to let Ctrl-C through; the IO threads
//! never run Python code except to complete an asyncio future.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use mode_client::{
    Client as CoreClient, ClientConfig, ClientError, Delivery, DisconnectReason, FullQueuePolicy,
    Notification, Notifications, SyncPolicy, Transport,
};
use mode_core::backoff::BackoffPolicy;
use mode_core::ddp::Change;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Notify;

use crate::errors::{client_error, config_error, raise};
use crate::json;
use crate::log;
use crate::mirror::qos_arg;
use crate::types::{BulkResponse, Command, KvChange};

/// How often a blocking wait comes back to check for Ctrl-C.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Inner {
    handle: Handle,
    runtime: Mutex<Option<Runtime>>,
    config: Mutex<Option<ClientConfig>>,
    client: OnceLock<CoreClient>,
    stopping: AtomicBool,
    stop: Notify,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    dispatcher_id: OnceLock<ThreadId>,
    /// Blocking waits in progress: the runtime they drive is shut down only once they left.
    waits: AtomicUsize,
}

/// Counts one blocking wait for as long as it lives.
struct WaitGuard<'a>(&'a AtomicUsize);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Inner {
    /// Waits for `fut` with the GIL released, checking for signals every 100 ms. Fails with
    /// `ClosedError` once the device is shutting down, so no wait outlives its runtime.
    fn wait<F>(&self, py: Python<'_>, fut: F) -> PyResult<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        self.waits.fetch_add(1, Ordering::SeqCst);
        let _guard = WaitGuard(&self.waits);
        let mut fut = pin!(fut);
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return Err(raise(
                    py,
                    "ClosedError",
                    ("the device was closed while waiting",),
                ));
            }
            let step = py.detach(|| {
                self.handle
                    .block_on(async { tokio::time::timeout(SIGNAL_CHECK, fut.as_mut()).await })
            });
            match step {
                Ok(output) => return Ok(output),
                Err(_) => py.check_signals()?,
            }
        }
    }

    /// Ends the dispatcher (joined unless this is it) and the runtime. Idempotent.
    fn shutdown(&self, py: Python<'_>) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_one();
        let on_dispatcher = self.dispatcher_id.get() == Some(&std::thread::current().id());
        if !on_dispatcher && let Some(thread) = lock(&self.dispatcher).take() {
            py.detach(|| {
                let _ = thread.join();
            });
        }
        // Waits on other threads notice `stopping` within one slice (100 ms).
        py.detach(|| {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while self.waits.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        if let Some(runtime) = lock(&self.runtime).take() {
            py.detach(|| runtime.shutdown_timeout(Duration::from_secs(1)));
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
        // Forgotten without close(): stop without waiting (this may run inside a GC pass).
        self.inner.stopping.store(true, Ordering::Release);
        self.inner.stop.notify_one();
        if let Some(runtime) = lock(&self.inner.runtime).take() {
            runtime.shutdown_background();
        }
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
        outbox_group_commit = 0.0
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
    ) -> PyResult<Self> {
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
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mode-io")
            .enable_all()
            .build()
            .map_err(|e| {
                raise(
                    py,
                    "ModeError",
                    (format!("cannot start the IO runtime: {e}"),),
                )
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                handle: runtime.handle().clone(),
                runtime: Mutex::new(Some(runtime)),
                config: Mutex::new(Some(config)),
                client: OnceLock::new(),
                stopping: AtomicBool::new(false),
                stop: Notify::new(),
                dispatcher: Mutex::new(None),
                dispatcher_id: OnceLock::new(),
                waits: AtomicUsize::new(0),
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
        if lock(&self.inner.runtime).is_none() {
            return Err(raise(py, "ClosedError", ("the device is closed",)));
        }
        let (client, notifications) = {
            let _entered = self.inner.handle.enter();
            CoreClient::connect(config).map_err(|e| client_error(py, e))?
        };
        let _ = self.inner.client.set(client);
        let inner = self.inner.clone();
        let thread = std::thread::Builder::new()
            .name("mode-dispatch".into())
            .spawn(move || dispatch_loop(inner, notifications, dispatch))
            .map_err(|e| {
                raise(
                    py,
                    "ModeError",
                    (format!("cannot start the dispatcher: {e}"),),
                )
            })?;
        let _ = self.inner.dispatcher_id.set(thread.thread().id());
        *lock(&self.inner.dispatcher) = Some(thread);
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
    /// will be called with `(ok, result)`.
    #[pyo3(signature = (event_type, data = None, qos = 1, on_done = None))]
    fn send_event(
        &self,
        py: Python<'_>,
        event_type: String,
        data: Option<&Bound<'_, PyAny>>,
        qos: u8,
        on_done: Option<Py<PyAny>>,
    ) -> PyResult<bool> {
        let data = json::object_arg(data)?;
        let qos = qos_arg(qos)?;
        let client = self.client(py)?.clone();
        self.queue(
            py,
            async move { client.send_event(&event_type, data, qos).await },
            on_done,
        )
    }

    /// Queues a DDP write of `key` (see `send_event` for the result).
    #[pyo3(signature = (key, value, on_done = None))]
    fn kv_set(
        &self,
        py: Python<'_>,
        key: String,
        value: &Bound<'_, PyAny>,
        on_done: Option<Py<PyAny>>,
    ) -> PyResult<bool> {
        let value = json::from_py(value)?;
        let client = self.client(py)?.clone();
        self.queue(py, async move { client.kv_set(&key, value).await }, on_done)
    }

    /// Queues a DDP delete of `key`.
    #[pyo3(signature = (key, on_done = None))]
    fn kv_delete(&self, py: Python<'_>, key: String, on_done: Option<Py<PyAny>>) -> PyResult<bool> {
        let client = self.client(py)?.clone();
        self.queue(py, async move { client.kv_delete(&key).await }, on_done)
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
        if lock(&self.inner.runtime).is_none() {
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

    /// Stops the dispatcher thread and the IO runtime (after `close`). Idempotent.
    fn shutdown(&self, py: Python<'_>) {
        lock(&self.inner.config).take();
        self.inner.shutdown(py);
    }

    /// True once `shutdown` ran (or the device was never startable again).
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.inner.runtime).is_none()
    }
}

impl Client {
    fn client(&self, py: Python<'_>) -> PyResult<&CoreClient> {
        if lock(&self.inner.runtime).is_none() {
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
                self.inner.handle.spawn(async move {
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
    fn queue<F>(&self, py: Python<'_>, fut: F, on_done: Option<Py<PyAny>>) -> PyResult<bool>
    where
        F: Future<Output = Result<Delivery, ClientError>> + Send + 'static,
    {
        let mut fut = Box::pin(fut);
        if let Poll::Ready(outcome) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            outcome.map_err(|e| client_error(py, e))?;
            return Ok(true);
        }
        debug_assert_eq!(self.full_queue, FullQueuePolicy::Block);
        let waits_here = on_done.is_none();
        self.run(py, async move { fut.await.map(|_| ()) }, on_done, none)?;
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

/// Why the dispatcher woke up.
enum Wake {
    Stop,
    Note(Notification),
    Log,
}

/// The dispatcher: waits (detached) for the next notification, then attaches and hands it to
/// Python. Ends when the client closes, at shutdown, or when the interpreter is finalizing.
fn dispatch_loop(inner: Arc<Inner>, mut notifications: Notifications, dispatch: Py<PyAny>) {
    loop {
        if inner.stopping.load(Ordering::Acquire) {
            break;
        }
        let next = inner.handle.block_on(async {
            tokio::select! {
                biased;
                _ = inner.stop.notified() => Wake::Stop,
                note = notifications.recv() => note.map_or(Wake::Stop, Wake::Note),
                _ = log::ready() => Wake::Log,
            }
        });
        let note = match next {
            Wake::Stop => None,
            Wake::Log => None,
            Wake::Note(note) => Some(note),
        };
        if inner.stopping.load(Ordering::Acquire) {
            // What arrived before the stop is handed over, not dropped: a closed device's
            // handlers have then seen every change its mirror shows. Only what is already
            // queued (at most the channel's capacity), so a stop never waits for the network.
            let _ = Python::try_attach(|py| {
                log::drain(py);
                for note in note
                    .into_iter()
                    .chain(std::iter::from_fn(|| notifications.try_recv()))
                {
                    deliver(py, &dispatch, note);
                }
            });
            break;
        }
        let attached = Python::try_attach(|py| {
            log::drain(py);
            if let Some(note) = note {
                deliver(py, &dispatch, note);
            }
        });
        if attached.is_none() {
            break;
        }
    }
    // Dropped here without the GIL: pyo3 defers the decref until Python is next attached.
    drop(dispatch);
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

fn deliver(py: Python<'_>, dispatch: &Py<PyAny>, note: Notification) {
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
        Notification::KvSet {
            rev,
            key,
            value,
            previous,
        } => {
            let change = Change::Set {
                key,
                value,
                previous,
            };
            kv(rev, false, vec![KvChange::from_core(py, &change)?])?
        }
        Notification::KvDeleted { rev, key, previous } => {
            let change = Change::Deleted { key, previous };
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
