//! The engine on simulated time and a simulated transport: no sockets, no sleeps. Random
//! histories (disconnects at any point, lost acknowledgements, authentication refusals, sync
//! messages duplicated and reordered, close at any point) must keep the engine's promises: no
//! QoS 1 message lost, order kept, the backoff schedule exactly Fibonacci within its jitter,
//! never two connects within one backoff step, bulk requests timed out exactly at their
//! deadline, close always ended by its deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mode_core::backoff::BackoffPolicy;
use mode_core::engine::{
    DisconnectReason, DropReason, Engine, EngineConfig, Event, FullQueuePolicy, MessageId,
    OutboxChange, Publish, SendError, Transmit,
};
use mode_core::proto::{Map, Qos, Value};
use mode_core::time::Instant;
use proptest::prelude::*;
use serde_json::json;

const DEVICE: u64 = 1001;
const UNIT_MS: u64 = 100;

fn policy() -> BackoffPolicy {
    BackoffPolicy {
        cap: Duration::from_millis(2_000),
        unit: Duration::from_millis(UNIT_MS),
        jitter: 0.2,
        stable_after: Duration::from_millis(5_000),
        auth_failure_wait: Duration::from_millis(3_000),
        auth_failure_cap: Duration::from_millis(20_000),
    }
}

fn config(seed: u64) -> EngineConfig {
    EngineConfig {
        queue_size: 1_000,
        max_inflight: 4,
        backoff: policy(),
        watchdog: Some(Duration::from_millis(1_500)),
        linger: Duration::from_millis(200),
        ..EngineConfig::new(DEVICE, seed)
    }
}

/// The transport and the cloud as the engine sees them, with a clock that only moves when told.
struct World {
    engine: Engine,
    now: u64,
    /// The transport is connected (CONNACK given).
    up: bool,
    /// A Connect was asked for and not answered yet.
    connecting: bool,
    /// Times at which Connect was asked for.
    connects: Vec<u64>,
    /// Messages written on the current connection, awaiting the broker's acknowledgement.
    inflight: Vec<Publish>,
    /// Every message the cloud received, in order (re-sends included).
    received: Vec<MessageId>,
    /// Ids handed on each connection, in order.
    per_connection: Vec<Vec<MessageId>>,
    subscriptions: Vec<Vec<String>>,
    events: Vec<(u64, Event)>,
    disconnect_asked: bool,
    aborted: u32,
}

impl World {
    fn new(config: EngineConfig) -> World {
        let engine = Engine::new(config, Instant::from_millis(0));
        let mut world = World {
            engine,
            now: 0,
            up: false,
            connecting: false,
            connects: Vec::new(),
            inflight: Vec::new(),
            received: Vec::new(),
            per_connection: Vec::new(),
            subscriptions: Vec::new(),
            events: Vec::new(),
            disconnect_asked: false,
            aborted: 0,
        };
        world.pump();
        world
    }

