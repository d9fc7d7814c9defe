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
    DisconnectReason, DropReason, Engine, EngineConfig, Event, FullQueuePolicy, OutboxChange,
    Publish, SendError, Stats, Transmit,
};
use mode_core::proto::{EncodeError, Map, Value};
use mode_core::time::Instant;

use crate::prelude::*;
use crate::util::{CText, borrow, borrow_mut, bytes_arg, fail, str_arg, write_out, write_text};
use crate::{ModeQos, ModeStatus, ffi_guard, qos_arg};

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

/// The engine's counters.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModeStats {
    /// Messages accepted for sending.
    pub messages_queued: u64,
    /// Messages handed to the network (re-sends included).
    pub messages_sent: u64,
    /// Messages the cloud acknowledged (and QoS 0 messages once written).
    pub messages_acked: u64,
    /// Messages dropped by the full-queue policy, refused by the cloud or given up at close.
    pub messages_dropped: u64,
    /// Messages waiting now, queued or awaiting their acknowledgement.
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
    /// Notifications dropped because the application fell behind (0 here: the engine keeps
    /// every event until polled; the managed client fills it in).
    pub notifications_dropped: u64,
    /// Messages a durable outbox held that could not be read back at start (a torn or damaged
    /// store). 0 here: a firmware keeping its own journal counts its own (see
    /// examples/c/durable_outbox.c); libmode's durable outbox fills it in.
    pub outbox_unrecovered: u64,
}

