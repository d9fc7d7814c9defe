//! `mode_session_*`: the sans-IO MODE session for C devices that keep their own MQTT stack
//! (libmosquitto, paho.mqtt.c, ...): topics to subscribe to, incoming publishes classified, and
//! outgoing intents encoded into topic + payload + QoS.

use std::ffi::{c_char, c_int, c_void};

use mode_core::proto::Event;
use mode_core::session::{Incoming, Outgoing, Session};
use serde_json::{Map, Value};

use crate::mirror::{
    ModeApplyInfo, ModeChangeCb, ModeEntryCb, for_each, get_json, report_applied, snapshot_json,
};
use crate::util::{
    CText, borrow, borrow_mut, bytes_arg, fail, json_arg, opt_text, str_arg, write_out,
};
use crate::{ModeQos, ModeStatus, ffi_guard, qos_arg};

/// A device's protocol session. Not thread-safe: use one from one thread at a time.
pub struct ModeSession {
    inner: Session,
}

/// What an incoming publish was.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeIncomingKind {
    /// A command; delivered to `on_command`.
    ModeIncomingCommand = 1,
    /// A DDP sync message, applied to the session's mirror; changes go to `on_kv_change`.
    ModeIncomingKv = 2,
    /// A bulk-data response; delivered to `on_bulk_response`.
    ModeIncomingBulkResponse = 3,
    /// Not for this session (another device, or a topic a device only publishes on).
    ModeIncomingUnrelated = 4,
    /// One of our topics with a payload that does not decode (the call returns MODE_ERR_DECODE).
    ModeIncomingInvalid = 5,
}

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

/// Receives a bulk-data response: label, request id, status (e.g. "OK") and payload JSON text,
/// all borrowed for the call.
pub type ModeBulkResponseCb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        label: *const c_char,
        label_len: usize,
        request_id: *const c_char,
        request_id_len: usize,
        status: *const c_char,
        status_len: usize,
        payload: *const c_char,
        payload_len: usize,
    ),
>;

/// Where ::mode_session_handle delivers what it decoded. Any member may be NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModeIncomingHandlers {
    /// Called for a command.
    pub on_command: ModeCommandCb,
    /// Called for each visible DDP change.
    pub on_kv_change: ModeChangeCb,
    /// Called for a bulk-data response.
    pub on_bulk_response: ModeBulkResponseCb,
}

/// One publish for the caller's MQTT stack, borrowed for the callback only. Its texts follow
/// the rule at the top (pointer + length, NUL-terminated too, so `topic` can go straight to
/// `mosquitto_publish`); the payload is bytes, pointer + length only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModeOutgoing {
    /// The topic.
    pub topic: *const c_char,
    /// The topic's length.
    pub topic_len: usize,
    /// The payload bytes.
    pub payload: *const u8,
    /// The payload's length.
    pub payload_len: usize,
    /// The QoS to publish with.
    pub qos: ModeQos,
    /// For a bulk request, its request id; NULL otherwise.
    pub request_id: *const c_char,
    /// The request id's length (0 when `request_id` is NULL).
    pub request_id_len: usize,
}

/// Receives one publish to send (see ::mode_outgoing_t).
pub type ModeOutgoingCb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, outgoing: *const ModeOutgoing)>;

/// Receives one topic name (borrowed for the call).
pub type ModeTopicCb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, topic: *const c_char, topic_len: usize)>;

impl ModeSession {
    /// Runs an encoder; an error is the thread's last error, reported as INVALID_ARGUMENT.
    fn encode(
        &mut self,
        encode: impl FnOnce(&mut Session) -> Result<Outgoing, mode_core::proto::EncodeError>,
    ) -> Result<Outgoing, ModeStatus> {
        encode(&mut self.inner).map_err(|err| fail(ModeStatus::ModeErrInvalidArgument, err))
    }
}

/// Hands `outgoing` to `cb`.
///
/// # Safety
/// `cb` as documented on ::mode_outgoing_cb.
unsafe fn emit(
    outgoing: Outgoing,
    request_id: Option<String>,
    cb: OutgoingFn,
    userdata: *mut c_void,
) {
    let topic = CText::from_string(outgoing.topic);
    let request_id = request_id.map(CText::from_string);
    let (request_id, request_id_len) = opt_text(request_id.as_ref());
    let view = ModeOutgoing {
        topic: topic.ptr(),
        topic_len: topic.len(),
        payload: outgoing.payload.as_ptr(),
        payload_len: outgoing.payload.len(),
        qos: ModeQos::of(outgoing.qos),
        request_id,
        request_id_len,
    };
    unsafe { cb(userdata, &view) };
}

