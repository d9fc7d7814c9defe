//! The boundary's plumbing, shared by every export: the panic guard, reading C arguments, and
//! writing results into caller buffers.

use core::ffi::{CStr, c_char};

use crate::ModeStatus;
use crate::prelude::*;

/// The last error: a generation (bumped by every [`fail`]), the status and its text. Read with
/// `mode_last_error`.
type LastError = (u64, ModeStatus, String);

#[cfg(feature = "std")]
std::thread_local! {
    /// With std, one per thread.
    static LAST_ERROR: core::cell::RefCell<LastError> =
        const { core::cell::RefCell::new((0, ModeStatus::ModeOk, String::new())) };
}

/// Runs `f` on the calling thread's last error.
#[cfg(feature = "std")]
fn with_last_error<R>(f: impl FnOnce(&mut LastError) -> R) -> R {
    LAST_ERROR.with(|last| f(&mut last.borrow_mut()))
}

/// Without std (a firmware, usually one thread calling the library): one for the process,
/// behind a spin lock held only while it is read or written.
#[cfg(not(feature = "std"))]
fn with_last_error<R>(f: impl FnOnce(&mut LastError) -> R) -> R {
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicBool, Ordering};
    struct Slot(AtomicBool, UnsafeCell<LastError>);
    // SAFETY: the cell is only reached while the flag is held.
    unsafe impl Sync for Slot {}
    static LAST_ERROR: Slot = Slot(
        AtomicBool::new(false),
        UnsafeCell::new((0, ModeStatus::ModeOk, String::new())),
    );
    while LAST_ERROR
        .0
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    // SAFETY: the flag is held: no other reference to the cell exists.
    let result = f(unsafe { &mut *LAST_ERROR.1.get() });
    LAST_ERROR.0.store(false, Ordering::Release);
    result
}

fn generation() -> u64 {
    with_last_error(|last| last.0)
}

/// Records why a call fails with `status` as the last error, and returns `status`.
pub fn fail(status: ModeStatus, message: impl core::fmt::Display) -> ModeStatus {
    let text = message.to_string().replace('\0', "\u{FFFD}");
    with_last_error(|last| *last = (last.0.wrapping_add(1), status, text));
    status
}

/// Runs `body`, with std catching a panic (MODE_ERR_PANIC, never an unwind into C); without std
/// the library is built with `panic = "abort"`, and a panic aborts.
fn contain<T>(body: impl FnOnce() -> Result<T, ModeStatus>) -> Result<T, ModeStatus> {
    #[cfg(feature = "std")]
    return std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
        .unwrap_or(Err(ModeStatus::ModeErrPanic));
    #[cfg(not(feature = "std"))]
    return body();
}

/// Runs `body` (see `contain`: a panic is MODE_ERR_PANIC with std). An error the body did not explain with [`fail`] gets its
/// status's own text as the last error.
pub fn guard(body: impl FnOnce() -> Result<(), ModeStatus>) -> ModeStatus {
    let before = generation();
    let status = match contain(body) {
        Ok(()) => return ModeStatus::ModeOk,
        Err(status) => status,
    };
    let explained = with_last_error(|last| last.0 != before && last.1 == status);
    if !explained {
        let text = status.description().to_string_lossy().into_owned();
        fail(status, text);
    }
    status
}

/// Hands the last error to `read` without changing it, whatever `read` returns.
pub fn read_last_error(read: impl FnOnce(&[u8]) -> Result<(), ModeStatus>) -> ModeStatus {
    let text = with_last_error(|last| last.2.clone());
    match contain(|| read(text.as_bytes())) {
        Ok(()) => ModeStatus::ModeOk,
        Err(status) => status,
    }
}

/// Text handed to C for the length of one call: pointer + length, and NUL-terminated as well
/// (the NUL not counted), as mode.h promises for every string the library hands out.
pub struct CText(Vec<u8>);

impl CText {
    /// A NUL-terminated copy of `text`.
    pub fn new(text: &str) -> CText {
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(0);
        CText(bytes)
    }