impl ModeStats {
    /// The C form of the engine's counters.
    pub fn of(stats: &Stats) -> ModeStats {
        ModeStats {
            messages_queued: stats.messages_queued,
            messages_sent: stats.messages_sent,
            messages_acked: stats.messages_acked,
            messages_dropped: stats.messages_dropped,
            pending: stats.pending,
            reconnects: stats.reconnects,
            connection_attempts: stats.connection_attempts,
            kv_applied: stats.kv_applied,
            kv_stale: stats.kv_stale,
            kv_invalid: stats.kv_invalid,
            commands_received: stats.commands_received,
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
            notifications_dropped: stats.notifications_dropped,
            outbox_unrecovered: stats.outbox_unrecovered,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

fn at(now_ms: u64) -> Instant {
    Instant::from_millis(now_ms)
}

/// A ::mode_full_queue_policy_t value passed as an int, checked (libmode's
/// ::mode_config_set_full_queue_policy takes it too).
pub fn full_queue_policy_arg(policy: c_int) -> Result<FullQueuePolicy, ModeStatus> {
    match policy {
        0 => Ok(FullQueuePolicy::Error),
        1 => Ok(FullQueuePolicy::DropOldest),
        _ => Err(fail(
            ModeStatus::ModeErrInvalidArgument,
            format!(
                "full-queue policy {policy} is not a mode_full_queue_policy_t: use MODE_QUEUE_ERROR (0) or MODE_QUEUE_DROP_OLDEST (1)"
            ),
        )),
    }
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

// ---------------------------------------------------------------------------------------------
// Life cycle
// ---------------------------------------------------------------------------------------------

/// Fills `*out` with the defaults for `device_id`, seeded with `seed` (pass a random number).
///
/// # Safety
/// `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_config_init(
    device_id: u64,
    seed: u64,
    out: *mut ModeEngineConfig,
) -> ModeStatus {
    ffi_guard!({
        if out.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let defaults = EngineConfig::new(device_id, seed);
        let backoff = &defaults.backoff;
        let ms = |d: Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
        let config = ModeEngineConfig {
            device_id,
            seed,
            queue_size: defaults.queue_size,
            full_queue: ModeFullQueuePolicy::ModeQueueError as c_int,
            max_inflight: defaults.max_inflight,
            max_message_size: defaults.max_message_size,
            watchdog_ms: defaults.watchdog.map_or(0, ms),
            linger_ms: ms(defaults.linger),
            backoff_cap_ms: ms(backoff.cap),
            backoff_unit_ms: ms(backoff.unit),
            backoff_jitter: backoff.jitter,
            backoff_stable_after_ms: ms(backoff.stable_after),
            auth_failure_wait_ms: ms(backoff.auth_failure_wait),
            auth_failure_cap_ms: ms(backoff.auth_failure_cap),
            journal: defaults.journal,
        };
        unsafe { write_out(out, config) };
        Ok(())
    })
}

fn engine_config(c: &ModeEngineConfig) -> Result<EngineConfig, ModeStatus> {
    let ms = Duration::from_millis;
    let mut config = EngineConfig {
        queue_size: c.queue_size,
        max_inflight: c.max_inflight,
        max_message_size: c.max_message_size,
        backoff: BackoffPolicy {
            cap: ms(c.backoff_cap_ms.max(c.backoff_unit_ms)),
            unit: ms(c.backoff_unit_ms),
            jitter: c.backoff_jitter,
            stable_after: ms(c.backoff_stable_after_ms),
            auth_failure_wait: ms(c.auth_failure_wait_ms),
            auth_failure_cap: ms(c.auth_failure_cap_ms.max(c.auth_failure_wait_ms)),
        },
        watchdog: (c.watchdog_ms > 0).then(|| ms(c.watchdog_ms)),
        linger: ms(c.linger_ms),
        journal: c.journal,
        ..EngineConfig::new(c.device_id, c.seed)
    };
    config
        .check()
        .map_err(|problem| fail(ModeStatus::ModeErrConfig, problem))?;
    config.full_queue = full_queue_policy_arg(c.full_queue)?;
    Ok(config)
}

/// Creates an engine from `*config` (copied) at time `now_ms` into `*out`; free it with
/// ::mode_engine_free. It asks to connect at once (MODE_TRANSMIT_CONNECT). MODE_ERR_CONFIG when
/// a setting cannot work (::mode_last_error says which).
///
/// # Safety
/// `config` NULL or a readable config; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_new(
    config: *const ModeEngineConfig,
    now_ms: u64,
    out: *mut *mut ModeEngine,
) -> ModeStatus {
    ffi_guard!({
        let config = unsafe { borrow(config) }?;
        if out.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let config = engine_config(config)?;
        let engine = Box::new(ModeEngine {
            engine: Engine::new(config, at(now_ms)),
            held: Held::default(),
            sent_any: false,
        });
        unsafe { write_out(out, Box::into_raw(engine)) };
        Ok(())
    })
}

/// Frees an engine and everything it holds (unsent messages included: close it first to
/// deliver them). NULL is a no-op.
///
/// # Safety
/// `engine` NULL or from ::mode_engine_new, not yet freed; no pointer it handed out is used
/// after.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_free(engine: *mut ModeEngine) {
    let _ = ffi_guard!({
        if !engine.is_null() {
            drop(unsafe { Box::from_raw(engine) });
        }
        Ok(())
    });
}

/// Puts back messages a previous run accepted and did not finish (from your durable outbox:
/// the MODE_JOURNAL_ADDED messages without a DONE), before anything is sent: they keep their
/// ids and go first, in id order; new ids continue after the largest. Their topics and payloads
/// are copied. All or nothing: MODE_ERR_INVALID_STATE once a send was accepted;
/// MODE_ERR_INVALID_ARGUMENT for an id of 0, a repeated id or a bad QoS; MODE_ERR_INVALID_UTF8
/// for a topic; MODE_ERR_QUEUE_FULL when they do not all fit in the queue.
///
/// # Safety
/// `messages` NULL (with `count` 0) or `count` readable messages, each topic and payload as
/// its lengths say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_restore(
    engine: *mut ModeEngine,
    messages: *const ModePublish,
    count: usize,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        let messages: &[ModePublish] = match (messages.is_null(), count) {
            (true, 0) => &[],
            (true, _) => return Err(ModeStatus::ModeErrNull),
            (false, _) => unsafe { core::slice::from_raw_parts(messages, count) },
        };
        if engine.sent_any {
            return Err(fail(
                ModeStatus::ModeErrInvalidState,
                "restore comes before any send: a restored message must go first",
            ));
        }
        let mut ids = BTreeSet::new();
        let mut restored = Vec::with_capacity(messages.len());
        for message in messages {
            if message.id == 0 || !ids.insert(message.id) {
                return Err(fail(
                    ModeStatus::ModeErrInvalidArgument,
                    format!("message id {} is 0 or given twice", message.id),
                ));
            }
            let topic = unsafe { text_arg(message.topic, message.topic_len, "a topic") }?;
            let payload = unsafe { bytes_arg(message.payload, message.payload_len) }?;
            restored.push(Publish {
                id: message.id,
                topic: topic.to_owned(),
                payload: payload.to_vec(),
                qos: qos_arg(message.qos)?,
            });
        }
        if restored.len() > engine.engine.room() {
            return Err(fail(
                ModeStatus::ModeErrQueueFull,
                format!(
                    "{} messages do not fit: the queue has room for {}; raise queue_size",
                    restored.len(),
                    engine.engine.room()
                ),
            ));
        }
        let refused = engine.engine.restore(restored);
        debug_assert!(refused.is_empty());
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

/// Writes the next piece of work for the transport into `*out` (kind MODE_TRANSMIT_NONE when
/// there is nothing to do until another input). Call it after every input until it gives NONE.
/// Pointers in `*out` are borrowed until the next call on the engine.
///
/// # Safety
/// `engine` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_poll_transmit(
    engine: *mut ModeEngine,
    out: *mut ModeTransmit,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        if out.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let held = &mut engine.held;
        let mut transmit = ModeTransmit {
            kind: ModeTransmitKind::ModeTransmitNone,
            topics: core::ptr::null(),
            topics_len: 0,
            publish: NO_PUBLISH,
        };
        let mut topics = |list: Vec<String>| {
            let views: Vec<ModeText> = list
                .into_iter()
                .map(|topic| {
                    let (text, len) = held.text(topic);
                    ModeText { text, len }
                })
                .collect();
            held.topics = views;
            (held.topics.as_ptr(), held.topics.len())
        };
        match engine.engine.poll_transmit() {
            None => {}
            Some(Transmit::Connect) => transmit.kind = ModeTransmitKind::ModeTransmitConnect,
            Some(Transmit::Subscribe(list)) => {
                transmit.kind = ModeTransmitKind::ModeTransmitSubscribe;
                (transmit.topics, transmit.topics_len) = topics(list);
            }
            Some(Transmit::Unsubscribe(list)) => {
                transmit.kind = ModeTransmitKind::ModeTransmitUnsubscribe;
                (transmit.topics, transmit.topics_len) = topics(list);
            }
            Some(Transmit::Publish(publish)) => {
                transmit.kind = ModeTransmitKind::ModeTransmitPublish;
                transmit.publish = held.publish(publish);
            }
            Some(Transmit::Disconnect) => transmit.kind = ModeTransmitKind::ModeTransmitDisconnect,
            Some(Transmit::Abort) => transmit.kind = ModeTransmitKind::ModeTransmitAbort,
        }
        unsafe { write_out(out, transmit) };
        Ok(())
    })
}

