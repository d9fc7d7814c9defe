//! One event stream, sent with bare rumqttc or through libmode's client, to the same simulator:
//! what the `client_vs_rumqttc` benchmark compares and what `examples/profile_events` runs under
//! a profiler. Both end when the simulator has recorded every event, so both pay for the same
//! broker work and a ratio measures only what the client adds on top of rumqttc.

use std::time::{Duration, Instant};

use mode_client::{Client, Notification};
use mode_core::backoff::BackoffPolicy;
use mode_core::proto::{Event, Map, Qos, Topic, Value};
use mode_sim::Sim;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;

/// The device every stream sends as.
pub const DEVICE: u64 = 1001;
const WAIT: Duration = Duration::from_secs(300);

/// The data of event `i`.
pub fn data(i: usize) -> Map<String, Value> {
    match json!({"celsius": 21, "seq": i}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

/// The median of a benchmark's runs.
pub fn median<T: PartialOrd + Copy>(mut runs: Vec<T>) -> T {
    runs.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    runs[runs.len() / 2]
}

/// The lowest and the highest of `ratios`.
pub fn range(ratios: &[f64]) -> (f64, f64) {
    (
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    )
}

/// Waits until the simulator has recorded `total` events, looking once a millisecond.
///
/// Not `Cloud::wait_for`: it wakes its caller at every event the simulator records, and the
/// waiting task then contends for the simulator's lock with the connection it measures. How
/// many of those wake-ups a run pays depends on when its sender finishes, so the measurement
/// itself would differ between the two streams (with rumqttc's request channel at 1,000, it
/// cost the client's stream 50,000 wake-ups and rumqttc's 1,000). Polling costs both the same,
/// and ends at most 1 ms late.
async fn recorded(sim: &Sim, total: usize) {
    let deadline = Instant::now() + WAIT;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while sim.cloud().event_count() < total {
        assert!(
            Instant::now() < deadline,
            "the simulator did not record every event"
        );
        tick.tick().await;
    }
}

/// Publishes `events` events with bare rumqttc (in-flight window 100, as the client's
/// default; request channel as large as the stream, as the client's queue, so neither sender
/// waits); returns the time until the simulator has them all.
pub async fn bare_rumqttc(sim: &Sim, qos: Qos, events: usize) -> Duration {
    let addr = sim.mqtt_addr();
    let mut options = MqttOptions::new("", addr.ip().to_string(), addr.port());
    options
        .set_credentials(DEVICE.to_string(), crate::key(DEVICE))
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(60))
        .set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, events);
    let driver = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topic = Topic::event(DEVICE).to_string();
    let qos = match qos {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    };
    let before = sim.cloud().event_count();
    let start = Instant::now();
    for i in 0..events {
        let payload = Event::new("temperature", data(i)).encode();
        client
            .publish(&topic, qos, false, payload)
            .await
            .expect("publish");
    }
    recorded(sim, before + events).await;
    let elapsed = start.elapsed();
    let _ = client.disconnect().await;
    driver.abort();
    elapsed
}

/// Publishes `events` events through libmode's client (queue as large as the stream, so the
/// sender never waits); returns the time until the simulator has them all.
pub async fn libmode(sim: &Sim, qos: Qos, events: usize) -> Duration {
    let config = crate::plain(sim, DEVICE, crate::key(DEVICE))
        .queue_size(events)
        .backoff(BackoffPolicy::default())
        .build()
        .expect("config");
    let (client, mut notes) = Client::connect(config).expect("connect");
    while !matches!(notes.recv().await, Some(Notification::KvReloaded { .. })) {}
    let before = sim.cloud().event_count();
    let start = Instant::now();
    for i in 0..events {
        client
            .send_event("temperature", data(i), qos)
            .await
            .expect("send");
    }
    recorded(sim, before + events).await;
    let elapsed = start.elapsed();
    client.close(Duration::from_secs(5)).await.expect("close");
    elapsed
}
