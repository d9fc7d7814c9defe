//! Every refusal of the MODE broker, as the simulator makes it: bad credentials, protocol
//! levels, persistent sessions, wills, retain, QoS 2, other devices' topics, keepalive expiry,
//! and malformed input.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mode_sim::Sim;
use rumqttc::mqttbytes::v4::{ConnAck, LastWill, Packet, Publish, Subscribe, SubscribeReasonCode};
use rumqttc::{ConnectReturnCode, ConnectionError, QoS};

fn refused_with(err: ConnectionError) -> ConnectReturnCode {
    match err {
        ConnectionError::ConnectionRefused(code) => code,
        other => panic!("expected a refused connection, got {other:?}"),
    }
}

#[tokio::test]
async fn refuses_a_connect_with_a_wrong_api_key() {
    let sim = demo().await;
    let mut opts = options(&sim, D1);
    opts.set_credentials("1001", "v1.not-the-key");
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(opts, 10);
    let err = eventloop.poll().await.unwrap_err();
    assert_eq!(refused_with(err), ConnectReturnCode::BadUserNamePassword);
    assert_eq!(sim.cloud().connect_attempts(D1).refused, 1);
    assert_eq!(sim.cloud().connect_attempts(D1).accepted, 0);
    assert_eq!(sim.cloud().live_connections(D1), 0);
}

#[tokio::test]
async fn refuses_a_connect_with_another_devices_key() {
    let sim = demo().await;
    let code = Raw::refusal(&sim, |c| {
        c.set_login("1001", key(D2));
    })
    .await;
    assert_eq!(code, Some(ConnectReturnCode::BadUserNamePassword));
}

#[tokio::test]
async fn refuses_a_connect_for_an_unknown_device_or_a_username_that_is_not_a_device_id() {
    let sim = demo().await;
    for username in ["4242", "device-1001", "01001", ""] {
        let code = Raw::refusal(&sim, |c| {
            c.set_login(username, key(D1));
        })
        .await;
        let want = Some(ConnectReturnCode::BadUserNamePassword);
        assert_eq!(code, want, "username {username:?}");
    }
}

#[tokio::test]
async fn refuses_a_connect_without_credentials() {
    let sim = demo().await;
    let code = Raw::refusal(&sim, |c| c.login = None).await;
    assert_eq!(code, Some(ConnectReturnCode::BadUserNamePassword));
}

/// A CONNECT with protocol name `name` and level `level`, written by hand (rumqttc's encoder
/// only writes 3.1.1 and 5).
fn connect_bytes(name: &str, level: u8, extra_after_keepalive: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(name.len() as u16).to_be_bytes());
    body.extend_from_slice(name.as_bytes());
    body.push(level);
    body.push(0b1100_0010); // username, password, clean session
    body.extend_from_slice(&30u16.to_be_bytes());
    body.extend_from_slice(extra_after_keepalive);
    for field in ["", "1001", "v1.demo-device-1001"] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

async fn connack_for_bytes(sim: &Sim, bytes: &[u8]) -> Option<ConnAck> {
    let mut raw = Raw::open(sim).await;
    raw.send_bytes(bytes).await;
    let ack = match raw.recv().await {
        Some(Packet::ConnAck(ack)) => Some(ack),
        None => None,
        Some(other) => panic!("expected CONNACK, got {other:?}"),
    };
    raw.expect_closed().await;
    ack
}

#[tokio::test]
async fn refuses_mqtt_3_1_with_unacceptable_protocol_version() {
    let sim = demo().await;
    for name in ["MQIsdp", "MQTT"] {
        let ack = connack_for_bytes(&sim, &connect_bytes(name, 3, &[])).await;
        let want = Some(ConnectReturnCode::RefusedProtocolVersion);
        assert_eq!(ack.map(|a| a.code), want, "{name}");
    }
}

#[tokio::test]
async fn refuses_mqtt_5_with_unacceptable_protocol_version() {
    let sim = demo().await;
    // MQTT 5 puts a properties length (0 here) after the keepalive.
    let ack = connack_for_bytes(&sim, &connect_bytes("MQTT", 5, &[0])).await;
    assert_eq!(
        ack.map(|a| a.code),
        Some(ConnectReturnCode::RefusedProtocolVersion)
    );
    assert_eq!(sim.cloud().live_connections(D1), 0);
}

