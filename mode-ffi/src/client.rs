//! `mode_client_*`: the managed device client for C. Each client owns a small tokio runtime
//! (the connection task) and one dispatcher thread that runs the application's callbacks, so a
//! slow callback never stalls the connection, and a callback may call any function of the
//! client, ::mode_client_free included.

use std::ffi::{c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use mode_client::{Client, ClientConfig, ClientError, Notification, Notifications, Stats};
use mode_core::ddp::Change;
use mode_core::proto::{BulkDataResponse, Qos};
use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc};

use crate::config::ModeConfig;
use crate::mirror::{ModeChangeCb, ModeChangeKind, report_change};
use crate::session::ModeCommandCb;
use crate::util::{borrow, bytes_arg, json_arg, str_arg, write_out, write_text};
use crate::{ModeStatus, ffi_guard};

/// A connected device. Every function taking a `const mode_client_t *` may be called from any
/// thread at any time, callbacks included.
pub struct ModeClient {
    inner: Arc<Inner>,
}

/// Receives connection changes: `connected` true once connected and subscribed; false with a
/// `reason` (borrowed text) and `retry_in_ms` (-1 when no retry follows) when it ends.
pub type ModeConnectionCb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        connected: bool,
        reason: *const c_char,
        reason_len: usize,
        retry_in_ms: i64,
    ),
>;

/// Receives the outcome of a ::mode_client_bulk_request: `status` is MODE_OK with the module's
/// `bulk_status` (e.g. "OK") and `payload` JSON, or an error (MODE_ERR_TIMEOUT, MODE_ERR_CLOSED)
/// with empty texts. All texts borrowed for the call.
pub type ModeBulkResultCb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        status: ModeStatus,
        request_id: *const c_char,
        request_id_len: usize,
        bulk_status: *const c_char,
        bulk_status_len: usize,
        payload: *const c_char,
        payload_len: usize,
    ),
>;

/// How serious a log line is.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeLogLevel {
    /// Something worth knowing.
    ModeLogInfo = 1,
    /// Something went wrong and was handled (a malformed message, a dropped message).
    ModeLogWarn = 2,
}

/// Receives a log line (borrowed text, no newline).
pub type ModeLogCb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        level: ModeLogLevel,
        message: *const c_char,
        message_len: usize,
    ),
>;

/// Frees a callback's userdata when the client no longer needs it.
pub type ModeFreeUserdataCb = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// Counters of one client (see ::mode_client_stats).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModeStats {
    /// Messages accepted for sending.
    pub messages_queued: u64,
    /// Messages written to the network (re-sends included).
    pub messages_sent: u64,
    /// QoS 1 messages acknowledged by the cloud.
    pub messages_acked: u64,
    /// Messages dropped by the full-queue policy.
    pub messages_dropped: u64,
    /// Messages waiting for delivery now.
    pub pending: u64,
    /// Connections made after the first.
    pub reconnects: u64,
    /// Connection attempts.
    pub connection_attempts: u64,
    /// DDP sync messages applied.
    pub kv_applied: u64,
    /// DDP sync messages ignored as stale or duplicate.
    pub kv_stale: u64,
    /// DDP sync messages that could not be decoded.
    pub kv_invalid: u64,
    /// Commands received.
    pub commands_received: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Notifications dropped because the application fell behind.
    pub notifications_dropped: u64,
}

/// One registered callback: the function, its userdata, and how to free the userdata.
struct Slot<F> {
    cb: Option<F>,
    userdata: *mut c_void,
    free_userdata: ModeFreeUserdataCb,
}

impl<F> Default for Slot<F> {
    fn default() -> Self {
        Slot {
            cb: None,
            userdata: std::ptr::null_mut(),
            free_userdata: None,
        }
    }
}

impl<F> Slot<F> {
    fn release(&mut self) {
        if let Some(free) = self.free_userdata.take() {
            unsafe { free(self.userdata) };
        }
        self.cb = None;
    }
}

type CommandFn = unsafe extern "C" fn(*mut c_void, *const c_char, usize, *const c_char, usize);
type ChangeFn = unsafe extern "C" fn(
    *mut c_void,
    ModeChangeKind,
    *const c_char,
    usize,
    *const c_char,
    usize,
    *const c_char,
    usize,
);
type ConnectionFn = unsafe extern "C" fn(*mut c_void, bool, *const c_char, usize, i64);
type BulkFn = unsafe extern "C" fn(
    *mut c_void,
    ModeStatus,
    *const c_char,
    usize,
    *const c_char,
    usize,
    *const c_char,
    usize,
);
type LogFn = unsafe extern "C" fn(*mut c_void, ModeLogLevel, *const c_char, usize);

