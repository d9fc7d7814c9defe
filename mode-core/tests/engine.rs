//! The engine on simulated time and a simulated transport, one behaviour at a time: connecting,
//! the order of what is queued and re-sent, the backoff schedules, the watchdog, bulk request
//! deadlines, close, full queues, refusals, the journal of message ids, and configuration
//! checks. Random histories of the same world are in `engine_histories.rs`.

mod world;

use std::time::Duration;

use mode_core::engine::{
    DisconnectReason, DropReason, Engine, EngineConfig, Event, FullQueuePolicy, OutboxChange,
    Publish, SendError, Transmit,
};
use mode_core::proto::{Map, Qos};
use mode_core::time::Instant;
use serde_json::json;
use world::*;

// ---------------------------------------------------------------------------------------------
// Single behaviours
// ---------------------------------------------------------------------------------------------

#[test]
fn a_new_engine_connects_at_once_and_announces_connected_at_the_suback() {
    let mut w = World::new(config(1));
    assert_eq!(w.connects, [0]);
    w.connack();
    assert_eq!(
        w.subscriptions,
        [vec![
            "/devices/1001/command".to_owned(),
            "/devices/1001/kv".to_owned()
        ]]
    );
    assert!(!w.engine.is_connected(), "not before the SUBACK");
    w.suback();
    assert!(w.engine.is_connected());
    assert_eq!(w.events, [(0, Event::Connected)]);
}

#[test]
fn messages_queued_offline_go_out_in_order_within_the_window_after_connecting() {
    let mut w = World::new(config(2));
    let ids = w.send_many(10);
    assert!(w.received.is_empty());
    w.connack();
    assert_eq!(w.received, ids[..4], "the in-flight window is 4");
    w.ack(0);
    assert_eq!(w.received, ids[..5]);
    w.settle();
    assert_eq!(w.received, ids);
    assert_eq!(w.delivered(), ids);
    assert_eq!(w.engine.stats().pending, 0);
}

#[test]
fn unconfirmed_messages_are_sent_again_first_after_a_reconnect_and_a_fresh_reload_is_expected() {
    let mut w = World::online(config(3));
    w.kv_from_cloud(json!({"action": "reload", "rev": 5, "numItems": 1, "items": [{"key": "a", "value": 1, "modificationTime": "t"}]}));
    let ids = w.send_many(6);
    w.ack(1); // the second is confirmed, the rest are lost with the connection
    w.drop_link();
    w.advance(UNIT_MS);
    assert_eq!(w.connects.len(), 2);
    w.connack();
    assert_eq!(w.per_connection[1], [ids[0], ids[2], ids[3], ids[4]]);
    // The cloud's store went back in time while we were away: the reload is the new truth.
    w.suback();
    w.kv_from_cloud(json!({"action": "reload", "rev": 2, "numItems": 0, "items": []}));
    assert!(w.engine.mirror().get("a").is_none());
    assert_eq!(w.engine.mirror().rev(), 2);
}

#[test]
fn an_authentication_refusal_waits_on_the_longer_schedule() {
    let mut w = World::new(config(4));
    w.refuse(DisconnectReason::AuthFailed("CONNACK 5".into()));
    let Some((_, Event::Disconnected { retry_in, .. })) = w.events.last().cloned() else {
        panic!("{:?}", w.events)
    };
    let wait = retry_in.unwrap();
    assert!(
        wait >= Duration::from_millis(2_400) && wait <= Duration::from_millis(3_000),
        "{wait:?}"
    );
    w.advance(2_399);
    assert_eq!(w.connects.len(), 1, "no attempt before the wait");
    w.advance(601);
    assert_eq!(w.connects.len(), 2);
}

#[test]
fn a_silent_connection_is_dropped_by_the_watchdog_and_retried() {
    let mut w = World::online(config(5));
    w.advance(1_499);
    assert!(w.engine.is_connected());
    w.advance(1);
    assert_eq!(w.aborted, 1);
    assert!(w.events.iter().any(|(t, e)| *t == 1_500
        && matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::KeepaliveTimeout(_),
                ..
            }
        )));
    w.advance(UNIT_MS);
    assert_eq!(w.connects.len(), 2);
}

#[test]
fn activity_keeps_the_watchdog_quiet() {
    let mut w = World::online(config(6));
    for _ in 0..10 {
        w.advance(1_000);
        w.engine.handle_activity(w.t());
    }
    assert_eq!(w.aborted, 0);
}

