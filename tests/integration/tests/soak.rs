//! Delivery under repeated outages: the simulator's listeners restart again and again while the
//! device streams QoS 1 events, and the cloud must end up with every one of them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mode_core::proto::Qos;
use mode_integration::*;

const EVENTS: u64 = 10_000;
const RESTARTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_restarted_20_times_during_10000_qos1_events_loses_none() {
    let sim = demo().await;
    let (client, _notifications) = start(config(&sim, D1).queue_size(EVENTS as usize)).await;
    let started = Instant::now();

    // Each round: a burst of events, a restart while they are in flight, another burst while
    // the device is away or reconnecting, then wait for the reconnect.
    let per_burst = EVENTS / RESTARTS as u64 / 2;
    let mut deliveries = Vec::with_capacity(EVENTS as usize);
    let mut next_i = 0u64;
    let mut burst = |deliveries: &mut Vec<_>| {
        for _ in 0..per_burst {
            let data = numbered(next_i);
            deliveries.push(
                client
                    .try_send_event("soak", data, Qos::AtLeastOnce)
                    .unwrap(),
            );
            next_i += 1;
        }
    };
    for round in 0..RESTARTS as u64 {
        // Pacing, not synchronisation: the sleeps only place the restart among the sends (a
        // few ms for the first burst to get on the wire, a little longer for the second to be
        // queued while the device is away); the reconnect itself is waited for below.
        burst(&mut deliveries);
        tokio::time::sleep(Duration::from_millis(5)).await;
        sim.restart_listeners().await.unwrap();
        burst(&mut deliveries);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            eventually(WAIT, || client.stats().reconnects > round
                && client.is_connected())
            .await,
            "no reconnect after restart {round}"
        );
    }
    assert_eq!(deliveries.len() as u64, EVENTS);
    delivered(deliveries).await;
    let elapsed = started.elapsed();

    let received = sim.cloud().events_from(D1);
    let unique: BTreeSet<u64> = received
        .iter()
        .map(|e| e.event_data["i"].as_u64().unwrap())
        .collect();
    let missing: Vec<u64> = (0..EVENTS)
        .filter(|i| !unique.contains(i))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "lost events, first ones: {missing:?}");
    let stats = client.stats();
    assert_eq!(stats.reconnects, RESTARTS as u64, "{stats:?}");
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.messages_acked, EVENTS);
    println!(
        "{EVENTS} events, {RESTARTS} restarts, {} reconnects: {} received ({} duplicates) in {elapsed:?}; {} sends",
        stats.reconnects,
        received.len(),
        received.len() as u64 - EVENTS,
        stats.messages_sent,
    );
}