#[derive(Default)]
struct Callbacks {
    command: Slot<CommandFn>,
    kv_change: Slot<ChangeFn>,
    connection: Slot<ConnectionFn>,
    bulk: Slot<BulkFn>,
    log: Slot<LogFn>,
}

impl Callbacks {
    fn release(&mut self) {
        self.command.release();
        self.kv_change.release();
        self.connection.release();
        self.bulk.release();
        self.log.release();
    }
}

// The userdata pointers belong to the C caller, who is told (mode.h) that callbacks run on the
// library's dispatcher thread; moving them there is the documented contract.
unsafe impl Send for Callbacks {}

/// What the dispatcher hands to the callbacks besides notifications.
enum Extra {
    Bulk {
        request_id: String,
        result: Result<BulkDataResponse, ClientError>,
    },
}

struct Inner {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    config: Mutex<Option<ClientConfig>>,
    client: OnceLock<Client>,
    callbacks: Mutex<Callbacks>,
    started: AtomicBool,
    freed: AtomicBool,
    stop_dispatch: Notify,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    dispatcher_thread: OnceLock<ThreadId>,
    extra_tx: mpsc::UnboundedSender<Extra>,
    extra_rx: Mutex<Option<mpsc::UnboundedReceiver<Extra>>>,
    last_error: Mutex<String>,
}

impl Inner {
    fn fail(&self, status: ModeStatus, message: impl ToString) -> ModeStatus {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = message.to_string();
        status
    }

    fn client_error(&self, err: ClientError) -> ModeStatus {
        let status = status_of(&err);
        self.fail(status, err)
    }

    /// Runs one call on the started client; its error becomes the status and the last error.
    fn call<T>(
        &self,
        call: impl FnOnce(&Client) -> Result<T, ClientError>,
    ) -> Result<T, ModeStatus> {
        call(self.client()?).map_err(|err| self.client_error(err))
    }

    fn client(&self) -> Result<&Client, ModeStatus> {
        self.client.get().ok_or_else(|| {
            self.fail(
                ModeStatus::ModeErrInvalidState,
                "the client is not started: call mode_client_start",
            )
        })
    }
}

/// The status a client error maps to; its text goes to the client's last error.
fn status_of(err: &ClientError) -> ModeStatus {
    match err {
        ClientError::Config(_) => ModeStatus::ModeErrConfig,
        ClientError::Encode(_) => ModeStatus::ModeErrInvalidArgument,
        ClientError::MessageTooLarge { .. } => ModeStatus::ModeErrTooLarge,
        ClientError::QueueFull { .. } | ClientError::Dropped => ModeStatus::ModeErrQueueFull,
        ClientError::Closed => ModeStatus::ModeErrClosed,
        ClientError::CloseIncomplete { .. } | ClientError::Timeout(_) => ModeStatus::ModeErrTimeout,
        ClientError::Rest {
            status: 401 | 403, ..
        } => ModeStatus::ModeErrAuth,
        ClientError::Rest { .. } => ModeStatus::ModeErrRest,
        ClientError::Http(_) => ModeStatus::ModeErrConnection,
        ClientError::Decode(_) => ModeStatus::ModeErrDecode,
        ClientError::Unsupported(_) => ModeStatus::ModeErrUnsupported,
        ClientError::NoRuntime => ModeStatus::ModeErrPanic,
    }
}

fn qos_arg(qos: c_int) -> Result<Qos, ModeStatus> {
    u8::try_from(qos)
        .ok()
        .and_then(Qos::from_level)
        .ok_or(ModeStatus::ModeErrInvalidArgument)
}

/// The client behind a C pointer.
///
/// # Safety
/// `client` NULL or from ::mode_client_new, not freed.
unsafe fn inner<'a>(client: *const ModeClient) -> Result<&'a Arc<Inner>, ModeStatus> {
    Ok(&unsafe { borrow(client) }?.inner)
}

