//! What the transport and the clock tell an engine: connected, subscribed, a publish arrived, any activity, a message delivered or failed, disconnected, a timeout due.

use super::*;

/// Every input export: guarded; the engine (MODE_ERR_NULL for NULL) with its last hand-outs
/// released; then `args` checks the arguments (an error: nothing changed) and `apply` applies
/// them.
///
/// # Safety
/// As [`engine_mut`].
pub(super) unsafe fn input_with<A>(
    engine: *mut ModeEngine,
    args: impl FnOnce() -> Result<A, ModeStatus>,
    apply: impl FnOnce(&mut Engine, A),
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        apply(&mut engine.engine, args()?);
        Ok(())
    })
}

/// An input with no argument to check (see [`input_with`]).
///
/// # Safety
/// As [`engine_mut`].
pub(super) unsafe fn input(engine: *mut ModeEngine, apply: impl FnOnce(&mut Engine)) -> ModeStatus {
    unsafe { input_with(engine, || Ok(()), |e, ()| apply(e)) }
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
    type Reason = fn(String) -> DisconnectReason;
    use ModeDisconnectKind::*;
    let reasons: [(_, Reason); 3] = [
        (ModeDisconnectAuth, DisconnectReason::AuthFailed),
        (ModeDisconnectTls, DisconnectReason::Tls),
        (ModeDisconnectNetwork, DisconnectReason::Network),
    ];
    unsafe {
        input_with(
            engine,
            || {
                let text = text_arg(text, text_len, "the disconnect text")?;
                let reason = enum_arg(reason, &reasons, "disconnect reason", "transport's reason")?;
                Ok(reason(text.to_owned()))
            },
            |e, reason| e.disconnected(reason, at(now_ms)),
        )
    }
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
    unsafe {
        input_with(
            engine,
            || {
                required(topic)?;
                let topic = text_arg(topic, topic_len, "the topic")?;
                Ok((topic, bytes_arg(payload, payload_len)?))
            },
            |e, (topic, payload)| e.handle_publish(topic, payload, at(now_ms)),
        )
    }
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
    unsafe {
        input_with(
            engine,
            || text_arg(why, why_len, "the reason"),
            |e, why| e.failed(id, why, at(now_ms)),
        )
    }
}
