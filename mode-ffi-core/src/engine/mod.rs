//! `mode_engine_*`: one device's MODE connection as a state machine, for C code that owns the
//! transport (libmosquitto, coreMQTT, ESP-MQTT, paho.mqtt.c) and the clock. The caller feeds in
//! what happened, with the time in milliseconds; it polls what to transmit, what to tell the
//! application, when to call back, and (for a durable outbox) what changed in the outbox.

use alloc::collections::BTreeSet;
use core::ffi::{c_char, c_int};
use core::time::Duration;

use mode_core::backoff::BackoffPolicy;
use mode_core::ddp::Change;
use mode_core::engine::{
    Counters, DisconnectReason, DropReason, Engine, EngineConfig, Event, FullQueuePolicy,
    OutboxChange, Publish, SendError, Transmit,
};
use mode_core::proto::{EncodeError, Map, Value};
use mode_core::time::Instant;

use crate::prelude::*;
use crate::util::{
    CText, borrow, borrow_mut, bytes_arg, enum_arg, fail, free_new, required, str_arg,
    write_kv_value, write_new, write_out, write_required, write_text,
};
use crate::{ModeQos, ModeStatus, c_enums, ffi_guard, qos_arg};

c_enums!(ModeFullQueuePolicy, ModeDisconnectKind);

/// `mode_engine_poll_timeout`'s answer when no timer is needed.
pub const MODE_NO_TIMEOUT: u64 = 0xFFFF_FFFF_FFFF_FFFF;

/// What a send does when the outgoing queue is full. Passed as an int and checked.
///
/// C differs from Rust and Python here on purpose: there the default is to block (an `async`
/// send or a Python call waits for room), but a C send never waits. A C device usually runs one
/// loop or an RTOS task that also serves its sensors and watchdog, and a callback that waited
/// for room would wait for the very thread that makes room; so C has no blocking policy and
/// refuses instead: retry on MODE_ERR_QUEUE_FULL, or pace sends by the delivery outcomes
/// (MODE_EVENT_DELIVERED, or libmode's ::mode_client_set_delivery_cb).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeFullQueuePolicy {
    /// Fail with MODE_ERR_QUEUE_FULL; nothing is queued. Wait for a MODE_EVENT_DELIVERED or
    /// MODE_EVENT_DROPPED before trying again. The default.
    ModeQueueError = 0,
    /// Drop the oldest message not yet on the network to make room; the drop is reported
    /// (MODE_EVENT_DROPPED with MODE_DROP_QUEUE_FULL), never silent.
    ModeQueueDropOldest = 1,
}

/// How an engine behaves. Fill one with ::mode_engine_config_init (the defaults), change what
/// you need, and pass it to ::mode_engine_new, which copies it. Durations are milliseconds.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModeEngineConfig {
    /// The device this connection speaks for.
    pub device_id: u64,
    /// A random number from your RNG (e.g. `getrandom`, a hardware RNG): it seeds the backoff's
    /// jitter and makes bulk request ids unique across restarts. The engine reads no RNG.
    pub seed: u64,
    /// Messages accepted and not yet finished, at most (default 10,000; at least 1).
    pub queue_size: usize,
    /// A ::mode_full_queue_policy_t value (default MODE_QUEUE_ERROR).
    pub full_queue: c_int,
    /// Messages handed to the transport and not yet confirmed, at most (default 100; at least 1).
    pub max_inflight: u16,
    /// The largest MQTT PUBLISH packet a send may make, in bytes (default 1 MiB).
    pub max_message_size: usize,
    /// A connection that received nothing for this long is dropped as half-open (default
    /// 90,000: 1.5 x a 60 s keepalive); 0 when the transport detects that itself.
    pub watchdog_ms: u64,
    /// After DISCONNECT, how long a close waits for the transport to close (default 2,000).
    pub linger_ms: u64,
    /// The longest wait between connection attempts (default 60,000).
    pub backoff_cap_ms: u64,
    /// The unit of the Fibonacci reconnect schedule (default 1,000; at least 1).
    pub backoff_unit_ms: u64,
    /// How much of a wait jitter may take off, 0.0 to 1.0 (default 0.2).
    pub backoff_jitter: f64,
    /// A connection that lasted this long resets the schedule (default 30,000).
    pub backoff_stable_after_ms: u64,
    /// The first wait after the cloud refused the device's key; it doubles (default 60,000).
    pub auth_failure_wait_ms: u64,
    /// The longest wait after refused keys (default 900,000).
    pub auth_failure_cap_ms: u64,
    /// Report every change of the outbox through ::mode_engine_poll_journal so you can persist
    /// it (default false: it copies each message).
    pub journal: bool,
}

