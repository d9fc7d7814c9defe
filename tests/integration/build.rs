//! Extracts the README's Rust quick start into `$OUT_DIR/readme.rs`, which the example
//! `readme` includes: the README stays the one copy of that program, and `scripts/check-readme`
//! runs it against the simulator.

use std::path::Path;

fn main() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    println!("cargo:rerun-if-changed={}", readme.display());
    let text = std::fs::read_to_string(&readme)
        .unwrap_or_else(|err| panic!("reading {}: {err}", readme.display()));
    let mut blocks = text.split("\n```rust\n").skip(1);
    let block = blocks
        .next()
        .and_then(|rest| rest.split("\n```").next())
        .expect("README.md has no ```rust block: the example `readme` runs it");
    assert!(
        blocks.next().is_none(),
        "README.md has more than one ```rust block: scripts/check-readme runs only the first"
    );
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("readme.rs");
    std::fs::write(&out, format!("{block}\n"))
        .unwrap_or_else(|err| panic!("writing {}: {err}", out.display()));
}