    /// Takes `text` over, adding the NUL (no copy when it has room).
    pub fn from_string(text: String) -> CText {
        let mut bytes = text.into_bytes();
        bytes.push(0);
        CText(bytes)
    }

    /// The first byte.
    pub fn ptr(&self) -> *const c_char {
        self.0.as_ptr().cast()
    }

    /// The length without the NUL.
    pub fn len(&self) -> usize {
        self.0.len() - 1
    }

    /// True for the empty text.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An optional text as pointer + length: NULL and 0 for none.
pub fn opt_text(text: Option<&CText>) -> (*const c_char, usize) {
    text.map_or((core::ptr::null(), 0), |t| (t.ptr(), t.len()))
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
    unsafe { CStr::from_ptr(ptr) }.to_str().map_err(|err| {
        fail(
            ModeStatus::ModeErrInvalidUtf8,
            format!("a string argument is not UTF-8: {err}"),
        )
    })
}

/// Bytes from pointer + length; NULL is allowed only with length 0.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes that stay valid for `'a`.
pub unsafe fn bytes_arg<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], ModeStatus> {
    match (ptr.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err(ModeStatus::ModeErrNull),
        (false, _) => Ok(unsafe { core::slice::from_raw_parts(ptr, len) }),
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
    serde_json::from_str(text).map_err(|err| {
        fail(
            ModeStatus::ModeErrInvalidJson,
            format!("not valid JSON: {err}"),
        )
    })
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
        core::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        *buf.add(text.len()) = 0;
    }
    Ok(())
}

/// A required pointer argument: MODE_ERR_NULL when it is NULL.
pub fn required<T>(ptr: *const T) -> Result<(), ModeStatus> {
    if ptr.is_null() {
        return Err(ModeStatus::ModeErrNull);
    }
    Ok(())
}

/// Writes what `value` gives through a required out-pointer. `out` is checked first
/// (MODE_ERR_NULL, and `value` does not run: nothing happens), so `value` may consume
/// something (an engine's next event) knowing it will be handed out.
///
/// # Safety
/// `out` is NULL or writable.
pub unsafe fn write_required<T>(
    out: *mut T,
    value: impl FnOnce() -> Result<T, ModeStatus>,
) -> Result<(), ModeStatus> {
    required(out)?;
    let value = value()?;
    // `write`, not `*out = `: the caller's memory may be uninitialized (no old value to drop).
    unsafe { out.write(value) };
    Ok(())
}

/// Hands a new object to C through a required out-pointer, as ::mode_engine_new,
/// ::mode_config_new, ... do: MODE_ERR_NULL when `out` is NULL (and `object` does not run).
///
/// # Safety
/// `out` is NULL or writable.
pub unsafe fn write_new<T>(
    out: *mut *mut T,
    object: impl FnOnce() -> Result<T, ModeStatus>,
) -> Result<(), ModeStatus> {
    unsafe { write_required(out, || Ok(Box::into_raw(Box::new(object()?)))) }
}

/// Frees an object [`write_new`] handed out, guarded like every export; NULL is a no-op. The
/// body of every `mode_*_free` of an object with nothing to finish first.
///
/// # Safety
/// `object` is NULL or from [`write_new`] with this `T`, not freed yet.
pub unsafe fn free_new<T>(object: *mut T) {
    let _ = guard(|| {
        if !object.is_null() {
            drop(unsafe { Box::from_raw(object) });
        }
        Ok(())
    });
}

/// A C enum of the library (`#[repr(C)]`, passed in as an `int` and checked): its number and
/// its C name, both read from the enum itself. Implemented with [`c_enums!`](crate::c_enums).
pub trait CEnum: Copy + core::fmt::Debug {
    /// The number C passes.
    fn number(self) -> core::ffi::c_int;

    /// The name C writes: the variant's in SCREAMING_SNAKE_CASE, as cbindgen.toml renames it
    /// (`ModeQosAtMostOnce` is `MODE_QOS_AT_MOST_ONCE`).
    fn c_name(self) -> String {
        let mut name = String::new();
        for (i, c) in format!("{self:?}").chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_uppercase());
        }
        name
    }
}

