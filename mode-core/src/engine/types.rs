//! What goes into and comes out of the [`Engine`](super::Engine): its settings, the reasons a
//! connection ends, what a send can be refused for, the transport work it asks for
//! ([`Transmit`]), and what it tells the application ([`Event`]).

use core::fmt;
use core::time::Duration;

use crate::backoff::BackoffPolicy;
use crate::ddp::Change;
use crate::prelude::*;
use crate::proto::{BulkDataResponse, Command, DecodeError, DeviceId, EncodeError, Qos, Rev};

/// The identity of one accepted message: unique for the engine's lifetime (and across restarts
/// when the driver restores a persisted outbox), increasing in the order sends were accepted,
/// kept across re-sends after a reconnect. 0 is never an id.
pub type MessageId = u64;

/// What a send does when the outgoing queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FullQueuePolicy {
    /// Wait for room. The engine itself never waits: it answers [`SendError::QueueFull`] and the
    /// driver waits for a [`Event::Delivered`] or [`Event::Dropped`] before trying again.
    #[default]
    Block,
    /// Make room by dropping the oldest message not yet handed to the network; the drop is
    /// reported ([`Event::Dropped`] with [`DropReason::QueueFull`]), never silent.
    DropOldest,
    /// Refuse the new message with [`SendError::QueueFull`].
    Error,
}

/// How the engine behaves; [`EngineConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// The device this connection speaks for.
    pub device_id: DeviceId,
    /// Messages accepted and not yet finished (queued or awaiting their acknowledgement) at most.
    pub queue_size: usize,
    /// What a send does when `queue_size` messages are pending.
    pub full_queue: FullQueuePolicy,
    /// Messages handed to the transport and not yet confirmed, at most (an MQTT in-flight
    /// window; 1 keeps a transport without packet ids, such as REST, in order).
    pub max_inflight: u16,
    /// The largest MQTT PUBLISH packet a send may make (topic, header and payload), in bytes.
    pub max_message_size: usize,
    /// The reconnect schedule.
    pub backoff: BackoffPolicy,
    /// A connection that received nothing for this long is presumed half-open and dropped;
    /// `None` when the transport detects that itself.
    pub watchdog: Option<Duration>,
    /// After DISCONNECT, how long close waits for the transport to close before dropping it: a
    /// broker that has not read everything yet would lose the last messages to a reset.
    pub linger: Duration,
    /// A random number from the caller's RNG: it makes bulk request ids unique across restarts
    /// and seeds the backoff's jitter (the engine reads no RNG of its own).
    pub seed: u64,
    /// Report every change to the outbox through [`Engine::poll_journal`](super::Engine::poll_journal),
    /// so the driver can persist it (a durable outbox). Off by default: it copies each message.
    pub journal: bool,
}

impl EngineConfig {
    /// The defaults for `device_id`: a queue of 10,000 messages that blocks when full, 100 in
    /// flight, 1 MiB messages, the default backoff, a 90 s watchdog (1.5 x a 60 s keepalive),
    /// 2 s linger, no journal.
    pub fn new(device_id: DeviceId, seed: u64) -> Self {
        EngineConfig {
            device_id,
            queue_size: 10_000,
            full_queue: FullQueuePolicy::Block,
            max_inflight: 100,
            max_message_size: 1024 * 1024,
            backoff: BackoffPolicy::default(),
            watchdog: Some(Duration::from_secs(90)),
            linger: Duration::from_secs(2),
            seed,
            journal: false,
        }
    }
}

/// A setting of [`EngineConfig`] that cannot work, named as the C and Python front ends name it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigProblem {
    /// `queue_size` is 0.
    #[error("queue_size is 0: at least one message must fit")]
    NoQueue,
    /// `max_inflight` is 0.
    #[error("max_inflight is 0: at least one message must be in flight")]
    NoInflight,
    /// The backoff unit is zero.
    #[error("backoff_unit_ms is 0: reconnects would storm")]
    NoBackoff,
    /// The jitter is outside 0.0 to 1.0.
    #[error("backoff_jitter is {0}: use 0.0 to 1.0")]
    Jitter(f64),
    /// `max_message_size` is too small for any message.
    #[error("max_message_size is {0}: no message would fit")]
    MessageSize(usize),
}

impl EngineConfig {
    /// Checks the settings a caller may get wrong (the C and Python front ends build a config
    /// from plain numbers and call this before [`Engine::new`](super::Engine::new)).
    pub fn check(&self) -> Result<(), ConfigProblem> {
        if self.queue_size == 0 {
            return Err(ConfigProblem::NoQueue);
        }
        if self.max_inflight == 0 {
            return Err(ConfigProblem::NoInflight);
        }
        if self.backoff.unit.is_zero() {
            return Err(ConfigProblem::NoBackoff);
        }
        if !(0.0..=1.0).contains(&self.backoff.jitter) {
            return Err(ConfigProblem::Jitter(self.backoff.jitter));
        }
        if self.max_message_size < 64 {
            return Err(ConfigProblem::MessageSize(self.max_message_size));
        }
        Ok(())
    }
}