#[tokio::test]
async fn accepts_the_same_hand_written_connect_at_level_4() {
    // The control for the two tests above: the bytes are right apart from the level.
    let sim = demo().await;
    let ack = {
        let mut raw = Raw::open(&sim).await;
        raw.send_bytes(&connect_bytes("MQTT", 4, &[])).await;
        raw.recv().await
    };
    assert!(
        matches!(
            ack,
            Some(Packet::ConnAck(ConnAck {
                code: ConnectReturnCode::Success,
                ..
            }))
        ),
        "{ack:?}"
    );
}

#[tokio::test]
async fn refuses_a_persistent_session_with_identifier_rejected() {
    let sim = demo().await;
    let code = Raw::refusal(&sim, |c| c.clean_session = false).await;
    assert_eq!(code, Some(ConnectReturnCode::BadClientId));
    assert_eq!(sim.cloud().connect_attempts(D1).refused, 1);
}

#[tokio::test]
async fn refuses_a_connect_with_a_will() {
    let sim = demo().await;
    let will = LastWill::new("/devices/1001/event", "{}", QoS::AtMostOnce, false);
    let code = Raw::refusal(&sim, |c| c.last_will = Some(will)).await;
    assert_eq!(code, Some(ConnectReturnCode::NotAuthorized));
    assert_eq!(sim.cloud().live_connections(D1), 0);
}

async fn closes_after(packet: Packet) -> Sim {
    let sim = demo().await;
    let mut raw = Raw::connected(&sim, D1, 30).await;
    raw.send(packet).await;
    raw.expect_closed().await;
    sim
}

fn event(qos: QoS) -> Publish {
    let mut publish = Publish::new("/devices/1001/event", qos, &br#"{"eventType":"x"}"#[..]);
    publish.pkid = if qos == QoS::AtMostOnce { 0 } else { 7 };
    publish
}

#[tokio::test]
async fn closes_the_connection_on_a_retained_publish() {
    let mut publish = event(QoS::AtLeastOnce);
    publish.retain = true;
    let sim = closes_after(Packet::Publish(publish)).await;
    assert!(sim.cloud().events().is_empty());
}

#[tokio::test]
async fn closes_the_connection_on_a_qos_2_publish() {
    let sim = closes_after(Packet::Publish(event(QoS::ExactlyOnce))).await;
    assert!(sim.cloud().events().is_empty());
}

#[tokio::test]
async fn closes_the_connection_on_a_publish_to_another_devices_topic() {
    let mut publish = event(QoS::AtLeastOnce);
    publish.topic = "/devices/1002/event".into();
    let sim = closes_after(Packet::Publish(publish)).await;
    assert!(sim.cloud().events().is_empty());
}

#[tokio::test]
async fn closes_the_connection_on_a_publish_to_an_unknown_topic() {
    let mut publish = event(QoS::AtMostOnce);
    publish.topic = "/devices/1001/nonsense".into();
    closes_after(Packet::Publish(publish)).await;
}

#[tokio::test]
async fn closes_the_connection_on_a_publish_to_its_command_topic() {
    let mut publish = event(QoS::AtMostOnce);
    publish.topic = "/devices/1001/command".into();
    closes_after(Packet::Publish(publish)).await;
}

#[tokio::test]
async fn closes_the_connection_on_a_second_connect() {
    closes_after(Packet::Connect(Raw::connect_packet(D1, 30))).await;
}

#[tokio::test]
async fn a_qos_1_event_is_acknowledged_where_qos_2_is_not() {
    // The control for the refusals above: the same connection and publish, at QoS 1, works.
    let sim = demo().await;
    let mut raw = Raw::connected(&sim, D1, 30).await;
    raw.send(Packet::Publish(event(QoS::AtLeastOnce))).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubAck(ack)) if ack.pkid == 7));
    assert_eq!(sim.cloud().events_from(D1).len(), 1);
}