/// Creates a client from `config`, which it consumes (even on failure: do not free it after),
/// into `*out`. Nothing connects until ::mode_client_start. MODE_ERR_CONFIG: the settings cannot
/// work (the reason is in ::mode_client_last_error of no client, so it is printed to stderr by
/// nothing: call ::mode_config_validate first to read it).
///
/// # Safety
/// `config` from ::mode_config_new, not freed; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_new(
    config: *mut ModeConfig,
    out: *mut *mut ModeClient,
) -> ModeStatus {
    ffi_guard!({
        if config.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let config = unsafe { Box::from_raw(config) };
        let out = unsafe { out.as_mut() }.ok_or(ModeStatus::ModeErrNull)?;
        let config = config.build().map_err(|_| ModeStatus::ModeErrConfig)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mode-io")
            .enable_all()
            .build()
            .map_err(|_| ModeStatus::ModeErrConnection)?;
        let (extra_tx, extra_rx) = mpsc::unbounded_channel();
        let inner = Inner {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            config: Mutex::new(Some(config)),
            client: OnceLock::new(),
            callbacks: Mutex::new(Callbacks::default()),
            started: AtomicBool::new(false),
            freed: AtomicBool::new(false),
            stop_dispatch: Notify::new(),
            dispatcher: Mutex::new(None),
            dispatcher_thread: OnceLock::new(),
            extra_tx,
            extra_rx: Mutex::new(Some(extra_rx)),
            last_error: Mutex::new(String::new()),
        };
        *out = Box::into_raw(Box::new(ModeClient {
            inner: Arc::new(inner),
        }));
        Ok(())
    })
}

/// Registers one callback before start; replaces (and frees the userdata of) an earlier one.
///
/// # Safety
/// `client` NULL or from ::mode_client_new.
unsafe fn register<F>(
    client: *const ModeClient,
    pick: impl FnOnce(&mut Callbacks) -> &mut Slot<F>,
    cb: Option<F>,
    userdata: *mut c_void,
    free_userdata: ModeFreeUserdataCb,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        if inner.started.load(Ordering::Acquire) {
            return Err(inner.fail(
                ModeStatus::ModeErrInvalidState,
                "callbacks are set before mode_client_start",
            ));
        }
        let mut callbacks = inner.callbacks.lock().unwrap_or_else(|p| p.into_inner());
        let slot = pick(&mut callbacks);
        slot.release();
        *slot = Slot {
            cb,
            userdata,
            free_userdata,
        };
        Ok(())
    })
}

/// Sets the command callback (before ::mode_client_start). Every callback of a client runs on
/// its one dispatcher thread, in order; `free_userdata` (may be NULL) is called once the client
/// no longer needs `userdata` (replaced, or at ::mode_client_free).
///
/// # Safety
/// `client` from ::mode_client_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_set_command_cb(
    client: *const ModeClient,
    cb: ModeCommandCb,
    userdata: *mut c_void,
    free_userdata: ModeFreeUserdataCb,
) -> ModeStatus {
    unsafe { register(client, |c| &mut c.command, cb, userdata, free_userdata) }
}

/// Sets the DDP change callback (before start): each change of a reload's diff, then each set
/// and delete as the cloud reports them.
///
/// # Safety
/// `client` from ::mode_client_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_set_kv_cb(
    client: *const ModeClient,
    cb: ModeChangeCb,
    userdata: *mut c_void,
    free_userdata: ModeFreeUserdataCb,
) -> ModeStatus {
    unsafe { register(client, |c| &mut c.kv_change, cb, userdata, free_userdata) }
}

/// Sets the connection-state callback (before start).
///
/// # Safety
/// `client` from ::mode_client_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_set_connection_cb(
    client: *const ModeClient,
    cb: ModeConnectionCb,
    userdata: *mut c_void,
    free_userdata: ModeFreeUserdataCb,
) -> ModeStatus {
    unsafe { register(client, |c| &mut c.connection, cb, userdata, free_userdata) }
}

/// Sets the bulk-request result callback (before start).
///
/// # Safety
/// `client` from ::mode_client_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_set_bulk_cb(
    client: *const ModeClient,
    cb: ModeBulkResultCb,
    userdata: *mut c_void,
    free_userdata: ModeFreeUserdataCb,
) -> ModeStatus {
    unsafe { register(client, |c| &mut c.bulk, cb, userdata, free_userdata) }
}