    fn t(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    /// Carries out everything the engine asks and collects its events.
    fn pump(&mut self) {
        while let Some(transmit) = self.engine.poll_transmit() {
            match transmit {
                Transmit::Connect => {
                    assert!(!self.up && !self.connecting, "connect while a link exists");
                    self.connecting = true;
                    self.connects.push(self.now);
                }
                Transmit::Subscribe(topics) => {
                    assert!(self.up, "subscribe without a connection");
                    self.subscriptions.push(topics);
                }
                Transmit::Unsubscribe(_) => assert!(self.up),
                Transmit::Publish(publish) => {
                    assert!(self.up, "publish without a connection");
                    assert!(!self.disconnect_asked, "publish after DISCONNECT");
                    self.per_connection.last_mut().unwrap().push(publish.id);
                    self.received.push(publish.id);
                    if publish.qos == Qos::AtMostOnce {
                        // Written: done at once.
                        self.engine.delivered(publish.id, self.t());
                    } else {
                        self.inflight.push(publish);
                    }
                }
                Transmit::Disconnect => self.disconnect_asked = true,
                Transmit::Abort => {
                    self.aborted += 1;
                    self.up = false;
                    self.connecting = false;
                    self.inflight.clear();
                    self.disconnect_asked = false;
                }
            }
        }
        while let Some(event) = self.engine.poll_event() {
            self.events.push((self.now, event));
        }
    }

    /// Moves the clock to `to`, firing every timer on the way exactly at its time, and waking
    /// the engine early every 37 ms as well (a driver's spurious wake-ups must change nothing).
    fn advance(&mut self, ms: u64) {
        let to = self.now + ms;
        loop {
            let timer = self.engine.poll_timeout().map(Instant::as_millis);
            let spurious = self.now + 37;
            let next = timer.map_or(spurious, |at| at.min(spurious)).max(self.now);
            if next > to {
                break;
            }
            self.now = next;
            self.engine.handle_timeout(self.t());
            self.pump();
            // A timer that is due must be dealt with: handle_timeout moves it past now.
            let after = self.engine.poll_timeout().map(Instant::as_millis);
            assert!(
                after.is_none_or(|at| at > self.now),
                "handle_timeout({}) left the timer due at {after:?}",
                self.now
            );
            if self.now == to {
                break;
            }
        }
        self.now = to;
    }

    fn connack(&mut self) {
        if !self.connecting {
            return;
        }
        self.connecting = false;
        self.up = true;
        self.disconnect_asked = false;
        self.per_connection.push(Vec::new());
        self.engine.connected(self.t());
        self.pump();
    }

    fn suback(&mut self) {
        if self.up {
            self.engine.subscribed(self.t());
            self.pump();
        }
    }

    fn refuse(&mut self, reason: DisconnectReason) {
        if !self.connecting {
            return;
        }
        self.connecting = false;
        self.engine.disconnected(reason, self.t());
        self.pump();
    }

    fn drop_link(&mut self) {
        if !self.up {
            return;
        }
        self.up = false;
        self.inflight.clear();
        self.disconnect_asked = false;
        self.engine
            .disconnected(DisconnectReason::Network("reset".into()), self.t());
        self.pump();
    }

    fn ack(&mut self, nth: usize) {
        if self.inflight.is_empty() {
            return;
        }
        let publish = self.inflight.remove(nth % self.inflight.len());
        self.engine.handle_activity(self.t());
        self.engine.delivered(publish.id, self.t());
        self.pump();
    }

    fn send(&mut self, n: u64, qos: Qos) -> Result<MessageId, SendError> {
        let mut data = Map::new();
        data.insert("n".into(), n.into());
        let result = self.engine.send_event("tick", data, qos);
        self.pump();
        result
    }

    fn kv_from_cloud(&mut self, message: Value) {
        let payload = serde_json::to_vec(&message).unwrap();
        self.engine
            .handle_publish("/devices/1001/kv", &payload, self.t());
        self.pump();
    }

    fn delivered(&self) -> Vec<MessageId> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Delivered(id) => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn dropped(&self) -> Vec<(MessageId, DropReason)> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Dropped { id, reason, .. } => Some((*id, reason.clone())),
                _ => None,
            })
            .collect()
    }

    fn closed_at(&self) -> Option<u64> {
        self.events
            .iter()
            .find(|(_, e)| matches!(e, Event::Closed { .. }))
            .map(|(t, _)| *t)
    }

    /// Connects and answers everything until the engine is idle and its queue empty.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            if self.engine.is_closed() {
                return;
            }
            if self.connecting {
                self.connack();
                self.suback();
            } else if !self.inflight.is_empty() {
                self.ack(0);
            } else if self.engine.pending() == 0 && self.up {
                return;
            } else {
                self.advance(UNIT_MS);
            }
        }
        panic!("the engine did not settle");
    }
}

fn fibonacci_units(n: u32) -> u64 {
    let (mut a, mut b) = (1u64, 2u64);
    for _ in 1..n {
        (a, b) = (b, a + b);
    }
    a
}

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
    let ids: Vec<_> = (0..10)
        .map(|n| w.send(n, Qos::AtLeastOnce).unwrap())
        .collect();
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
    let mut w = World::new(config(3));
    w.connack();
    w.suback();
    w.kv_from_cloud(json!({"action": "reload", "rev": 5, "numItems": 1, "items": [{"key": "a", "value": 1, "modificationTime": "t"}]}));
    let ids: Vec<_> = (0..6)
        .map(|n| w.send(n, Qos::AtLeastOnce).unwrap())
        .collect();
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
    let mut w = World::new(config(5));
    w.connack();
    w.suback();
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
    let mut w = World::new(config(6));
    w.connack();
    w.suback();
    for _ in 0..10 {
        w.advance(1_000);
        w.engine.handle_activity(w.t());
    }
    assert_eq!(w.aborted, 0);
}

