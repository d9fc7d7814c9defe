//! The callback types a client reports through that are not the client's alone: a command, and
//! a change of the key-value mirror (the engine's `mode_change_kind_t` names its kind).

use std::ffi::{c_char, c_void};

use mode_core::ddp::Change;
use mode_ffi_core::engine::ModeChangeKind;

use crate::util::{CText, opt_text};

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

/// Receives one change of the mirror. `key`, `value` and `previous` are borrowed for the call
/// (see the text rule at the top of mode_core.h); `value`/`previous` are JSON text or NULL (see
/// ::mode_change_kind_t).
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

/// Calls `cb` (if any) with one change, its texts alive for the call.
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
