//! The boundary's plumbing, shared by every export: the panic guard, reading C arguments, and
//! writing results into caller buffers.

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::ModeStatus;

/// Runs `body`; a panic becomes `MODE_ERR_PANIC`, never an unwind into C.
pub fn guard(body: impl FnOnce() -> Result<(), ModeStatus>) -> ModeStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => ModeStatus::ModeOk,
        Ok(Err(status)) => status,
        Err(_) => ModeStatus::ModeErrPanic,
    }
}

/// A shared reference from a C pointer, or `MODE_ERR_NULL`.
///
/// # Safety
/// `ptr` is NULL or points to a live `T` that nothing mutates for `'a`.
pub unsafe fn borrow<'a, T>(ptr: *const T) -> Result<&'a T, ModeStatus> {
    unsafe { ptr.as_ref() }.ok_or(ModeStatus::ModeErrNull)
}

/// A mutable reference from a C pointer, or `MODE_ERR_NULL`.
///
/// # Safety
/// `ptr` is NULL or points to a live `T` that nothing else uses for `'a`.
pub unsafe fn borrow_mut<'a, T>(ptr: *mut T) -> Result<&'a mut T, ModeStatus> {
    unsafe { ptr.as_mut() }.ok_or(ModeStatus::ModeErrNull)
}

/// A NUL-terminated UTF-8 C string, or `MODE_ERR_NULL` / `MODE_ERR_INVALID_UTF8`.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string that stays valid for `'a`.
pub unsafe fn str_arg<'a>(ptr: *const c_char) -> Result<&'a str, ModeStatus> {
    if ptr.is_null() {
        return Err(ModeStatus::ModeErrNull);
    }
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| ModeStatus::ModeErrInvalidUtf8)
}

/// Bytes from pointer + length; NULL is allowed only with length 0.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes that stay valid for `'a`.
pub unsafe fn bytes_arg<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], ModeStatus> {
    match (ptr.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err(ModeStatus::ModeErrNull),
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(ptr, len) }),
    }
}

/// JSON text from a C string: NULL means `default`, anything else must parse.
///
/// # Safety
/// As [`str_arg`].
pub unsafe fn json_arg(
    ptr: *const c_char,
    default: serde_json::Value,
) -> Result<serde_json::Value, ModeStatus> {
    if ptr.is_null() {
        return Ok(default);
    }
    let text = unsafe { str_arg(ptr) }?;
    serde_json::from_str(text).map_err(|_| ModeStatus::ModeErrInvalidJson)
}

/// Writes `text` and a NUL into `buf` when it fits; always reports the length needed (without
/// the NUL) through `out_len` when that is not NULL.
///
/// # Safety
/// `buf` is NULL or points to `buf_len` writable bytes; `out_len` is NULL or writable.
pub unsafe fn write_text(
    text: &[u8],
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> Result<(), ModeStatus> {
    if let Some(out_len) = unsafe { out_len.as_mut() } {
        *out_len = text.len();
    }
    if buf.is_null() || buf_len <= text.len() {
        return Err(ModeStatus::ModeErrBufferTooSmall);
    }
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        *buf.add(text.len()) = 0;
    }
    Ok(())
}

/// Writes `value` through `out` if it is not NULL.
///
/// # Safety
/// `out` is NULL or writable.
pub unsafe fn write_out<T>(out: *mut T, value: T) {
    if let Some(out) = unsafe { out.as_mut() } {
        *out = value;
    }
}

/// A NUL-terminated copy of an error message, kept by a handle as its last error.
pub fn error_text(message: impl std::fmt::Display) -> std::ffi::CString {
    // An interior NUL cannot come from our own messages; replace it rather than fail.
    std::ffi::CString::new(message.to_string().replace('\0', "\u{FFFD}")).unwrap_or_default()
}