#[tokio::test]
async fn grants_qos_0_to_own_topics_and_refuses_other_devices_and_unknown_topics() {
    let sim = demo().await;
    let mut raw = Raw::connected(&sim, D1, 30).await;
    let filters = [
        ("/devices/1001/command", QoS::AtLeastOnce),
        ("/devices/1002/command", QoS::AtMostOnce),
        ("/devices/1001/kv", QoS::AtMostOnce),
        ("/devices/1001/bulkData/echo/response", QoS::ExactlyOnce),
        ("/devices/+/command", QoS::AtMostOnce),
        ("#", QoS::AtMostOnce),
        ("/devices/1001/event", QoS::AtMostOnce),
    ];
    let mut subscribe = Subscribe::new_many(
        filters
            .iter()
            .map(|(t, q)| rumqttc::SubscribeFilter::new(t.to_string(), *q)),
    );
    subscribe.pkid = 3;
    raw.send(Packet::Subscribe(subscribe)).await;
    let Some(Packet::SubAck(ack)) = raw.recv().await else {
        panic!("expected SUBACK")
    };
    let ok = SubscribeReasonCode::Success(QoS::AtMostOnce);
    let no = SubscribeReasonCode::Failure;
    assert_eq!(ack.pkid, 3);
    assert_eq!(ack.return_codes, [ok, no, ok, ok, no, no, no]);
    // The connection stays, and the kv subscription sent its reload.
    assert!(matches!(raw.recv().await, Some(Packet::Publish(p)) if p.topic == "/devices/1001/kv"));
    raw.ping().await;
}

#[tokio::test]
async fn closes_a_connection_silent_for_one_and_a_half_keepalives() {
    let sim = demo().await;
    let mut raw = Raw::connected(&sim, D1, 1).await;
    let start = Instant::now();
    raw.expect_closed().await;
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "closed too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(2500),
        "closed too late: {waited:?}"
    );
}

#[tokio::test]
async fn a_connection_that_pings_outlives_its_keepalive() {
    let sim = demo().await;
    let mut raw = Raw::connected(&sim, D1, 1).await;
    // Time must pass here, not an event: four pings 500 ms apart span 2 s, beyond the 1.5 s
    // the server allows a silent connection of keepalive 1 s.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        raw.ping().await;
    }
    assert_eq!(sim.cloud().live_connections(D1), 1);
}

#[tokio::test]
async fn closes_the_connection_on_a_packet_over_the_size_limit() {
    let sim = demo_with(|c| c.max_packet_size = 1024).await;
    let mut raw = Raw::connected(&sim, D1, 30).await;
    let small = Publish::new("/devices/1001/bulkData/x", QoS::AtMostOnce, vec![0u8; 900]);
    raw.send(Packet::Publish(small)).await;
    let big = Publish::new("/devices/1001/bulkData/x", QoS::AtMostOnce, vec![0u8; 2000]);
    raw.send(Packet::Publish(big)).await;
    raw.expect_closed().await;
    assert_eq!(sim.cloud().bulk_data().len(), 1);
}

#[tokio::test]
async fn survives_garbage_and_keeps_serving() {
    let sim = demo().await;
    let inputs: [&[u8]; 6] = [
        b"GET / HTTP/1.1\r\n\r\n",
        &[0xff; 64],
        &[0x10, 0xff, 0xff, 0xff, 0xff, 0x7f], // malformed remaining length
        &[0x10, 0x02, 0x00, 0x00],             // truncated CONNECT
        &[0x30, 0x00],                         // PUBLISH before CONNECT
        &[0xc0, 0x00],                         // PINGREQ before CONNECT
    ];
    for input in inputs {
        let mut raw = Raw::open(&sim).await;
        raw.send_bytes(input).await;
        raw.expect_closed().await;
    }
    let mut raw = Raw::connected(&sim, D1, 30).await;
    raw.send_bytes(&[0x82, 0x02, 0x00, 0x01]).await; // SUBSCRIBE without a filter
    raw.expect_closed().await;
    Raw::connected(&sim, D1, 30).await;
}

#[tokio::test]
async fn refuses_connections_beyond_max_connections_with_server_unavailable() {
    let sim = demo_with(|c| c.max_connections = 1).await;
    let _first = Raw::connected(&sim, D1, 30).await;
    let mut second = Raw::open(&sim).await;
    let code = second
        .connect(Raw::connect_packet(D2, 30))
        .await
        .map(|a| a.code);
    assert_eq!(code, Some(ConnectReturnCode::ServiceUnavailable));
}

#[tokio::test]
async fn survives_random_bytes_after_a_connect() {
    let sim = demo().await;
    // A fixed xorshift sequence: the same bytes on every run.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..50 {
        let mut raw = Raw::connected(&sim, D1, 30).await;
        let len = (next() % 64) as usize + 1;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        raw.send_bytes(&bytes).await;
        // Whatever the server makes of them, it answers or closes; it does not hang or die.
        drop(raw);
    }
    let mut raw = Raw::connected(&sim, D1, 30).await;
    raw.ping().await;
}