/// One device's connection (opaque). Not thread-safe: call it from one thread at a time (hold
/// your own lock if your MQTT stack calls back on another thread).
pub struct ModeEngine {
    engine: Engine,
    /// What the last call handed out (texts, payloads, arrays), kept until the next call.
    held: Held,
    /// A send was accepted: `restore` may no longer put messages ahead of it.
    sent_any: bool,
}

#[derive(Default)]
struct Held {
    texts: Vec<CText>,
    bytes: Vec<Vec<u8>>,
    topics: Vec<ModeText>,
    changes: Vec<ModeChange>,
}

impl Held {
    fn clear(&mut self) {
        self.texts.clear();
        self.bytes.clear();
        self.topics.clear();
        self.changes.clear();
    }

    /// Keeps `text` and returns it as pointer + length (NUL-terminated too).
    fn text(&mut self, text: String) -> (*const c_char, usize) {
        let text = CText::from_string(text);
        let view = (text.ptr(), text.len());
        self.texts.push(text); // the bytes live on the heap: moving the CText moves no byte
        view
    }

    fn bytes(&mut self, bytes: Vec<u8>) -> (*const u8, usize) {
        let view = (bytes.as_ptr(), bytes.len());
        self.bytes.push(bytes);
        view
    }

    fn publish(&mut self, publish: Publish) -> ModePublish {
        let (topic, topic_len) = self.text(publish.topic);
        let (payload, payload_len) = self.bytes(publish.payload);
        ModePublish {
            id: publish.id,
            topic,
            topic_len,
            payload,
            payload_len,
            qos: ModeQos::of(publish.qos) as c_int,
        }
    }
}

/// A text handed out: pointer + length, NUL-terminated too (the NUL not counted).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModeText {
    /// The first byte.
    pub text: *const c_char,
    /// The length in bytes, without the NUL.
    pub len: usize,
}

/// One outgoing message: what ::mode_engine_poll_transmit asks you to publish, what
/// ::mode_engine_poll_journal reports as added, and what ::mode_engine_restore takes back.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModePublish {
    /// The message id: report its outcome with ::mode_engine_delivered / ::mode_engine_failed.
    pub id: u64,
    /// The MQTT topic (NUL-terminated too when handed out; pointer + length when passed in).
    pub topic: *const c_char,
    /// The topic's length in bytes.
    pub topic_len: usize,
    /// The payload bytes.
    pub payload: *const u8,
    /// The payload's length.
    pub payload_len: usize,
    /// A ::mode_qos_t value (checked when passed in).
    pub qos: c_int,
}

const NO_PUBLISH: ModePublish = ModePublish {
    id: 0,
    topic: core::ptr::null(),
    topic_len: 0,
    payload: core::ptr::null(),
    payload_len: 0,
    qos: 0,
};

/// What the engine asks the transport to do.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeTransmitKind {
    /// Nothing to do until the next input.
    ModeTransmitNone = 0,
    /// Open the transport now (MQTT: CONNECT with clean session, the device id as user name and
    /// the API key as password). Report the outcome with ::mode_engine_connected (CONNACK
    /// accepted) or ::mode_engine_disconnected.
    ModeTransmitConnect = 1,
    /// Subscribe to `topics` at QoS 0; report the SUBACK with ::mode_engine_subscribed.
    ModeTransmitSubscribe = 2,
    /// Unsubscribe from `topics` (part of a clean close); no report needed.
    ModeTransmitUnsubscribe = 3,
    /// Publish `publish`; report ::mode_engine_delivered(id) on its PUBACK (QoS 1) or once
    /// written (QoS 0), ::mode_engine_failed if the cloud refused it.
    ModeTransmitPublish = 4,
    /// Send DISCONNECT and let the peer close; report ::mode_engine_disconnected then.
    ModeTransmitDisconnect = 5,
    /// Drop the transport now without waiting (the watchdog fired, or a close reached its
    /// deadline). Do not report ::mode_engine_disconnected for it.
    ModeTransmitAbort = 6,
}

