//! The MODE MQTT happy paths against a real simulator over loopback, with rumqttc as the device.

mod common;

use std::time::Duration;

use common::*;
use mode_core::proto::{
    BulkDataRequest, BulkDataResponse, BulkStatus, Command, HomeEvent, Map, SyncMessage, Value,
};
use mode_sim::cloud::KvSource;
use rumqttc::{AsyncClient, QoS, SubscribeReasonCode};
use serde_json::json;

/// Publishes, as device 1001, a bulk data request `request_id` of module `label` (QoS 1).
async fn ask(client: &AsyncClient, label: &str, request_id: &str, payload: Value) {
    let request = BulkDataRequest {
        bulk_data_label: label.into(),
        request_id: request_id.into(),
        payload,
    };
    let topic = format!("/devices/1001/bulkData/{label}/request");
    publish1(client, topic, request.encode()).await;
}

#[tokio::test]
async fn an_event_arrives_in_the_home_with_the_fields_the_cloud_adds() {
    let sim = demo().await;
    let mut home = sim.cloud().subscribe_home(10).unwrap();
    let (client, mut eventloop) = client(&sim, D1).await;
    let event =
        br#"{"eventType":"temperature","eventData":{"celsius":21,"big":18446744073709551615}}"#;
    client
        .publish("/devices/1001/event", QoS::AtLeastOnce, false, &event[..])
        .await
        .unwrap();
    puback(&mut eventloop).await;

    // The PUBACK came after the cloud recorded the event.
    let recorded = sim.cloud().events_from(D1);
    assert_eq!(recorded.len(), 1);
    assert_eq!(sim.cloud().count_events_from(D1), 1);
    assert_eq!(sim.cloud().count_events_from(D2), 0);
    let delivered: HomeEvent = home.recv().await.unwrap();
    assert_eq!(delivered, recorded[0]);
    assert_eq!(delivered.home_id, 10);
    assert_eq!(delivered.origin_device_id, Some(D1));
    assert_eq!(delivered.event_type, "temperature");
    assert_eq!(
        delivered.event_data["big"].to_string(),
        "18446744073709551615"
    );
    // RFC 3339, UTC, nanoseconds: 2026-01-02T03:04:05.123456789Z
    let ts = &delivered.timestamp;
    assert_eq!(ts.len(), 30, "{ts}");
    assert!(
        ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.',
        "{ts}"
    );
}

