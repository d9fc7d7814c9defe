//! The managed client against bare rumqttc, both publishing the same event stream to the same
//! in-process simulator in one run, and command latency from the simulator to the handler.
//! Prints a table; run with `cargo bench -p mode-integration --bench client_vs_rumqttc`.
//!
//! Both sides finish when the simulator has recorded every event, so both pay for the same
//! broker work and the ratio measures only what the client adds on top of rumqttc.
//!
//! On a shared 2-core machine one run's throughput swings by 2x with what the neighbours do,
//! so the two are run in pairs, back to back, and the ratio reported is the median of the
//! pairs' ratios (with its range): drift hits both halves of a pair alike.

use std::time::{Duration, Instant};

use mode_core::backoff::BackoffPolicy;
use mode_core::client::{Client, ClientConfig, Notification};
use mode_core::proto::{Command, Event, Map, Qos as ModeQos, Topic, Value};
use mode_sim::{Sim, SimConfig};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;

const DEVICE: u64 = 1001;
const EVENTS: usize = 20_000;
const COMMANDS: usize = 2_000;
const RUNS: usize = 7;
const WAIT: Duration = Duration::from_secs(120);

fn data(i: usize) -> Map<String, Value> {
    match json!({"celsius": 21, "seq": i}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn key() -> String {
    mode_sim::config::demo_device_key(DEVICE)
}

/// Waits until the simulator has recorded `total` events.
async fn recorded(sim: &Sim, total: usize) {
    assert!(
        sim.cloud()
            .wait_for(WAIT, |c| c.event_count() >= total)
            .await,
        "the simulator did not record every event"
    );
}

/// Publishes EVENTS events with bare rumqttc; returns the time until the cloud has them all.
async fn bare_rumqttc(sim: &Sim, qos: QoS) -> Duration {
    let addr = sim.mqtt_addr();
    let mut options = MqttOptions::new("", addr.ip().to_string(), addr.port());
    options
        .set_credentials(DEVICE.to_string(), key())
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(60))
        .set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 1_000);
    let driver = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topic = Topic::event(DEVICE).to_string();
    let before = sim.cloud().event_count();
    let start = Instant::now();
    for i in 0..EVENTS {
        let payload = Event::new("temperature", data(i)).encode();
        client
            .publish(&topic, qos, false, payload)
            .await
            .expect("publish");
    }
    recorded(sim, before + EVENTS).await;
    let elapsed = start.elapsed();
    let _ = client.disconnect().await;
    driver.abort();
    elapsed
}

/// Publishes EVENTS events through libmode's client; returns the time until the cloud has them.
async fn libmode(sim: &Sim, qos: ModeQos) -> Duration {
    let addr = sim.mqtt_addr();
    let config = ClientConfig::builder(DEVICE, key())
        .plain_tcp()
        .mqtt_host(addr.ip().to_string())
        .mqtt_port(addr.port())
        .queue_size(EVENTS)
        .backoff(BackoffPolicy::default())
        .build()
        .expect("config");
    let (client, mut notes) = Client::connect(config).expect("connect");
    while !matches!(notes.recv().await, Some(Notification::KvReloaded { .. })) {}
    let before = sim.cloud().event_count();
    let start = Instant::now();
    for i in 0..EVENTS {
        client
            .send_event("temperature", data(i), qos)
            .await
            .expect("send");
    }
    recorded(sim, before + EVENTS).await;
    let elapsed = start.elapsed();
    client.close(Duration::from_secs(5)).await.expect("close");
    elapsed
}

/// Command latency: the simulator sends, the client's notification stream receives.
async fn command_latency(sim: &Sim) -> Vec<Duration> {
    let addr = sim.mqtt_addr();
    let config = ClientConfig::builder(DEVICE, key())
        .plain_tcp()
        .mqtt_host(addr.ip().to_string())
        .mqtt_port(addr.port())
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

fn median<T: PartialOrd + Copy>(mut runs: Vec<T>) -> T {
    runs.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    runs[runs.len() / 2]
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
    for (name, bare_qos, mode_qos) in [
        ("QoS 0", QoS::AtMostOnce, ModeQos::AtMostOnce),
        ("QoS 1", QoS::AtLeastOnce, ModeQos::AtLeastOnce),
    ] {
        let mut bare = Vec::new();
        let mut ours = Vec::new();
        let mut ratios = Vec::new();
        for _ in 0..RUNS {
            let (b, o) = (
                bare_rumqttc(&sim, bare_qos).await,
                libmode(&sim, mode_qos).await,
            );
            bare.push(b);
            ours.push(o);
            ratios.push(rate(o) / rate(b));
        }
        let (low, high) = (
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
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
