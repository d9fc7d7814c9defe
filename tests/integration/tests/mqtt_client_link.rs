//! The managed client over MQTT when the link fails or the application outpaces it: a refused
//! key and its backoff, outages and reconnects, half-open and idle links, full queues and their
//! policies, handlers that call back into the client or fall behind, and closing. What the
//! client carries on a good link is in `mqtt_client.rs`.

use std::time::Duration;

use mode_client::{Client, ClientError, DisconnectReason, FullQueuePolicy, Notification};
use mode_core::proto::{Command, Map, Qos};
use mode_integration::*;
use mode_sim::cloud::KvSource;
use serde_json::json;

#[tokio::test]
async fn a_bad_api_key_gives_a_clear_auth_error_and_backs_off() {
    let sim = demo().await;
    let wrong = plain(&sim, D1, "v1.wrong-key").backoff(fast_backoff());
    let (client, mut notifications) = Client::connect(wrong.build().unwrap()).unwrap();
    let (reason, retry_in) = disconnected(&mut notifications).await;
    let DisconnectReason::AuthFailed(detail) = &reason else {
        panic!("expected an auth failure, got {reason:?}");
    };
    assert!(detail.contains("1001"), "{detail}");
    assert!(
        reason
            .to_string()
            .contains("check the device id and API key"),
        "{reason}"
    );
    // The auth schedule, not the connection one: 300 ms less at most 20 % jitter.
    assert!(
        retry_in.unwrap() >= Duration::from_millis(240),
        "{retry_in:?}"
    );
    // The next attempt is refused the same way and waits longer still. (The exact schedule,
    // attempt by attempt, is the engine's, tested on simulated time: mode-core/tests/engine.rs.)
    let (reason, next_wait) = disconnected(&mut notifications).await;
    assert!(
        matches!(reason, DisconnectReason::AuthFailed(_)),
        "{reason:?}"
    );
    assert!(next_wait > retry_in, "{next_wait:?} after {retry_in:?}");
    let attempts = sim.cloud().connect_attempts(D1);
    assert_eq!(attempts.accepted, 0);
    assert_eq!(attempts.refused, 2, "{attempts:?}");
    assert_eq!(client.stats().connection_attempts, attempts.refused);
    assert!(
        client
            .stats()
            .last_error
            .unwrap()
            .contains("authentication failed")
    );
    let shown = format!("{:?} {:?}", client, client.stats());
    assert!(!shown.contains("wrong-key"), "the key leaked: {shown}");
}

#[tokio::test]
async fn try_calls_from_inside_a_notification_handler_never_deadlock() {
    let sim = demo().await;
    let (client, mut notifications) = start(with_queue(&sim, D1, 8, FullQueuePolicy::Block)).await;
    let handler_client = client.clone();
    let handler = tokio::spawn(async move {
        let mut answered = 0;
        let mut full = 0;
        while let Some(notification) = notifications.recv().await {
            if let Notification::Command(command) = notification {
                // Called from the handler, with a tiny queue: either queued or QueueFull, never stuck.
                for _ in 0..4 {
                    match handler_client.try_send_event(
                        "ack",
                        command.parameters.clone(),
                        Qos::AtLeastOnce,
                    ) {
                        Ok(_) => answered += 1,
                        Err(ClientError::QueueFull { .. }) => full += 1,
                        Err(other) => panic!("{other}"),
                    }
                }
                let _ = handler_client.try_kv_set("last", json!(command.parameters["n"].clone()));
                let _ = handler_client.kv_snapshot();
                if command.parameters["n"] == json!(99) {
                    break;
                }
            }
        }
        (answered, full)
    });
    send_commands(&sim, D1, "go", 100);
    let (answered, full) = tokio::time::timeout(WAIT, handler)
        .await
        .expect("handler finished")
        .unwrap();
    assert_eq!(answered + full, 400);
    assert!(answered > 0);
    assert!(
        sim.cloud()
            .wait_for(WAIT, |c| c.events_from(D1).len() == answered)
            .await,
        "{} of {answered} events arrived",
        sim.cloud().events_from(D1).len()
    );
}