#[tokio::test]
async fn an_undecodable_event_is_counted_and_the_connection_stays() {
    let sim = demo().await;
    let (client, mut eventloop) = client(&sim, D1).await;
    publish1(&client, "/devices/1001/event", "not json").await;
    publish1(&client, "/devices/1001/event", r#"{"eventType":"ok"}"#).await;
    for _ in 0..2 {
        puback(&mut eventloop).await;
    }
    assert_eq!(sim.cloud().undecodable_count(), 1);
    assert_eq!(sim.cloud().events_from(D1).len(), 1);
}

#[tokio::test]
async fn a_command_is_delivered_to_every_subscribed_connection_of_the_device() {
    let sim = demo().await;
    let (c1, mut e1) = client(&sim, D1).await;
    let (c2, mut e2) = client(&sim, D1).await;
    for (c, e) in [(&c1, &mut e1), (&c2, &mut e2)] {
        c.subscribe("/devices/1001/command", QoS::AtMostOnce)
            .await
            .unwrap();
        assert_eq!(
            suback(e).await,
            [SubscribeReasonCode::Success(QoS::AtMostOnce)]
        );
    }
    let mut params = Map::new();
    params.insert("level".into(), json!(12345678901234567890u64));
    let delivered = sim
        .cloud()
        .send_command(D1, Command::new("light", params.clone()))
        .unwrap();
    assert_eq!(delivered, 2);
    for e in [&mut e1, &mut e2] {
        let publish = next_publish(e).await;
        assert_eq!(publish.topic, "/devices/1001/command");
        assert_eq!(publish.qos, QoS::AtMostOnce);
        let command = Command::decode(&publish.payload).unwrap();
        assert_eq!(
            (command.action.as_str(), &command.parameters),
            ("light", &params)
        );
    }
}

#[tokio::test]
async fn a_command_to_an_unknown_device_is_an_error() {
    let sim = demo().await;
    assert!(
        sim.cloud()
            .send_command(4242, Command::new("x", Map::new()))
            .is_err()
    );
}

#[tokio::test]
async fn subscribing_to_kv_sends_a_reload_then_every_change() {
    let sim = demo().await;
    sim.cloud()
        .kv_set(D1, "color", json!("red"), KvSource::Rest)
        .unwrap();
    let (client, mut eventloop) = client(&sim, D1).await;
    let reload = kv_reload(&client, &mut eventloop).await;
    let SyncMessage::Reload(reload) = reload else {
        panic!("expected reload, got {reload:?}")
    };
    assert_eq!(reload.rev, 1);
    assert_eq!(reload.items.len(), 1);
    assert_eq!(
        (reload.items[0].key.as_str(), &reload.items[0].value),
        ("color", &json!("red"))
    );
    assert!(reload.items[0].modification_time.is_some());

    sim.cloud()
        .kv_set(D1, "size", json!(3), KvSource::Rest)
        .unwrap();
    sim.cloud().kv_delete(D1, "color", KvSource::Rest).unwrap();
    let set = SyncMessage::decode(&next_publish(&mut eventloop).await.payload).unwrap();
    assert_eq!(
        set,
        SyncMessage::Set {
            rev: 2,
            key: "size".into(),
            value: json!(3)
        }
    );
    let delete = SyncMessage::decode(&next_publish(&mut eventloop).await.payload).unwrap();
    assert_eq!(
        delete,
        SyncMessage::Delete {
            rev: 3,
            key: "color".into()
        }
    );
}

#[tokio::test]
async fn a_kv_set_from_the_device_is_broadcast_with_its_rev_and_emits_a_system_event() {
    let sim = demo().await;
    let mut home = sim.cloud().subscribe_home(10).unwrap();
    let (client, mut eventloop) = client(&sim, D1).await;
    let _reload = kv_reload(&client, &mut eventloop).await;
    let (other, mut other_loop) = common::client(&sim, D1).await; // a second connection
    let _reload = kv_reload(&other, &mut other_loop).await;

    let update = br#"{"action":"set","key":"mode","value":{"on":true}}"#;
    client
        .publish("/devices/1001/kv", QoS::AtLeastOnce, false, &update[..])
        .await
        .unwrap();
    let expected = SyncMessage::Set {
        rev: 1,
        key: "mode".into(),
        value: json!({"on": true}),
    };
    // The device's own sync channel learns the rev of its write, and so does every other one.
    assert_eq!(
        SyncMessage::decode(&next_publish(&mut eventloop).await.payload).unwrap(),
        expected
    );
    assert_eq!(
        SyncMessage::decode(&next_publish(&mut other_loop).await.payload).unwrap(),
        expected
    );

    let event = home.recv().await.unwrap();
    assert_eq!(event.event_type, "_deviceKVSaved_");
    assert_eq!(
        Value::Object(event.event_data),
        json!({"deviceId": 1001, "key": "mode", "value": {"on": true}})
    );

    publish1(
        &client,
        "/devices/1001/kv",
        r#"{"action":"delete","key":"mode"}"#,
    )
    .await;
    let delete = SyncMessage::decode(&next_publish(&mut eventloop).await.payload).unwrap();
    assert_eq!(
        delete,
        SyncMessage::Delete {
            rev: 2,
            key: "mode".into()
        }
    );
    let event = home.recv().await.unwrap();
    assert_eq!(event.event_type, "_deviceKVDeleted_");
    assert_eq!(
        Value::Object(event.event_data),
        json!({"deviceId": 1001, "key": "mode"})
    );
    assert_eq!(sim.cloud().kv_ops().len(), 2);
}

#[tokio::test]
async fn a_kv_set_with_an_invalid_key_changes_nothing_and_keeps_the_connection() {
    let sim = demo().await;
    let (client, mut eventloop) = client(&sim, D1).await;
    // The refused set is acknowledged and changes nothing; the next one is served.
    for (key, rev) in [("_bad", 0), ("good", 1)] {
        let set = json!({"action": "set", "key": key, "value": 1}).to_string();
        publish1(&client, "/devices/1001/kv", set).await;
        puback(&mut eventloop).await;
        assert_eq!(sim.cloud().kv_snapshot(D1).unwrap().rev, rev, "after {key}");
    }
}

#[tokio::test]
async fn bulk_data_is_recorded_byte_for_byte() {
    let sim = demo().await;
    let (client, mut eventloop) = client(&sim, D1).await;
    let data: Vec<u8> = (0..=255).collect();
    publish1(&client, "/devices/1001/bulkData/camera", data.clone()).await;
    puback(&mut eventloop).await;
    let bulk = sim.cloud().bulk_data();
    assert_eq!(bulk.len(), 1);
    assert_eq!(
        (bulk[0].device_id, bulk[0].label.as_str(), &bulk[0].data),
        (D1, "camera", &data)
    );
}

async fn bulk_round_trip(label: &str, available: bool) -> BulkDataResponse {
    let sim = demo().await;
    if !available {
        sim.cloud()
            .set_bulk_module_available(1, "echo", false)
            .unwrap();
    }
    let (client, mut eventloop) = client(&sim, D1).await;
    client
        .subscribe(
            format!("/devices/1001/bulkData/{label}/response"),
            QoS::AtMostOnce,
        )
        .await
        .unwrap();
    assert_eq!(
        suback(&mut eventloop).await,
        [SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    ask(&client, label, "req-1", json!({"ask": [1, 2, 3]})).await;
    let publish = next_publish(&mut eventloop).await;
    assert_eq!(
        publish.topic,
        format!("/devices/1001/bulkData/{label}/response")
    );
    assert_eq!(sim.cloud().bulk_requests().len(), 1);
    BulkDataResponse::decode(&publish.payload).unwrap()
}

#[tokio::test]
async fn a_bulk_request_to_the_echo_module_is_answered_ok_with_its_payload() {
    let response = bulk_round_trip("echo", true).await;
    assert_eq!(response.request_id, "req-1");
    assert_eq!(response.status, BulkStatus::Ok);
    assert_eq!(response.payload, json!({"ask": [1, 2, 3]}));
}

#[tokio::test]
async fn a_bulk_request_to_an_unknown_label_is_answered_invalid_bulk_data_label() {
    let response = bulk_round_trip("nosuchmodule", true).await;
    assert_eq!(
        (response.request_id.as_str(), response.status),
        ("req-1", BulkStatus::InvalidBulkDataLabel)
    );
}

#[tokio::test]
async fn a_bulk_request_to_a_module_that_is_down_is_answered_service_unavailable() {
    let response = bulk_round_trip("echo", false).await;
    assert_eq!(response.status, BulkStatus::ServiceUnavailable);
}

/// `mosquitto_sub` on the response topic beside a `mosquitto_pub` of the request: the response
/// goes to every connection of the device subscribed to it, as commands and kv changes do,
/// not only to the connection that asked.
#[tokio::test]
async fn a_bulk_response_reaches_every_connection_of_the_device_subscribed_to_it() {
    let sim = demo().await;
    let topic = "/devices/1001/bulkData/echo/response";
    let mut listeners = Vec::new();
    for _ in 0..2 {
        let (client, mut eventloop) = client(&sim, D1).await;
        client.subscribe(topic, QoS::AtMostOnce).await.unwrap();
        assert_eq!(
            suback(&mut eventloop).await,
            [SubscribeReasonCode::Success(QoS::AtMostOnce)]
        );
        listeners.push((client, eventloop));
    }
    let (asker, mut asker_loop) = client(&sim, D1).await;
    ask(&asker, "echo", "from-the-shell", json!({"n": 1})).await;
    puback(&mut asker_loop).await;
    for (_client, eventloop) in &mut listeners {
        let publish = next_publish(eventloop).await;
        assert_eq!(publish.topic, topic);
        let response = BulkDataResponse::decode(&publish.payload).unwrap();
        assert_eq!(
            (response.request_id.as_str(), response.status),
            ("from-the-shell", BulkStatus::Ok)
        );
    }
}

#[tokio::test]
async fn pings_are_answered_and_live_connections_are_counted() {
    let sim = demo().await;
    let mut raw = Raw::connected(&sim, D1, 30).await;
    assert_eq!(sim.cloud().live_connections(D1), 1);
    raw.send(rumqttc::mqttbytes::v4::Packet::PingReq).await;
    assert_eq!(
        raw.recv().await,
        Some(rumqttc::mqttbytes::v4::Packet::PingResp)
    );
    raw.send(rumqttc::mqttbytes::v4::Packet::Disconnect).await;
    raw.expect_closed().await;
    assert!(
        sim.cloud()
            .wait_for(WAIT, |c| c.live_connections(D1) == 0)
            .await
    );
    assert_eq!(sim.cloud().connect_attempts(D1).accepted, 1);
}

#[tokio::test]
async fn mqtt_over_websocket_carries_events_and_commands() {
    let sim = demo().await;
    let addr = sim.mqtt_ws_addr();
    let mut opts = rumqttc::MqttOptions::new("", format!("ws://{addr}/mqtt"), addr.port());
    opts.set_transport(rumqttc::Transport::Ws);
    opts.set_credentials("1001", key(D1));
    let (client, mut eventloop) = connect_with(opts).await;
    client
        .subscribe("/devices/1001/command", QoS::AtMostOnce)
        .await
        .unwrap();
    suback(&mut eventloop).await;
    publish1(&client, "/devices/1001/event", r#"{"eventType":"ws"}"#).await;
    puback(&mut eventloop).await;
    assert_eq!(sim.cloud().events_from(D1)[0].event_type, "ws");
    sim.cloud()
        .send_command(D1, Command::new("hello", Map::new()))
        .unwrap();
    assert_eq!(
        Command::decode(&next_publish(&mut eventloop).await.payload)
            .unwrap()
            .action,
        "hello"
    );
    assert!(
        sim.cloud()
            .wait_for(Duration::from_secs(1), |c| c.live_connections(D1) == 1)
            .await
    );
}

#[tokio::test]
async fn a_command_sent_as_soon_as_the_suback_arrives_is_delivered() {
    // The subscription must be live before the SUBACK leaves, or a client that acts on its
    // SUBACK misses commands.
    let sim = demo().await;
    for round in 0..20 {
        let mut raw = Raw::connected(&sim, D1, 30).await;
        let mut subscribe = rumqttc::mqttbytes::v4::Subscribe::new(
            "/devices/1001/command",
            rumqttc::mqttbytes::QoS::AtMostOnce,
        );
        subscribe.pkid = 1;
        raw.send(rumqttc::mqttbytes::v4::Packet::Subscribe(subscribe))
            .await;
        assert!(matches!(
            raw.recv().await,
            Some(rumqttc::mqttbytes::v4::Packet::SubAck(_))
        ));
        let delivered = sim
            .cloud()
            .send_command(D1, Command::new(format!("c{round}"), Map::new()))
            .unwrap();
        assert_eq!(delivered, 1, "round {round}");
        drop(raw);
        assert!(
            sim.cloud()
                .wait_for(WAIT, |c| c.live_connections(D1) == 0)
                .await
        );
    }
}

#[tokio::test]
async fn a_bulk_response_goes_only_to_a_connection_subscribed_to_it() {
    let sim = demo().await;
    let (client, mut eventloop) = client(&sim, D1).await;
    ask(&client, "echo", "unheard", json!({})).await;
    puback(&mut eventloop).await;
    assert_eq!(
        sim.cloud().bulk_requests().len(),
        1,
        "the request was answered"
    );
    // Anything the server sent for the request would arrive before this SUBACK.
    client
        .subscribe("/devices/1001/command", QoS::AtMostOnce)
        .await
        .unwrap();
    let got = next_incoming(&mut eventloop, |p| match p {
        rumqttc::Packet::Publish(p) => Some(Some(p.topic.clone())),
        rumqttc::Packet::SubAck(_) => Some(None),
        _ => None,
    })
    .await;
    assert_eq!(got, None, "a response arrived without a subscription");
}
