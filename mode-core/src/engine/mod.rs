//! One device's connection to MODE as a state machine, with no IO, clock or RNG: the driver (the
//! tokio client, the C library over a device's own MQTT stack, a test) feeds it what happened
//! (`connected`, `handle_publish`, `delivered`, `handle_timeout`, ... each with the time) and
//! carries out what it asks (`poll_transmit`), waking it at `poll_timeout`; the application reads
//! `poll_event`. Every protocol decision is here: the outbox that never loses a QoS 1 message,
//! the in-flight window, re-sending after a reconnect, resubscribing and expecting a fresh
//! reload, the reconnect backoff, the half-open watchdog, bulk-request deadlines, and close.
//!
//! Here: the engine's state, creating and restoring it, what it reports (`stats`, `mirror`, ...)
//! and its outputs (`poll_*`); what the transport and the clock tell it
//! (inputs.rs), what the application asks of it (sends.rs), its types (types.rs), counters
//! (stats.rs) and outbox (outbox.rs).
//!
//! ```
//! use mode_core::engine::{Engine, EngineConfig, Event, Transmit};
//! use mode_core::proto::{Map, Qos};
//! use mode_core::time::Instant;
//!
//! let t = Instant::from_millis(0);
//! let mut engine = Engine::new(EngineConfig::new(1001, 7), t);
//! assert_eq!(engine.poll_transmit(), Some(Transmit::Connect));
//! let id = engine.send_event("boot", Map::new(), Qos::AtLeastOnce)?;
//! engine.connected(t); // the transport's CONNACK
//! let Some(Transmit::Subscribe(topics)) = engine.poll_transmit() else { panic!() };
//! assert_eq!(topics, ["/devices/1001/command", "/devices/1001/kv"]);
//! let Some(Transmit::Publish(publish)) = engine.poll_transmit() else { panic!() };
//! assert_eq!((publish.id, publish.topic.as_str()), (id, "/devices/1001/event"));
//! engine.subscribed(t); // the SUBACK
//! engine.delivered(id, t); // the PUBACK
//! assert_eq!(engine.poll_event(), Some(Event::Connected));
//! assert_eq!(engine.poll_event(), Some(Event::Delivered(id)));
//! # Ok::<(), mode_core::engine::SendError>(())
//! ```

mod inputs;
mod outbox;
mod sends;
mod stats;
mod types;

use alloc::collections::{BTreeMap, VecDeque};
use core::time::Duration;

use serde_json::{Map, Value};

pub use stats::{COUNTERS, Counters, Stats};
pub use types::{
    ConfigProblem, DisconnectReason, DropReason, EngineConfig, Event, FullQueuePolicy, MessageId,
    OutboxChange, Publish, SendError, Transmit,
};

use self::outbox::Outbox;
use crate::backoff::{Backoff, Failure};
use crate::ddp::{Applied, Mirror};
use crate::prelude::*;
use crate::proto::{DeviceId, Event as EventMessage, Qos, Topic, TopicKind};
use crate::random::SplitMix64;
use crate::session::{Incoming, Outgoing, Session};
use crate::time::{Instant, millis_ceil};

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq)]
enum Link {
    /// No transport; the next attempt is due at `retry_at`.
    Down { retry_at: Instant },
    /// `Transmit::Connect` was asked for; waiting for `connected` or `disconnected`.
    Connecting,
    /// The transport is up.
    Up {
        /// `Event::Connected` was sent (at the first `subscribed`).
        announced: bool,
        /// The topics subscribed on this connection.
        subscribed: Vec<String>,
        /// DISCONNECT was asked for; the close ends when the transport does.
        disconnect_sent: bool,
    },
    /// Closed: nothing more happens.
    Closed,
}

/// A close in progress.
#[derive(Debug, Clone, Copy)]
struct Closing {
    deadline: Instant,
}

/// One device's connection; see the module docs.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    session: Session,
    outbox: Outbox,
    backoff: Backoff,
    link: Link,
    next_id: MessageId,
    closing: Option<Closing>,
    ever_connected: bool,
    last_activity: Instant,
    /// Pending bulk requests by request id, with their deadlines (`None`: the driver times out).
    bulk_waits: BTreeMap<String, Option<Instant>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    journal: VecDeque<OutboxChange>,
    stats: Stats,
    /// Backoff jitter, seeded by the caller's randomness ([`EngineConfig::seed`]): the engine
    /// reads no RNG, and a test replays a history exactly.
    random: SplitMix64,
}