#[tokio::test]
async fn events_sent_while_offline_are_delivered_after_the_reconnect() {
    let sim = demo().await;
    let (client, mut notifications) = connected(&sim, D1).await;
    cloud_gone(&sim, &mut notifications).await;
    let deliveries = send_numbered(&client, "offline", 0..100u64);
    client.try_kv_set("written-offline", json!(true)).unwrap();
    assert_eq!(client.stats().pending, 101);
    sim.restart_listeners().await.unwrap();
    delivered(deliveries).await;
    let seen = numbers_from(&sim, D1);
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
    // A fresh reload after the reconnect, and the offline write came back with its rev.
    assert!(
        eventually(WAIT, || client.kv_get("written-offline")
            == Some(json!(true)))
        .await
    );
    assert!(client.stats().reconnects >= 1);
}

#[tokio::test]
async fn every_reconnect_resubscribes_and_receives_a_fresh_reload() {
    let sim = demo().await;
    let (client, mut notifications) = connected(&sim, D1).await;
    // Changed while the device is away: only the next reload can tell it.
    sim.stop_listeners().await;
    sim.cloud()
        .kv_set(D1, "while-away", json!(1), KvSource::Rest)
        .unwrap();
    sim.restart_listeners().await.unwrap();
    let Notification::KvReloaded { diff, .. } = next(&mut notifications, |n| {
        matches!(n, Notification::KvReloaded { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(diff.len(), 1);
    assert_eq!(client.kv_get("while-away"), Some(json!(1)));
    // Commands still arrive: the command topic was subscribed again.
    sim.cloud()
        .send_command(D1, Command::new("after", Map::new()))
        .unwrap();
    next_command(&mut notifications).await;
}

#[tokio::test]
async fn a_half_open_connection_is_detected_within_one_and_a_half_keepalives() {
    let sim = demo().await;
    let client = a_frozen_link_is_replaced(&sim, config(&sim, D1), D1, 1).await;
    assert!(client.stats().reconnects >= 1);
}

#[tokio::test]
async fn an_idle_link_and_a_link_that_only_sends_qos0_both_ping_and_stay_up() {
    let sim = demo().await;
    // The watchdog gives up after 1.5 s of hearing nothing: only PINGRESPs keep these links.
    // Keepalive rounds are waited for as events: the simulator counts the PINGREQs.
    let (client, mut notifications) =
        start(config(&sim, D1).keepalive(Duration::from_secs(1))).await;
    let pinged = |more: u64| {
        let target = sim.cloud().pings_from(D1) + more;
        move |cloud: &mode_sim::Cloud| cloud.pings_from(D1) >= target
    };
    // Idle for three rounds: more than twice the watchdog's 1.5 s.
    assert!(sim.cloud().wait_for(WAIT, pinged(3)).await);
    // Then sending QoS 0 (nothing comes back for it) through three more rounds, an event per
    // 50 ms at most (the wait ends early when the rounds are done).
    let rounds = pinged(3);
    let mut sent = 0;
    loop {
        client
            .send_event("tick", object(json!({"i": sent})), Qos::AtMostOnce)
            .await
            .expect("sent");
        sent += 1;
        if sim
            .cloud()
            .wait_for(Duration::from_millis(50), &rounds)
            .await
        {
            break;
        }
        assert!(sent < 400, "no three keepalive rounds in {sent} sends");
    }
    while let Some(notification) = notifications.try_recv() {
        assert!(
            !matches!(notification, Notification::Disconnected { .. }),
            "{notification:?}"
        );
    }
    assert_eq!(client.stats().connection_attempts, 1);
    client.close(Duration::from_secs(2)).await.expect("closed");
    assert_eq!(sim.cloud().events_from(D1).len(), sent);
}

#[tokio::test]
async fn a_full_queue_follows_the_configured_policy_and_is_never_silent() {
    let sim = demo().await;
    let (error_client, _n1) = start(with_queue(&sim, D1, 3, FullQueuePolicy::Error)).await;
    let (drop_client, mut n2) = start(with_queue(&sim, D2, 3, FullQueuePolicy::DropOldest)).await;
    cloud_gone(&sim, &mut n2).await;
    assert!(eventually(WAIT, || !error_client.is_connected()).await);

    for _ in 0..3 {
        error_client
            .try_send_event("e", Map::new(), Qos::AtLeastOnce)
            .unwrap();
    }
    let err = error_client
        .send_event("e", Map::new(), Qos::AtLeastOnce)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::QueueFull { capacity: 3 }),
        "{err}"
    );

    let mut first = Vec::new();
    for i in 0..5u64 {
        let d = numbered(i);
        first.push(
            drop_client
                .send_event("d", d, Qos::AtLeastOnce)
                .await
                .unwrap(),
        );
    }
    for _ in 0..2 {
        let Notification::MessageDropped { topic, .. } = next(&mut n2, |n| {
            matches!(n, Notification::MessageDropped { .. })
        })
        .await
        else {
            unreachable!()
        };
        assert_eq!(topic, "/devices/1002/event");
    }
    let mut results = Vec::new();
    for delivery in first.drain(..2) {
        results.push(delivery.wait().await);
    }
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(ClientError::Dropped))),
        "{results:?}"
    );
    assert_eq!(drop_client.stats().messages_dropped, 2);
    assert_eq!(drop_client.stats().pending, 3);

    sim.restart_listeners().await.unwrap();
    assert!(
        sim.cloud()
            .wait_for(WAIT, |c| c.events_from(D2).len() == 3)
            .await
    );
    let kept: Vec<u64> = sim
        .cloud()
        .events_from(D2)
        .iter()
        .map(|e| e.event_data["i"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [2, 3, 4]);
}

