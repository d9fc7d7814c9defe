//! `mode_client_*`: the managed device client for C. A client runs in a runtime
//! (crate::runtime): its connection task on the runtime's IO threads, its callbacks on the
//! runtime's dispatcher thread, so a slow callback never stalls the connection, and a callback
//! may call any function of the client, ::mode_client_free included.

use std::ffi::{c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use mode_client::{
    Client, ClientConfigBuilder, ClientError, DeliveryHook, Notification, Notifications,
};
use mode_core::ddp::Change;
use mode_core::proto::{BulkDataResponse, EncodeError};
use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc};

use crate::callbacks::{ModeChangeCb, ModeCommandCb, report_change};
use crate::config::ModeConfig;
use crate::log::{LogLine, LogState, ModeLogCb, ModeLogLevel, ModeLogRecord};
use crate::runtime::{Feed, ModeRuntime, Shared, Work};
use crate::util::{CText, borrow, bytes_arg, fail, json_arg, str_arg, write_out, write_text};
use crate::{ModeStatus, ffi_guard, qos_arg};
use mode_ffi_core::engine::{ModeChangeKind, ModeStats};

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

/// Receives the outcome of one message a send accepted, named by the id the send wrote to its
/// `out_message_id`: MODE_OK once delivered (QoS 1: the cloud's PUBACK; QoS 0: written to the
/// network; HTTP transport: a 2xx answer), MODE_ERR_QUEUE_FULL when the full-queue policy
/// dropped it, MODE_ERR_CLOSED when it was given up at ::mode_client_stop or ::mode_client_free,
/// MODE_ERR_AUTH / MODE_ERR_REST when the cloud refused it. Called exactly once per message, in
/// the order the outcomes happened, on the dispatcher thread like every callback.
pub type ModeDeliveryCb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, message_id: u64, status: ModeStatus)>;

/// Frees a callback's userdata when the client no longer needs it.
pub type ModeFreeUserdataCb = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// A buffer of this many bytes always holds a bulk request id and its NUL (an id is at most 58
/// characters: "DEVICE-SEED-N" with a 20-digit device id, 16 hex digits and a 20-digit counter).
pub const MODE_REQUEST_ID_SIZE: usize = 64;

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
type LogFn = unsafe extern "C" fn(*mut c_void, *const ModeLogRecord);
type DeliveryFn = unsafe extern "C" fn(*mut c_void, u64, ModeStatus);

#[derive(Default)]
struct Callbacks {
    command: Slot<CommandFn>,
    kv_change: Slot<ChangeFn>,
    connection: Slot<ConnectionFn>,
    bulk: Slot<BulkFn>,
    log: Slot<LogFn>,
    delivery: Slot<DeliveryFn>,
}

impl Callbacks {
    fn release(&mut self) {
        self.command.release();
        self.kv_change.release();
        self.connection.release();
        self.bulk.release();
        self.log.release();
        self.delivery.release();
    }
}

// The userdata pointers belong to the C caller, who is told (mode.h) that callbacks run on the
// library's dispatcher thread; moving them there is the documented contract.
unsafe impl Send for Callbacks {}

/// What the dispatcher hands to the callbacks besides notifications.
///
/// Small (16 bytes): the rare kinds are boxed, because the channel reserves its first 32 slots
/// when a client is made, and a fleet makes thousands of clients.
enum Extra {
    Bulk(Box<(String, Result<BulkDataResponse, ClientError>)>),
    /// From the delivery hook, which runs on the connection task: the C callback must not.
    Delivery {
        id: u64,
        status: ModeStatus,
    },
    Log(Box<LogLine>),
}