type OutgoingFn = unsafe extern "C" fn(*mut c_void, *const ModeOutgoing);

/// The callback of an encoder, checked before anything is encoded: encoding a bulk request
/// uses up a request id, which an error must not do.
fn outgoing_cb(cb: ModeOutgoingCb) -> Result<OutgoingFn, ModeStatus> {
    cb.ok_or_else(|| fail(ModeStatus::ModeErrNull, "the outgoing callback is NULL"))
}

/// Creates a session for `device_id` into `*out`. `request_seed` should be random: it makes
/// bulk request ids unique across restarts. Free with ::mode_session_free.
///
/// # Safety
/// `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_new(
    device_id: u64,
    request_seed: u64,
    out: *mut *mut ModeSession,
) -> ModeStatus {
    ffi_guard!({
        let out = unsafe { borrow_mut(out) }?;
        *out = Box::into_raw(Box::new(ModeSession {
            inner: Session::new(device_id, request_seed),
        }));
        Ok(())
    })
}

/// Destroys a session. NULL is a no-op.
///
/// # Safety
/// `session` NULL or from ::mode_session_new, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_free(session: *mut ModeSession) {
    let _ = ffi_guard!({
        if !session.is_null() {
            drop(unsafe { Box::from_raw(session) });
        }
        Ok(())
    });
}

/// Calls `cb` with each topic to subscribe to (all at QoS 0): commands, DDP sync, and the
/// responses of every label passed to ::mode_session_watch_bulk_responses.
///
/// # Safety
/// `session` from ::mode_session_new; `cb` not NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_subscriptions(
    session: *const ModeSession,
    cb: ModeTopicCb,
    userdata: *mut c_void,
) -> ModeStatus {
    ffi_guard!({
        let session = unsafe { borrow(session) }?;
        let cb = cb.ok_or(ModeStatus::ModeErrNull)?;
        for topic in session.inner.subscriptions() {
            let topic = CText::from_string(topic);
            unsafe { cb(userdata, topic.ptr(), topic.len()) };
        }
        Ok(())
    })
}

/// Adds bulk-data `label` to the subscriptions (its response topic).
///
/// # Safety
/// `session` from ::mode_session_new; `label` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_watch_bulk_responses(
    session: *mut ModeSession,
    label: *const c_char,
) -> ModeStatus {
    ffi_guard!({
        let label = unsafe { str_arg(label) }?;
        let session = unsafe { borrow_mut(session) }?;
        session
            .inner
            .watch_bulk_responses(label)
            .map_err(|err| fail(ModeStatus::ModeErrInvalidArgument, err))?;
        Ok(())
    })
}

/// Call after (re)subscribing on every connect: the reload that follows is the new truth.
///
/// # Safety
/// `session` from ::mode_session_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_on_subscribed(session: *mut ModeSession) -> ModeStatus {
    ffi_guard!({
        unsafe { borrow_mut(session) }?.inner.on_subscribed();
        Ok(())
    })
}