#[tokio::test]
async fn close_flushes_the_queue_then_unsubscribes_and_disconnects() {
    let sim = demo().await;
    let (client, mut notifications) = connected(&sim, D1).await;
    for i in 0..500u64 {
        let d = numbered(i);
        client.try_send_event("bye", d, Qos::AtLeastOnce).unwrap();
    }
    client.close(WAIT).await.unwrap();
    assert_eq!(sim.cloud().events_from(D1).len(), 500);
    assert!(matches!(
        client.try_send_event("late", Map::new(), Qos::AtLeastOnce),
        Err(ClientError::Closed)
    ));
    closed(&mut notifications).await;
    assert!(
        tokio::time::timeout(WAIT, notifications.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert!(eventually(WAIT, || sim.cloud().live_connections(D1) == 0).await);
}

#[tokio::test]
async fn a_qos0_event_sent_right_before_close_has_reached_the_cloud_when_close_returns() {
    // The loss this guards against came from closing a socket with unread data in it: the
    // kernel answers with RST and the broker throws away what it had not read yet. It struck
    // about one close in 30, so one round proves nothing; 150 rounds miss it about 1 time in 160.
    let sim = demo().await;
    for i in 0..150u64 {
        let (client, _notifications) = connected(&sim, D1).await;
        let d = numbered(i);
        client.try_send_event("last", d, Qos::AtMostOnce).unwrap();
        client.close(WAIT).await.unwrap();
        let recorded = sim.cloud().events_from(D1);
        assert_eq!(
            recorded.len() as u64,
            i + 1,
            "round {i}: the event sent before close is missing"
        );
    }
}

#[tokio::test]
async fn close_gives_up_at_its_deadline_and_says_how_much_was_left() {
    let sim = demo().await;
    let (client, mut notifications) = connected(&sim, D1).await;
    cloud_gone(&sim, &mut notifications).await;
    let delivery = client
        .try_send_event("never", Map::new(), Qos::AtLeastOnce)
        .unwrap();
    let err = client.close(Duration::from_millis(300)).await.unwrap_err();
    assert!(
        matches!(err, ClientError::CloseIncomplete { unsent: 1 }),
        "{err}"
    );
    assert!(matches!(delivery.wait().await, Err(ClientError::Closed)));
}

#[tokio::test]
async fn a_handler_that_does_not_keep_up_loses_counted_notifications_but_never_the_connection() {
    let sim = demo().await;
    let (client, mut notifications) = start(
        config(&sim, D1)
            .keepalive(Duration::from_secs(1))
            .notification_capacity(4),
    )
    .await;
    // The application reads nothing while commands pour in, and then for three keepalive rounds
    // (the simulator counts the PINGREQs: rounds are waited for as events, not as time).
    send_commands(&sim, D1, "flood", 50);
    assert!(eventually(WAIT, || client.stats().commands_received == 50).await);
    let pings = sim.cloud().pings_from(D1);
    assert!(
        sim.cloud()
            .wait_for(WAIT, |cloud| cloud.pings_from(D1) >= pings + 3)
            .await
    );
    assert!(client.is_connected());
    assert_eq!(client.stats().reconnects, 0);
    assert_eq!(client.stats().commands_received, 50);
    let mut missed = 0;
    let mut commands = 0;
    while let Some(notification) = notifications.try_recv() {
        match notification {
            Notification::Lagged { missed: n } => missed += n,
            Notification::Command(_) => commands += 1,
            Notification::Disconnected { .. } => panic!("the connection dropped"),
            _ => {}
        }
    }
    assert_eq!(commands, 4);
    assert_eq!(missed, 46);
    assert_eq!(client.stats().notifications_dropped, 46);
}

#[tokio::test]
async fn with_the_block_policy_a_send_waits_for_room_and_a_try_send_does_not() {
    let sim = demo().await;
    let (client, mut notifications) = start(with_queue(&sim, D1, 2, FullQueuePolicy::Block)).await;
    cloud_gone(&sim, &mut notifications).await;
    client
        .try_send_event("a", Map::new(), Qos::AtLeastOnce)
        .unwrap();
    client
        .try_send_event("b", Map::new(), Qos::AtLeastOnce)
        .unwrap();
    assert!(matches!(
        client.try_send_event("c", Map::new(), Qos::AtLeastOnce),
        Err(ClientError::QueueFull { capacity: 2 })
    ));
    // Nothing can make room while the broker is down: however often it is polled, the send
    // waits (polled here by hand, so no wall-clock window decides the outcome).
    let mut waiting = std::pin::pin!(client.send_event("c", Map::new(), Qos::AtLeastOnce));
    for _ in 0..100 {
        let poll = std::future::poll_fn(|cx| std::task::Poll::Ready(waiting.as_mut().poll(cx)));
        assert!(
            poll.await.is_pending(),
            "a blocking send returned while the queue was full"
        );
        tokio::task::yield_now().await;
    }
    sim.restart_listeners().await.unwrap();
    let delivery = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    delivery.wait().await.unwrap();
    let types: Vec<String> = sim
        .cloud()
        .events_from(D1)
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types, ["a", "b", "c"]);
    let stats = client.stats();
    assert!(stats.bytes_out > 0 && stats.bytes_in > 0, "{stats:?}");
}

#[tokio::test]
async fn an_unreachable_cloud_is_retried_with_growing_waits_not_a_storm() {
    let sim = demo().await;
    let (client, mut notifications) = connected(&sim, D1).await;
    cloud_gone(&sim, &mut notifications).await;
    // Each failed attempt is one Disconnected with the wait before the next: one attempt per
    // wait, never a storm, and the waits grow up to the cap (200 ms here). The exact schedule is
    // the engine's, tested on simulated time in mode-core/tests/engine_histories.rs.
    let mut waits = Vec::new();
    let mut attempts = vec![client.stats().connection_attempts];
    for _ in 0..7 {
        let (_, wait) = disconnected(&mut notifications).await;
        waits.push(wait.expect("a wait before the next attempt"));
        attempts.push(client.stats().connection_attempts);
    }
    assert!(
        attempts.windows(2).all(|w| w[1] == w[0] + 1),
        "one attempt per failure: {attempts:?}"
    );
    assert!(
        waits.iter().all(|w| *w <= Duration::from_millis(200)),
        "{waits:?}"
    );
    assert!(waits.last() > waits.first(), "{waits:?}");
}
