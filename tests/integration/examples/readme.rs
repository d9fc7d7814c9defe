//! The README's Rust quick start, extracted by build.rs so that README.md holds its only copy.
//! Run by `scripts/check-readme` against `cargo run -p mode-sim`.

include!(concat!(env!("OUT_DIR"), "/readme.rs"));