/// One piece of work for the transport (::mode_engine_poll_transmit). Its pointers are borrowed
/// until the next call on the engine.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModeTransmit {
    /// What to do.
    pub kind: ModeTransmitKind,
    /// SUBSCRIBE, UNSUBSCRIBE: the topics (`topics_len` of them); NULL otherwise.
    pub topics: *const ModeText,
    /// The number of topics.
    pub topics_len: usize,
    /// PUBLISH: the message; zeroed otherwise.
    pub publish: ModePublish,
}

/// Why the connection ended (MODE_EVENT_DISCONNECTED), or what the transport reports to
/// ::mode_engine_disconnected (AUTH, TLS or NETWORK only).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeDisconnectKind {
    /// Not a disconnect (other events).
    ModeDisconnectNone = 0,
    /// The cloud refused the device id or API key (CONNACK 4 or 5): the engine waits longer.
    ModeDisconnectAuth = 1,
    /// The TLS handshake failed.
    ModeDisconnectTls = 2,
    /// The connection could not be made or was lost.
    ModeDisconnectNetwork = 3,
    /// Nothing came from the cloud for the watchdog's time: presumed half-open (engine only).
    ModeDisconnectKeepalive = 4,
    /// The application closed the engine (engine only).
    ModeDisconnectClosed = 5,
}

/// Why an accepted message will never be delivered (MODE_EVENT_DROPPED).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeDropKind {
    /// Not a drop (other events).
    ModeDropNone = 0,
    /// Dropped to make room in a full queue (MODE_QUEUE_DROP_OLDEST).
    ModeDropQueueFull = 1,
    /// The cloud refused the message itself (::mode_engine_failed).
    ModeDropRefused = 2,
    /// Still unsent when a close reached its deadline.
    ModeDropClosed = 3,
}

/// What a key-value change was.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChangeKind {
    /// The key was created or changed; `value` is its new JSON, `previous` the old (NULL if new).
    ModeChangeSet = 1,
    /// The key was removed; `value` is NULL, `previous` the JSON it held.
    ModeChangeDeleted = 2,
}

impl ModeChangeKind {
    /// A change as C gets it: its kind, its key, and the new and the previous value as JSON
    /// text (None where ::mode_change_t has NULL). The one reading of a change for the engine's
    /// MODE_EVENT_KV and libmode's change callback.
    pub fn texts(change: &Change) -> (ModeChangeKind, &str, Option<String>, Option<String>) {
        let json = |value: &Value| value.to_string();
        match change {
            Change::Set {
                key,
                value,
                previous,
            } => (
                ModeChangeKind::ModeChangeSet,
                key,
                Some(json(value)),
                previous.as_ref().map(json),
            ),
            Change::Deleted { key, previous } => (
                ModeChangeKind::ModeChangeDeleted,
                key,
                None,
                Some(json(previous)),
            ),
        }
    }
}

/// One visible change of the device's key-value mirror. Texts are JSON, NUL-terminated too.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModeChange {
    /// Set or deleted.
    pub kind: ModeChangeKind,
    /// The key.
    pub key: *const c_char,
    /// The key's length.
    pub key_len: usize,
    /// The new value as JSON; NULL for a delete.
    pub value: *const c_char,
    /// The new value's length (0 when NULL).
    pub value_len: usize,
    /// The value before as JSON; NULL when the key is new.
    pub previous: *const c_char,
    /// The previous value's length (0 when NULL).
    pub previous_len: usize,
}

/// What an event is.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeEventKind {
    /// Nothing to report.
    ModeEventNone = 0,
    /// Connected and subscribed: commands reach the device from now on. A reload of the
    /// key-value store (MODE_EVENT_KV with `reload`) follows.
    ModeEventConnected = 1,
    /// The connection ended or an attempt failed: `disconnect`, `text`; `has_retry` and
    /// `retry_in_ms` say when the engine will ask to connect again (not after a close).
    ModeEventDisconnected = 2,
    /// A command: `action`, `parameters` (a JSON object, integers exact).
    ModeEventCommand = 3,
    /// The key-value mirror changed: `rev`, `reload`, `changes` (`changes_len`; a reload lists
    /// its diff against the mirror before it, in key order).
    ModeEventKv = 4,
    /// A bulk-data response: `label`, `request_id`, `status` (e.g. "OK"), `payload` (JSON);
    /// `request` is true when it answers a pending ::mode_engine_bulk_request of this engine.
    ModeEventBulkResponse = 5,
    /// A bulk request's timeout passed without a response: `request_id`.
    ModeEventBulkTimeout = 6,
    /// The cloud confirmed message `id`.
    ModeEventDelivered = 7,
    /// Message `id` (on `topic`) will never be delivered: `drop`, `text`.
    ModeEventDropped = 8,
    /// Something the cloud sent on one of our topics could not be decoded and was ignored:
    /// `topic`, `text`.
    ModeEventError = 9,
    /// The engine closed; `unsent` messages were given up. Nothing follows.
    ModeEventClosed = 10,
}

