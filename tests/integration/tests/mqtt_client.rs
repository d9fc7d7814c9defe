//! The managed client over MQTT against the simulator on a good link: events, commands, the DDP
//! mirror, kv writes, bulk data and requests, message sizes, MQTT over WebSocket, and what it
//! asks of the REST API (device info, provisioning, claim mode). Outages, queues, slow
//! handlers and closing are in `mqtt_client_link.rs`.

use std::time::Duration;

use mode_client::{Client, ClientError, Transport};
use mode_core::ddp::Change;
use mode_core::proto::{BulkStatus, Command, Map, Qos, Value};
use mode_integration::*;
use mode_sim::cloud::{KvSource, SyncFaults};
use serde_json::json;

#[tokio::test]
async fn events_arrive_at_the_cloud_with_their_type_data_and_origin_device() {
    let sim = demo().await;
    let (client, _notifications) = connected(&sim, D1).await;
    let big = json!({"celsius": 21, "big": 18446744073709551615u64, "nested": {"a": [1, 2]}});
    send_acked(&client, "temperature", object(big.clone())).await;
    client
        .send_event("ping", Map::new(), Qos::AtMostOnce)
        .await
        .unwrap();
    assert!(
        sim.cloud()
            .wait_for(WAIT, |c| c.events_from(D1).len() == 2)
            .await
    );
    let events = sim.cloud().events_from(D1);
    assert_eq!(events[0].event_type, "temperature");
    assert_eq!(events[0].home_id, HOME);
    assert_eq!(events[0].origin_device_id, Some(D1));
    assert_eq!(Value::Object(events[0].event_data.clone()), big);
    assert_eq!(
        events[0].event_data["big"].to_string(),
        "18446744073709551615"
    );
    assert_eq!(events[1].event_type, "ping");
    let stats = client.stats();
    assert_eq!(stats.messages_acked, 2);
    assert_eq!(stats.pending, 0);
}

#[tokio::test]
async fn commands_arrive_in_order_with_their_integers_exact() {
    let sim = demo().await;
    let (_client, mut notifications) = connected(&sim, D1).await;
    for i in 0..50u64 {
        let mut params = Map::new();
        params.insert("i".into(), i.into());
        params.insert("big".into(), json!(u64::MAX - i));
        sim.cloud()
            .send_command(D1, Command::new("step", params))
            .unwrap();
    }
    for i in 0..50u64 {
        let command = next_command(&mut notifications).await;
        assert_eq!(command.action, "step");
        assert_eq!(command.parameters["i"], json!(i));
        assert_eq!(
            command.parameters["big"].to_string(),
            (u64::MAX - i).to_string()
        );
    }
}

#[tokio::test]
async fn the_mirror_starts_from_the_reload_and_follows_sets_and_deletes_from_the_cloud() {
    let sim = demo().await;
    let cloud = sim.cloud();
    cloud
        .kv_set(D1, "xyz", json!("hello world"), KvSource::Rest)
        .unwrap();
    cloud
        .kv_set(D1, "foo", json!(22399), KvSource::Rest)
        .unwrap();
    let (client, mut notifications) = connected(&sim, D1).await;
    assert_eq!(
        client.kv_snapshot(),
        json!({"foo": 22399, "xyz": "hello world"})
    );
    assert_eq!(client.kv_rev(), Some(2));

    let rev = cloud
        .kv_set(D1, "xyz", json!("I have changed"), KvSource::Rest)
        .unwrap();
    let change = Change::Set {
        key: "xyz".into(),
        value: json!("I have changed"),
        previous: Some(json!("hello world")),
    };
    assert_eq!(kv_changed(&mut notifications).await, (rev, change));
    let rev = cloud.kv_delete(D1, "foo", KvSource::Rest).unwrap();
    let change = Change::Deleted {
        key: "foo".into(),
        previous: json!(22399),
    };
    assert_eq!(kv_changed(&mut notifications).await, (rev, change));
    assert_eq!(client.kv_get("foo"), None);
    assert_eq!(client.kv_snapshot(), json!({"xyz": "I have changed"}));
    assert_eq!(client.kv_snapshot(), Value::Object(cloud_store(&sim, D1)));
}

fn cloud_store(sim: &mode_sim::Sim, device: u64) -> Map<String, Value> {
    sim.cloud()
        .kv_list(device)
        .unwrap()
        .into_iter()
        .map(|item| (item.key, item.value))
        .collect()
}