struct Inner {
    runtime: Arc<Shared>,
    /// The runtime is this client's alone (::mode_client_new) and ends with it.
    private: bool,
    handle: tokio::runtime::Handle,
    /// The settings until ::mode_client_start; the lock also serializes starts.
    config: Mutex<Option<ClientConfigBuilder>>,
    client: OnceLock<Client>,
    callbacks: Mutex<Callbacks>,
    started: AtomicBool,
    /// A ::mode_client_stop finished: every message has its outcome.
    stopped: AtomicBool,
    freed: AtomicBool,
    stop_dispatch: Notify,
    /// Where the client's feed on the dispatcher is; ::mode_client_free waits on `feed_done`.
    feed: Mutex<FeedState>,
    feed_done: Condvar,
    extra_tx: mpsc::UnboundedSender<Extra>,
    extra_rx: Mutex<Option<mpsc::UnboundedReceiver<Extra>>>,
    device_id: u64,
    log: Arc<LogState>,
    log_dispatch: tracing::Dispatch,
    /// The id of the last message a send was accepted with. Every send holds this lock while
    /// it queues (never while it waits: C sends never wait), so a bulk request's id, which
    /// mode-client does not return, is the one after it (ids are consecutive from 1).
    last_id: Mutex<u64>,
}

impl Inner {
    fn fail(&self, status: ModeStatus, message: impl std::fmt::Display) -> ModeStatus {
        fail(status, message)
    }

    fn client_error(&self, err: ClientError) -> ModeStatus {
        let status = status_of(&err);
        fail(status, err)
    }

    /// Runs one call on the started client; its error becomes the status and the last error.
    fn call<T>(
        &self,
        call: impl FnOnce(&Client) -> Result<T, ClientError>,
    ) -> Result<T, ModeStatus> {
        let client = self.client()?;
        tracing::dispatcher::with_default(&self.log_dispatch, || call(client))
            .map_err(|err| self.client_error(err))
    }

    /// Queues one message; its id goes to `out_id` (may be NULL) on success only.
    fn send(
        &self,
        out_id: *mut u64,
        send: impl FnOnce(&Client) -> Result<mode_client::Delivery, ClientError>,
    ) -> Result<(), ModeStatus> {
        let mut last = self.last_id.lock().unwrap_or_else(|p| p.into_inner());
        let delivery = self.call(send)?;
        *last = delivery.id();
        unsafe { write_out(out_id, delivery.id()) };
        Ok(())
    }

    fn client(&self) -> Result<&Client, ModeStatus> {
        self.client.get().ok_or_else(|| {
            self.fail(
                ModeStatus::ModeErrInvalidState,
                "the client is not started: call mode_client_start",
            )
        })
    }

