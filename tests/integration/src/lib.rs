//! Integration tests live in `tests/`; this crate only gathers their dependencies.
