//! `mode_mirror_*`: the DDP mirror for C callers that receive sync payloads themselves. The
//! read functions here also serve the session's mirror (`mode_session_kv_*`).

use std::ffi::{c_char, c_void};

use mode_core::ddp::{Applied, Change, IgnoreReason, Mirror};

use crate::util::{
    CText, borrow, borrow_mut, bytes_arg, fail, opt_text, str_arg, write_out, write_text,
};
use crate::{ModeStatus, ffi_guard};

/// A DDP mirror. Not thread-safe: use one from one thread at a time.
pub struct ModeMirror {
    pub(crate) inner: Mirror,
}

/// What happened to a key.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChangeKind {
    /// The key was created or changed; `value` is its new JSON, `previous` the old (NULL if new).
    ModeChangeSet = 1,
    /// The key was removed; `value` is NULL, `previous` the JSON it held.
    ModeChangeDeleted = 2,
}

/// Why a sync message changed nothing.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeIgnoreReason {
    /// It was applied.
    ModeIgnoreNone = 0,
    /// The mirror holds a newer revision.
    ModeIgnoreStale = 1,
    /// The mirror already applied this revision.
    ModeIgnoreDuplicate = 2,
}

/// A summary of one applied sync message.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeApplyInfo {
    /// The message's revision.
    pub rev: u64,
    /// True for a reload (its changes are the diff against the contents before it).
    pub reload: bool,
    /// Why it was ignored, or `MODE_IGNORE_NONE`.
    pub ignored: ModeIgnoreReason,
    /// For an ignored message, the revision the mirror holds (for the key, or for a reload, overall).
    pub held_rev: u64,
    /// How many changes were reported through the callback.
    pub changes: usize,
}

/// Receives one change. `key`, `value` and `previous` are borrowed for the call (see the text
/// rule at the top); `value`/`previous` are JSON text or NULL (see ::mode_change_kind_t).
/// Runs on the calling thread, after the mirror is updated: it may call the mirror's read
/// functions, but must not free the mirror.
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

/// Receives one key and its JSON value, borrowed for the call only.
pub type ModeEntryCb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        key: *const c_char,
        key_len: usize,
        value: *const c_char,
        value_len: usize,
    ),
>;

/// Hands each change of `applied` to `cb` and fills `out_info`. Shared by the mirror and the
/// session, so both report changes the same way.
///
/// # Safety
/// `cb` and `userdata` as documented on ::mode_change_cb; `out_info` NULL or writable.
pub(crate) unsafe fn report_applied(
    applied: &Applied,
    cb: ModeChangeCb,
    userdata: *mut c_void,
    out_info: *mut ModeApplyInfo,
) {
    let info = match applied {
        Applied::Changed {
            rev,
            reload,
            changes,
        } => ModeApplyInfo {
            rev: *rev,
            reload: *reload,
            ignored: ModeIgnoreReason::ModeIgnoreNone,
            held_rev: 0,
            changes: changes.len(),
        },
        Applied::Ignored { rev, held, reason } => ModeApplyInfo {
            rev: *rev,
            reload: false,
            ignored: match reason {
                IgnoreReason::Stale => ModeIgnoreReason::ModeIgnoreStale,
                IgnoreReason::Duplicate => ModeIgnoreReason::ModeIgnoreDuplicate,
            },
            held_rev: *held,
            changes: 0,
        },
    };
    unsafe { write_out(out_info, info) };
    for change in applied.changes() {
        unsafe { report_change(cb, userdata, change) };
    }
}

