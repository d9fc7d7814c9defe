//! The simulated world of the engine tests: the transport and the cloud as the engine sees
//! them, with a clock that only moves when told, and the engine configuration they use.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use mode_core::backoff::BackoffPolicy;
use mode_core::engine::{
    DisconnectReason, DropReason, Engine, EngineConfig, Event, MessageId, Publish, SendError,
    Transmit,
};
use mode_core::proto::{Map, Qos, Value};
use mode_core::time::Instant;

pub const DEVICE: u64 = 1001;
pub const UNIT_MS: u64 = 100;

pub fn policy() -> BackoffPolicy {
    BackoffPolicy {
        cap: Duration::from_millis(2_000),
        unit: Duration::from_millis(UNIT_MS),
        jitter: 0.2,
        stable_after: Duration::from_millis(5_000),
        auth_failure_wait: Duration::from_millis(3_000),
        auth_failure_cap: Duration::from_millis(20_000),
    }
}

pub fn config(seed: u64) -> EngineConfig {
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
pub struct World {
    pub engine: Engine,
    pub now: u64,
    /// The transport is connected (CONNACK given).
    pub up: bool,
    /// A Connect was asked for and not answered yet.
    pub connecting: bool,
    /// Times at which Connect was asked for.
    pub connects: Vec<u64>,
    /// Messages written on the current connection, awaiting the broker's acknowledgement.
    pub inflight: Vec<Publish>,
    /// Every message the cloud received, in order (re-sends included).
    pub received: Vec<MessageId>,
    /// Ids handed on each connection, in order.
    pub per_connection: Vec<Vec<MessageId>>,
    pub subscriptions: Vec<Vec<String>>,
    pub events: Vec<(u64, Event)>,
    pub disconnect_asked: bool,
    pub aborted: u32,
}

impl World {
    pub fn new(config: EngineConfig) -> World {
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

    /// A world whose engine is connected and subscribed (CONNACK and SUBACK given).
    pub fn online(config: EngineConfig) -> World {
        let mut world = World::new(config);
        world.connack();
        world.suback();
        world
    }

    pub fn t(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    /// Carries out everything the engine asks and collects its events.
    pub fn pump(&mut self) {
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
    pub fn advance(&mut self, ms: u64) {
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

    pub fn connack(&mut self) {
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

    pub fn suback(&mut self) {
        if self.up {
            self.engine.subscribed(self.t());
            self.pump();
        }
    }

    pub fn refuse(&mut self, reason: DisconnectReason) {
        if !self.connecting {
            return;
        }
        self.connecting = false;
        self.engine.disconnected(reason, self.t());
        self.pump();
    }

    pub fn drop_link(&mut self) {
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

    pub fn ack(&mut self, nth: usize) {
        if self.inflight.is_empty() {
            return;
        }
        let publish = self.inflight.remove(nth % self.inflight.len());
        self.engine.handle_activity(self.t());
        self.engine.delivered(publish.id, self.t());
        self.pump();
    }

    pub fn send(&mut self, n: u64, qos: Qos) -> Result<MessageId, SendError> {
        let mut data = Map::new();
        data.insert("n".into(), n.into());
        let result = self.engine.send_event("tick", data, qos);
        self.pump();
        result
    }

    /// Sends QoS 1 events numbered `0..count`; their ids.
    pub fn send_many(&mut self, count: u64) -> Vec<MessageId> {
        (0..count)
            .map(|n| self.send(n, Qos::AtLeastOnce).unwrap())
            .collect()
    }

    pub fn kv_from_cloud(&mut self, message: Value) {
        let payload = serde_json::to_vec(&message).unwrap();
        self.engine
            .handle_publish("/devices/1001/kv", &payload, self.t());
        self.pump();
    }

    pub fn delivered(&self) -> Vec<MessageId> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Delivered(id) => Some(*id),
                _ => None,
            })
            .collect()
    }

    pub fn dropped(&self) -> Vec<(MessageId, DropReason)> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Dropped { id, reason, .. } => Some((*id, reason.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn closed_at(&self) -> Option<u64> {
        self.events
            .iter()
            .find(|(_, e)| matches!(e, Event::Closed { .. }))
            .map(|(t, _)| *t)
    }

    /// Connects and answers everything until the engine is idle and its queue empty.
    pub fn settle(&mut self) {
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

pub fn fibonacci_units(n: u32) -> u64 {
    let (mut a, mut b) = (1u64, 2u64);
    for _ in 1..n {
        (a, b) = (b, a + b);
    }
    a
}

/// Drains `engine`'s transmits; the ids of the messages it published.
pub fn published(engine: &mut Engine) -> Vec<MessageId> {
    let mut ids = Vec::new();
    while let Some(transmit) = engine.poll_transmit() {
        if let Transmit::Publish(p) = transmit {
            ids.push(p.id);
        }
    }
    ids
}