    fn feed_state(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.feed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The life of a client's feed on its runtime's dispatcher, and who finishes the client (frees
/// its callbacks' userdata) once ::mode_client_free was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeedState {
    /// Not started: no feed.
    Idle,
    Running,
    /// The notifications ended (the client stopped) before the client was freed.
    Ended,
    /// Freed while running: the feed reports the outcomes left, then either wakes the waiting
    /// ::mode_client_free (`waiting`) or finishes the client itself (freed from a callback).
    Freed {
        waiting: bool,
    },
    /// The last callback ran.
    Drained,
}

/// The status a client error maps to; its text goes to the thread's last error.
fn status_of(err: &ClientError) -> ModeStatus {
    match err {
        ClientError::Config(_) => ModeStatus::ModeErrConfig,
        ClientError::Encode(EncodeError::EventData(_)) => ModeStatus::ModeErrInvalidJson,
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

/// The client behind a C pointer.
///
/// # Safety
/// `client` NULL or from ::mode_client_new, not freed.
unsafe fn inner<'a>(client: *const ModeClient) -> Result<&'a Arc<Inner>, ModeStatus> {
    Ok(&unsafe { borrow(client) }?.inner)
}

/// Creates a client from `config` into `*out`, with a runtime of its own (one IO thread and one
/// callback thread, ended by ::mode_client_free); nothing connects until ::mode_client_start.
/// For many devices in one process, use ::mode_client_new_in. Consumes `config` on success
/// only: on an error nothing is consumed or created (free the config yourself), and
/// ::mode_last_error says why (MODE_ERR_CONFIG: the settings cannot work).
///
/// # Safety
/// `config` from ::mode_config_new, not freed; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_new(
    config: *mut ModeConfig,
    out: *mut *mut ModeClient,
) -> ModeStatus {
    ffi_guard!({
        let device_id = check_config(config, out)?;
        let runtime = Shared::new(1)?;
        unsafe { new_client(runtime, true, device_id, config, out) }
    })
}

/// Creates a client from `config` into `*out` in `runtime`, shared with the runtime's other
/// clients: its connection runs on the runtime's IO threads and its callbacks on the runtime's
/// dispatcher thread (in order for this client; a slow callback delays other clients' callbacks,
/// never their connections). Free every client of a runtime before the runtime. Consumes
/// `config` on success only, like ::mode_client_new.
///
/// # Safety
/// `runtime` from ::mode_runtime_new, not freed; `config` from ::mode_config_new, not freed;
/// `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_new_in(
    runtime: *const ModeRuntime,
    config: *mut ModeConfig,
    out: *mut *mut ModeClient,
) -> ModeStatus {
    ffi_guard!({
        let runtime = unsafe { borrow(runtime) }?.shared.clone();
        let device_id = check_config(config, out)?;
        unsafe { new_client(runtime, false, device_id, config, out) }
    })
}

/// The checks ::mode_client_new and ::mode_client_new_in make before creating anything; the
/// device id on success.
fn check_config(config: *mut ModeConfig, out: *mut *mut ModeClient) -> Result<u64, ModeStatus> {
    let settings = unsafe { borrow(config) }?;
    if out.is_null() {
        return Err(ModeStatus::ModeErrNull);
    }
    settings
        .build()
        .map(|built| built.device_id())
        .map_err(|err| fail(ModeStatus::ModeErrConfig, err))
}

/// Creates the client once the arguments are checked; consumes `config`.
///
/// # Safety
/// As ::mode_client_new, and `config` and `out` checked by [`check_config`].
unsafe fn new_client(
    runtime: Arc<Shared>,
    private: bool,
    device_id: u64,
    config: *mut ModeConfig,
    out: *mut *mut ModeClient,
) -> Result<(), ModeStatus> {
    let ModeConfig { builder, api_key } = *unsafe { Box::from_raw(config) };
    let log = LogState::new(api_key);
    let (extra_tx, extra_rx) = mpsc::unbounded_channel();
    let log_dispatch = {
        let (log, extra) = (log.clone(), extra_tx.clone());
        crate::log::dispatch(log.clone(), move |line| {
            if extra.send(Extra::Log(Box::new(line))).is_err() {
                log.pending.fetch_sub(1, Ordering::AcqRel);
            }
        })
    };
    runtime.clients.fetch_add(1, Ordering::AcqRel);
    let inner = Inner {
        handle: runtime.handle().clone(),
        runtime,
        private,
        config: Mutex::new(Some(builder)),
        client: OnceLock::new(),
        callbacks: Mutex::new(Callbacks::default()),
        started: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
        freed: AtomicBool::new(false),
        stop_dispatch: Notify::new(),
        feed: Mutex::new(FeedState::Idle),
        feed_done: Condvar::new(),
        extra_tx,
        extra_rx: Mutex::new(Some(extra_rx)),
        device_id,
        log,
        log_dispatch,
        last_id: Mutex::new(0),
    };
    unsafe {
        *out = Box::into_raw(Box::new(ModeClient {
            inner: Arc::new(inner),
        }))
    };
    Ok(())
}

/// Registers one callback before start; replaces (and frees the userdata of) an earlier one.
/// On an error nothing changes and `userdata` stays the caller's.
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

/// Sets the log callback (before start): the library's own log lines (`tracing` events of the
/// connection task, the REST client and libmode itself) at ::mode_client_set_log_level or more
/// severe, with their target and the device id; never the API key. If the callback falls
/// behind by more than 1024 lines, further lines are dropped and a warning says how many.
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

/// Sets the most verbose ::mode_log_level_t the log callback receives (default MODE_LOG_INFO:
/// info, warnings and errors; MODE_LOG_DEBUG and MODE_LOG_TRACE add detail). May be called at any
/// time, from any thread.
///
/// # Safety
/// `client` from ::mode_client_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_set_log_level(
    client: *const ModeClient,
    level: c_int,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        inner.log.set_level(ModeLogLevel::filter_arg(level)?);
        Ok(())
    })
}