fn disconnect_kind(reason: &DisconnectReason) -> ModeDisconnectKind {
    match reason {
        DisconnectReason::AuthFailed(_) => ModeDisconnectKind::ModeDisconnectAuth,
        DisconnectReason::Tls(_) => ModeDisconnectKind::ModeDisconnectTls,
        DisconnectReason::Network(_) => ModeDisconnectKind::ModeDisconnectNetwork,
        DisconnectReason::KeepaliveTimeout(_) => ModeDisconnectKind::ModeDisconnectKeepalive,
        DisconnectReason::Closed => ModeDisconnectKind::ModeDisconnectClosed,
    }
}

fn change_view(held: &mut Held, change: Change) -> ModeChange {
    let (kind, key, value, previous) = match change {
        Change::Set {
            key,
            value,
            previous,
        } => (ModeChangeKind::ModeChangeSet, key, Some(value), previous),
        Change::Deleted { key, previous } => {
            (ModeChangeKind::ModeChangeDeleted, key, None, Some(previous))
        }
    };
    let (key, key_len) = held.text(key);
    let mut json = |value: Option<Value>| match value {
        Some(value) => held.text(value.to_string()),
        None => (core::ptr::null(), 0),
    };
    let (value, value_len) = json(value);
    let (previous, previous_len) = json(previous);
    ModeChange {
        kind,
        key,
        key_len,
        value,
        value_len,
        previous,
        previous_len,
    }
}