#[test]
fn a_bulk_request_times_out_exactly_at_its_deadline_and_a_response_resolves_it() {
    let mut w = World::new(config(7));
    w.connack();
    w.suback();
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
    let mut w = World::new(config(8));
    w.connack();
    w.suback();
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
    let ids: Vec<_> = (0..3)
        .map(|n| w.send(n, Qos::AtLeastOnce).unwrap())
        .collect();
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
    let ids: Vec<_> = (0..5)
        .map(|n| w.send(n, Qos::AtLeastOnce).unwrap())
        .collect();
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
    let mut ids = Vec::new();
    while let Some(t) = engine.poll_transmit() {
        if let Transmit::Publish(p) = t {
            ids.push(p.id);
        }
    }
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
    let mut on_wire = Vec::new();
    while let Some(t) = engine.poll_transmit() {
        if let Transmit::Publish(p) = t {
            on_wire.push(p.id);
        }
    }
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

// ---------------------------------------------------------------------------------------------
// Random histories
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Send(Qos),
    Connack,
    Suback,
    RefuseNetwork,
    RefuseAuth,
    Drop,
    Ack(usize),
    Advance(u64),
    Sync { key: u8, rev: u64, duplicate: bool },
    Close(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => prop_oneof![Just(Qos::AtLeastOnce), Just(Qos::AtMostOnce)].prop_map(Step::Send),
        3 => Just(Step::Connack),
        2 => Just(Step::Suback),
        1 => Just(Step::RefuseNetwork),
        1 => Just(Step::RefuseAuth),
        2 => Just(Step::Drop),
        6 => (0usize..8).prop_map(Step::Ack),
        4 => (0u64..2_500).prop_map(Step::Advance),
        2 => (0u8..3, 1u64..20, any::<bool>())
            .prop_map(|(key, rev, duplicate)| Step::Sync { key, rev, duplicate }),
        1 => (0u64..3_000).prop_map(Step::Close),
    ]
}