/// Something for the application (::mode_engine_poll_event). Which fields are set depends on
/// `kind` (see ::mode_event_kind_t); the others are zero / NULL. Its pointers are borrowed until
/// the next call on the engine; every text is pointer + length and NUL-terminated too.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModeEvent {
    /// What happened.
    pub kind: ModeEventKind,
    /// DELIVERED, DROPPED: the message id.
    pub id: u64,
    /// DISCONNECTED: why.
    pub disconnect: ModeDisconnectKind,
    /// DISCONNECTED: true when another attempt will follow after `retry_in_ms`.
    pub has_retry: bool,
    /// DISCONNECTED: the wait before the next attempt, in milliseconds.
    pub retry_in_ms: u64,
    /// DROPPED: why.
    pub drop: ModeDropKind,
    /// DISCONNECTED, DROPPED, ERROR: a description a person can act on.
    pub text: *const c_char,
    /// Its length.
    pub text_len: usize,
    /// DROPPED, ERROR: the topic.
    pub topic: *const c_char,
    /// Its length.
    pub topic_len: usize,
    /// COMMAND: the action.
    pub action: *const c_char,
    /// Its length.
    pub action_len: usize,
    /// COMMAND: the parameters as JSON object text.
    pub parameters: *const c_char,
    /// Its length.
    pub parameters_len: usize,
    /// KV: the store's revision.
    pub rev: u64,
    /// KV: true for a reload (after every connect).
    pub reload: bool,
    /// KV: the changes.
    pub changes: *const ModeChange,
    /// KV: the number of changes.
    pub changes_len: usize,
    /// BULK_RESPONSE: the bulk-data label.
    pub label: *const c_char,
    /// Its length.
    pub label_len: usize,
    /// BULK_RESPONSE, BULK_TIMEOUT: the request id.
    pub request_id: *const c_char,
    /// Its length.
    pub request_id_len: usize,
    /// BULK_RESPONSE: the module's status ("OK", "INVALID_BULK_DATA_LABEL", ...).
    pub status: *const c_char,
    /// Its length.
    pub status_len: usize,
    /// BULK_RESPONSE: the module's result as JSON text ("null" when absent).
    pub payload: *const c_char,
    /// Its length.
    pub payload_len: usize,
    /// BULK_RESPONSE: true when it answers a pending request of this engine.
    pub request: bool,
    /// CLOSED: messages given up at the close's deadline.
    pub unsent: u64,
}

const NO_EVENT: ModeEvent = ModeEvent {
    kind: ModeEventKind::ModeEventNone,
    id: 0,
    disconnect: ModeDisconnectKind::ModeDisconnectNone,
    has_retry: false,
    retry_in_ms: 0,
    drop: ModeDropKind::ModeDropNone,
    text: core::ptr::null(),
    text_len: 0,
    topic: core::ptr::null(),
    topic_len: 0,
    action: core::ptr::null(),
    action_len: 0,
    parameters: core::ptr::null(),
    parameters_len: 0,
    rev: 0,
    reload: false,
    changes: core::ptr::null(),
    changes_len: 0,
    label: core::ptr::null(),
    label_len: 0,
    request_id: core::ptr::null(),
    request_id_len: 0,
    status: core::ptr::null(),
    status_len: 0,
    payload: core::ptr::null(),
    payload_len: 0,
    request: false,
    unsent: 0,
};

/// What changed in the outbox (::mode_engine_poll_journal).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeJournalKind {
    /// Nothing (more) to persist.
    ModeJournalNone = 0,
    /// A message was accepted: persist `publish`; it stays until a DONE with its id.
    ModeJournalAdded = 1,
    /// Message `id` is finished (delivered or dropped): forget it.
    ModeJournalDone = 2,
}