/// Why the connection ended or could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The cloud refused the device id or API key (MQTT CONNACK 4 or 5, HTTP 401 or 403).
    /// Retrying soon cannot help; the engine waits longer before each new attempt.
    AuthFailed(String),
    /// The TLS handshake failed (unknown CA, wrong host name, ...).
    Tls(String),
    /// The connection could not be made or was lost.
    Network(String),
    /// Nothing came from the cloud for this long: the connection is half-open.
    KeepaliveTimeout(Duration),
    /// The application closed the connection.
    Closed,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::AuthFailed(detail) => write!(
                f,
                "authentication failed: {detail}; check the device id and API key"
            ),
            DisconnectReason::Tls(detail) => write!(f, "TLS failed: {detail}"),
            DisconnectReason::Network(detail) => write!(f, "network: {detail}"),
            DisconnectReason::KeepaliveTimeout(after) => {
                write!(
                    f,
                    "nothing received for {after:?}: connection presumed dead"
                )
            }
            DisconnectReason::Closed => f.write_str("closed by the application"),
        }
    }
}

/// Why a send was refused; nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The engine is closing or closed.
    #[error("the connection is closed")]
    Closed,
    /// The queue holds `capacity` messages (policy `Error`, or `Block`: the driver waits).
    #[error(
        "the outgoing queue is full ({capacity} messages); wait for deliveries or raise queue_size"
    )]
    QueueFull {
        /// The queue's size.
        capacity: usize,
    },
    /// The message would make a packet larger than the limit.
    #[error(
        "the message is {size} bytes as an MQTT packet, over the {max}-byte limit (max_message_size)"
    )]
    TooLarge {
        /// The packet's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The protocol cannot carry it (empty key, bad label, ...).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why an accepted message will never be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// Dropped to make room ([`FullQueuePolicy::DropOldest`]).
    QueueFull,
    /// The cloud refused this message itself (e.g. an HTTP 4xx); retrying cannot help.
    Refused(String),
    /// Still unsent when close reached its deadline.
    Closed,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::QueueFull => f.write_str("dropped to make room in a full queue"),
            DropReason::Refused(why) => write!(f, "refused by the cloud: {why}"),
            DropReason::Closed => f.write_str("still unsent when the connection closed"),
        }
    }
}

/// Work for the transport, in the order the engine asks for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Transmit {
    /// Open the transport now (MQTT: CONNECT with clean session). Report the outcome with
    /// `connected` or `disconnected`.
    Connect,
    /// Subscribe to these topics (all at QoS 0, the only level MODE grants). Report the
    /// acknowledgement with `subscribed`; a transport without subscriptions (the HTTP
    /// transport's WebSockets) reports it when its channels are open.
    Subscribe(Vec<String>),
    /// Unsubscribe from these topics (part of a clean close).
    Unsubscribe(Vec<String>),
    /// Send this message; report `delivered(id)` when the cloud confirmed it (QoS 1: PUBACK;
    /// QoS 0: once written; REST: a 2xx), or `failed(id, ..)` if the cloud refused it.
    Publish(Publish),
    /// Send DISCONNECT and let the peer close the connection; report `disconnected` then.
    Disconnect,
    /// Drop the transport now, without waiting for anything (the watchdog fired, or close
    /// reached its deadline). Do not report `disconnected` for it.
    Abort,
}

/// One message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// Its id, to report its outcome with.
    pub id: MessageId,
    /// The MQTT topic (the HTTP transport maps it to its REST form).
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The QoS.
    pub qos: Qos,
}

/// Something for the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Connected and subscribed: a command the cloud sends from now on reaches the device. The
    /// DDP reload the subscription brings follows as an [`Event::Kv`] with `reload`.
    Connected,
    /// The connection ended or an attempt failed; `retry_in` is the wait before the next attempt
    /// (`None` once closed).
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// The wait before the next attempt.
        retry_in: Option<Duration>,
    },
    /// A command for the device, its integers exact.
    Command(Command),
    /// The DDP mirror changed.
    Kv {
        /// The store's revision.
        rev: Rev,
        /// True for a reload: `changes` is then the diff against the mirror before it.
        reload: bool,
        /// The visible changes, in key order for a reload.
        changes: Vec<Change>,
    },
    /// A bulk-data response. `request` says whether it answers a request this engine is
    /// waiting for (a [`bulk_request`](super::Engine::bulk_request) not yet timed out).
    BulkResponse {
        /// The bulk-data label it came on.
        label: String,
        /// The response.
        response: BulkDataResponse,
        /// True when it answers a pending request of this engine.
        request: bool,
    },
    /// A bulk request's deadline passed without a response.
    BulkTimeout {
        /// The request id.
        request_id: String,
    },
    /// The cloud confirmed a message.
    Delivered(MessageId),
    /// An accepted message will never be delivered.
    Dropped {
        /// The message.
        id: MessageId,
        /// Its topic.
        topic: String,
        /// Why.
        reason: DropReason,
    },
    /// The cloud sent something on one of our topics that could not be decoded; it was ignored.
    Error {
        /// The topic it came on.
        topic: String,
        /// What was wrong.
        error: DecodeError,
    },
    /// The engine closed; `unsent` messages were given up. Nothing follows.
    Closed {
        /// Messages dropped because close reached its deadline.
        unsent: usize,
    },
}

/// A change to the outbox, for a driver that persists it (see [`EngineConfig::journal`]).
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxChange {
    /// A message was accepted; it stays until a `Done` with its id.
    Added(Publish),
    /// The message is finished (delivered or dropped): forget it.
    Done(MessageId),
}