/// Sets the log callback (before start): connection changes, malformed messages from the cloud,
/// messages dropped by the queue policy.
///
/// # Safety
/// `client` from ::mode_client_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_set_log_cb(
    client: *const ModeClient,
    cb: ModeLogCb,
    userdata: *mut c_void,
    free_userdata: ModeFreeUserdataCb,
) -> ModeStatus {
    unsafe { register(client, |c| &mut c.log, cb, userdata, free_userdata) }
}

/// Starts connecting (in the background; the connection callback says when it is up) and starts
/// the dispatcher thread. Messages sent before the connection is up are queued.
///
/// # Safety
/// `client` from ::mode_client_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_start(client: *const ModeClient) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        if inner.started.swap(true, Ordering::AcqRel) {
            return Err(inner.fail(
                ModeStatus::ModeErrInvalidState,
                "the client is already started",
            ));
        }
        let config = inner
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let config = config.ok_or(ModeStatus::ModeErrInvalidState)?;
        let (connected, notifications) = {
            let _entered = inner.handle.enter();
            Client::connect(config).map_err(|err| inner.client_error(err))?
        };
        let _ = inner.client.set(connected);
        let extra_rx = inner
            .extra_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let extra_rx = extra_rx.ok_or(ModeStatus::ModeErrInvalidState)?;
        let for_thread = inner.clone();
        let thread = std::thread::Builder::new()
            .name("mode-callbacks".into())
            .spawn(move || dispatch(for_thread, notifications, extra_rx))
            .map_err(|err| inner.fail(ModeStatus::ModeErrConnection, err))?;
        let _ = inner.dispatcher_thread.set(thread.thread().id());
        *inner.dispatcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        Ok(())
    })
}

/// The dispatcher thread: waits for the next notification outside any callback, then runs the
/// callback with no lock held, so a callback may call back into the client.
fn dispatch(
    inner: Arc<Inner>,
    mut notifications: Notifications,
    mut extra: mpsc::UnboundedReceiver<Extra>,
) {
    while !inner.freed.load(Ordering::Acquire) {
        let next = inner.handle.block_on(async {
            tokio::select! {
                biased;
                _ = inner.stop_dispatch.notified() => None,
                extra = extra.recv() => extra.map(Err),
                note = notifications.recv() => note.map(Ok),
            }
        });
        let Some(item) = next else { break };
        let callbacks = inner.callbacks.lock().unwrap_or_else(|p| p.into_inner());
        let copy = CallbackRefs::of(&callbacks);
        drop(callbacks);
        // A bug in our dispatch code must not kill the thread that serves the callbacks.
        let _ = catch_unwind(AssertUnwindSafe(|| match item {
            Ok(note) => copy.notification(note),
            Err(Extra::Bulk { request_id, result }) => copy.bulk(&request_id, result),
        }));
    }
    // Freed (possibly from inside a callback): no callback runs after this point.
    if inner.freed.load(Ordering::Acquire) {
        finish(&inner);
    }
}

/// Copies of the callbacks, taken with the lock held and used without it.
struct CallbackRefs {
    command: (Option<CommandFn>, *mut c_void),
    kv_change: (Option<ChangeFn>, *mut c_void),
    connection: (Option<ConnectionFn>, *mut c_void),
    bulk: (Option<BulkFn>, *mut c_void),
    log: (Option<LogFn>, *mut c_void),
}

impl CallbackRefs {
    fn of(c: &Callbacks) -> Self {
        CallbackRefs {
            command: (c.command.cb, c.command.userdata),
            kv_change: (c.kv_change.cb, c.kv_change.userdata),
            connection: (c.connection.cb, c.connection.userdata),
            bulk: (c.bulk.cb, c.bulk.userdata),
            log: (c.log.cb, c.log.userdata),
        }
    }

    fn log(&self, level: ModeLogLevel, message: &str) {
        if let (Some(cb), userdata) = self.log {
            unsafe { cb(userdata, level, message.as_ptr().cast(), message.len()) };
        }
    }

    fn change(&self, change: &Change) {
        let (cb, userdata) = self.kv_change;
        unsafe { report_change(cb, userdata, change) };
    }