impl Engine {
    /// A connection for `config.device_id`, created at `now`. It asks to connect at once.
    pub fn new(config: EngineConfig, now: Instant) -> Self {
        let config_seed = config.seed;
        let session = Session::new(config.device_id, config.seed);
        let backoff = Backoff::new(config.backoff.clone());
        let mut engine = Engine {
            config,
            session,
            outbox: Outbox::default(),
            backoff,
            link: Link::Down { retry_at: now },
            next_id: 1,
            closing: None,
            ever_connected: false,
            last_activity: now,
            bulk_waits: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            journal: VecDeque::new(),
            stats: Stats::default(),
            random: SplitMix64(config_seed),
        };
        engine.start_attempt();
        engine
    }

    /// Puts back messages a previous run accepted and did not finish (a durable outbox), before
    /// anything else is sent. They keep their ids and go first, in id order; new ids continue
    /// after the largest. Messages the queue has no room for are refused (returned).
    ///
    /// The seam of a durable outbox, as a firmware would use it with its flash: with
    /// [`EngineConfig::journal`], apply every [`poll_journal`](Self::poll_journal) change to the
    /// store (and sync it) before telling the application a send succeeded; at boot, hand what
    /// the store holds to `restore`. (`mode-client`'s `outbox_dir` is this seam over queue-file.)
    ///
    /// ```
    /// use std::collections::BTreeMap;
    ///
    /// use mode_core::engine::{Engine, EngineConfig, OutboxChange, Publish, Transmit};
    /// use mode_core::proto::{Map, Qos};
    /// use mode_core::time::Instant;
    ///
    /// /// The flash: the journal applied in order (a firmware writes and syncs a sector here).
    /// fn persist(engine: &mut Engine, flash: &mut BTreeMap<u64, Publish>) {
    ///     while let Some(change) = engine.poll_journal() {
    ///         match change {
    ///             OutboxChange::Added(message) => flash.insert(message.id, message),
    ///             OutboxChange::Done(id) => flash.remove(&id),
    ///         };
    ///     }
    /// }
    /// /// Connects and returns the ids the engine hands to the network.
    /// fn connect(engine: &mut Engine, t: Instant) -> Vec<u64> {
    ///     engine.connected(t);
    ///     let mut sent = Vec::new();
    ///     while let Some(transmit) = engine.poll_transmit() {
    ///         if let Transmit::Publish(publish) = transmit {
    ///             sent.push(publish.id);
    ///         }
    ///     }
    ///     sent
    /// }
    ///
    /// let t = Instant::from_millis(0);
    /// let config = EngineConfig { journal: true, ..EngineConfig::new(1001, 7) };
    /// let mut flash = BTreeMap::new();
    ///
    /// let mut engine = Engine::new(config.clone(), t);
    /// let a = engine.send_event("a", Map::new(), Qos::AtLeastOnce)?;
    /// let b = engine.send_event("b", Map::new(), Qos::AtLeastOnce)?;
    /// persist(&mut engine, &mut flash); // only now: "sent" to the application
    /// assert_eq!(engine.poll_transmit(), Some(Transmit::Connect));
    /// assert_eq!(connect(&mut engine, t), [a, b]);
    /// engine.delivered(a, t); // the PUBACK of `a`; `b`'s never comes: the power goes
    /// persist(&mut engine, &mut flash);
    /// drop(engine);
    ///
    /// let mut engine = Engine::new(config, t);
    /// assert!(engine.restore(flash.values().cloned().collect()).is_empty());
    /// let c = engine.send_event("c", Map::new(), Qos::AtLeastOnce)?;
    /// assert_eq!(c, b + 1, "ids continue");
    /// assert_eq!(engine.poll_transmit(), Some(Transmit::Connect));
    /// assert_eq!(connect(&mut engine, t), [b, c], "`b` goes first, with its id");
    /// # Ok::<(), mode_core::engine::SendError>(())
    /// ```
    pub fn restore(&mut self, mut messages: Vec<Publish>) -> Vec<Publish> {
        messages.sort_by_key(|message| message.id);
        let mut refused = Vec::new();
        for message in messages {
            if message.id == 0 || self.outbox.len() >= self.config.queue_size {
                refused.push(message);
                continue;
            }
            self.next_id = self.next_id.max(message.id + 1);
            self.stats.messages_queued += 1;
            self.stats.pending += 1;
            self.outbox.push(message);
        }
        refused
    }

    /// New ids continue after `last` at least: a driver whose durable outbox held nothing at
    /// start (every message was delivered) keeps ids unique across runs all the same.
    pub fn continue_ids_after(&mut self, last: MessageId) {
        self.next_id = self.next_id.max(last.saturating_add(1));
    }

    /// Drops the oldest message not yet handed to the network, as a full queue does under
    /// [`FullQueuePolicy::DropOldest`] ([`Event::Dropped`] with [`DropReason::QueueFull`], a
    /// journal `Done`), for a driver that bounds its outbox by more than a count (a durable
    /// outbox's bytes). `None` when every message is in the network.
    pub fn drop_oldest(&mut self) -> Option<MessageId> {
        let oldest = self.outbox.drop_oldest()?;
        let id = oldest.id;
        self.stats.pending -= 1;
        self.dropped(oldest, DropReason::QueueFull);
        Some(id)
    }