/// Writes the next thing for the application into `*out` (kind MODE_EVENT_NONE when there is
/// none). Poll until NONE after every input. Pointers in `*out` are borrowed until the next
/// call on the engine.
///
/// # Safety
/// `engine` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_poll_event(
    engine: *mut ModeEngine,
    out: *mut ModeEvent,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        if out.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let held = &mut engine.held;
        let mut view = NO_EVENT;
        match engine.engine.poll_event() {
            None => {}
            Some(Event::Connected) => view.kind = ModeEventKind::ModeEventConnected,
            Some(Event::Disconnected { reason, retry_in }) => {
                view.kind = ModeEventKind::ModeEventDisconnected;
                view.disconnect = disconnect_kind(&reason);
                view.has_retry = retry_in.is_some();
                view.retry_in_ms = retry_in.map_or(0, |wait| wait.as_millis() as u64);
                (view.text, view.text_len) = held.text(reason.to_string());
            }
            Some(Event::Command(command)) => {
                view.kind = ModeEventKind::ModeEventCommand;
                (view.action, view.action_len) = held.text(command.action);
                let parameters = Value::Object(command.parameters).to_string();
                (view.parameters, view.parameters_len) = held.text(parameters);
            }
            Some(Event::Kv {
                rev,
                reload,
                changes,
            }) => {
                view.kind = ModeEventKind::ModeEventKv;
                view.rev = rev;
                view.reload = reload;
                let changes: Vec<ModeChange> = changes
                    .into_iter()
                    .map(|change| change_view(held, change))
                    .collect();
                held.changes = changes;
                view.changes = held.changes.as_ptr();
                view.changes_len = held.changes.len();
            }
            Some(Event::BulkResponse {
                label,
                response,
                request,
            }) => {
                view.kind = ModeEventKind::ModeEventBulkResponse;
                (view.label, view.label_len) = held.text(label);
                (view.status, view.status_len) = held.text(response.status.as_str().to_owned());
                (view.payload, view.payload_len) = held.text(response.payload.to_string());
                (view.request_id, view.request_id_len) = held.text(response.request_id);
                view.request = request;
            }
            Some(Event::BulkTimeout { request_id }) => {
                view.kind = ModeEventKind::ModeEventBulkTimeout;
                (view.request_id, view.request_id_len) = held.text(request_id);
            }
            Some(Event::Delivered(id)) => {
                view.kind = ModeEventKind::ModeEventDelivered;
                view.id = id;
            }
            Some(Event::Dropped { id, topic, reason }) => {
                view.kind = ModeEventKind::ModeEventDropped;
                view.id = id;
                view.drop = match reason {
                    DropReason::QueueFull => ModeDropKind::ModeDropQueueFull,
                    DropReason::Refused(_) => ModeDropKind::ModeDropRefused,
                    DropReason::Closed => ModeDropKind::ModeDropClosed,
                };
                (view.text, view.text_len) = held.text(reason.to_string());
                (view.topic, view.topic_len) = held.text(topic);
            }
            Some(Event::Error { topic, error }) => {
                view.kind = ModeEventKind::ModeEventError;
                (view.text, view.text_len) = held.text(error.to_string());
                (view.topic, view.topic_len) = held.text(topic);
            }
            Some(Event::Closed { unsent }) => {
                view.kind = ModeEventKind::ModeEventClosed;
                view.unsent = unsent as u64;
            }
        }
        unsafe { write_out(out, view) };
        Ok(())
    })
}

/// Writes into `*out_at_ms` when ::mode_engine_handle_timeout is next due (a reconnect attempt,
/// the watchdog, a bulk request's or a close's deadline), on the same clock as `now_ms`, or
/// MODE_NO_TIMEOUT when no timer is needed. It may be in the past: call handle_timeout then.
///
/// # Safety
/// `engine` NULL or live; `out_at_ms` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_poll_timeout(
    engine: *const ModeEngine,
    out_at_ms: *mut u64,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { borrow(engine) }?;
        if out_at_ms.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let at = engine
            .engine
            .poll_timeout()
            .map_or(MODE_NO_TIMEOUT, Instant::as_millis);
        unsafe { write_out(out_at_ms, at) };
        Ok(())
    })
}

