//! The managed client against bare rumqttc, both publishing the same event stream to the same
//! in-process simulator in one run, and command latency from the simulator to the handler.
//! Prints a table; run with `cargo bench -p mode-integration --bench client_vs_rumqttc`.
//!
//! The two streams are in `mode_integration::streams`.
//!
//! On a shared 2-core machine one run's throughput swings by 2x with what the neighbours do,
//! so the two are run in pairs, back to back (each first in every other pair), and the ratio
//! reported is the median of the pairs' ratios (with its range): drift hits both halves of a
//! pair alike.

use std::time::{Duration, Instant};

use mode_client::{Client, Notification};
use mode_core::proto::{Command, Qos};
use mode_integration::streams::{self, DEVICE, data, median, range};
use mode_sim::{Sim, SimConfig};

const EVENTS: usize = 50_000;
const COMMANDS: usize = 2_000;
const RUNS: usize = 7;

/// Command latency: the simulator sends, the client's notification stream receives.
async fn command_latency(sim: &Sim) -> Vec<Duration> {
    let config = mode_integration::plain(sim, DEVICE, mode_integration::key(DEVICE))
        .build()
        .expect("config");
    let (client, mut notes) = Client::connect(config).expect("connect");
    while !matches!(notes.recv().await, Some(Notification::KvReloaded { .. })) {}
    let mut latencies = Vec::with_capacity(COMMANDS);
    for i in 0..COMMANDS {
        let start = Instant::now();
        sim.cloud()
            .send_command(DEVICE, Command::new("ping", data(i)))
            .expect("command");
        loop {
            if let Some(Notification::Command(_)) = notes.recv().await {
                break;
            }
        }
        latencies.push(start.elapsed());
    }
    client.close(Duration::from_secs(5)).await.expect("close");
    latencies
}

fn rate(d: Duration) -> f64 {
    EVENTS as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let sim = Sim::start(SimConfig::demo()).await.expect("simulator");
    println!(
        "| stream ({EVENTS} events, {RUNS} pairs of runs, same in-process simulator) | bare rumqttc (median) | libmode client (median) | client / rumqttc (median of pairs) | range of pairs |"
    );
    println!("|---|---|---|---|---|");
    for (name, qos) in [("QoS 0", Qos::AtMostOnce), ("QoS 1", Qos::AtLeastOnce)] {
        let mut bare = Vec::new();
        let mut ours = Vec::new();
        let mut ratios = Vec::new();
        for run in 0..RUNS {
            // Each goes first in every other pair, so neither always meets the simulator
            // after the other has grown its records.
            let (b, o) = if run % 2 == 0 {
                let b = streams::bare_rumqttc(&sim, qos, EVENTS).await;
                (b, streams::libmode(&sim, qos, EVENTS).await)
            } else {
                let o = streams::libmode(&sim, qos, EVENTS).await;
                (streams::bare_rumqttc(&sim, qos, EVENTS).await, o)
            };
            bare.push(b);
            ours.push(o);
            ratios.push(rate(o) / rate(b));
        }
        let (low, high) = range(&ratios);
        println!(
            "| {name} events/s | {:.0} | {:.0} | {:.2} | {low:.2}-{high:.2} |",
            rate(median(bare)),
            rate(median(ours)),
            median(ratios),
        );
    }
    let mut latencies = command_latency(&sim).await;
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!();
    println!(
        "| command latency, simulator to notification ({COMMANDS} commands, one at a time) | p50 | p99 | max |"
    );
    println!("|---|---|---|---|");
    println!(
        "| libmode client over MQTT on loopback | {:?} | {:?} | {:?} |",
        pick(0.50),
        pick(0.99),
        latencies[latencies.len() - 1]
    );
    sim.shutdown().await;
}
