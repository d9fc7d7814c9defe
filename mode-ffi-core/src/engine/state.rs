//! What an application reads of an engine: its counters, its connection state, its DDP mirror.

use super::*;

/// Writes the engine's counters into `*out` (mode_stats_t is mode-core's `Counters`, one list
/// of fields for Rust, C and Python).
///
/// # Safety
/// `engine` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_stats(
    engine: *const ModeEngine,
    out: *mut Counters,
) -> ModeStatus {
    unsafe { read(engine, out, |engine| engine.stats().counters) }
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
        let mirror = unsafe { borrow(engine) }?.engine.mirror();
        let get = |key: &str| Ok(mirror.get(key).map(Value::to_string));
        unsafe { write_kv_value(key, get, buf, buf_len, out_len) }
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