    /// The device this connection speaks for.
    pub fn device_id(&self) -> DeviceId {
        self.config.device_id
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The DDP mirror, as the cloud's messages have left it.
    pub fn mirror(&self) -> &Mirror {
        self.session.mirror()
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// True while connected and subscribed (after `Event::Connected`).
    pub fn is_connected(&self) -> bool {
        matches!(
            self.link,
            Link::Up {
                announced: true,
                ..
            }
        )
    }

    /// True once a close began: sends are refused.
    pub fn is_closing(&self) -> bool {
        self.closing.is_some() || self.link == Link::Closed
    }

    /// True once closed: nothing more will happen.
    pub fn is_closed(&self) -> bool {
        self.link == Link::Closed
    }

    /// Messages accepted and not finished.
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// Room in the queue for this many more messages.
    pub fn room(&self) -> usize {
        self.config.queue_size.saturating_sub(self.outbox.len())
    }

    // -----------------------------------------------------------------------------------------
    // Outputs
    // -----------------------------------------------------------------------------------------

    /// The next piece of work for the transport, or `None` when there is nothing to do until
    /// another input. Call it after every input until it returns `None`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(transmit) = self.transmits.pop_front() {
            return Some(transmit);
        }
        let Link::Up {
            disconnect_sent: false,
            ..
        } = self.link
        else {
            return None;
        };
        if self.outbox.in_network() >= usize::from(self.config.max_inflight.max(1)) {
            return None;
        }
        let publish = self.outbox.hand_front()?;
        self.stats.messages_sent += 1;
        self.stats.bytes_out += publish.payload.len() as u64;
        Some(Transmit::Publish(publish))
    }

    /// The next thing for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next change to the outbox to persist (only with [`EngineConfig::journal`]).
    pub fn poll_journal(&mut self) -> Option<OutboxChange> {
        self.journal.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: a reconnect attempt, the
    /// watchdog, a bulk-request deadline or the close deadline. `None`: no timer needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        match &self.link {
            Link::Down { retry_at } => consider(*retry_at),
            Link::Up { .. } => {
                if let Some(watchdog) = self.config.watchdog {
                    consider(self.last_activity + watchdog);
                }
            }
            Link::Connecting | Link::Closed => {}
        }
        if self.link != Link::Closed {
            for deadline in self.bulk_waits.values().flatten() {
                consider(*deadline);
            }
            if let Some(closing) = self.closing {
                consider(closing.deadline);
            }
        }
        next
    }

    // -----------------------------------------------------------------------------------------
    // Internals that inputs (inputs.rs) and intents (sends.rs) share
    // -----------------------------------------------------------------------------------------

    fn start_attempt(&mut self) {
        self.stats.connection_attempts += 1;
        self.link = Link::Connecting;
        self.transmits.push_back(Transmit::Connect);
    }

    /// `message` will never be delivered; it no longer counts as pending.
    fn dropped(&mut self, message: Publish, reason: DropReason) {
        self.stats.messages_dropped += 1;
        self.journal_done(message.id);
        self.events.push_back(Event::Dropped {
            id: message.id,
            topic: message.topic,
            reason,
        });
    }

    fn journal_done(&mut self, id: MessageId) {
        if self.config.journal {
            self.journal.push_back(OutboxChange::Done(id));
        }
    }

    /// Closing and everything delivered: leave cleanly as MODE asks, UNSUBSCRIBE then
    /// DISCONNECT, and wait (up to the linger) for the transport to close.
    fn maybe_leave(&mut self, now: Instant) {
        let Some(closing) = &mut self.closing else {
            return;
        };
        if !self.outbox.is_empty() {
            return;
        }
        let Link::Up {
            subscribed,
            disconnect_sent,
            ..
        } = &mut self.link
        else {
            return;
        };
        if *disconnect_sent {
            return;
        }
        *disconnect_sent = true;
        let topics = core::mem::take(subscribed);
        if !topics.is_empty() {
            self.transmits.push_back(Transmit::Unsubscribe(topics));
        }
        self.transmits.push_back(Transmit::Disconnect);
        closing.deadline = closing.deadline.min(now + self.config.linger);
    }

    fn finish_close(&mut self) {
        if self.link == Link::Closed {
            return;
        }
        let unsent: Vec<Publish> = self.outbox.drain().collect();
        let count = unsent.len();
        for message in unsent {
            self.stats.pending -= 1;
            self.dropped(message, DropReason::Closed);
        }
        self.bulk_waits.clear();
        self.link = Link::Closed;
        self.events.push_back(Event::Disconnected {
            reason: DisconnectReason::Closed,
            retry_in: None,
        });
        self.events.push_back(Event::Closed { unsent: count });
    }
}
