//! The client's callbacks: their C types, the registry a client keeps (one slot per kind,
//! with its userdata and how to free it), the `mode_client_set_*_cb` exports, and how each
//! notification becomes a call of the application's function on the dispatcher thread.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::Ordering;

use mode_client::{ClientError, Notification};
use mode_core::ddp::Change;
use mode_core::proto::BulkDataResponse;
use mode_ffi_core::engine::ModeChangeKind;
use serde_json::Value;

use super::{ModeClient, inner, status_of};
use crate::log::{LogLine, ModeLogCb, ModeLogLevel, ModeLogRecord};
use crate::util::{CText, opt_text};
use crate::{ModeStatus, ffi_guard};

/// Receives a command: its action and its parameters as JSON object text (borrowed for the call).
pub type ModeCommandCb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        action: *const c_char,
        action_len: usize,
        parameters: *const c_char,
        parameters_len: usize,
    ),
>;

/// Receives one change of the mirror. `key`, `value` and `previous` are borrowed for the call
/// (see the text rule at the top of mode_core.h); `value`/`previous` are JSON text or NULL (see
/// ::mode_change_kind_t).
pub type ModeChangeCb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        kind: ModeChangeKind,
        key: *const c_char,
        key_len: usize,
        value: *const c_char,
        value_len: usize,
        previous: *const c_char,
        previous_len: usize,
    ),
>;

/// Calls `cb` (if any) with one change, its texts alive for the call.
///
/// # Safety
/// `cb` and `userdata` as documented on ::mode_change_cb.
pub(crate) unsafe fn report_change(cb: ModeChangeCb, userdata: *mut c_void, change: &Change) {
    let Some(cb) = cb else { return };
    let (kind, key, value, previous) = ModeChangeKind::texts(change);
    let (value, previous) = (
        value.map(CText::from_string),
        previous.map(CText::from_string),
    );
    let key = CText::new(key);
    let (value_ptr, value_len) = opt_text(value.as_ref());
    let (previous_ptr, previous_len) = opt_text(previous.as_ref());
    unsafe {
        cb(
            userdata,
            kind,
            key.ptr(),
            key.len(),
            value_ptr,
            value_len,
            previous_ptr,
            previous_len,
        )
    };
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

/// One registered callback: the function (`F` is its C type, e.g. [`ModeCommandCb`], NULL when
/// none), its userdata, and how to free the userdata. A copy is for calling it without the lock;
/// only the one in the client's [`Callbacks`] is ever released.
#[derive(Clone, Copy)]
pub(super) struct Slot<F> {
    pub(super) cb: F,
    userdata: *mut c_void,
    free_userdata: ModeFreeUserdataCb,
}

impl<F: Default> Default for Slot<F> {
    fn default() -> Self {
        Slot {
            cb: F::default(),
            userdata: std::ptr::null_mut(),
            free_userdata: None,
        }
    }
}

impl<F: Default + Copy> Slot<F> {
    /// The function and its userdata.
    pub(super) fn pair(&self) -> (F, *mut c_void) {
        (self.cb, self.userdata)
    }

    fn release(&mut self) {
        if let Some(free) = self.free_userdata.take() {
            unsafe { free(self.userdata) };
        }
        self.cb = F::default();
    }
}

#[derive(Default, Clone, Copy)]
pub(super) struct Callbacks {
    pub(super) command: Slot<ModeCommandCb>,
    pub(super) kv_change: Slot<ModeChangeCb>,
    pub(super) connection: Slot<ModeConnectionCb>,
    pub(super) bulk: Slot<ModeBulkResultCb>,
    pub(super) log: Slot<ModeLogCb>,
    pub(super) delivery: Slot<ModeDeliveryCb>,
}

impl Callbacks {
    pub(super) fn release(&mut self) {
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

/// Registers one callback before start; replaces (and frees the userdata of) an earlier one.
/// On an error nothing changes and `userdata` stays the caller's.
///
/// # Safety
/// `client` NULL or from ::mode_client_new.
unsafe fn register<F: Default + Copy>(
    client: *const ModeClient,
    pick: impl FnOnce(&mut Callbacks) -> &mut Slot<F>,
    cb: F,
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

/// Copies of the callbacks, taken with the lock held and used without it.
pub(super) struct CallbackRefs {
    callbacks: Callbacks,
    pub(super) device_id: u64,
}

impl std::ops::Deref for CallbackRefs {
    type Target = Callbacks;

    fn deref(&self) -> &Callbacks {
        &self.callbacks
    }
}

impl CallbackRefs {
    pub(super) fn of(callbacks: &Callbacks, device_id: u64) -> Self {
        CallbackRefs {
            callbacks: *callbacks,
            device_id,
        }
    }

    pub(super) fn log_line(&self, line: &LogLine) {
        if let (Some(cb), userdata) = self.log.pair() {
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
    pub(super) fn log(&self, level: ModeLogLevel, message: &str) {
        self.log_line(&LogLine {
            level,
            target: CText::new("mode_ffi"),
            message: CText::new(message),
        });
    }

    pub(super) fn change(&self, change: &Change) {
        let (cb, userdata) = self.kv_change.pair();
        unsafe { report_change(cb, userdata, change) };
    }

    pub(super) fn notification(&self, note: Notification) {
        // Connection changes, malformed messages and drops are logged by the connection task
        // itself (forwarded by crate::log); only what happens here is logged here.
        match note {
            Notification::Connected => {
                if let (Some(cb), userdata) = self.connection.pair() {
                    unsafe { cb(userdata, true, std::ptr::null(), 0, -1) };
                }
            }
            Notification::Disconnected { reason, retry_in } => {
                if let (Some(cb), userdata) = self.connection.pair() {
                    let reason = CText::from_string(reason.to_string());
                    let retry =
                        retry_in.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                    unsafe { cb(userdata, false, reason.ptr(), reason.len(), retry) };
                }
            }
            Notification::Command(command) => {
                if let (Some(cb), userdata) = self.command.pair() {
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
            Notification::KvChanged { change, .. } => self.change(&change),
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

    pub(super) fn bulk(&self, request_id: &str, result: Result<BulkDataResponse, ClientError>) {
        let (Some(cb), userdata) = self.bulk.pair() else {
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