/// Sets the delivery callback (before start, so no message can be sent before it is in place):
/// called exactly once for every message a send accepted, with the id that send wrote to its
/// `out_message_id` (see ::mode_delivery_cb). Messages still queued at ::mode_client_free are
/// given up and reported (MODE_ERR_CLOSED) before it returns.
///
/// # Safety
/// `client` from ::mode_client_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_set_delivery_cb(
    client: *const ModeClient,
    cb: ModeDeliveryCb,
    userdata: *mut c_void,
    free_userdata: ModeFreeUserdataCb,
) -> ModeStatus {
    unsafe { register(client, |c| &mut c.delivery, cb, userdata, free_userdata) }
}

/// Starts connecting (in the background; the connection callback says when it is up) and starts
/// the dispatcher thread. Messages sent before the connection is up are queued. On an error the
/// client is as it was.
///
/// # Safety
/// `client` from ::mode_client_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_start(client: *const ModeClient) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let mut config = inner.config.lock().unwrap_or_else(|p| p.into_inner());
        let Some(builder) = config.as_ref() else {
            return Err(inner.fail(
                ModeStatus::ModeErrInvalidState,
                "the client is already started",
            ));
        };
        let callbacks = inner.callbacks.lock().unwrap_or_else(|p| p.into_inner());
        let mut builder = builder.clone();
        if callbacks.delivery.cb.is_some() {
            // Runs on the connection task: it only hands the outcome to the dispatcher.
            let extra = inner.extra_tx.clone();
            builder = builder.delivery_hook(DeliveryHook::new(move |id, result| {
                let status = result
                    .as_ref()
                    .map_or_else(status_of, |()| ModeStatus::ModeOk);
                let _ = extra.send(Extra::Delivery { id, status });
            }));
        }
        inner
            .log
            .wanted
            .store(callbacks.log.cb.is_some(), Ordering::Release);
        drop(callbacks);
        let built = builder
            .build()
            .map_err(|err| inner.fail(ModeStatus::ModeErrConfig, err))?;
        let mut extra_rx = inner.extra_rx.lock().unwrap_or_else(|p| p.into_inner());
        let runtime = inner.runtime.client_runtime()?;
        // Every task of the client carries this dispatcher, so its log lines reach this
        // client's callback even on IO threads shared with other clients.
        let (connected, notifications) =
            tracing::dispatcher::with_default(&inner.log_dispatch, || {
                Client::connect_in(&runtime, built)
            })
            .map_err(|err| inner.client_error(err))?;
        let Some(extra) = extra_rx.take() else {
            unreachable!("the receiver is taken once, by the start that clears the config")
        };
        // Running before the feed can run a callback (the dispatcher may be another thread).
        *inner.feed_state() = FeedState::Running;
        if let Err(status) = inner
            .runtime
            .add_feed(feed(inner.clone(), notifications, extra))
        {
            *inner.feed_state() = FeedState::Idle;
            connected.try_close(Duration::ZERO);
            return Err(status);
        }
        // Nothing fails from here on.
        let _ = inner.client.set(connected);
        inner.started.store(true, Ordering::Release);
        *config = None;
        Ok(())
    })
}

