//! libmode_core: the C library of the engine alone. Every export (`mode_engine_*`,
//! `mode_status_str`, `mode_last_error`, `mode_set_allocator`, ...) is defined in mode-ffi-core;
//! this crate only links it into a `cdylib` and a `staticlib` named `mode_core`.
//!
//! Shipped without std (`--no-default-features`, profile `dist-core`): what a firmware links,
//! and a third smaller, since std brings its panic-time backtrace printer. An internal bug then
//! aborts the program instead of returning MODE_ERR_PANIC.
#![cfg_attr(not(feature = "std"), no_std)]

pub use mode_ffi_core;

#[cfg(not(feature = "std"))]
#[link(name = "c")]
unsafe extern "C" {
    fn abort() -> !;
}

/// A bug in the library: stop, as `panic = "abort"` would with std (no message: printing needs
/// an output the library does not own).
#[cfg(not(feature = "std"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    unsafe { abort() }
}

// The prebuilt `core` and `alloc` of this target were built to unwind and keep references to
// the unwinder (`_Unwind_Resume`) and its personality routine, which std would bring. Built with
// panic = "abort" nothing ever unwinds, so neither is ever called: they are defined here as
// hidden weak symbols that trap (a real unwinder in the same link wins), neither exported from the library (it exports only mode_*) nor
// pulling in libgcc_s. A firmware target's prebuilt core aborts on panic and needs neither.
#[cfg(all(not(feature = "std"), target_arch = "x86_64"))]
core::arch::global_asm!(
    ".weak rust_eh_personality",
    ".hidden rust_eh_personality",
    "rust_eh_personality:",
    "ud2",
    ".weak _Unwind_Resume",
    ".hidden _Unwind_Resume",
    "_Unwind_Resume:",
    "ud2",
);

#[cfg(all(not(feature = "std"), target_arch = "aarch64"))]
core::arch::global_asm!(
    ".weak rust_eh_personality",
    ".hidden rust_eh_personality",
    "rust_eh_personality:",
    "brk #0",
    ".weak _Unwind_Resume",
    ".hidden _Unwind_Resume",
    "_Unwind_Resume:",
    "brk #0",
);