/// Implements [`CEnum`](crate::util::CEnum) for `#[repr(C)]` enums with explicit values.
#[macro_export]
macro_rules! c_enums {
    ($($name:ty),* $(,)?) => {$(
        impl $crate::util::CEnum for $name {
            fn number(self) -> core::ffi::c_int {
                self as core::ffi::c_int
            }
        }
    )*};
}

/// A C enum passed as an `int`, checked: the value `table` pairs with the variant numbered
/// `value`, or MODE_ERR_INVALID_ARGUMENT saying what `what` (e.g. "QoS") accepts, as "`what` 7
/// is not a `c_type`: use MODE_X (0) or MODE_Y (1)".
pub fn enum_arg<C: CEnum, T: Copy>(
    value: core::ffi::c_int,
    table: &[(C, T)],
    what: &str,
    c_type: &str,
) -> Result<T, ModeStatus> {
    if let Some((_, found)) = table.iter().find(|(variant, _)| variant.number() == value) {
        return Ok(*found);
    }
    let mut accepted = String::new();
    for (i, (variant, _)) in table.iter().enumerate() {
        let separator = match i {
            0 => "",
            _ if i + 1 == table.len() => " or ",
            _ => ", ",
        };
        let (name, number) = (variant.c_name(), variant.number());
        accepted.push_str(&format!("{separator}{name} ({number})"));
    }
    Err(fail(
        ModeStatus::ModeErrInvalidArgument,
        format!("{what} {value} is not a {c_type}: use {accepted}"),
    ))
}

/// The body of every "value of a key" export (::mode_engine_kv_get, ::mode_client_kv_get): the
/// JSON text of the value `get` finds for `key` (NUL-terminated, checked) into `buf` as
/// [`write_text`] does, or MODE_ERR_NOT_FOUND naming the key.
///
/// # Safety
/// `key` as [`str_arg`]; `buf`, `out_len` as [`write_text`].
pub unsafe fn write_kv_value(
    key: *const c_char,
    get: impl FnOnce(&str) -> Result<Option<String>, ModeStatus>,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> Result<(), ModeStatus> {
    let key = unsafe { str_arg(key) }?;
    let Some(json) = get(key)? else {
        return Err(fail(
            ModeStatus::ModeErrNotFound,
            format!("no key {key:?} in the mirror"),
        ));
    };
    unsafe { write_text(json.as_bytes(), buf, buf_len, out_len) }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_arg_takes_the_listed_numbers_and_names_them_all_otherwise() {
        #[derive(Debug, Clone, Copy)]
        enum Letters {
            ModeLetterA = 0,
            ModeLetterB = 1,
            ModeLetterCc = 5,
        }
        crate::c_enums!(Letters);
        use Letters::*;
        let table = [(ModeLetterA, 'a'), (ModeLetterB, 'b'), (ModeLetterCc, 'c')];
        assert_eq!(enum_arg(5, &table, "letter", "letter_t"), Ok('c'));
        assert_eq!(
            enum_arg(2, &table, "letter", "letter_t"),
            Err(ModeStatus::ModeErrInvalidArgument)
        );
        let mut text = Vec::new();
        read_last_error(|last| {
            text = last.to_vec();
            Ok(())
        });
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "letter 2 is not a letter_t: use MODE_LETTER_A (0), MODE_LETTER_B (1) or MODE_LETTER_CC (5)"
        );
    }

    #[test]
    fn the_last_error_never_holds_an_interior_nul() {
        // mode_last_error hands the text out NUL-terminated: a NUL inside would cut it short.
        // The text is read out and checked outside the reader: read_last_error catches a panic
        // in it (MODE_ERR_PANIC), so an assert in there could never fail the test.
        fail(ModeStatus::ModeErrDecode, "a\0b");
        let mut seen = Vec::new();
        let status = read_last_error(|text| {
            seen = text.to_vec();
            Ok(())
        });
        assert_eq!(status, ModeStatus::ModeOk);
        assert_eq!(seen, "a\u{FFFD}b".as_bytes());
    }
}