/// The client's feed for its runtime's dispatcher: each notification or outcome as a callback
/// to run, in order, until the client is freed or its notifications end. Each item is awaited
/// outside any callback, and its callback runs with no lock held, so a callback may call back
/// into the client.
fn feed(
    inner: Arc<Inner>,
    notifications: Notifications,
    extra: mpsc::UnboundedReceiver<Extra>,
) -> Feed {
    let start = Some((inner, notifications, extra));
    Box::pin(futures_util::stream::unfold(start, |state| async move {
        let (inner, mut notifications, mut extra) = state?;
        if !inner.freed.load(Ordering::Acquire) {
            let next = tokio::select! {
                biased;
                _ = inner.stop_dispatch.notified() => None,
                extra = extra.recv() => extra.map(Err),
                note = notifications.recv() => note.map(Ok),
            };
            if let Some(item) = next {
                let client = inner.clone();
                let work: Work = Box::new(move || run_callback(&client, item));
                return Some((work, Some((inner, notifications, extra))));
            }
        }
        let waiting = {
            let mut state = inner.feed_state();
            match *state {
                FeedState::Freed { waiting } => waiting,
                _ => {
                    // Stopped, not freed: ::mode_client_free finishes the client later.
                    *state = FeedState::Ended;
                    return None;
                }
            }
        };
        // ::mode_client_free closed the client before it stopped this feed, so every
        // message's outcome is in the channel: report each, as promised, then nothing more runs.
        let work: Work = Box::new(move || {
            while let Ok(item) = extra.try_recv() {
                if let Extra::Delivery { .. } = item {
                    run_callback(&inner, Err(item));
                }
            }
            *inner.feed_state() = FeedState::Drained;
            if waiting {
                inner.feed_done.notify_all();
            } else {
                finish(&inner);
            }
        });
        Some((work, None))
    }))
}

/// Runs the callback for one item, with no lock held.
fn run_callback(inner: &Inner, item: Result<Notification, Extra>) {
    let callbacks = inner.callbacks.lock().unwrap_or_else(|p| p.into_inner());
    let copy = CallbackRefs::of(&callbacks, inner.device_id);
    drop(callbacks);
    // A bug in our dispatch code must not kill the thread that serves the callbacks.
    let _ = catch_unwind(AssertUnwindSafe(|| match item {
        Ok(note) => copy.notification(note),
        Err(Extra::Bulk(bulk)) => {
            let (request_id, result) = *bulk;
            copy.bulk(&request_id, result)
        }
        Err(Extra::Delivery { id, status }) => {
            if let (Some(cb), userdata) = copy.delivery {
                unsafe { cb(userdata, id, status) };
            }
        }
        Err(Extra::Log(line)) => {
            inner.log.pending.fetch_sub(1, Ordering::AcqRel);
            let dropped = inner.log.dropped.swap(0, Ordering::AcqRel);
            if dropped > 0 {
                copy.log(
                    ModeLogLevel::ModeLogWarn,
                    &format!("{dropped} log lines were dropped: the log callback fell behind"),
                );
            }
            copy.log_line(&line);
        }
    }));
}

/// Copies of the callbacks, taken with the lock held and used without it.
struct CallbackRefs {
    command: (Option<CommandFn>, *mut c_void),
    kv_change: (Option<ChangeFn>, *mut c_void),
    connection: (Option<ConnectionFn>, *mut c_void),
    bulk: (Option<BulkFn>, *mut c_void),
    log: (Option<LogFn>, *mut c_void),
    delivery: (Option<DeliveryFn>, *mut c_void),
    device_id: u64,
}

impl CallbackRefs {
    fn of(c: &Callbacks, device_id: u64) -> Self {
        CallbackRefs {
            command: (c.command.cb, c.command.userdata),
            kv_change: (c.kv_change.cb, c.kv_change.userdata),
            connection: (c.connection.cb, c.connection.userdata),
            bulk: (c.bulk.cb, c.bulk.userdata),
            log: (c.log.cb, c.log.userdata),
            delivery: (c.delivery.cb, c.delivery.userdata),
            device_id,
        }
    }

    fn log_line(&self, line: &LogLine) {
        if let (Some(cb), userdata) = self.log {
            let record = ModeLogRecord {
                level: line.level,
                target: line.target.ptr(),
                target_len: line.target.len(),
                message: line.message.ptr(),
                message_len: line.message.len(),
                device_id: self.device_id,
            };
            unsafe { cb(userdata, &record) };
        }
    }

    /// A line of libmode's own (target "mode_ffi").
    fn log(&self, level: ModeLogLevel, message: &str) {
        self.log_line(&LogLine {
            level,
            target: CText::new("mode_ffi"),
            message: CText::new(message),
        });
    }