    fn notification(&self, note: Notification) {
        match note {
            Notification::Connected => {
                self.log(ModeLogLevel::ModeLogInfo, "connected");
                if let (Some(cb), userdata) = self.connection {
                    unsafe { cb(userdata, true, std::ptr::null(), 0, -1) };
                }
            }
            Notification::Disconnected { reason, retry_in } => {
                let reason = reason.to_string();
                self.log(
                    ModeLogLevel::ModeLogInfo,
                    &format!("disconnected: {reason}"),
                );
                if let (Some(cb), userdata) = self.connection {
                    let retry =
                        retry_in.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                    unsafe { cb(userdata, false, reason.as_ptr().cast(), reason.len(), retry) };
                }
            }
            Notification::Command(command) => {
                if let (Some(cb), userdata) = self.command {
                    let parameters = Value::Object(command.parameters).to_string();
                    unsafe {
                        cb(
                            userdata,
                            command.action.as_ptr().cast(),
                            command.action.len(),
                            parameters.as_ptr().cast(),
                            parameters.len(),
                        )
                    };
                }
            }
            Notification::KvReloaded { diff, .. } => {
                diff.iter().for_each(|change| self.change(change))
            }
            Notification::KvSet {
                key,
                value,
                previous,
                ..
            } => self.change(&Change::Set {
                key,
                value,
                previous,
            }),
            Notification::KvDeleted { key, previous, .. } => {
                self.change(&Change::Deleted { key, previous })
            }
            Notification::BulkResponse { response, .. } => {
                self.bulk(&response.request_id.clone(), Ok(response))
            }
            Notification::Error { topic, error } => self.log(
                ModeLogLevel::ModeLogWarn,
                &format!("ignored a malformed message on {topic}: {error}"),
            ),
            Notification::MessageDropped { topic, total } => self.log(
                ModeLogLevel::ModeLogWarn,
                &format!(
                    "dropped a queued message for {topic} (queue full; {total} dropped so far)"
                ),
            ),
            Notification::Lagged { missed } => self.log(
                ModeLogLevel::ModeLogWarn,
                &format!("callbacks fell behind: {missed} notifications were dropped"),
            ),
        }
    }

    fn bulk(&self, request_id: &str, result: Result<BulkDataResponse, ClientError>) {
        let (Some(cb), userdata) = self.bulk else {
            return;
        };
        let (status, bulk_status, payload) = match result {
            Ok(response) => (
                ModeStatus::ModeOk,
                response.status.as_str().to_owned(),
                response.payload.to_string(),
            ),
            Err(err) => (status_of(&err), String::new(), String::new()),
        };
        unsafe {
            cb(
                userdata,
                status,
                request_id.as_ptr().cast(),
                request_id.len(),
                bulk_status.as_ptr().cast(),
                bulk_status.len(),
                payload.as_ptr().cast(),
                payload.len(),
            )
        };
    }
}

/// Frees every userdata and the runtime, after the last callback. Idempotent: the dispatcher and
/// ::mode_client_free may both call it; the second call finds nothing left.
fn finish(inner: &Inner) {
    inner
        .callbacks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .release();
    if let Some(runtime) = inner
        .runtime
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// Sends an event of `event_type` with `data_json` (a JSON object; NULL means `{}`) at QoS 0 or
/// 1. Never waits: queued for the connection (kept across reconnects), or MODE_ERR_QUEUE_FULL.
///
/// # Safety
/// `client` from ::mode_client_new; strings NUL-terminated (or NULL where allowed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_send_event(
    client: *const ModeClient,
    event_type: *const c_char,
    data_json: *const c_char,
    qos: c_int,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let event_type = unsafe { str_arg(event_type) }?;
        let Value::Object(data) = unsafe { json_arg(data_json, Value::Object(Map::new())) }? else {
            return Err(inner.fail(
                ModeStatus::ModeErrInvalidJson,
                "event data must be a JSON object",
            ));
        };
        let qos = qos_arg(qos)?;
        inner.call(|c| c.try_send_event(event_type, data, qos))?;
        Ok(())
    })
}

/// Sets DDP `key` to `value_json` (any JSON) in the cloud (QoS 1, queued like an event). The
/// local mirror changes when the cloud reports the change back (the kv callback).
///
/// # Safety
/// `client` from ::mode_client_new; strings NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_kv_set(
    client: *const ModeClient,
    key: *const c_char,
    value_json: *const c_char,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let key = unsafe { str_arg(key) }?;
        if value_json.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let value = unsafe { json_arg(value_json, Value::Null) }?;
        inner.call(|c| c.try_kv_set(key, value))?;
        Ok(())
    })
}

