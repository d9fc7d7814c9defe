//! libmode_core: the C library of the engine alone. Every export (`mode_engine_*`,
//! `mode_status_str`, `mode_last_error`, `mode_set_allocator`, ...) is defined in mode-ffi-core;
//! this crate only links it into a `cdylib` and a `staticlib` named `mode_core`.
pub use mode_ffi_core;