/// One change of the outbox, for a durable outbox. Pointers borrowed until the next call on
/// the engine.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModeJournal {
    /// Added, done, or none.
    pub kind: ModeJournalKind,
    /// DONE: the finished message's id (ADDED: `publish.id`).
    pub id: u64,
    /// ADDED: the message, ready to pass back to ::mode_engine_restore after a restart.
    pub publish: ModePublish,
}

mod inputs;
mod life;
mod outputs;
mod sends;
mod state;

// The shared step of every input (and of close): release the last hand-outs, then apply.
use inputs::{input, input_with};

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

fn at(now_ms: u64) -> Instant {
    Instant::from_millis(now_ms)
}

/// A ::mode_full_queue_policy_t value passed as an int, checked (libmode's
/// ::mode_config_set_full_queue_policy takes it too).
pub fn full_queue_policy_arg(policy: c_int) -> Result<FullQueuePolicy, ModeStatus> {
    use ModeFullQueuePolicy::*;
    let table = [
        (ModeQueueError, FullQueuePolicy::Error),
        (ModeQueueDropOldest, FullQueuePolicy::DropOldest),
    ];
    enum_arg(
        policy,
        &table,
        "full-queue policy",
        "mode_full_queue_policy_t",
    )
}

/// UTF-8 text from pointer + length (NULL only with length 0).
///
/// # Safety
/// As [`bytes_arg`].
unsafe fn text_arg<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<&'a str, ModeStatus> {
    let bytes = unsafe { bytes_arg(ptr.cast(), len) }?;
    core::str::from_utf8(bytes).map_err(|err| {
        fail(
            ModeStatus::ModeErrInvalidUtf8,
            format!("{what} is not UTF-8: {err}"),
        )
    })
}

/// JSON text from pointer + length; NULL with length 0 means `default` when there is one.
///
/// # Safety
/// As [`bytes_arg`].
unsafe fn json_arg(
    ptr: *const c_char,
    len: usize,
    default: Option<Value>,
    what: &str,
) -> Result<Value, ModeStatus> {
    if ptr.is_null()
        && len == 0
        && let Some(default) = default
    {
        return Ok(default);
    }
    let bytes = unsafe { bytes_arg(ptr.cast(), len) }?;
    serde_json::from_slice(bytes).map_err(|err| {
        fail(
            ModeStatus::ModeErrInvalidJson,
            format!("{what} is not valid JSON: {err}"),
        )
    })
}

fn send_error(err: SendError) -> ModeStatus {
    let status = match err {
        SendError::Closed => ModeStatus::ModeErrClosed,
        SendError::QueueFull { .. } => ModeStatus::ModeErrQueueFull,
        SendError::TooLarge { .. } => ModeStatus::ModeErrTooLarge,
        SendError::Encode(EncodeError::EventData(_)) => ModeStatus::ModeErrInvalidJson,
        SendError::Encode(_) => ModeStatus::ModeErrInvalidArgument,
    };
    fail(status, err)
}

/// The engine behind `engine`, its last hand-outs released (they were borrowed until this call).
///
/// # Safety
/// `engine` NULL or from ::mode_engine_new, not freed, used by no other thread now.
unsafe fn engine_mut<'a>(engine: *mut ModeEngine) -> Result<&'a mut ModeEngine, ModeStatus> {
    let engine = unsafe { borrow_mut(engine) }?;
    engine.held.clear();
    Ok(engine)
}

/// Every export that hands C one output of an engine through a required `*out`: guarded,
/// MODE_ERR_NULL for a NULL engine or `out` (checked before `view` takes anything from the
/// engine), the engine's last hand-outs released first (the new ones live in `held`).
///
/// # Safety
/// `engine` as [`engine_mut`]; `out` NULL or writable.
unsafe fn poll<T>(
    engine: *mut ModeEngine,
    out: *mut T,
    view: impl FnOnce(&mut ModeEngine) -> T,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        unsafe { write_required(out, || Ok(view(engine))) }
    })
}

/// Every export that reads a value of an engine into a required `*out`, changing nothing (its
/// hand-outs stay): guarded, MODE_ERR_NULL for a NULL engine or `out`.
///
/// # Safety
/// `engine` NULL or live; `out` NULL or writable.
unsafe fn read<T>(
    engine: *const ModeEngine,
    out: *mut T,
    value: impl FnOnce(&Engine) -> T,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { borrow(engine) }?;
        unsafe { write_required(out, || Ok(value(&engine.engine))) }
    })
}