/// Deletes DDP `key` in the cloud (QoS 1, queued).
///
/// # Safety
/// `client` from ::mode_client_new; `key` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_kv_delete(
    client: *const ModeClient,
    key: *const c_char,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let key = unsafe { str_arg(key) }?;
        inner.call(|c| c.try_kv_delete(key))?;
        Ok(())
    })
}

/// Copies the JSON value of `key` in the local mirror and a NUL into `buf`: MODE_ERR_NOT_FOUND
/// if the mirror does not hold it, MODE_ERR_BUFFER_TOO_SMALL with `*out_len` = length needed.
///
/// # Safety
/// `client` from ::mode_client_new; `key` NUL-terminated; `buf` NULL or `buf_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_kv_get(
    client: *const ModeClient,
    key: *const c_char,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let key = unsafe { str_arg(key) }?;
        let value = inner
            .client()?
            .kv_get(key)
            .ok_or(ModeStatus::ModeErrNotFound)?;
        unsafe { write_text(value.to_string().as_bytes(), buf, buf_len, out_len) }
    })
}

/// Copies the keys of the local mirror as a JSON array of strings, in key order, into `buf`.
///
/// # Safety
/// `client` from ::mode_client_new; `buf` NULL or `buf_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_kv_keys(
    client: *const ModeClient,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let snapshot = inner.client()?.kv_snapshot();
        let keys: Vec<&String> = snapshot
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        let text = serde_json::to_string(&keys).map_err(|_| ModeStatus::ModeErrPanic)?;
        unsafe { write_text(text.as_bytes(), buf, buf_len, out_len) }
    })
}

/// Sends `data_len` bytes of bulk data to the smart module of `label` at QoS 0 or 1 (queued).
///
/// # Safety
/// `client` from ::mode_client_new; `label` NUL-terminated; `data` `data_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_send_bulk_data(
    client: *const ModeClient,
    label: *const c_char,
    data: *const u8,
    data_len: usize,
    qos: c_int,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let label = unsafe { str_arg(label) }?;
        let data = unsafe { bytes_arg(data, data_len) }?;
        let qos = qos_arg(qos)?;
        inner.call(|c| c.try_send_bulk_data(label, data, qos))?;
        Ok(())
    })
}

/// Sends a bulk-data request to `label` with `payload_json` (any JSON; NULL means `{}`); its
/// response, or MODE_ERR_TIMEOUT after `timeout_ms`, goes to the bulk callback. The request id is
/// copied into `request_id_buf` (NULL allowed: then it is not reported) as with every buffer.
///
/// # Safety
/// `client` from ::mode_client_new; strings NUL-terminated; buffer as documented.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_bulk_request(
    client: *const ModeClient,
    label: *const c_char,
    payload_json: *const c_char,
    timeout_ms: u32,
    request_id_buf: *mut c_char,
    request_id_buf_len: usize,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let label = unsafe { str_arg(label) }?;
        let payload = unsafe { json_arg(payload_json, Value::Object(Map::new())) }?;
        let pending = inner.call(|c| c.try_bulk_request(label, payload))?;
        let request_id = pending.request_id().to_owned();
        let extra = inner.extra_tx.clone();
        let timeout = Duration::from_millis(timeout_ms.into());
        let id = request_id.clone();
        inner.handle.spawn(async move {
            let result = pending.response(timeout).await;
            let _ = extra.send(Extra::Bulk {
                request_id: id,
                result,
            });
        });
        if !request_id_buf.is_null() {
            unsafe {
                write_text(
                    request_id.as_bytes(),
                    request_id_buf,
                    request_id_buf_len,
                    std::ptr::null_mut(),
                )
            }?;
        }
        Ok(())
    })
}

/// Fetches the device's info from the cloud (REST, waits up to `timeout_ms`) as JSON text into
/// `buf`.
///
/// # Safety
/// `client` from ::mode_client_new; `buf` NULL or `buf_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_device_info(
    client: *const ModeClient,
    timeout_ms: u32,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let connected = inner.client()?.clone();
        let timeout = Duration::from_millis(timeout_ms.into());
        let info = inner
            .handle
            .block_on(async move { tokio::time::timeout(timeout, connected.device_info()).await })
            .map_err(|_| inner.client_error(ClientError::Timeout(timeout)))?
            .map_err(|e| inner.client_error(e))?;
        unsafe { write_text(&info.encode(), buf, buf_len, out_len) }
    })
}