/// Writes the next change of the outbox to persist into `*out` (kind MODE_JOURNAL_NONE when
/// there is none; always NONE unless the config's `journal` is on). Pointers in `*out` are
/// borrowed until the next call on the engine.
///
/// # Safety
/// `engine` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_poll_journal(
    engine: *mut ModeEngine,
    out: *mut ModeJournal,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        if out.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let journal = match engine.engine.poll_journal() {
            None => ModeJournal {
                kind: ModeJournalKind::ModeJournalNone,
                id: 0,
                publish: NO_PUBLISH,
            },
            Some(OutboxChange::Added(publish)) => {
                let publish = engine.held.publish(publish);
                ModeJournal {
                    kind: ModeJournalKind::ModeJournalAdded,
                    id: publish.id,
                    publish,
                }
            }
            Some(OutboxChange::Done(id)) => ModeJournal {
                kind: ModeJournalKind::ModeJournalDone,
                id,
                publish: NO_PUBLISH,
            },
        };
        unsafe { write_out(out, journal) };
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Inputs from the transport and the clock
// ---------------------------------------------------------------------------------------------

/// Runs `input` on the engine: the shape of every input without arguments to check.
///
/// # Safety
/// As [`engine_mut`].
unsafe fn input(engine: *mut ModeEngine, input: impl FnOnce(&mut Engine)) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        input(&mut engine.engine);
        Ok(())
    })
}

/// The transport is up (MQTT: CONNACK accepted) at `now_ms`. The engine then asks to subscribe
/// and starts sending. Ignored when no connection attempt is pending.
///
/// # Safety
/// `engine` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_connected(engine: *mut ModeEngine, now_ms: u64) -> ModeStatus {
    unsafe { input(engine, |e| e.connected(at(now_ms))) }
}

/// The subscriptions were acknowledged (MQTT: SUBACK). The first one on a connection brings
/// MODE_EVENT_CONNECTED.
///
/// # Safety
/// `engine` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_subscribed(
    engine: *mut ModeEngine,
    now_ms: u64,
) -> ModeStatus {
    unsafe { input(engine, |e| e.subscribed(at(now_ms))) }
}

/// Something arrived from the cloud (any packet, a PINGRESP included): the connection is alive
/// (the watchdog counts from the last one).
///
/// # Safety
/// `engine` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_handle_activity(
    engine: *mut ModeEngine,
    now_ms: u64,
) -> ModeStatus {
    unsafe { input(engine, |e| e.handle_activity(at(now_ms))) }
}

/// Time passed: call it when `now_ms` reaches ::mode_engine_poll_timeout (calling it early is
/// harmless). It starts a due reconnect attempt, drops a connection the watchdog gave up on,
/// times out bulk requests and ends a close at its deadline.
///
/// # Safety
/// `engine` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_handle_timeout(
    engine: *mut ModeEngine,
    now_ms: u64,
) -> ModeStatus {
    unsafe { input(engine, |e| e.handle_timeout(at(now_ms))) }
}

/// The transport ended, or an attempt failed, at `now_ms`: `reason` is MODE_DISCONNECT_AUTH
/// (CONNACK 4 or 5), MODE_DISCONNECT_TLS or MODE_DISCONNECT_NETWORK (others:
/// MODE_ERR_INVALID_ARGUMENT), `text` (pointer + length, UTF-8, may be NULL with 0) says what
/// happened. Unconfirmed messages go back to the queue; MODE_EVENT_DISCONNECTED says when the
/// engine will ask to connect again. Ignored when no transport was up or being set up.
///
/// # Safety
/// `engine` NULL or live; `text` NULL or `text_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_disconnected(
    engine: *mut ModeEngine,
    reason: c_int,
    text: *const c_char,
    text_len: usize,
    now_ms: u64,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        let text = unsafe { text_arg(text, text_len, "the disconnect text") }?.to_owned();
        let reason = match reason {
            1 => DisconnectReason::AuthFailed(text),
            2 => DisconnectReason::Tls(text),
            3 => DisconnectReason::Network(text),
            _ => {
                return Err(fail(
                    ModeStatus::ModeErrInvalidArgument,
                    format!(
                        "disconnect reason {reason} is not one a transport reports: use MODE_DISCONNECT_AUTH (1), MODE_DISCONNECT_TLS (2) or MODE_DISCONNECT_NETWORK (3)"
                    ),
                ));
            }
        };
        engine.engine.disconnected(reason, at(now_ms));
        Ok(())
    })
}

