//! How many events per second the simulator's MQTT server accepts (decoded, stamped and
//! recorded by the cloud) from 1, 4 and 16 rumqttc clients publishing as fast as they can, at
//! QoS 0 and QoS 1. Bounded: each cell runs for `WINDOW`. `cargo bench -p mode-sim --bench
//! sim_throughput`.

use std::time::{Duration, Instant};

use mode_sim::config::{DeviceConfig, HomeConfig, ProjectConfig};
use mode_sim::{Sim, SimConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const WINDOW: Duration = Duration::from_millis(700);
const CLIENTS: [usize; 3] = [1, 4, 16];

fn config() -> SimConfig {
    let devices = (0..16)
        .map(|i| DeviceConfig {
            id: 2001 + i,
            api_key: format!("v1.bench-{i}"),
            name: String::new(),
            tag: String::new(),
            device_class: String::new(),
            home_id: Some(10),
        })
        .collect();
    SimConfig {
        projects: vec![ProjectConfig {
            id: 1,
            homes: vec![HomeConfig {
                id: 10,
                name: "bench".into(),
            }],
            devices,
            app_keys: Vec::new(),
            bulk_data: Vec::new(),
            provisioning_tokens: Vec::new(),
        }],
        ..SimConfig::default()
    }
}

/// Events per second the cloud recorded while `n` clients published at `qos` for `WINDOW`.
async fn measure(sim: &Sim, n: usize, qos: QoS) -> f64 {
    let addr = sim.mqtt_addr();
    let mut clients = Vec::new();
    for i in 0..n as u64 {
        let mut opts = MqttOptions::new("", addr.ip().to_string(), addr.port());
        opts.set_credentials((2001 + i).to_string(), format!("v1.bench-{i}"));
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_inflight(100);
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(err) => panic!("bench client could not connect: {err}"),
            }
        }
        let driver = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        clients.push((client, driver, 2001 + i));
    }
    sim.cloud().clear_records();
    let start = Instant::now();
    let deadline = start + WINDOW;
    let mut senders = Vec::new();
    for (client, _, device) in &clients {
        let client = client.clone();
        let topic = format!("/devices/{device}/event");
        senders.push(tokio::spawn(async move {
            let payload = br#"{"eventType":"bench","eventData":{"temperature":21.5,"n":1}}"#;
            while Instant::now() < deadline {
                if client
                    .publish(&topic, qos, false, &payload[..])
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
    tokio::time::sleep_until(deadline.into()).await;
    let accepted = sim.cloud().event_count();
    let elapsed = start.elapsed();
    for sender in senders {
        sender.abort();
    }
    for (client, driver, _) in clients {
        let _ = client.try_disconnect();
        driver.abort();
    }
    sim.cloud().drop_all_connections();
    sim.cloud().clear_records();
    accepted as f64 / elapsed.as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let sim = Sim::start(config()).await.expect("the simulator starts");
        println!(
            "mode-sim MQTT throughput: events/s recorded by the cloud, {} ms per cell, {} cores",
            WINDOW.as_millis(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        // A markdown table, as every benchmark prints (scripts/bench keeps the `|` lines).
        println!("| clients | QoS 0 events/s | QoS 1 events/s |");
        println!("|---:|---:|---:|");
        for n in CLIENTS {
            let q0 = measure(&sim, n, QoS::AtMostOnce).await;
            let q1 = measure(&sim, n, QoS::AtLeastOnce).await;
            println!("| {n} | {q0:.0} | {q1:.0} |");
        }
        sim.shutdown().await;
    });
}