    fn change(&self, change: &Change) {
        let (cb, userdata) = self.kv_change;
        unsafe { report_change(cb, userdata, change) };
    }

    fn notification(&self, note: Notification) {
        // Connection changes, malformed messages and drops are logged by the connection task
        // itself (forwarded by crate::log); only what happens here is logged here.
        match note {
            Notification::Connected => {
                if let (Some(cb), userdata) = self.connection {
                    unsafe { cb(userdata, true, std::ptr::null(), 0, -1) };
                }
            }
            Notification::Disconnected { reason, retry_in } => {
                if let (Some(cb), userdata) = self.connection {
                    let reason = CText::from_string(reason.to_string());
                    let retry =
                        retry_in.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                    unsafe { cb(userdata, false, reason.ptr(), reason.len(), retry) };
                }
            }
            Notification::Command(command) => {
                if let (Some(cb), userdata) = self.command {
                    let action = CText::new(&command.action);
                    let parameters =
                        CText::from_string(Value::Object(command.parameters).to_string());
                    unsafe {
                        cb(
                            userdata,
                            action.ptr(),
                            action.len(),
                            parameters.ptr(),
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
            Notification::Error { .. } | Notification::MessageDropped { .. } => {}
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
                CText::new(response.status.as_str()),
                CText::from_string(response.payload.to_string()),
            ),
            Err(err) => (status_of(&err), CText::new(""), CText::new("")),
        };
        let request_id = CText::new(request_id);
        unsafe {
            cb(
                userdata,
                status,
                request_id.ptr(),
                request_id.len(),
                bulk_status.ptr(),
                bulk_status.len(),
                payload.ptr(),
                payload.len(),
            )
        };
    }
}

/// Frees every userdata and the runtime, after the last callback. Idempotent: the dispatcher and
/// ::mode_client_free may both call it; the second call finds nothing left.
/// The end of a freed client: its callbacks' userdata freed, and its runtime ended if it was
/// the client's own.
fn finish(inner: &Inner) {
    inner
        .callbacks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .release();
    inner.runtime.clients.fetch_sub(1, Ordering::AcqRel);
    if inner.private {
        inner.runtime.shut_down();
    }
}

/// Sends an event of `event_type` with `data_json` (a JSON object; NULL means `{}`) at `qos` (a
/// ::mode_qos_t value). Never waits: queued for the connection (kept across reconnects), or
/// MODE_ERR_QUEUE_FULL. On success the message's id goes to `*out_message_id` (may be NULL): the
/// delivery callback names it once with its outcome. On an error nothing is queued.
///
/// # Safety
/// `client` from ::mode_client_new; strings NUL-terminated (or NULL where allowed);
/// `out_message_id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_send_event(
    client: *const ModeClient,
    event_type: *const c_char,
    data_json: *const c_char,
    qos: c_int,
    out_message_id: *mut u64,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let event_type = unsafe { str_arg(event_type) }?;
        // The text goes out as it is, checked but never built into a map (see encode_event_json).
        let data = if data_json.is_null() {
            "{}"
        } else {
            unsafe { str_arg(data_json) }?
        };
        let qos = qos_arg(qos)?;
        inner.send(out_message_id, |c| {
            c.try_send_event_json(event_type, data, qos)
        })
    })
}

/// Sets DDP `key` to `value_json` (any JSON) in the cloud (QoS 1, queued like an event; its id
/// to `*out_message_id`, may be NULL). The local mirror changes when the cloud reports the
/// change back (the kv callback).
///
/// # Safety
/// `client` from ::mode_client_new; strings NUL-terminated; `out_message_id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_kv_set(
    client: *const ModeClient,
    key: *const c_char,
    value_json: *const c_char,
    out_message_id: *mut u64,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let key = unsafe { str_arg(key) }?;
        if value_json.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let value = unsafe { json_arg(value_json, Value::Null) }?;
        inner.send(out_message_id, |c| c.try_kv_set(key, value))
    })
}