/// A publish from the cloud arrived at `now_ms`: `topic` (pointer + length, UTF-8; no NUL
/// needed) and `payload` (bytes). Commands, key-value changes and bulk responses come out of
/// ::mode_engine_poll_event; a payload that does not decode becomes MODE_EVENT_ERROR (the call
/// still returns MODE_OK: the peer erred, not the caller). Both are copied.
///
/// # Safety
/// `engine` NULL or live; `topic` and `payload` NULL (length 0) or readable for their lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_handle_publish(
    engine: *mut ModeEngine,
    topic: *const c_char,
    topic_len: usize,
    payload: *const u8,
    payload_len: usize,
    now_ms: u64,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        if topic.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let topic = unsafe { text_arg(topic, topic_len, "the topic") }?;
        let payload = unsafe { bytes_arg(payload, payload_len) }?;
        engine.engine.handle_publish(topic, payload, at(now_ms));
        Ok(())
    })
}

/// The cloud confirmed message `id` (QoS 1: PUBACK; QoS 0: written). A report for a message
/// not on the network (already finished, or handed on a connection since lost) is ignored.
///
/// # Safety
/// `engine` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_delivered(
    engine: *mut ModeEngine,
    id: u64,
    now_ms: u64,
) -> ModeStatus {
    unsafe { input(engine, |e| e.delivered(id, at(now_ms))) }
}

/// The cloud refused message `id` itself (retrying cannot help): it is dropped
/// (MODE_EVENT_DROPPED with MODE_DROP_REFUSED and `why`), the rest go on. `why` is pointer +
/// length, UTF-8, may be NULL with 0. Ignored for a message not on the network.
///
/// # Safety
/// `engine` NULL or live; `why` NULL or `why_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_failed(
    engine: *mut ModeEngine,
    id: u64,
    why: *const c_char,
    why_len: usize,
    now_ms: u64,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        let why = unsafe { text_arg(why, why_len, "the reason") }?;
        engine.engine.failed(id, why, at(now_ms));
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Sends
// ---------------------------------------------------------------------------------------------

/// Runs a send and writes the new message's id through `out_id` (may be NULL).
unsafe fn send(
    engine: &mut ModeEngine,
    out_id: *mut u64,
    send: impl FnOnce(&mut Engine) -> Result<u64, SendError>,
) -> Result<(), ModeStatus> {
    let id = send(&mut engine.engine).map_err(send_error)?;
    engine.sent_any = true;
    unsafe { write_out(out_id, id) };
    Ok(())
}

/// Queues an event `event_type` (NUL-terminated) with `data` (a JSON object, pointer + length;
/// NULL with 0 for `{}`) at `qos` (a ::mode_qos_t value). Writes its message id to `*out_id`
/// (may be NULL). MODE_ERR_INVALID_JSON, MODE_ERR_INVALID_ARGUMENT (empty type, bad QoS),
/// MODE_ERR_TOO_LARGE, MODE_ERR_QUEUE_FULL, MODE_ERR_CLOSED: nothing queued.
///
/// # Safety
/// `engine` NULL or live; `event_type` NULL or NUL-terminated; `data` NULL or `data_len`
/// readable bytes; `out_id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_send_event(
    engine: *mut ModeEngine,
    event_type: *const c_char,
    data: *const c_char,
    data_len: usize,
    qos: c_int,
    out_id: *mut u64,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        let event_type = unsafe { str_arg(event_type) }?;
        // The text goes out as it is, checked but never built into a map (encode_event_json).
        let data = match data_len {
            0 if data.is_null() => "{}",
            _ => unsafe { text_arg(data, data_len, "the event data") }?,
        };
        let qos = qos_arg(qos)?;
        unsafe { send(engine, out_id, |e| e.send_event_json(event_type, data, qos)) }
    })
}