#[test]
fn a_bulk_request_times_out_exactly_at_its_deadline_and_a_response_resolves_it() {
    let mut w = World::online(config(7));
    w.advance(10);
    let (_, first) = w
        .engine
        .bulk_request(
            "echo",
            json!({"q": 1}),
            Some(Duration::from_millis(700)),
            w.t(),
        )
        .unwrap();
    w.pump();
    assert_eq!(
        w.subscriptions.last().unwrap(),
        &["/devices/1001/bulkData/echo/response".to_owned()],
        "subscribed to the responses before the request goes"
    );
    let (_, second) = w
        .engine
        .bulk_request("echo", json!({}), Some(Duration::from_millis(300)), w.t())
        .unwrap();
    w.pump();
    w.advance(100);
    let response = json!({"requestId": second, "status": "OK", "payload": {}});
    w.engine.handle_publish(
        "/devices/1001/bulkData/echo/response",
        &serde_json::to_vec(&response).unwrap(),
        w.t(),
    );
    w.pump();
    w.advance(1_000);
    let timeouts: Vec<_> = w
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::BulkTimeout { request_id } => Some((*t, request_id.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(timeouts, [(710, first)]);
    assert!(w.events.iter().any(|(_, e)| matches!(
        e,
        Event::BulkResponse { request: true, response, .. } if response.request_id == second
    )));
}

#[test]
fn close_flushes_then_unsubscribes_and_disconnects_and_ends_when_the_link_does() {
    let mut w = World::online(config(8));
    let id = w.send(1, Qos::AtLeastOnce).unwrap();
    w.engine.close(Instant::from_millis(5_000), w.t());
    w.pump();
    assert_eq!(
        w.send(2, Qos::AtLeastOnce),
        Err(SendError::Closed),
        "nothing is accepted once closing"
    );
    assert!(!w.disconnect_asked, "not before the queue is flushed");
    w.ack(0);
    assert!(w.disconnect_asked);
    w.drop_link(); // the broker closes after DISCONNECT
    assert_eq!(w.delivered(), [id]);
    assert_eq!(w.closed_at(), Some(0));
    assert!(w.engine.is_closed());
}

#[test]
fn close_gives_up_at_its_deadline_and_reports_each_message_left() {
    let mut w = World::new(config(9));
    let ids = w.send_many(3);
    w.engine.close(Instant::from_millis(800), w.t());
    w.pump();
    w.advance(10_000);
    assert_eq!(w.closed_at(), Some(800));
    let dropped: Vec<_> = w.dropped().into_iter().map(|(id, _)| id).collect();
    assert_eq!(dropped, ids);
    assert!(
        w.events
            .iter()
            .any(|(_, e)| *e == Event::Closed { unsent: 3 })
    );
}

#[test]
fn a_full_queue_follows_its_policy() {
    let small = |policy| EngineConfig {
        queue_size: 3,
        full_queue: policy,
        ..config(10)
    };
    let mut w = World::new(small(FullQueuePolicy::Error));
    for n in 0..3 {
        w.send(n, Qos::AtLeastOnce).unwrap();
    }
    assert_eq!(
        w.send(3, Qos::AtLeastOnce),
        Err(SendError::QueueFull { capacity: 3 })
    );

    let mut w = World::new(small(FullQueuePolicy::DropOldest));
    let ids = w.send_many(5);
    assert_eq!(
        w.dropped(),
        [
            (ids[0], DropReason::QueueFull),
            (ids[1], DropReason::QueueFull)
        ]
    );
    w.settle();
    assert_eq!(w.received, ids[2..]);
}

#[test]
fn a_message_the_cloud_refuses_fails_alone_and_the_rest_go_on() {
    let mut w = World::new(EngineConfig {
        max_inflight: 1,
        ..config(11)
    });
    w.connack();
    let bad = w.send(0, Qos::AtLeastOnce).unwrap();
    let good = w.send(1, Qos::AtLeastOnce).unwrap();
    w.inflight.clear();
    w.engine.failed(bad, "400 INVALID_KEY", w.t());
    w.pump();
    assert_eq!(w.received, [bad, good]);
    assert_eq!(
        w.dropped(),
        [(bad, DropReason::Refused("400 INVALID_KEY".into()))]
    );
    w.ack(0);
    assert_eq!(
        w.engine.stats().pending,
        0,
        "a refused message is no longer pending"
    );
    assert_eq!(w.engine.pending(), 0);
}

#[test]
fn a_refused_bulk_request_changes_nothing() {
    let mut engine = Engine::new(
        EngineConfig {
            max_message_size: 200,
            queue_size: 1,
            full_queue: FullQueuePolicy::Error,
            ..config(15)
        },
        Instant::from_millis(0),
    );
    let now = Instant::from_millis(0);
    let big = json!({"blob": "x".repeat(300)});
    assert!(matches!(
        engine.bulk_request("big", big, None, now),
        Err(SendError::TooLarge { .. })
    ));
    engine
        .send_event("fill", Map::new(), Qos::AtLeastOnce)
        .unwrap();
    assert!(matches!(
        engine.bulk_request("full", json!({}), None, now),
        Err(SendError::QueueFull { .. })
    ));
    // Neither refused label is subscribed after a connect, and no request id was used up.
    assert_eq!(engine.poll_transmit(), Some(Transmit::Connect));
    engine.connected(now);
    let Some(Transmit::Subscribe(topics)) = engine.poll_transmit() else {
        panic!()
    };
    assert_eq!(topics.len(), 2, "{topics:?}");
}

#[test]
fn the_journal_names_each_message_when_accepted_and_when_finished() {
    let mut w = World::new(EngineConfig {
        journal: true,
        ..config(12)
    });
    let a = w.send(0, Qos::AtLeastOnce).unwrap();
    let b = w.send(1, Qos::AtLeastOnce).unwrap();
    w.settle();
    let mut journal = Vec::new();
    while let Some(change) = w.engine.poll_journal() {
        journal.push(match change {
            OutboxChange::Added(p) => format!("+{}", p.id),
            OutboxChange::Done(id) => format!("-{id}"),
        });
    }
    assert_eq!(
        journal,
        [
            format!("+{a}"),
            format!("+{b}"),
            format!("-{a}"),
            format!("-{b}")
        ]
    );
}

#[test]
fn restored_messages_go_first_with_their_ids_and_new_ids_follow() {
    let mut engine = Engine::new(config(13), Instant::from_millis(0));
    let old = |id| Publish {
        id,
        topic: "/devices/1001/event".into(),
        payload: b"{}".to_vec(),
        qos: Qos::AtLeastOnce,
    };
    assert!(engine.restore(vec![old(41), old(40)]).is_empty());
    let new = engine
        .send_event("x", Map::new(), Qos::AtLeastOnce)
        .unwrap();
    assert_eq!(new, 42);
    assert_eq!(engine.poll_transmit(), Some(Transmit::Connect));
    engine.connected(Instant::from_millis(0));
    let ids = published(&mut engine);
    assert_eq!(ids, [40, 41, 42]);
}

#[test]
fn ids_continue_after_a_given_id_and_drop_oldest_drops_only_what_is_not_on_the_wire() {
    let mut engine = Engine::new(
        EngineConfig {
            journal: true,
            max_inflight: 1,
            ..config(15)
        },
        Instant::from_millis(0),
    );
    engine.continue_ids_after(99);
    let send = |engine: &mut Engine| {
        engine
            .send_event("x", Map::new(), Qos::AtLeastOnce)
            .unwrap()
    };
    let first = send(&mut engine);
    assert_eq!(first, 100);
    let second = send(&mut engine);
    assert_eq!(engine.poll_transmit(), Some(Transmit::Connect));
    engine.connected(Instant::from_millis(0));
    let on_wire = published(&mut engine);
    assert_eq!(on_wire, [first]);
    // The one in the network stays; the queued one goes, reported and journaled.
    assert_eq!(engine.drop_oldest(), Some(second));
    assert_eq!(engine.drop_oldest(), None);
    assert_eq!(engine.pending(), 1);
    let mut dropped = Vec::new();
    while let Some(event) = engine.poll_event() {
        if let Event::Dropped { id, reason, .. } = event {
            dropped.push((id, reason));
        }
    }
    assert_eq!(dropped, [(second, DropReason::QueueFull)]);
    let mut done = Vec::new();
    while let Some(change) = engine.poll_journal() {
        if let OutboxChange::Done(id) = change {
            done.push(id);
        }
    }
    assert_eq!(done, [second]);
    assert_eq!(engine.stats().messages_dropped, 1);
    assert_eq!(engine.stats().pending, 1);
}

#[test]
fn oversized_messages_and_misuse_are_refused_before_anything_is_queued() {
    let mut engine = Engine::new(
        EngineConfig {
            max_message_size: 100,
            ..config(14)
        },
        Instant::from_millis(0),
    );
    let big = vec![0u8; 200];
    assert!(matches!(
        engine.send_bulk_data("echo", &big, Qos::AtMostOnce),
        Err(SendError::TooLarge { .. })
    ));
    assert!(matches!(
        engine.kv_set("", json!(1)),
        Err(SendError::Encode(_))
    ));
    assert!(matches!(
        engine.bulk_request("echo", json!([1]), None, Instant::from_millis(0)),
        Err(SendError::Encode(_))
    ));
    assert_eq!(engine.pending(), 0);
    assert_eq!(engine.stats().messages_queued, 0);
}

#[test]
fn a_setting_that_cannot_work_is_named_by_check() {
    use mode_core::engine::ConfigProblem;
    assert_eq!(config(16).check(), Ok(()));
    let bad = |change: fn(&mut EngineConfig)| {
        let mut c = config(16);
        change(&mut c);
        c.check().unwrap_err()
    };
    assert_eq!(bad(|c| c.queue_size = 0), ConfigProblem::NoQueue);
    assert_eq!(bad(|c| c.max_inflight = 0), ConfigProblem::NoInflight);
    assert_eq!(
        bad(|c| c.backoff.unit = Duration::ZERO),
        ConfigProblem::NoBackoff
    );
    assert_eq!(bad(|c| c.backoff.jitter = 1.5), ConfigProblem::Jitter(1.5));
    assert_eq!(
        bad(|c| c.max_message_size = 63).to_string(),
        "max_message_size is 63: no message would fit"
    );
}
