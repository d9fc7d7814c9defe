//! The simulator's test controls seen from MQTT clients: dropping and pausing connections,
//! restarting the listeners on the same ports, DDP sync faults, slow subscribers, and TLS.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mode_core::proto::{Command, Map, SyncMessage};
use mode_sim::cloud::{KvSource, SyncFaults};
use mode_sim::config::TlsConfig;
use mode_sim::{Sim, SimConfig};
use rumqttc::mqttbytes::v4::{Packet, Subscribe};
use serde_json::json;

#[tokio::test]
async fn dropping_a_devices_connections_closes_all_of_them_and_no_other() {
    let sim = demo().await;
    let mut tcp = Raw::connected(&sim, D1, 30).await;
    let addr = sim.mqtt_ws_addr();
    let mut opts = rumqttc::MqttOptions::new("", format!("ws://{addr}/mqtt"), addr.port());
    opts.set_transport(rumqttc::Transport::Ws);
    opts.set_credentials("1001", key(D1));
    let (_ws_client, mut ws_loop) = connect_with(opts).await;
    let mut other = Raw::connected(&sim, D2, 30).await;
    assert_eq!(sim.cloud().live_connections(D1), 2);

    assert_eq!(sim.cloud().drop_connections(D1), 2);
    tcp.expect_closed().await;
    until_error(&mut ws_loop).await;
    assert!(
        sim.cloud()
            .wait_for(WAIT, |c| c.live_connections(D1) == 0)
            .await
    );
    other.ping().await;
}

#[tokio::test]
async fn a_paused_connection_answers_nothing_until_resumed() {
    let sim = demo().await;
    let mut raw = Raw::connected(&sim, D1, 30).await;
    assert_eq!(sim.cloud().pause_connections(D1), 1);
    raw.send(Packet::PingReq).await;
    let silent = tokio::time::timeout(Duration::from_millis(300), raw.framed.next_packet()).await;
    assert!(silent.is_err(), "a paused connection answered: {silent:?}");
    // A new connection of the same device is not paused.
    let mut fresh = Raw::connected(&sim, D1, 30).await;
    fresh.ping().await;

    sim.cloud().resume_connections(D1);
    assert_eq!(raw.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn a_paused_connection_outlives_its_keepalive_on_the_server() {
    let sim = demo().await;
    let mut raw = Raw::connected(&sim, D1, 1).await;
    sim.cloud().pause_connections(D1);
    // Time must pass here, not an event: what is tested is that nothing happens (no close)
    // beyond the 1.5 s the server gives a silent connection of keepalive 1 s.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(sim.cloud().live_connections(D1), 1);
    sim.cloud().resume_connections(D1);
    raw.ping().await;
}

#[tokio::test]
async fn restarting_the_listeners_closes_connections_and_serves_the_same_ports_again() {
    let sim = demo().await;
    let (tcp, ws) = (sim.mqtt_addr(), sim.mqtt_ws_addr());
    sim.cloud()
        .kv_set(D1, "kept", json!(true), KvSource::Rest)
        .unwrap();
    let mut raw = Raw::connected(&sim, D1, 30).await;

    sim.stop_listeners().await;
    raw.expect_closed().await;
    assert!(!sim.is_listening());
    assert!(
        tokio::net::TcpStream::connect(tcp).await.is_err(),
        "still listening after stop"
    );

    sim.restart_listeners().await.unwrap();
    assert_eq!((sim.mqtt_addr(), sim.mqtt_ws_addr()), (tcp, ws));
    let mut raw = Raw::connected(&sim, D1, 30).await;
    let mut subscribe = Subscribe::new("/devices/1001/kv", rumqttc::mqttbytes::QoS::AtMostOnce);
    subscribe.pkid = 1;
    raw.send(Packet::Subscribe(subscribe)).await;
    assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    let Some(Packet::Publish(reload)) = raw.recv().await else {
        panic!("expected the reload")
    };
    let SyncMessage::Reload(reload) = SyncMessage::decode(&reload.payload).unwrap() else {
        panic!()
    };
    assert_eq!(
        reload.items[0].key, "kept",
        "the cloud's state survives a restart"
    );
    assert_eq!(sim.cloud().connect_attempts(D1).accepted, 2);
}

#[tokio::test]
async fn restarts_twenty_times_in_a_row_on_the_same_port() {
    let sim = demo().await;
    let addr = sim.mqtt_addr();
    for _ in 0..20 {
        sim.restart_listeners().await.unwrap();
        assert_eq!(sim.mqtt_addr(), addr);
        Raw::connected(&sim, D1, 30).await;
    }
}

async fn kv_revs_with(faults: SyncFaults, sets: i64) -> Vec<u64> {
    let sim = demo().await;
    sim.cloud().set_sync_faults(D1, faults).unwrap();
    let (client, mut eventloop) = client(&sim, D1).await;
    let reload = kv_reload(&client, &mut eventloop).await;
    assert!(
        matches!(reload, SyncMessage::Reload(_)),
        "the reload comes first, untouched"
    );
    for i in 0..sets {
        sim.cloud()
            .kv_set(D1, "k", json!(i), KvSource::Rest)
            .unwrap();
    }
    let mut revs = Vec::new();
    while let Ok(publish) =
        tokio::time::timeout(Duration::from_millis(300), next_publish(&mut eventloop)).await
    {
        revs.push(SyncMessage::decode(&publish.payload).unwrap().rev());
    }
    revs
}

#[tokio::test]
async fn sync_faults_can_deliver_every_message_twice() {
    let faults = SyncFaults {
        duplicate_percent: 100,
        ..SyncFaults::default()
    };
    assert_eq!(kv_revs_with(faults, 3).await, [1, 1, 2, 2, 3, 3]);
}

#[tokio::test]
async fn sync_faults_can_swap_messages() {
    let faults = SyncFaults {
        reorder_percent: 100,
        ..SyncFaults::default()
    };
    assert_eq!(kv_revs_with(faults, 4).await, [2, 1, 4, 3]);
}

#[tokio::test]
async fn sync_faults_with_the_same_seed_give_the_same_stream() {
    let faults = SyncFaults {
        duplicate_percent: 25,
        reorder_percent: 25,
        seed: 42,
        ..SyncFaults::default()
    };
    let first = kv_revs_with(faults.clone(), 12).await;
    assert_eq!(first, kv_revs_with(faults, 12).await);
    assert_ne!(
        first,
        (1..=12).collect::<Vec<_>>(),
        "seed 42 injected no fault"
    );
}

#[tokio::test]
async fn sync_faults_can_delay_messages() {
    let sim = demo().await;
    let delay = Duration::from_millis(250);
    sim.cloud()
        .set_sync_faults(
            D1,
            SyncFaults {
                delay,
                ..SyncFaults::default()
            },
        )
        .unwrap();
    let (client, mut eventloop) = client(&sim, D1).await;
    kv_reload(&client, &mut eventloop).await; // reload, not delayed
    let start = Instant::now();
    sim.cloud()
        .kv_set(D1, "k", json!(1), KvSource::Rest)
        .unwrap();
    next_publish(&mut eventloop).await;
    assert!(
        start.elapsed() >= delay,
        "arrived after {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_without_slowing_the_cloud() {
    let sim = demo_with(|c| c.subscriber_queue = 8).await;
    let mut stuck = Raw::connected(&sim, D1, 30).await;
    let mut subscribe =
        Subscribe::new("/devices/1001/command", rumqttc::mqttbytes::QoS::AtMostOnce);
    subscribe.pkid = 1;
    stuck.send(Packet::Subscribe(subscribe)).await;
    assert!(matches!(stuck.recv().await, Some(Packet::SubAck(_))));
    // `stuck` reads nothing from here on; big commands fill the socket buffers, then its queue.
    let mut params = Map::new();
    params.insert("blob".into(), json!("x".repeat(64 * 1024)));
    // Sending must never wait for the stuck client. Bounded by a generous deadline, not a tight
    // one: the time it takes is the simulator encoding 13 MB of commands (a few seconds in a
    // debug build on a busy machine), while a sender that blocked would never finish.
    let flood = async {
        for _ in 0..200 {
            sim.cloud()
                .send_command(D1, Command::new("fill", params.clone()))
                .unwrap();
            tokio::task::yield_now().await;
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(60), flood)
            .await
            .is_ok(),
        "sending blocked on a stuck client"
    );
    assert!(
        sim.cloud()
            .wait_for(WAIT, |c| c.live_connections(D1) == 0)
            .await,
        "the stuck client was not disconnected"
    );
    assert!(sim.cloud().commands().iter().any(|c| c.delivered == 0));
}

#[tokio::test]
async fn serves_mqtt_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let config = SimConfig {
        tls: Some(TlsConfig::new(cert_path, key_path)),
        ..SimConfig::demo()
    };
    let sim = Sim::start(config).await.unwrap();
    let addr = sim.mqtt_tls_addr().expect("a TLS listener");

    let tls = tls_trusting(cert.cert.der().clone()).with_no_client_auth();
    let mut opts = rumqttc::MqttOptions::new("", "localhost", addr.port());
    opts.set_credentials("1001", key(D1));
    opts.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(tls)),
    ));
    let (client, mut eventloop) = connect_with(opts).await;
    publish1(&client, "/devices/1001/event", r#"{"eventType":"tls"}"#).await;
    puback(&mut eventloop).await;
    assert_eq!(sim.cloud().events_from(D1)[0].event_type, "tls");
}