/// Queues a write of `key` (NUL-terminated) = `value` (JSON text, pointer + length, required)
/// to the device's cloud store (QoS 1). The mirror changes when the cloud broadcasts it back
/// (MODE_EVENT_KV). Writes the message id to `*out_id` (may be NULL).
///
/// # Safety
/// `engine` NULL or live; `key` NULL or NUL-terminated; `value` NULL or `value_len` readable
/// bytes; `out_id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_kv_set(
    engine: *mut ModeEngine,
    key: *const c_char,
    value: *const c_char,
    value_len: usize,
    out_id: *mut u64,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        let key = unsafe { str_arg(key) }?;
        if value.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        let value = unsafe { json_arg(value, value_len, None, "the value") }?;
        unsafe { send(engine, out_id, |e| e.kv_set(key, value)) }
    })
}

/// Queues a delete of `key` (NUL-terminated) from the device's cloud store (QoS 1). Writes the
/// message id to `*out_id` (may be NULL).
///
/// # Safety
/// `engine` NULL or live; `key` NULL or NUL-terminated; `out_id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_kv_delete(
    engine: *mut ModeEngine,
    key: *const c_char,
    out_id: *mut u64,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        let key = unsafe { str_arg(key) }?;
        unsafe { send(engine, out_id, |e| e.kv_delete(key)) }
    })
}

/// Queues raw bytes (`data`, pointer + length) for the smart module of `label`
/// (NUL-terminated) at `qos`. Writes the message id to `*out_id` (may be NULL).
///
/// # Safety
/// `engine` NULL or live; `label` NULL or NUL-terminated; `data` NULL or `data_len` readable
/// bytes; `out_id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_send_bulk_data(
    engine: *mut ModeEngine,
    label: *const c_char,
    data: *const u8,
    data_len: usize,
    qos: c_int,
    out_id: *mut u64,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        let label = unsafe { str_arg(label) }?;
        let data = unsafe { bytes_arg(data, data_len) }?;
        let qos = qos_arg(qos)?;
        unsafe { send(engine, out_id, |e| e.send_bulk_data(label, data, qos)) }
    })
}

/// Queues data for routing (`/devices/{id}/data`; `data` pointer + length) at `qos`. Writes
/// the message id to `*out_id` (may be NULL).
///
/// # Safety
/// `engine` NULL or live; `data` NULL or `data_len` readable bytes; `out_id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_send_data(
    engine: *mut ModeEngine,
    data: *const u8,
    data_len: usize,
    qos: c_int,
    out_id: *mut u64,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        let data = unsafe { bytes_arg(data, data_len) }?;
        let qos = qos_arg(qos)?;
        unsafe { send(engine, out_id, |e| e.send_data(data, qos)) }
    })
}

/// Queues a bulk-data request (QoS 1) to the module of `label` (NUL-terminated) with `payload`
/// (a JSON object, pointer + length; NULL with 0 for `{}`), subscribing to the label's
/// responses first. Its response comes as MODE_EVENT_BULK_RESPONSE with `request` true; with
/// `timeout_ms` > 0, MODE_EVENT_BULK_TIMEOUT comes instead if none arrived by `now_ms +
/// timeout_ms` (0: wait for ever, or give up with ::mode_engine_forget_bulk_request). Writes the
/// message id to `*out_id` and the request id to `*out_request_id` / `*out_request_id_len`
/// (borrowed until the next call on the engine, NUL-terminated too); each out-pointer may be
/// NULL.
///
/// # Safety
/// `engine` NULL or live; `label` NULL or NUL-terminated; `payload` NULL or `payload_len`
/// readable bytes; each out-pointer NULL or writable.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn mode_engine_bulk_request(
    engine: *mut ModeEngine,
    label: *const c_char,
    payload: *const c_char,
    payload_len: usize,
    timeout_ms: u64,
    now_ms: u64,
    out_id: *mut u64,
    out_request_id: *mut *const c_char,
    out_request_id_len: *mut usize,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        let label = unsafe { str_arg(label) }?;
        let payload = unsafe {
            json_arg(
                payload,
                payload_len,
                Some(Value::Object(Map::new())),
                "the payload",
            )
        }?;
        // Refused before the engine subscribes to the label's responses, so a refusal changes
        // nothing.
        if engine.engine.is_closing() {
            return Err(send_error(SendError::Closed));
        }
        if engine.engine.room() == 0
            && engine.engine.config().full_queue != FullQueuePolicy::DropOldest
        {
            return Err(send_error(SendError::QueueFull {
                capacity: engine.engine.config().queue_size,
            }));
        }
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
        let (id, request_id) = engine
            .engine
            .bulk_request(label, payload, timeout, at(now_ms))
            .map_err(send_error)?;
        engine.sent_any = true;
        let (text, len) = engine.held.text(request_id);
        unsafe {
            write_out(out_id, id);
            write_out(out_request_id, text);
            write_out(out_request_id_len, len);
        }
        Ok(())
    })
}