/// Runs `steps`; returns the world and the ids accepted, with their QoS.
fn run(seed: u64, steps: &[Step]) -> (World, Vec<(MessageId, Qos)>, Option<u64>) {
    let mut w = World::new(config(seed));
    let mut accepted = Vec::new();
    let mut close_deadline = None;
    for (n, step) in steps.iter().enumerate() {
        match step {
            Step::Send(qos) => {
                if let Ok(id) = w.send(n as u64, *qos) {
                    accepted.push((id, *qos));
                }
            }
            Step::Connack => w.connack(),
            Step::Suback => w.suback(),
            Step::RefuseNetwork => w.refuse(DisconnectReason::Network("refused".into())),
            Step::RefuseAuth => w.refuse(DisconnectReason::AuthFailed("CONNACK 5".into())),
            Step::Drop => w.drop_link(),
            Step::Ack(nth) => w.ack(*nth),
            Step::Advance(ms) => w.advance(*ms),
            Step::Sync {
                key,
                rev,
                duplicate,
            } => {
                let message =
                    json!({"action": "set", "rev": rev, "key": format!("k{key}"), "value": rev});
                w.kv_from_cloud(message.clone());
                if *duplicate {
                    w.kv_from_cloud(message);
                }
            }
            Step::Close(after) => {
                if close_deadline.is_none() {
                    let deadline = w.now + after;
                    close_deadline = Some(deadline);
                    w.engine.close(Instant::from_millis(deadline), w.t());
                    w.pump();
                }
            }
        }
    }
    (w, accepted, close_deadline)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Every accepted QoS 1 message is delivered once the cloud is reachable again, or reported
    /// dropped at close; each is finished exactly once; each connection sends in id order,
    /// starting from the oldest unconfirmed message.
    #[test]
    fn no_qos1_message_is_lost_and_order_is_kept(seed in any::<u64>(), steps in prop::collection::vec(step(), 0..120)) {
        let (mut w, accepted, close_deadline) = run(seed, &steps);
        if close_deadline.is_none() {
            w.settle();
        } else {
            w.advance(30_000);
            if !w.engine.is_closed() {
                w.settle();
                w.advance(30_000);
            }
        }
        let delivered = w.delivered();
        let dropped = w.dropped();
        let mut finished: BTreeMap<MessageId, u32> = BTreeMap::new();
        for id in delivered.iter().chain(dropped.iter().map(|(id, _)| id)) {
            *finished.entry(*id).or_default() += 1;
        }
        for (id, qos) in &accepted {
            prop_assert_eq!(finished.get(id).copied(), Some(1), "message {} ({:?}) finished once", id, qos);
        }
        for (id, reason) in &dropped {
            prop_assert_eq!(reason, &DropReason::Closed, "only close drops a message ({})", id);
        }
        if close_deadline.is_none() {
            prop_assert!(dropped.is_empty());
        }
        for ids in &w.per_connection {
            prop_assert!(ids.windows(2).all(|p| p[0] < p[1]), "in order on one connection: {:?}", ids);
        }
        // The cloud saw every delivered QoS 1 message.
        let received: BTreeSet<_> = w.received.iter().copied().collect();
        for id in &delivered {
            prop_assert!(received.contains(id));
        }
    }

    /// Each wait between a failure and the next attempt is the Fibonacci (or authentication)
    /// schedule within the jitter, and the attempt starts exactly when the wait ends.
    #[test]
    fn reconnects_follow_the_backoff_schedule_exactly(seed in any::<u64>(), outcomes in prop::collection::vec(0u8..4, 1..25)) {
        let mut w = World::new(config(seed));
        let mut failures = 0u32;
        let mut auth_failures = 0u32;
        for outcome in outcomes {
            let before = w.connects.len();
            let failed_at = w.now;
            match outcome {
                0 => w.refuse(DisconnectReason::Network("refused".into())),
                1 => w.refuse(DisconnectReason::AuthFailed("no".into())),
                _ => { w.connack(); w.suback(); w.advance(10); w.drop_link(); }
            }
            let retry_in = match w.events.last() {
                Some((_, Event::Disconnected { retry_in: Some(wait), .. })) => *wait,
                other => panic!("{other:?}"),
            };
            let expected = match outcome {
                1 => {
                    auth_failures += 1;
                    (3_000u64 << (auth_failures - 1).min(20)).min(20_000)
                }
                _ => {
                    if outcome >= 2 { auth_failures = 0; }
                    failures += 1;
                    (fibonacci_units(failures) * UNIT_MS).min(2_000)
                }
            };
            let wait = retry_in.as_millis() as u64;
            prop_assert!(wait <= expected && wait * 10 >= expected * 8 - 10, "wait {} for schedule {}", wait, expected);
            let failed_at = if outcome >= 2 { w.now } else { failed_at };
            w.advance(wait.saturating_sub(1));
            prop_assert_eq!(w.connects.len(), before, "no attempt within the backoff step");
            w.advance(1);
            prop_assert_eq!(w.connects.len(), before + 1);
            prop_assert_eq!(*w.connects.last().unwrap(), failed_at + wait);
        }
    }

    /// However the history goes, close ends by its deadline, and nothing happens after it.
    #[test]
    fn close_always_ends_by_its_deadline(seed in any::<u64>(), steps in prop::collection::vec(step(), 0..80), after in 0u64..5_000) {
        let (mut w, _, _) = run(seed, &steps);
        let deadline = w.now + after;
        w.engine.close(Instant::from_millis(deadline), w.t());
        w.pump();
        w.advance(after + 1);
        let closed = w.closed_at();
        prop_assert!(closed.is_some_and(|t| t <= deadline), "closed at {:?}, deadline {}", closed, deadline);
        prop_assert!(w.engine.is_closed());
        prop_assert_eq!(w.engine.poll_timeout(), None);
        let events = w.events.len();
        w.advance(100_000);
        prop_assert_eq!(w.events.len(), events);
    }

    /// Duplicated and reordered sync messages leave the mirror with the newest value of each key.
    #[test]
    fn the_mirror_keeps_the_newest_value_of_each_key(seed in any::<u64>(), mut revs in prop::collection::vec((0u8..4, 1u64..50), 1..60)) {
        let mut w = World::new(config(seed));
        w.connack();
        w.suback();
        w.kv_from_cloud(json!({"action": "reload", "rev": 0, "numItems": 0, "items": []}));
        revs.dedup_by_key(|(_, rev)| *rev);
        let mut newest: BTreeMap<String, u64> = BTreeMap::new();
        let mut used = BTreeSet::new();
        for (key, rev) in &revs {
            if !used.insert(*rev) { continue; } // the cloud never reuses a revision
            let key = format!("k{key}");
            w.kv_from_cloud(json!({"action": "set", "rev": rev, "key": key, "value": rev}));
            w.kv_from_cloud(json!({"action": "set", "rev": rev, "key": key, "value": rev}));
            let best = newest.entry(key).or_insert(0);
            *best = (*best).max(*rev);
        }
        for (key, rev) in newest {
            prop_assert_eq!(w.engine.mirror().get(&key), Some(&json!(rev)));
        }
    }
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