/// Interprets one incoming publish: a command, a DDP sync message (applied to the session's
/// mirror), a bulk response, or something unrelated. The kind goes to `*out_kind` (may be NULL),
/// the content to `handlers` (may be NULL), a DDP summary to `out_info` (may be NULL). A payload
/// that does not decode returns MODE_ERR_DECODE (kind MODE_INCOMING_INVALID) and says where in
/// ::mode_last_error; nothing changes. The topic is `topic_len` bytes, NUL-terminated or not,
/// as ESP-MQTT and coreMQTT hand it over: no copy needed. Handlers run on the calling thread
/// after the session is updated; they may call the session's read functions, not free it.
///
/// # Safety
/// `session` from ::mode_session_new; `topic` `topic_len` bytes; `payload` `payload_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_handle(
    session: *mut ModeSession,
    topic: *const c_char,
    topic_len: usize,
    payload: *const u8,
    payload_len: usize,
    handlers: *const ModeIncomingHandlers,
    userdata: *mut c_void,
    out_kind: *mut ModeIncomingKind,
    out_info: *mut ModeApplyInfo,
) -> ModeStatus {
    ffi_guard!({
        if topic.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let topic =
            std::str::from_utf8(unsafe { bytes_arg(topic.cast(), topic_len) }?).map_err(|err| {
                fail(
                    ModeStatus::ModeErrInvalidUtf8,
                    format!("the topic is not UTF-8: {err}"),
                )
            })?;
        let payload = unsafe { bytes_arg(payload, payload_len) }?;
        let handlers = unsafe { handlers.as_ref() }
            .copied()
            .unwrap_or(ModeIncomingHandlers {
                on_command: None,
                on_kv_change: None,
                on_bulk_response: None,
            });
        let incoming = unsafe { borrow_mut(session) }?.inner.handle(topic, payload);
        // The session is no longer borrowed: handlers may read it.
        let kind = match &incoming {
            Incoming::Command(command) => {
                if let Some(cb) = handlers.on_command {
                    let action = CText::new(&command.action);
                    let parameters =
                        CText::from_string(Value::Object(command.parameters.clone()).to_string());
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
                ModeIncomingKind::ModeIncomingCommand
            }
            Incoming::Kv(applied) => {
                unsafe { report_applied(applied, handlers.on_kv_change, userdata, out_info) };
                ModeIncomingKind::ModeIncomingKv
            }
            Incoming::BulkResponse { label, response } => {
                if let Some(cb) = handlers.on_bulk_response {
                    let label = CText::new(label);
                    let request_id = CText::new(&response.request_id);
                    let status = CText::new(response.status.as_str());
                    let payload = CText::from_string(response.payload.to_string());
                    unsafe {
                        cb(
                            userdata,
                            label.ptr(),
                            label.len(),
                            request_id.ptr(),
                            request_id.len(),
                            status.ptr(),
                            status.len(),
                            payload.ptr(),
                            payload.len(),
                        )
                    };
                }
                ModeIncomingKind::ModeIncomingBulkResponse
            }
            Incoming::Unrelated { .. } => ModeIncomingKind::ModeIncomingUnrelated,
            Incoming::Invalid { .. } => ModeIncomingKind::ModeIncomingInvalid,
        };
        unsafe { write_out(out_kind, kind) };
        if let Incoming::Invalid { error, .. } = &incoming {
            return Err(fail(ModeStatus::ModeErrDecode, error));
        }
        Ok(())
    })
}

/// Encodes an event of `event_type` with `data_json` (a JSON object; NULL means `{}`) at `qos`
/// (a ::mode_qos_t value) and hands the publish to `cb`.
///
/// # Safety
/// `session` from ::mode_session_new; strings NUL-terminated or NULL where allowed; `cb` not NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_encode_event(
    session: *mut ModeSession,
    event_type: *const c_char,
    data_json: *const c_char,
    qos: c_int,
    cb: ModeOutgoingCb,
    userdata: *mut c_void,
) -> ModeStatus {
    ffi_guard!({
        let cb = outgoing_cb(cb)?;
        let event_type = unsafe { str_arg(event_type) }?;
        let Value::Object(data) = unsafe { json_arg(data_json, Value::Object(Map::new())) }? else {
            return Err(fail(
                ModeStatus::ModeErrInvalidJson,
                "event data must be a JSON object",
            ));
        };
        let qos = qos_arg(qos)?;
        let session = unsafe { borrow_mut(session) }?;
        let outgoing = session.encode(|s| s.event(&Event::new(event_type, data), qos))?;
        unsafe { emit(outgoing, None, cb, userdata) };
        Ok(())
    })
}

/// Encodes a DDP set of `key` to `value_json` (any JSON) and hands the publish (QoS 1) to `cb`.
///
/// # Safety
/// As ::mode_session_encode_event; `value_json` not NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_encode_kv_set(
    session: *mut ModeSession,
    key: *const c_char,
    value_json: *const c_char,
    cb: ModeOutgoingCb,
    userdata: *mut c_void,
) -> ModeStatus {
    ffi_guard!({
        let cb = outgoing_cb(cb)?;
        let key = unsafe { str_arg(key) }?;
        if value_json.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let value = unsafe { json_arg(value_json, Value::Null) }?;
        let session = unsafe { borrow_mut(session) }?;
        let outgoing = session.encode(|s| s.kv_set(key, value))?;
        unsafe { emit(outgoing, None, cb, userdata) };
        Ok(())
    })
}