/// Writes the client's counters to `*out`.
///
/// # Safety
/// `client` from ::mode_client_new; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_stats(
    client: *const ModeClient,
    out: *mut ModeStats,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        if out.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let s: Stats = inner.client()?.stats();
        let stats = ModeStats {
            messages_queued: s.messages_queued,
            messages_sent: s.messages_sent,
            messages_acked: s.messages_acked,
            messages_dropped: s.messages_dropped,
            pending: s.pending,
            reconnects: s.reconnects,
            connection_attempts: s.connection_attempts,
            kv_applied: s.kv_applied,
            kv_stale: s.kv_stale,
            kv_invalid: s.kv_invalid,
            commands_received: s.commands_received,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            notifications_dropped: s.notifications_dropped,
        };
        unsafe { write_out(out, stats) };
        Ok(())
    })
}

/// True once connected and subscribed (false before start, while reconnecting, after stop).
///
/// # Safety
/// `client` NULL or from ::mode_client_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_is_connected(client: *const ModeClient) -> bool {
    let mut connected = false;
    let _ = ffi_guard!({
        connected = unsafe { inner(client) }?
            .client
            .get()
            .is_some_and(Client::is_connected);
        Ok(())
    });
    connected
}

/// Stops the client: unsubscribes, delivers what is queued within `timeout_ms`, disconnects.
/// MODE_ERR_TIMEOUT if messages were still undelivered at the deadline (they are given up).
/// Later sends return MODE_ERR_CLOSED. Callbacks already queued still run.
///
/// # Safety
/// `client` from ::mode_client_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_stop(
    client: *const ModeClient,
    timeout_ms: u32,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let connected = inner.client()?.clone();
        let timeout = Duration::from_millis(timeout_ms.into());
        inner
            .handle
            .block_on(async move { connected.close(timeout).await })
            .map_err(|e| inner.client_error(e))
    })
}

/// Copies the text of the client's last error ("" if none) and a NUL into `buf`. Safe from any
/// thread; the text is that of the most recent failing call on this client from any thread.
///
/// # Safety
/// `client` from ::mode_client_new; `buf` NULL or `buf_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_last_error(
    client: *const ModeClient,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let text = inner
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        unsafe { write_text(text.as_bytes(), buf, buf_len, out_len) }
    })
}

/// Destroys the client: stops it at once if running (what is queued is given up: call
/// ::mode_client_stop first to deliver it), waits for a callback in progress on another thread
/// to return, then calls each `free_userdata`. May be called from inside a callback: the client
/// is then released when that callback returns. NULL is a no-op; do not use the pointer after.
///
/// # Safety
/// `client` NULL or from ::mode_client_new, not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_free(client: *mut ModeClient) {
    let _ = ffi_guard!({
        if client.is_null() {
            return Ok(());
        }
        let client = unsafe { Box::from_raw(client) };
        let inner = client.inner;
        if inner.freed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(connected) = inner.client.get() {
            connected.try_close(Duration::ZERO);
        }
        inner.stop_dispatch.notify_one();
        let on_dispatcher = inner.dispatcher_thread.get() == Some(&std::thread::current().id());
        if on_dispatcher {
            // The dispatcher finishes the job once the running callback returns.
            return Ok(());
        }
        let thread = inner
            .dispatcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        finish(&inner);
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_error_maps_to_a_documented_status() {
        let errors = [
            (ClientError::Closed, ModeStatus::ModeErrClosed),
            (
                ClientError::QueueFull { capacity: 1 },
                ModeStatus::ModeErrQueueFull,
            ),
            (
                ClientError::Timeout(Duration::ZERO),
                ModeStatus::ModeErrTimeout,
            ),
            (
                ClientError::Rest {
                    status: 401,
                    reason: None,
                    data: Value::Null,
                },
                ModeStatus::ModeErrAuth,
            ),
            (
                ClientError::Rest {
                    status: 404,
                    reason: None,
                    data: Value::Null,
                },
                ModeStatus::ModeErrRest,
            ),
            (
                ClientError::MessageTooLarge { size: 2, max: 1 },
                ModeStatus::ModeErrTooLarge,
            ),
        ];
        for (err, status) in errors {
            assert_eq!(status_of(&err), status, "{err}");
        }
    }

    #[test]
    fn a_message_for_c_never_holds_an_interior_nul() {
        assert!(std::ffi::CString::new(crate::util::error_text("a\0b").into_bytes()).is_ok());
    }
}