#[tokio::test]
async fn the_mirror_converges_when_the_cloud_duplicates_and_reorders_sync_messages() {
    let sim = demo().await;
    let cloud = sim.cloud();
    cloud
        .set_sync_faults(
            D1,
            SyncFaults {
                delay: Duration::ZERO,
                duplicate_percent: 30,
                reorder_percent: 40,
                seed: 7,
            },
        )
        .unwrap();
    let (client, _notifications) = connected(&sim, D1).await;
    for i in 0..200u64 {
        let key = format!("k{}", i % 17);
        if i % 5 == 4 {
            let _ = cloud.kv_delete(D1, &key, KvSource::Rest);
        } else {
            cloud.kv_set(D1, &key, json!(i), KvSource::Rest).unwrap();
        }
    }
    // The last message may be held back for reordering until the next one: end with one more.
    let last = cloud
        .kv_set(D1, "zz-last", json!("end"), KvSource::Rest)
        .unwrap();
    cloud
        .kv_set(D1, "zz-flush", json!(1), KvSource::Rest)
        .unwrap();
    let converged = eventually(WAIT, || {
        client.kv_rev() >= Some(last) && client.kv_get("zz-last").is_some()
    })
    .await;
    assert!(converged, "mirror stuck at rev {:?}", client.kv_rev());
    let want = cloud_store(&sim, D1);
    let converged = eventually(WAIT, || client.kv_snapshot() == Value::Object(want.clone())).await;
    assert!(
        converged,
        "mirror {} != cloud {:?}",
        client.kv_snapshot(),
        want
    );
    let stats = client.stats();
    assert!(
        stats.kv_stale > 0,
        "faults were injected, some messages must be stale: {stats:?}"
    );
}

#[tokio::test]
async fn kv_writes_from_the_device_come_back_with_their_rev() {
    let sim = demo().await;
    let (client, mut notifications) = connected(&sim, D1).await;
    client.kv_set("colour", json!("red")).await.unwrap();
    let (rev, change) = kv_changed(&mut notifications).await;
    let Change::Set { key, value, .. } = change else {
        panic!("{change:?}")
    };
    assert_eq!((key.as_str(), value), ("colour", json!("red")));
    assert_eq!(client.kv_get("colour"), Some(json!("red")));
    assert_eq!(client.kv_rev(), Some(rev));
    let ops = sim.cloud().kv_ops();
    assert_eq!(
        ops.last().map(|op| (op.rev, op.source)),
        Some((rev, KvSource::Device))
    );

    client.kv_delete("colour").await.unwrap();
    let (deleted_at, change) = kv_changed(&mut notifications).await;
    assert!(matches!(change, Change::Deleted { .. }), "{change:?}");
    assert!(deleted_at > rev);
    assert_eq!(client.kv_get("colour"), None);
}

#[tokio::test]
async fn bulk_data_arrives_byte_for_byte() {
    let sim = demo().await;
    let (client, _notifications) = connected(&sim, D1).await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    acked(client.send_bulk_data("echo", &bytes, Qos::AtLeastOnce)).await;
    assert!(
        sim.cloud()
            .wait_for(WAIT, |c| !c.bulk_data().is_empty())
            .await
    );
    let record = &sim.cloud().bulk_data()[0];
    assert_eq!((record.device_id, record.label.as_str()), (D1, "echo"));
    assert_eq!(record.data, bytes);
}

#[tokio::test]
async fn a_bulk_request_resolves_to_the_response_with_its_request_id() {
    let sim = demo().await;
    let (client, _notifications) = connected(&sim, D1).await;
    let response = client
        .bulk_request(
            "echo",
            json!({"q": 1, "big": 18446744073709551615u64}),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(response.status, BulkStatus::Ok);
    assert_eq!(
        response.payload,
        json!({"q": 1, "big": 18446744073709551615u64})
    );
    let record = &sim.cloud().bulk_requests()[0];
    assert_eq!(record.request.request_id, response.request_id);

    // Several at once, each matched to its own answer.
    let pending: Vec<_> = (0..10)
        .map(|i| client.try_bulk_request("echo", json!({ "n": i })).unwrap())
        .collect();
    for (i, pending) in pending.into_iter().enumerate() {
        let response = pending.response(WAIT).await.unwrap();
        assert_eq!(response.payload, json!({ "n": i }));
    }

    let unknown = client.bulk_request("nope", json!({}), WAIT).await.unwrap();
    assert_eq!(unknown.status, BulkStatus::InvalidBulkDataLabel);
}

#[tokio::test]
async fn a_message_larger_than_the_limit_is_refused_before_it_is_queued() {
    let sim = demo().await;
    let (client, _notifications) = start(config(&sim, D1).max_message_size(64 * 1024)).await;
    let err = client
        .send_bulk_data("echo", &vec![0u8; 64 * 1024], Qos::AtLeastOnce)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::MessageTooLarge { max: 65536, .. }),
        "{err}"
    );
    // Just under the limit goes through, so the default is not rumqttc's 10 KiB.
    acked(client.send_bulk_data("echo", &vec![1u8; 60 * 1024], Qos::AtLeastOnce)).await;
    assert_eq!(sim.cloud().bulk_data()[0].data.len(), 60 * 1024);
}