/// Encodes a DDP delete of `key` and hands the publish (QoS 1) to `cb`.
///
/// # Safety
/// As ::mode_session_encode_event.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_encode_kv_delete(
    session: *mut ModeSession,
    key: *const c_char,
    cb: ModeOutgoingCb,
    userdata: *mut c_void,
) -> ModeStatus {
    ffi_guard!({
        let cb = outgoing_cb(cb)?;
        let key = unsafe { str_arg(key) }?;
        let session = unsafe { borrow_mut(session) }?;
        let outgoing = session.encode(|s| s.kv_delete(key))?;
        unsafe { emit(outgoing, None, cb, userdata) };
        Ok(())
    })
}

/// Encodes `data_len` bytes of bulk data for the module of `label` at `qos`.
///
/// # Safety
/// As ::mode_session_encode_event; `data` points to `data_len` bytes (NULL only if 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_encode_bulk_data(
    session: *mut ModeSession,
    label: *const c_char,
    data: *const u8,
    data_len: usize,
    qos: c_int,
    cb: ModeOutgoingCb,
    userdata: *mut c_void,
) -> ModeStatus {
    ffi_guard!({
        let cb = outgoing_cb(cb)?;
        let label = unsafe { str_arg(label) }?;
        let data = unsafe { bytes_arg(data, data_len) }?;
        let qos = qos_arg(qos)?;
        let session = unsafe { borrow_mut(session) }?;
        let outgoing = session.encode(|s| s.bulk_data(label, data, qos))?;
        unsafe { emit(outgoing, None, cb, userdata) };
        Ok(())
    })
}

/// Encodes a bulk-data request to `label` with `payload_json` (any JSON; NULL means `{}`) at
/// `qos`; the publish handed to `cb` carries the fresh request id to match the response by.
///
/// # Safety
/// As ::mode_session_encode_event.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_encode_bulk_request(
    session: *mut ModeSession,
    label: *const c_char,
    payload_json: *const c_char,
    qos: c_int,
    cb: ModeOutgoingCb,
    userdata: *mut c_void,
) -> ModeStatus {
    ffi_guard!({
        let cb = outgoing_cb(cb)?;
        let label = unsafe { str_arg(label) }?;
        let payload = unsafe { json_arg(payload_json, Value::Object(Map::new())) }?;
        let qos = qos_arg(qos)?;
        let session = unsafe { borrow_mut(session) }?;
        let mut request_id = None;
        let outgoing = session.encode(|s| {
            let (id, outgoing) = s.bulk_request(label, payload, qos)?;
            request_id = Some(id);
            Ok(outgoing)
        })?;
        unsafe { emit(outgoing, request_id, cb, userdata) };
        Ok(())
    })
}

/// Copies the JSON value of `key` in the session's mirror into `buf` (as ::mode_mirror_get).
///
/// # Safety
/// As ::mode_mirror_get.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_kv_get(
    session: *const ModeSession,
    key: *const c_char,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> ModeStatus {
    ffi_guard!({ unsafe { get_json(borrow(session)?.inner.mirror(), key, buf, buf_len, out_len) } })
}

/// Calls `cb` with each key of the session's mirror (as ::mode_mirror_for_each).
///
/// # Safety
/// As ::mode_mirror_for_each.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_kv_for_each(
    session: *const ModeSession,
    cb: ModeEntryCb,
    userdata: *mut c_void,
) -> ModeStatus {
    ffi_guard!({ unsafe { for_each(borrow(session)?.inner.mirror(), cb, userdata) } })
}

/// Copies the session's mirror as one JSON object into `buf` (as ::mode_mirror_snapshot).
///
/// # Safety
/// As ::mode_mirror_snapshot.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_session_kv_snapshot(
    session: *const ModeSession,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> ModeStatus {
    ffi_guard!({ unsafe { snapshot_json(borrow(session)?.inner.mirror(), buf, buf_len, out_len) } })
}