/// Hands one change to `cb` (if set) as JSON text views. The one place a [`Change`] meets C:
/// the mirror, the session and the client all report changes through it.
///
/// # Safety
/// `cb` and `userdata` as documented on ::mode_change_cb.
pub(crate) unsafe fn report_change(cb: ModeChangeCb, userdata: *mut c_void, change: &Change) {
    let Some(cb) = cb else { return };
    let json = |value: &serde_json::Value| CText::from_string(value.to_string());
    let (kind, key, value, previous) = match change {
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
    };
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

/// `get` of one key as JSON text into the caller's buffer; shared with the session.
///
/// # Safety
/// As ::mode_mirror_get.
pub(crate) unsafe fn get_json(
    mirror: &Mirror,
    key: *const c_char,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> Result<(), ModeStatus> {
    let key = unsafe { str_arg(key) }?;
    let value = mirror.get(key).ok_or(ModeStatus::ModeErrNotFound)?;
    unsafe { write_text(value.to_string().as_bytes(), buf, buf_len, out_len) }
}

/// Every live key in key order; shared with the session.
///
/// # Safety
/// As ::mode_mirror_for_each.
pub(crate) unsafe fn for_each(
    mirror: &Mirror,
    cb: ModeEntryCb,
    userdata: *mut c_void,
) -> Result<(), ModeStatus> {
    let cb = cb.ok_or(ModeStatus::ModeErrNull)?;
    // Copied first, so the callback may call the read functions without aliasing an iterator.
    let entries: Vec<(CText, CText)> = mirror
        .iter()
        .map(|(k, v)| (CText::new(k), CText::from_string(v.to_string())))
        .collect();
    for (key, value) in &entries {
        unsafe { cb(userdata, key.ptr(), key.len(), value.ptr(), value.len()) };
    }
    Ok(())
}

/// The whole mirror as one JSON object; shared with the session.
///
/// # Safety
/// As ::mode_mirror_snapshot.
pub(crate) unsafe fn snapshot_json(
    mirror: &Mirror,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> Result<(), ModeStatus> {
    unsafe {
        write_text(
            mirror.snapshot().to_string().as_bytes(),
            buf,
            buf_len,
            out_len,
        )
    }
}

/// Creates an empty mirror at revision 0 into `*out`; free it with ::mode_mirror_free.
///
/// # Safety
/// `out` must be NULL (an error) or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_mirror_new(out: *mut *mut ModeMirror) -> ModeStatus {
    ffi_guard!({
        let out = unsafe { borrow_mut(out) }?;
        *out = Box::into_raw(Box::new(ModeMirror {
            inner: Mirror::new(),
        }));
        Ok(())
    })
}

/// Destroys a mirror. NULL is a no-op. Freeing twice is undefined: set your pointer to NULL.
///
/// # Safety
/// `mirror` is NULL or came from ::mode_mirror_new and was not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_mirror_free(mirror: *mut ModeMirror) {
    let _ = ffi_guard!({
        if !mirror.is_null() {
            drop(unsafe { Box::from_raw(mirror) });
        }
        Ok(())
    });
}

/// Decodes a raw sync payload (as received on `/devices/{id}/kv`) and applies it. Each visible
/// change goes to `cb` (may be NULL) with `userdata`; `out_info` (may be NULL) gets a summary.
/// A payload that does not decode returns MODE_ERR_DECODE, changes nothing, and says where in
/// ::mode_last_error.
///
/// # Safety
/// `mirror` from ::mode_mirror_new; `payload` points to `payload_len` bytes (NULL only if 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_mirror_apply(
    mirror: *mut ModeMirror,
    payload: *const u8,
    payload_len: usize,
    cb: ModeChangeCb,
    userdata: *mut c_void,
    out_info: *mut ModeApplyInfo,
) -> ModeStatus {
    ffi_guard!({
        let payload = unsafe { bytes_arg(payload, payload_len) }?;
        let applied = {
            let mirror = unsafe { borrow_mut(mirror) }?;
            match mirror.inner.apply_json(payload) {
                Ok(applied) => applied,
                Err(err) => return Err(fail(ModeStatus::ModeErrDecode, err)),
            }
        };
        // The mirror is no longer borrowed: the callback may read it.
        unsafe { report_applied(&applied, cb, userdata, out_info) };
        Ok(())
    })
}

/// Marks the next reload as a new subscription's snapshot, applied even if its revision is lower
/// (call on every resubscription to the sync topic).
///
/// # Safety
/// `mirror` from ::mode_mirror_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_mirror_expect_reload(mirror: *mut ModeMirror) -> ModeStatus {
    ffi_guard!({
        unsafe { borrow_mut(mirror) }?.inner.expect_reload();
        Ok(())
    })
}

/// Copies the JSON text of `key`'s value and a NUL into `buf`. MODE_ERR_NOT_FOUND if the mirror
/// does not hold the key; MODE_ERR_BUFFER_TOO_SMALL with `*out_len` = the length needed.
///
/// # Safety
/// `mirror` from ::mode_mirror_new; `key` NUL-terminated; `buf` NULL or `buf_len` writable bytes;
/// `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_mirror_get(
    mirror: *const ModeMirror,
    key: *const c_char,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> ModeStatus {
    ffi_guard!({ unsafe { get_json(&borrow(mirror)?.inner, key, buf, buf_len, out_len) } })
}

/// Calls `cb` with each live key and its JSON value, in key order.
///
/// # Safety
/// `mirror` from ::mode_mirror_new; `cb` not NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_mirror_for_each(
    mirror: *const ModeMirror,
    cb: ModeEntryCb,
    userdata: *mut c_void,
) -> ModeStatus {
    ffi_guard!({ unsafe { for_each(&borrow(mirror)?.inner, cb, userdata) } })
}

/// Copies the whole mirror as one JSON object (keys in order) and a NUL into `buf`.
///
/// # Safety
/// As ::mode_mirror_get.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_mirror_snapshot(
    mirror: *const ModeMirror,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> ModeStatus {
    ffi_guard!({ unsafe { snapshot_json(&borrow(mirror)?.inner, buf, buf_len, out_len) } })
}

/// Writes the number of live keys to `*out_len` and the highest revision applied to `*out_rev`
/// (either may be NULL).
///
/// # Safety
/// `mirror` from ::mode_mirror_new.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_mirror_stat(
    mirror: *const ModeMirror,
    out_len: *mut usize,
    out_rev: *mut u64,
) -> ModeStatus {
    ffi_guard!({
        let mirror = unsafe { borrow(mirror) }?;
        unsafe {
            write_out(out_len, mirror.inner.len());
            write_out(out_rev, mirror.inner.rev());
        }
        Ok(())
    })
}