#[tokio::test]
async fn dropping_the_simulator_stops_its_listeners() {
    let sim = demo().await;
    let addr = sim.mqtt_addr();
    let mut raw = Raw::connected(&sim, D1, 30).await;
    drop(sim);
    raw.expect_closed().await;
    // The listener ends as its dropped task does, with nothing left to observe it by: poll
    // the port, within a deadline.
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still listening on {addr} after the drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_delayed_sync_message_is_not_lost_when_the_client_sends_meanwhile() {
    let sim = demo().await;
    let mut raw = Raw::connected(&sim, D1, 30).await;
    let mut subscribe = Subscribe::new("/devices/1001/kv", rumqttc::mqttbytes::QoS::AtMostOnce);
    subscribe.pkid = 1;
    raw.send(Packet::Subscribe(subscribe)).await;
    assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    assert!(
        matches!(raw.recv().await, Some(Packet::Publish(_))),
        "the reload"
    );
    let faults = SyncFaults {
        delay: Duration::from_millis(200),
        reorder_percent: 50,
        seed: 3,
        ..SyncFaults::default()
    };
    sim.cloud().set_sync_faults(D1, faults).unwrap();
    for i in 0..3 {
        sim.cloud()
            .kv_set(D1, "k", json!(i), KvSource::Rest)
            .unwrap();
    }
    // Pings keep the server's connection task busy while the messages wait out their delay.
    let mut revs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while revs.len() < 3 && Instant::now() < deadline {
        raw.send(Packet::PingReq).await;
        loop {
            match raw.recv().await {
                Some(Packet::PingResp) => break,
                Some(Packet::Publish(p)) => {
                    revs.push(SyncMessage::decode(&p.payload).unwrap().rev())
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Pacing, not synchronisation: a ping every 10 ms until the three messages came.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    revs.sort();
    assert_eq!(revs, [1, 2, 3]);
}