/// Stops waiting for the response of `request_id` (NUL-terminated): a late response then comes
/// with `request` false, and no timeout is reported. Unknown ids are ignored.
///
/// # Safety
/// `engine` NULL or live; `request_id` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_forget_bulk_request(
    engine: *mut ModeEngine,
    request_id: *const c_char,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        let request_id = unsafe { str_arg(request_id) }?;
        engine.engine.forget_bulk_request(request_id);
        Ok(())
    })
}

/// Starts closing at `now_ms`: no new message is accepted (MODE_ERR_CLOSED); queued ones are
/// delivered until `deadline_ms`, then the engine unsubscribes and asks for DISCONNECT.
/// MODE_EVENT_CLOSED ends it, by the deadline at the latest (keep calling handle_timeout).
/// Calling it again can only bring the deadline closer.
///
/// # Safety
/// `engine` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_close(
    engine: *mut ModeEngine,
    deadline_ms: u64,
    now_ms: u64,
) -> ModeStatus {
    unsafe { input(engine, |e| e.close(at(deadline_ms), at(now_ms))) }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// Writes the engine's counters into `*out`.
///
/// # Safety
/// `engine` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_stats(
    engine: *const ModeEngine,
    out: *mut ModeStats,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { borrow(engine) }?;
        if out.is_null() {
            return Err(ModeStatus::ModeErrNull);
        }
        unsafe { write_out(out, ModeStats::of(engine.engine.stats())) };
        Ok(())
    })
}

/// Writes whether the engine is connected and subscribed (after MODE_EVENT_CONNECTED, until
/// the next disconnect) to `*out_connected`, and whether it is closed (after MODE_EVENT_CLOSED:
/// nothing more happens) to `*out_closed`. Either may be NULL.
///
/// # Safety
/// `engine` NULL or live; each out-pointer NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_state(
    engine: *const ModeEngine,
    out_connected: *mut bool,
    out_closed: *mut bool,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { borrow(engine) }?;
        unsafe {
            write_out(out_connected, engine.engine.is_connected());
            write_out(out_closed, engine.engine.is_closed());
        }
        Ok(())
    })
}

/// Copies the JSON value of `key` (NUL-terminated) in the device's key-value mirror, and a NUL,
/// into `buf`. MODE_ERR_NOT_FOUND when the mirror has no such key; MODE_ERR_BUFFER_TOO_SMALL
/// with the length needed in `*out_len` (see the header's conventions).
///
/// # Safety
/// `engine` NULL or live; `key` NULL or NUL-terminated; `buf` NULL or `buf_len` writable bytes;
/// `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_kv_get(
    engine: *const ModeEngine,
    key: *const c_char,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { borrow(engine) }?;
        let key = unsafe { str_arg(key) }?;
        let Some(value) = engine.engine.mirror().get(key) else {
            return Err(fail(
                ModeStatus::ModeErrNotFound,
                format!("no key {key:?} in the mirror"),
            ));
        };
        unsafe { write_text(value.to_string().as_bytes(), buf, buf_len, out_len) }
    })
}

/// Copies the whole key-value mirror as one JSON object, and a NUL, into `buf`, and its
/// revision to `*out_rev` (may be NULL). MODE_ERR_BUFFER_TOO_SMALL as ::mode_engine_kv_get.
///
/// # Safety
/// `engine` NULL or live; `buf` NULL or `buf_len` writable bytes; `out_len`, `out_rev` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_kv_snapshot(
    engine: *const ModeEngine,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
    out_rev: *mut u64,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { borrow(engine) }?;
        let mirror = engine.engine.mirror();
        unsafe {
            write_text(
                mirror.snapshot().to_string().as_bytes(),
                buf,
                buf_len,
                out_len,
            )
        }?;
        unsafe { write_out(out_rev, mirror.rev()) };
        Ok(())
    })
}