/// Deletes DDP `key` in the cloud (QoS 1, queued; its id to `*out_message_id`, may be NULL).
///
/// # Safety
/// `client` from ::mode_client_new; `key` NUL-terminated; `out_message_id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_kv_delete(
    client: *const ModeClient,
    key: *const c_char,
    out_message_id: *mut u64,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let key = unsafe { str_arg(key) }?;
        inner.send(out_message_id, |c| c.try_kv_delete(key))
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

/// Sends `data_len` bytes of bulk data to the smart module of `label` at `qos` (a ::mode_qos_t
/// value; queued, its id to `*out_message_id`, may be NULL).
///
/// # Safety
/// `client` from ::mode_client_new; `label` NUL-terminated; `data` `data_len` bytes;
/// `out_message_id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_send_bulk_data(
    client: *const ModeClient,
    label: *const c_char,
    data: *const u8,
    data_len: usize,
    qos: c_int,
    out_message_id: *mut u64,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let label = unsafe { str_arg(label) }?;
        let data = unsafe { bytes_arg(data, data_len) }?;
        let qos = qos_arg(qos)?;
        inner.send(out_message_id, |c| c.try_send_bulk_data(label, data, qos))
    })
}

/// Sends a bulk-data request to `label` with `payload_json` (any JSON; NULL means `{}`) at QoS
/// 1; its response, or MODE_ERR_TIMEOUT after `timeout_ms`, goes to the bulk callback. The
/// request id is copied with a NUL into `request_id_buf` (NULL: not reported), which must hold
/// at least MODE_REQUEST_ID_SIZE bytes: it is checked before anything is sent, and a smaller
/// one is MODE_ERR_BUFFER_TOO_SMALL with nothing sent. On success `*out_request_id_len` (may be
/// NULL) is the id's length and `*out_message_id` (may be NULL) the message's id.
///
/// # Safety
/// `client` from ::mode_client_new; strings NUL-terminated; `request_id_buf` NULL or
/// `request_id_buf_len` writable bytes; out-pointers NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_client_bulk_request(
    client: *const ModeClient,
    label: *const c_char,
    payload_json: *const c_char,
    timeout_ms: u32,
    request_id_buf: *mut c_char,
    request_id_buf_len: usize,
    out_request_id_len: *mut usize,
    out_message_id: *mut u64,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        if !request_id_buf.is_null() && request_id_buf_len < MODE_REQUEST_ID_SIZE {
            unsafe { write_out(out_request_id_len, MODE_REQUEST_ID_SIZE - 1) };
            return Err(inner.fail(
                ModeStatus::ModeErrBufferTooSmall,
                format!(
                    "the request id buffer holds {request_id_buf_len} bytes: pass MODE_REQUEST_ID_SIZE ({MODE_REQUEST_ID_SIZE}) or more; nothing was sent"
                ),
            ));
        }
        let label = unsafe { str_arg(label) }?;
        let payload = unsafe { json_arg(payload_json, Value::Object(Map::new())) }?;
        let mut last = inner.last_id.lock().unwrap_or_else(|p| p.into_inner());
        let pending = inner.call(|c| c.try_bulk_request(label, payload))?;
        // mode-client does not return a bulk request's message id; ids are consecutive and
        // every send queues under this lock, so it is the one after the last.
        *last += 1;
        let message_id = *last;
        drop(last);
        let request_id = pending.request_id().to_owned();
        if !request_id_buf.is_null() {
            // Fits: checked above, and MODE_REQUEST_ID_SIZE bounds every id (tested).
            unsafe {
                write_text(
                    request_id.as_bytes(),
                    request_id_buf,
                    request_id_buf_len,
                    std::ptr::null_mut(),
                )
            }?;
        }
        unsafe {
            write_out(out_request_id_len, request_id.len());
            write_out(out_message_id, message_id);
        }
        let extra = inner.extra_tx.clone();
        let timeout = Duration::from_millis(timeout_ms.into());
        inner.handle.spawn(async move {
            let result = pending.response(timeout).await;
            let _ = extra.send(Extra::Bulk(Box::new((request_id, result))));
        });
        Ok(())
    })
}

