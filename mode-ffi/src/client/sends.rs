//! The calls a started client takes besides its life cycle: sends (events, DDP writes, bulk
//! data and requests), reads of the mirror, device info, counters.

use std::ffi::{c_char, c_int};
use std::time::Duration;

use mode_client::{Client, ClientError, Delivery};
use mode_core::engine::Counters;
use serde_json::{Map, Value};

use super::{Extra, ModeClient, inner};
use crate::util::{
    bytes_arg, json_arg, required, str_arg, write_kv_value, write_out, write_required, write_text,
};
use crate::{ModeStatus, ffi_guard, qos_arg};

/// A buffer of this many bytes always holds a bulk request id and its NUL (an id is at most 58
/// characters: "DEVICE-SEED-N" with a 20-digit device id, 16 hex digits and a 20-digit counter).
pub const MODE_REQUEST_ID_SIZE: usize = 64;

/// Every send export: guarded; the client (MODE_ERR_NULL for NULL); `args` checks the
/// arguments (an error: nothing queued); `send` queues on the started client, its refusal the
/// status; the message's id to `*out_id` (may be NULL).
///
/// # Safety
/// `client` NULL or from ::mode_client_new; `out_id` NULL or writable.
unsafe fn send<A>(
    client: *const ModeClient,
    out_id: *mut u64,
    args: impl FnOnce() -> Result<A, ModeStatus>,
    send: impl FnOnce(&Client, A) -> Result<Delivery, ClientError>,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        let args = args()?;
        inner.send(out_id, |c| send(c, args))
    })
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
    let args = || {
        let event_type = unsafe { str_arg(event_type) }?;
        // The text goes out as it is, checked but never built into a map (see encode_event_json).
        let data = match data_json.is_null() {
            true => "{}",
            false => unsafe { str_arg(data_json) }?,
        };
        Ok((event_type, data, qos_arg(qos)?))
    };
    unsafe {
        send(
            client,
            out_message_id,
            args,
            |c, (event_type, data, qos)| c.try_send_event_json(event_type, data, qos),
        )
    }
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
    let args = || {
        let key = unsafe { str_arg(key) }?;
        required(value_json)?;
        Ok((key, unsafe { json_arg(value_json, Value::Null) }?))
    };
    unsafe {
        send(client, out_message_id, args, |c, (key, value)| {
            c.try_kv_set(key, value)
        })
    }
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
    let key = || unsafe { str_arg(key) };
    unsafe { send(client, out_message_id, key, Client::try_kv_delete) }
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
        let get = |key: &str| Ok(inner.client()?.kv_get(key).map(|value| value.to_string()));
        unsafe { write_kv_value(key, get, buf, buf_len, out_len) }
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
    let args = || {
        let label = unsafe { str_arg(label) }?;
        Ok((label, unsafe { bytes_arg(data, data_len) }?, qos_arg(qos)?))
    };
    unsafe {
        send(client, out_message_id, args, |c, (label, data, qos)| {
            c.try_send_bulk_data(label, data, qos)
        })
    }
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
        inner.runtime.handle().spawn(async move {
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
            inner.runtime.handle().block_on(async move {
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
    out: *mut Counters,
) -> ModeStatus {
    ffi_guard!({
        let inner = unsafe { inner(client) }?;
        unsafe { write_required(out, || Ok(inner.client()?.stats().counters)) }
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

#[cfg(test)]
mod tests {
    use super::*;

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
