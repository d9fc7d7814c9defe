//! One event stream, for profilers: `cargo run --release -p mode-integration --example
//! profile_events -- <libmode|rumqttc> <0|1> [events]`. Starts the in-process simulator,
//! connects, sends the events, waits until the simulator has them all, and prints the time.
//! Under `valgrind --tool=callgrind` the instruction count per event is the figure that
//! BENCHMARKS.md compares, because it does not depend on what else the machine is doing.

use std::time::{Duration, Instant};

use mode_core::client::{Client, ClientConfig, Notification};
use mode_core::proto::{Event, Map, Qos, Topic, Value};
use mode_sim::{Sim, SimConfig};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;

const DEVICE: u64 = 1001;

fn data(i: usize) -> Map<String, Value> {
    match json!({"celsius": 21, "seq": i}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: profile_events <libmode|rumqttc> <0|1> [events]";
    let which = args.get(1).expect(usage).clone();
    let qos1 = args.get(2).expect(usage) == "1";
    let events: usize = args.get(3).map_or(20_000, |n| n.parse().expect(usage));
    let sim = Sim::start(SimConfig::demo()).await.expect("simulator");
    let addr = sim.mqtt_addr();
    let key = mode_sim::config::demo_device_key(DEVICE);
    let start;
    match which.as_str() {
        "libmode" => {
            let config = ClientConfig::builder(DEVICE, key)
                .plain_tcp()
                .mqtt_host(addr.ip().to_string())
                .mqtt_port(addr.port())
                .queue_size(events)
                .build()
                .expect("config");
            let (client, mut notes) = Client::connect(config).expect("connect");
            while !matches!(notes.recv().await, Some(Notification::KvReloaded { .. })) {}
            let qos = if qos1 {
                Qos::AtLeastOnce
            } else {
                Qos::AtMostOnce
            };
            start = Instant::now();
            for i in 0..events {
                client
                    .send_event("temperature", data(i), qos)
                    .await
                    .expect("send");
            }
            wait(&sim, events).await;
            println!("libmode: {:?}", start.elapsed());
            client.close(Duration::from_secs(5)).await.expect("close");
        }
        "rumqttc" => {
            let mut options = MqttOptions::new("", addr.ip().to_string(), addr.port());
            options
                .set_credentials(DEVICE.to_string(), key)
                .set_clean_session(true)
                .set_keep_alive(Duration::from_secs(60))
                .set_inflight(100);
            let (client, mut eventloop) = AsyncClient::new(options, 1_000);
            let driver = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
            let topic = Topic::event(DEVICE).to_string();
            let qos = if qos1 {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            };
            start = Instant::now();
            for i in 0..events {
                let payload = Event::new("temperature", data(i)).encode();
                client
                    .publish(&topic, qos, false, payload)
                    .await
                    .expect("publish");
            }
            wait(&sim, events).await;
            println!("rumqttc: {:?}", start.elapsed());
            let _ = client.disconnect().await;
            driver.abort();
        }
        _ => panic!("{usage}"),
    }
    sim.shutdown().await;
}

async fn wait(sim: &Sim, events: usize) {
    assert!(
        sim.cloud()
            .wait_for(Duration::from_secs(300), |c| c.event_count() >= events)
            .await,
        "the simulator did not record every event"
    );
}