/// Fetches the device's info from the cloud (REST, waits up to `timeout_ms`) as JSON text into
/// `buf`. A GET changes nothing, so a buffer found too small afterwards has no side effect:
/// call again with `*out_len` + 1 bytes.
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
        let info = tracing::dispatcher::with_default(&inner.log_dispatch, || {
            inner.handle.block_on(async move {
                tokio::time::timeout(timeout, connected.device_info()).await
            })
        })
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
        let stats = ModeStats::of(&inner.client()?.stats());
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
/// MODE_ERR_TIMEOUT if messages were still undelivered at the deadline: they are given up (the
/// delivery callback reports each as MODE_ERR_CLOSED) and the client is stopped all the same;
/// this is the one error after which something has happened. Later sends return
/// MODE_ERR_CLOSED. Callbacks already queued still run.
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
        if inner.stopped.load(Ordering::Acquire) {
            return Ok(()); // Stopped already: nothing left to deliver.
        }
        let timeout = Duration::from_millis(timeout_ms.into());
        let closed = inner
            .handle
            .block_on(async move { connected.close(timeout).await });
        // Closed either way: MODE_ERR_TIMEOUT only says what was given up.
        inner.stopped.store(true, Ordering::Release);
        closed.map_err(|e| inner.client_error(e))
    })
}

/// Destroys the client: stops it at once if running (what is queued is given up: call
/// ::mode_client_stop first to deliver it), waits for a callback in progress on another thread
/// to return, reports each message not yet reported to the delivery callback (MODE_ERR_CLOSED),
/// then calls each `free_userdata`. May be called from inside a callback: the client
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
        if let Some(connected) = inner.client.get()
            && !inner.stopped.load(Ordering::Acquire)
        {
            // Waits for the connection task to give up what is queued, so each outcome is in
            // the dispatcher's channel before the dispatcher is told to stop (it drains them
            // then). A close with no deadline never waits for the network; its error only says
            // messages were given up. Not after mode_client_stop: that close already reported
            // every message, and a second close can wait forever on a task that has finished
            // closing but not yet ended (mode-client). The bound is a safety net only.
            let connected = connected.clone();
            let _ = inner.handle.block_on(async move {
                tokio::time::timeout(Duration::from_secs(10), connected.close(Duration::ZERO)).await
            });
        }
        let mut state = inner.feed_state();
        if inner.freed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        match *state {
            FeedState::Running => {
                // From a callback on this client's dispatcher nothing may wait for it: the feed
                // finishes the client once the running callback returns.
                let waiting = !inner.runtime.on_dispatcher();
                *state = FeedState::Freed { waiting };
                inner.stop_dispatch.notify_one();
                if !waiting {
                    return Ok(());
                }
                while *state != FeedState::Drained {
                    state = inner
                        .feed_done
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                }
            }
            _ => *state = FeedState::Drained,
        }
        drop(state);
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
    fn the_last_error_never_holds_an_interior_nul() {
        fail(ModeStatus::ModeErrDecode, "a\0b");
        crate::util::read_last_error(|text| {
            assert!(!text.contains(&0), "{text:?}");
            Ok(())
        });
    }

    #[test]
    fn every_bulk_request_id_fits_mode_request_id_size() {
        let mut session = mode_core::session::Session::new(u64::MAX, u64::MAX);
        let (id, _) = session
            .bulk_request(
                "echo",
                Value::Object(Map::new()),
                mode_core::proto::Qos::AtLeastOnce,
            )
            .unwrap();
        let prefix = format!("{}-{:016x}-", u64::MAX, u64::MAX);
        assert!(
            id.starts_with(&prefix),
            "{id} has another shape than {prefix}N"
        );
        // The longest: the largest counter after the longest prefix, and its NUL.
        assert!(prefix.len() + u64::MAX.to_string().len() < MODE_REQUEST_ID_SIZE);
    }
}
