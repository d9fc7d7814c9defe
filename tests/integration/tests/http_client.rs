//! The managed client over the HTTP transport against the simulator: events by REST `PUT`,
//! commands and DDP sync over WebSockets, kv writes by REST, auth failures and outages.

use std::time::Duration;

use mode_client::{Client, ClientError, DisconnectReason, Transport};
use mode_core::ddp::Change;
use mode_core::proto::{Command, Map, Qos};
use mode_integration::*;
use mode_sim::Sim;
use mode_sim::cloud::KvSource;
use serde_json::json;

fn http_config(sim: &Sim, device: u64) -> mode_client::ClientConfigBuilder {
    config(sim, device).transport(Transport::Http)
}

#[tokio::test]
async fn events_sent_over_http_arrive_in_order_with_their_fields() {
    let sim = demo().await;
    let (client, _notifications) = start(http_config(&sim, D1)).await;
    let deliveries = send_numbered(&client, "http", 0..50);
    delivered(deliveries).await;
    let events = sim.cloud().events_from(D1);
    let seen = numbers_from(&sim, D1);
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
    assert_eq!(events[0].home_id, HOME);
    assert_eq!(client.stats().messages_acked, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_sends_over_http_never_stalls_between_requests() {
    // With messages waiting, the next request starts the moment the previous one's answer is
    // handled, often before that request's task has finished on the other worker thread: the
    // moment a stale "busy" once left the queue stuck until something else woke the client.
    let sim = demo().await;
    let (client, _notifications) = start(http_config(&sim, D1)).await;
    for round in 0..50u64 {
        let deliveries: Vec<_> = (0..20)
            .map(|i| {
                client
                    .try_send_event("step", numbered(round * 20 + i), Qos::AtLeastOnce)
                    .unwrap()
            })
            .collect();
        for delivery in deliveries {
            tokio::time::timeout(Duration::from_secs(5), delivery.wait())
                .await
                .unwrap_or_else(|_| panic!("round {round}: the queue stalled"))
                .unwrap();
        }
    }
    assert_eq!(sim.cloud().count_events_from(D1), 1000);
}

#[tokio::test]
async fn commands_arrive_over_the_command_websocket_in_order() {
    let sim = demo().await;
    let (_client, mut notifications) = start(http_config(&sim, D1)).await;
    for i in 0..20u64 {
        let mut params = Map::new();
        params.insert("i".into(), i.into());
        params.insert("big".into(), json!(u64::MAX));
        sim.cloud()
            .send_command(D1, Command::new("go", params))
            .unwrap();
    }
    for i in 0..20u64 {
        let command = next_command(&mut notifications).await;
        assert_eq!(command.parameters["i"], json!(i));
        assert_eq!(command.parameters["big"].to_string(), u64::MAX.to_string());
    }
}

#[tokio::test]
async fn the_mirror_follows_the_kv_websocket_and_rest_writes_come_back_with_their_rev() {
    let sim = demo().await;
    sim.cloud()
        .kv_set(D1, "before", json!([1, 2]), KvSource::Rest)
        .unwrap();
    let (client, mut notifications) = start(http_config(&sim, D1)).await;
    assert_eq!(client.kv_snapshot(), json!({"before": [1, 2]}));
    acked(client.kv_set("mine", json!({"on": true}))).await;
    let (rev, change) = kv_changed(&mut notifications).await;
    assert_eq!(change.key(), "mine");
    assert_eq!(sim.cloud().kv_ops().last().map(|op| op.rev), Some(rev));
    assert_eq!(client.kv_get("mine"), Some(json!({"on": true})));
    acked(client.kv_delete("before")).await;
    let (_, change) = kv_changed(&mut notifications).await;
    assert!(matches!(change, Change::Deleted { .. }), "{change:?}");
    assert_eq!(client.kv_snapshot(), json!({"mine": {"on": true}}));
}

#[tokio::test]
async fn a_kv_write_the_cloud_refuses_fails_alone_with_the_reason() {
    let sim = demo().await;
    let (client, _notifications) = start(http_config(&sim, D1)).await;
    let refused = client.kv_set("bad key!", json!(1)).await.unwrap();
    let good = client.kv_set("good", json!(2)).await.unwrap();
    let err = refused.wait().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Rest { status: 400, .. }),
        "{err}"
    );
    good.wait().await.unwrap();
    assert!(eventually(WAIT, || client.kv_get("good") == Some(json!(2))).await);
}

#[tokio::test]
async fn bulk_data_over_http_is_refused_as_unsupported() {
    let sim = demo().await;
    let (client, _notifications) = start(http_config(&sim, D1)).await;
    let err = client
        .try_send_bulk_data("echo", b"x", Qos::AtLeastOnce)
        .unwrap_err();
    assert!(matches!(err, ClientError::Unsupported(_)), "{err}");
}

#[tokio::test]
async fn a_bad_api_key_over_http_is_an_auth_error_that_backs_off() {
    let sim = demo().await;
    let api = format!("http://{}", sim.http_addr().unwrap());
    let (_client, mut notifications) = Client::connect(
        mode_client::ClientConfig::builder(D1, "v1.wrong")
            .transport(Transport::Http)
            .plain()
            .api_url(api)
            .backoff(fast_backoff())
            .build()
            .unwrap(),
    )
    .unwrap();
    let (reason, retry_in) = disconnected(&mut notifications).await;
    assert!(
        matches!(reason, DisconnectReason::AuthFailed(_)),
        "{reason:?}"
    );
    assert!(retry_in.unwrap() >= Duration::from_millis(240));
    // The next attempt is refused the same way, and waits longer still. (When each attempt
    // starts is the engine's, tested to the millisecond on simulated time in
    // mode-core/tests/engine.rs; a wall clock here would measure the machine's load.)
    let (reason, next_wait) = disconnected(&mut notifications).await;
    assert!(next_wait > retry_in, "{next_wait:?} after {retry_in:?}");
    assert!(
        matches!(reason, DisconnectReason::AuthFailed(_)),
        "{reason:?}"
    );
}

#[tokio::test]
async fn events_queued_during_an_outage_are_delivered_over_http_after_it() {
    let sim = demo().await;
    let (client, mut notifications) = start(http_config(&sim, D1)).await;
    cloud_gone(&sim, &mut notifications).await;
    let deliveries = send_numbered(&client, "later", 0..30);
    sim.restart_listeners().await.unwrap();
    delivered(deliveries).await;
    let seen = numbers_from(&sim, D1);
    assert_eq!(seen, (0..30).collect::<Vec<_>>());
    assert!(client.stats().reconnects >= 1);
}

#[tokio::test]
async fn a_silent_websocket_is_detected_within_one_and_a_half_keepalives() {
    let sim = demo().await;
    // Both WebSockets, the command one and the kv one.
    a_frozen_link_is_replaced(&sim, http_config(&sim, D1), D1, 2).await;
}

#[tokio::test]
async fn close_over_http_flushes_the_events_then_closes_both_websockets() {
    let sim = demo().await;
    let (client, mut notifications) = start(http_config(&sim, D1)).await;
    assert_eq!(sim.cloud().live_connections(D1), 2);
    for i in 0..20 {
        client
            .try_send_event("bye", numbered(i), Qos::AtLeastOnce)
            .unwrap();
    }
    client.close(WAIT).await.unwrap();
    assert_eq!(sim.cloud().events_from(D1).len(), 20);
    closed(&mut notifications).await;
    assert!(eventually(WAIT, || sim.cloud().live_connections(D1) == 0).await);
}
