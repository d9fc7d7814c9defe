//! `mode_client_*`: the managed device client for C, its life cycle (create, start, stop, free)
//! and its feed to the dispatcher. A client runs in a runtime (crate::runtime): its connection
//! task on the runtime's IO threads, its callbacks on the runtime's dispatcher thread, so a slow
//! callback never stalls the connection, and a callback may call any function of the client,
//! ::mode_client_free included. Its callbacks are in callbacks.rs, its other calls in
//! sends.rs, the status each client error maps to in status.rs.

mod callbacks;
mod sends;
mod status;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use mode_client::{
    Client, ClientConfigBuilder, ClientError, DeliveryHook, Notification, Notifications,
};
use mode_core::proto::BulkDataResponse;
use tokio::sync::{Notify, mpsc};

pub use callbacks::{
    ModeBulkResultCb, ModeChangeCb, ModeCommandCb, ModeConnectionCb, ModeDeliveryCb,
    ModeFreeUserdataCb,
};
pub use sends::MODE_REQUEST_ID_SIZE;

use crate::ModeStatus;
use crate::config::ModeConfig;
use crate::ffi_guard;
use crate::log::{LogLine, LogState, ModeLogLevel};
use crate::runtime::{Feed, ModeRuntime, Shared, Work};
use crate::util::{borrow, fail, required, write_new, write_out};
use callbacks::{CallbackRefs, Callbacks};
use status::status_of;

/// A connected device. Every function taking a `const mode_client_t *` may be called from any
/// thread at any time, callbacks included.
pub struct ModeClient {
    inner: Arc<Inner>,
}

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
    required(out)?;
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
    let inner = Arc::new(inner);
    unsafe { write_new(out, || Ok(ModeClient { inner })) }
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
            if let (Some(cb), userdata) = copy.delivery.pair() {
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
            .runtime
            .handle()
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
            let _ = inner.runtime.handle().block_on(async move {
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
