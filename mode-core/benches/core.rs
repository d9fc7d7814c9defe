//! Throughput of the IO-free core on one thread: `set` messages decoded and applied per second,
//! and the time to decode and apply a 100,000-item reload. Prints a table; run with
//! `cargo bench -p mode-core --bench core`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mode_core::ddp::Mirror;
use mode_core::proto::{KvItem, Reload, SyncMessage};
use mode_core::session::Session;
use serde_json::json;

const SETS: usize = 1_000_000;
const KEYS: usize = 1_000;
const RELOAD_ITEMS: usize = 100_000;
const RUNS: usize = 5;

/// The median of `RUNS` timings of `f`, after one warm-up run.
fn median(mut f: impl FnMut() -> Duration) -> Duration {
    f();
    let mut times: Vec<_> = (0..RUNS).map(|_| f()).collect();
    times.sort();
    times[RUNS / 2]
}

/// `set` messages as the cloud sends them: rising revs over a thousand keys, mixed value types.
fn set_messages() -> Vec<Vec<u8>> {
    (0..SETS)
        .map(|i| {
            let value = match i % 3 {
                0 => json!(i),
                1 => json!(format!("value-{i}")),
                _ => json!({"on": i % 2 == 0, "level": i % 100}),
            };
            SyncMessage::Set {
                rev: i as u64 + 1,
                key: format!("key-{:04}", i % KEYS),
                value,
            }
            .encode()
        })
        .collect()
}

fn reload_message(rev: u64, salt: &str) -> Vec<u8> {
    let items = (0..RELOAD_ITEMS)
        .map(|i| KvItem {
            key: format!("key-{i:06}"),
            value: if i % 10 == 0 {
                json!(format!("{salt}-{i}"))
            } else {
                json!(i)
            },
            modification_time: Some("2017-11-19T01:23:22Z".into()),
        })
        .collect();
    SyncMessage::Reload(Reload { rev, items }).encode()
}

fn main() {
    let sets = set_messages();
    let bytes: usize = sets.iter().map(Vec::len).sum();

    let decode_apply = median(|| {
        let mut mirror = Mirror::new();
        let start = Instant::now();
        for message in &sets {
            let message = SyncMessage::decode(message).expect("valid");
            let _ = black_box(mirror.apply(message));
        }
        black_box(mirror.len());
        start.elapsed()
    });

    let decode_only = median(|| {
        let start = Instant::now();
        for message in &sets {
            black_box(SyncMessage::decode(message).expect("valid"));
        }
        start.elapsed()
    });

    let mut session = Session::new(1234, 0);
    let via_session = median(|| {
        session.on_subscribed();
        let _ = session.handle(
            "/devices/1234/kv",
            br#"{"action":"reload","rev":0,"items":[]}"#,
        );
        let start = Instant::now();
        for message in &sets {
            black_box(session.handle("/devices/1234/kv", message));
        }
        start.elapsed()
    });

    let first = reload_message(10, "a");
    let second = reload_message(20, "b");
    let reload_empty = median(|| {
        let mut mirror = Mirror::new();
        let start = Instant::now();
        let message = SyncMessage::decode(&first).expect("valid");
        let _ = black_box(mirror.apply(message));
        start.elapsed()
    });
    let reload_decode = median(|| {
        let start = Instant::now();
        black_box(SyncMessage::decode(&first).expect("valid"));
        start.elapsed()
    });
    let reload_diff = median(|| {
        let mut mirror = Mirror::new();
        let _ = mirror.apply(SyncMessage::decode(&first).expect("valid"));
        let start = Instant::now();
        let message = SyncMessage::decode(&second).expect("valid");
        let applied = mirror.apply(message);
        let elapsed = start.elapsed();
        assert_eq!(applied.changes().len(), RELOAD_ITEMS / 10);
        elapsed
    });

    let per_sec = |d: Duration| SETS as f64 / d.as_secs_f64();
    println!("| benchmark (one thread, median of {RUNS}) | result | target |");
    println!("|---|---|---|");
    println!(
        "| `set` decode + apply ({SETS} msgs, {KEYS} keys, {:.0} B avg) | {:.2} M msgs/s | >= 1 M msgs/s |",
        bytes as f64 / SETS as f64,
        per_sec(decode_apply) / 1e6
    );
    println!(
        "| `set` decode only | {:.2} M msgs/s | |",
        per_sec(decode_only) / 1e6
    );
    println!(
        "| `set` through `Session::handle` (topic parse + decode + apply) | {:.2} M msgs/s | |",
        per_sec(via_session) / 1e6
    );
    println!(
        "| {RELOAD_ITEMS}-item reload, decode + apply into an empty mirror ({:.1} MB) | {:.1} ms | < 100 ms |",
        first.len() as f64 / 1e6,
        reload_empty.as_secs_f64() * 1e3
    );
    println!(
        "| {RELOAD_ITEMS}-item reload, decode only | {:.1} ms | |",
        reload_decode.as_secs_f64() * 1e3
    );
    println!(
        "| {RELOAD_ITEMS}-item reload over the previous one (10% changed, diff reported) | {:.1} ms | < 100 ms |",
        reload_diff.as_secs_f64() * 1e3
    );
}
