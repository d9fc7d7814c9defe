//! What the application asks an engine to send: events, DDP writes, bulk data and requests, raw data, and close.

use super::*;

/// Every send export: guarded; the engine (MODE_ERR_NULL for NULL) with its last hand-outs
/// released; `send` checks the arguments and makes the send, whose refusal becomes its status
/// (nothing queued); the new message's id goes to `*out_id` (may be NULL).
///
/// # Safety
/// `engine` as [`engine_mut`]; `out_id` NULL or writable.
unsafe fn send(
    engine: *mut ModeEngine,
    out_id: *mut u64,
    send: impl FnOnce(&mut Engine) -> Result<Result<u64, SendError>, ModeStatus>,
) -> ModeStatus {
    ffi_guard!({
        let engine = unsafe { engine_mut(engine) }?;
        let id = send(&mut engine.engine)?.map_err(send_error)?;
        engine.sent_any = true;
        unsafe { write_out(out_id, id) };
        Ok(())
    })
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
    unsafe {
        send(engine, out_id, |e| {
            let event_type = str_arg(event_type)?;
            // The text goes out as it is, checked but never built into a map
            // (encode_event_json).
            let data = match data_len {
                0 if data.is_null() => "{}",
                _ => text_arg(data, data_len, "the event data")?,
            };
            Ok(e.send_event_json(event_type, data, qos_arg(qos)?))
        })
    }
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
    unsafe {
        send(engine, out_id, |e| {
            let key = str_arg(key)?;
            required(value)?;
            Ok(e.kv_set(key, json_arg(value, value_len, None, "the value")?))
        })
    }
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
    unsafe { send(engine, out_id, |e| Ok(e.kv_delete(str_arg(key)?))) }
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
    unsafe {
        send(engine, out_id, |e| {
            let label = str_arg(label)?;
            Ok(e.send_bulk_data(label, bytes_arg(data, data_len)?, qos_arg(qos)?))
        })
    }
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
    unsafe {
        send(engine, out_id, |e| {
            Ok(e.send_data(bytes_arg(data, data_len)?, qos_arg(qos)?))
        })
    }
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
    unsafe {
        input_with(
            engine,
            || str_arg(request_id),
            |e, request_id| e.forget_bulk_request(request_id),
        )
    }
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
