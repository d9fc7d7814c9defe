//! The durable outbox's cost: one device streams QoS 1 events to the in-process simulator
//! (which keeps them in memory: only the client's disk work is measured), with the outbox in
//! memory and on disk under each sync policy, from one sending task (each send waits for its
//! own commit) and from 64 and 1,024 (a burst shares commits). Each durable run is paired with an
//! in-memory run back to back, and the ratio reported is the median of the pairs' ratios (a
//! shared 2-core machine drifts; drift hits both halves of a pair alike).
//! Run with `cargo bench -p mode-integration --bench durable_outbox`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mode_client::{Client, Notification, SyncPolicy};
use mode_core::proto::Qos;
use mode_integration::streams::{DEVICE, data, median, range};
use mode_sim::{Sim, SimConfig};

const EVENTS: usize = 20_000;
const RUNS: usize = 5;

/// Streams `events` QoS 1 events from `senders` concurrent sends; returns the time until the
/// simulator has them all.
async fn stream(sim: &Sim, sync: Option<SyncPolicy>, senders: usize, events: usize) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut builder =
        mode_integration::plain(sim, DEVICE, mode_integration::key(DEVICE)).queue_size(events);
    if let Some(sync) = sync {
        builder = builder.outbox_dir(dir.path()).outbox_sync(sync);
    }
    let (client, mut notes) = Client::connect(builder.build().expect("config")).expect("connect");
    while !matches!(notes.recv().await, Some(Notification::KvReloaded { .. })) {}
    let before = sim.cloud().event_count();
    let start = Instant::now();
    futures_util::stream::iter(0..events)
        .map(|i| {
            let client = client.clone();
            async move {
                // The send returned: its message is accepted (and durable); its delivery is
                // not waited for, as in the in-memory run.
                drop(
                    client
                        .send_event("temperature", data(i), Qos::AtLeastOnce)
                        .await
                        .expect("send"),
                );
            }
        })
        .buffer_unordered(senders)
        .for_each(|_| async {})
        .await;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while sim.cloud().event_count() < before + events {
        assert!(start.elapsed() < Duration::from_secs(600), "too slow");
        tick.tick().await;
    }
    let elapsed = start.elapsed();
    client.close(Duration::from_secs(10)).await.expect("close");
    elapsed
}

#[tokio::main]
async fn main() {
    let sim = Sim::start(SimConfig::demo()).await.expect("simulator");
    println!(
        "| outbox (QoS 1, one device, {RUNS} pairs of runs) | concurrent sends | events | in memory, events/s (median) | durable, events/s (median) | durable / in memory (median of pairs) | range |"
    );
    println!("|---|---|---|---|---|---|---|");
    let policies = [
        ("fsync per message", SyncPolicy::EveryMessage),
        (
            "group commit, 0 ms",
            SyncPolicy::GroupCommit(Duration::ZERO),
        ),
        (
            "group commit, 5 ms",
            SyncPolicy::GroupCommit(Duration::from_millis(5)),
        ),
    ];
    // MODE_OUTBOX_BENCH_SENDERS=1,64 runs only those rows.
    let senders_list: Vec<usize> = std::env::var("MODE_OUTBOX_BENCH_SENDERS")
        .unwrap_or_else(|_| "1,64,1024".into())
        .split(',')
        .map(|n| n.trim().parse().expect("a number of senders"))
        .collect();
    for senders in senders_list {
        for (name, policy) in policies {
            // One sender waits for each commit: fewer events keep the run short.
            let events = if senders == 1 { EVENTS / 10 } else { EVENTS };
            let (mut memory, mut durable, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for run in 0..RUNS {
                let (m, d) = if run % 2 == 0 {
                    let m = stream(&sim, None, senders, events).await;
                    (m, stream(&sim, Some(policy), senders, events).await)
                } else {
                    let d = stream(&sim, Some(policy), senders, events).await;
                    (stream(&sim, None, senders, events).await, d)
                };
                let rate = |d: Duration| events as f64 / d.as_secs_f64();
                memory.push(rate(m));
                durable.push(rate(d));
                ratios.push(rate(d) / rate(m));
            }
            let (lo, hi) = range(&ratios);
            println!(
                "| {name} | {senders} | {events} | {:.0} | {:.0} | {:.2}x | {lo:.2}-{hi:.2}x |",
                median(memory),
                median(durable),
                median(ratios)
            );
        }
    }
}