#[tokio::test]
async fn the_default_limit_carries_messages_far_above_ten_kibibytes() {
    let sim = demo().await;
    let (client, _notifications) = connected(&sim, D1).await;
    let payload = vec![7u8; 512 * 1024];
    acked(client.send_bulk_data("echo", &payload, Qos::AtLeastOnce)).await;
    assert_eq!(sim.cloud().bulk_data()[0].data.len(), payload.len());
}

#[tokio::test]
async fn mqtt_over_websocket_carries_events_commands_and_sync() {
    let sim = demo().await;
    let ws = sim.mqtt_ws_addr();
    let (client, mut notifications) = start(
        config(&sim, D1)
            .transport(Transport::MqttWebSocket)
            .mqtt_ws_url(format!("ws://{ws}/mqtt")),
    )
    .await;
    send_acked(&client, "over-ws", Map::new()).await;
    assert_eq!(sim.cloud().events_from(D1)[0].event_type, "over-ws");
    sim.cloud()
        .send_command(D1, Command::new("hello", Map::new()))
        .unwrap();
    next_command(&mut notifications).await;
    client.kv_set("via", json!("ws")).await.unwrap();
    let (_, change) = kv_changed(&mut notifications).await;
    assert!(matches!(change, Change::Set { .. }), "{change:?}");
    assert_eq!(client.kv_get("via"), Some(json!("ws")));
}

#[tokio::test]
async fn device_info_comes_from_the_rest_api() {
    let sim = demo().await;
    let (client, _notifications) = connected(&sim, D1).await;
    let info = client.device_info().await.unwrap();
    assert_eq!(info.id, D1);
    assert_eq!(info.home_id, Some(HOME));
    assert_eq!(info.project_id, Some(1));
}

#[tokio::test]
async fn connect_outside_a_runtime_is_an_error_not_a_panic() {
    let config = mode_client::ClientConfig::builder(D1, "k").build().unwrap();
    let err = std::thread::spawn(move || Client::connect(config).map(|_| ()))
        .join()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ClientError::NoRuntime));
}

#[tokio::test]
async fn a_provisioned_device_connects_with_its_new_key() {
    let sim = demo().await;
    let api = format!("http://{}", sim.http_addr().unwrap());
    let tls = mode_client::TlsOptions {
        enabled: false,
        ..Default::default()
    };
    let device = mode_client::provision(&api, mode_sim::config::DEMO_PROVISIONING_TOKEN, &tls)
        .await
        .unwrap();
    assert!(!format!("{device:?}").contains(device.api_key.expose()));
    let (client, _notifications) = start(
        plain(&sim, device.device_id, device.api_key.clone())
            .backoff(fast_backoff())
            .api_url(api.clone()),
    )
    .await;
    assert_eq!(client.device_info().await.unwrap().id, device.device_id);

    let err = mode_client::provision(&api, "not-a-token", &tls)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Rest {
                status: 400..=404,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn claim_mode_is_turned_on_over_rest() {
    let sim = demo().await;
    let (client, _notifications) = connected(&sim, D1).await;
    let answer = client.enter_claim_mode().await.unwrap();
    assert!(answer["claimExpirationTime"].is_string(), "{answer}");
}

#[tokio::test]
async fn data_for_routing_is_acknowledged_by_the_cloud() {
    let sim = demo().await;
    let (client, _notifications) = connected(&sim, D1).await;
    client
        .send_data_for_routing(b"\x00\x01raw", Qos::AtLeastOnce)
        .await
        .unwrap()
        .await // a Delivery is itself a future
        .unwrap();
    assert_eq!(client.stats().messages_acked, 1);
}
