//! The MQTT link: one rumqttc connection (attempt), and the bookkeeping that turns rumqttc's
//! packet ids back into the engine's message ids. It decides nothing: the engine says what to
//! send, subscribe and when to leave; this says what happened on the wire.
//!
//! Each attempt gets a fresh rumqttc `EventLoop`, polled in a task of its own so its socket
//! writes run beside the connection task's work. `EventLoop::poll` must not be cancelled
//! mid-write, and it never is: the poller awaits every poll to its end, and ends after the
//! first error (polling on would reconnect inside rumqttc, behind the engine's back). Nothing
//! carries over between connections inside rumqttc (clean session): the engine re-sends.

use std::collections::VecDeque;
use std::sync::Arc;

use mode_core::engine::{DisconnectReason, MessageId, Publish};
use mode_core::proto::Qos;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, MqttOptions,
    NetworkOptions, Outgoing, QoS, SubscribeFilter, TlsConfiguration,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{ClientConfig, Transport};
use super::rest::error_chain;
use super::tls::{describe_tls, find_rustls_error};

/// How many events one wake-up of the connection task takes at most.
pub(crate) const BATCH: usize = 64;

/// What the connection task needs of one rumqttc event: a few bytes to move between the tasks
/// where rumqttc's `Result<Event, ConnectionError>` is over a hundred. Events it has no use for
/// (its own SUBSCRIBEs, pings sent) are not sent at all. A failure is always the last.
#[derive(Debug)]
pub(crate) enum MqttEvent {
    ConnAck,
    Publish(Box<rumqttc::Publish>),
    PubAck(u16),
    SubAck {
        refused: usize,
    },
    /// Any other packet from the broker: it only shows the connection is alive.
    OtherIncoming,
    /// A publish was written with this packet id (0 for QoS 0).
    Written(u16),
    /// The next publish waits for this packet id to be acknowledged.
    AwaitAck(u16),
    Failed(Box<ConnectionError>),
}

impl MqttEvent {
    fn from_rumqttc(event: Result<Event, ConnectionError>) -> Option<MqttEvent> {
        Some(match event {
            Err(err) => MqttEvent::Failed(Box::new(err)),
            Ok(Event::Incoming(packet)) => match packet {
                Incoming::ConnAck(_) => MqttEvent::ConnAck,
                Incoming::Publish(publish) => MqttEvent::Publish(Box::new(publish)),
                Incoming::PubAck(ack) => MqttEvent::PubAck(ack.pkid),
                Incoming::SubAck(suback) => MqttEvent::SubAck {
                    refused: suback
                        .return_codes
                        .iter()
                        .filter(|code| matches!(code, rumqttc::SubscribeReasonCode::Failure))
                        .count(),
                },
                _ => MqttEvent::OtherIncoming,
            },
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => MqttEvent::Written(pkid),
            Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => MqttEvent::AwaitAck(pkid),
            Ok(Event::Outgoing(_)) => return None,
        })
    }

    pub(crate) fn is_incoming(&self) -> bool {
        matches!(
            self,
            MqttEvent::ConnAck
                | MqttEvent::Publish(_)
                | MqttEvent::PubAck(_)
                | MqttEvent::SubAck { .. }
                | MqttEvent::OtherIncoming
        )
    }
}

/// One rumqttc connection (attempt).
pub(crate) struct MqttConn {
    client: AsyncClient,
    pub events: mpsc::Receiver<MqttEvent>,
    poller: JoinHandle<()>,
    /// Handed to rumqttc, packet id not yet known: rumqttc reports each publish it takes, in
    /// the order it was handed, as `Outgoing::Publish(pkid)` (or `AwaitAck(pkid)` when the id
    /// collides with one still in flight, followed later by `Outgoing::Publish(pkid)`).
    handed: VecDeque<(MessageId, Qos)>,
    /// Written QoS 1 publishes awaiting PUBACK, indexed by packet id: rumqttc numbers from 1 up
    /// to the in-flight window and starts over, so the table stays as small as the window.
    inflight: Vec<Option<MessageId>>,
    collided: Option<(u16, MessageId)>,
    /// Publishes the engine handed out that rumqttc's request queue had no room for yet.
    backlog: VecDeque<Waiting>,
}

/// A publish waiting for room in rumqttc's queue, in rumqttc's own form (as its refusal
/// returned it, so nothing is copied again).
struct Waiting {
    id: MessageId,
    qos: Qos,
    publish: rumqttc::Publish,
}

impl Drop for MqttConn {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// What a wire event means for the engine.
pub(crate) enum Outcome {
    Nothing,
    ConnAck,
    SubAck { refused: usize },
    Publish(Box<rumqttc::Publish>),
    Delivered(MessageId),
    Failed(DisconnectReason),
}

impl MqttConn {
    /// Starts a connection attempt with `config`.
    pub(crate) fn connect(config: &ClientConfig, tls: &Arc<rustls::ClientConfig>) -> Self {
        let capacity = channel_capacity(config);
        let (client, mut eventloop): (AsyncClient, EventLoop) =
            AsyncClient::new(options(config, tls), capacity);
        let mut network = NetworkOptions::new();
        network.set_connection_timeout(config.connect_timeout.as_secs_f64().ceil().max(1.0) as u64);
        eventloop.set_network_options(network);
        let (tx, events) = mpsc::channel(BATCH);
        let poller = crate::runtime::spawn(async move {
            // No span: rumqttc logs through `log`, and this loop logs nothing.
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if let Some(event) = MqttEvent::from_rumqttc(event) {
                    // `try_send` first: `send` builds a semaphore `Acquire` future even when
                    // there is room, which is nearly always.
                    let sent = match tx.try_send(event) {
                        Err(mpsc::error::TrySendError::Full(event)) => tx.send(event).await.is_ok(),
                        other => other.is_ok(),
                    };
                    if !sent {
                        break;
                    }
                }
                if failed {
                    break;
                }
            }
        });
        MqttConn {
            client,
            events,
            poller,
            handed: VecDeque::new(),
            inflight: Vec::new(),
            collided: None,
            backlog: VecDeque::new(),
        }
    }

    /// Hands a publish to rumqttc (or keeps it until rumqttc has room). The engine keeps its
    /// own copy until the cloud confirms, so the message survives a lost connection; this one is
    /// moved into rumqttc, which takes the payload as its own buffer.
    pub(crate) fn publish(&mut self, publish: Publish) {
        let qos = match publish.qos {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
        };
        if self.backlog.is_empty() {
            self.hand(publish.id, publish.qos, publish.topic, qos, publish.payload);
        } else {
            self.backlog.push_back(Waiting {
                id: publish.id,
                qos: publish.qos,
                publish: rumqttc::Publish::new(publish.topic, qos, publish.payload),
            });
        }
    }

    fn hand(
        &mut self,
        id: MessageId,
        ours: Qos,
        topic: String,
        qos: QoS,
        payload: impl Into<Vec<u8>>,
    ) {
        match self.client.try_publish(topic, qos, false, payload) {
            Ok(()) => self.handed.push_back((id, ours)),
            Err(rumqttc::ClientError::TryRequest(rumqttc::Request::Publish(publish)))
            | Err(rumqttc::ClientError::Request(rumqttc::Request::Publish(publish))) => {
                // rumqttc's queue is full or the connection is ending; its events say which.
                self.backlog.push_back(Waiting {
                    id,
                    qos: ours,
                    publish,
                });
            }
            Err(_) => {}
        }
    }

    /// Hands rumqttc what it had no room for before, in order.
    pub(crate) fn flush_backlog(&mut self) {
        while let Some(waiting) = self.backlog.pop_front() {
            let before = self.backlog.len();
            let rumqttc::Publish {
                topic,
                qos,
                payload,
                ..
            } = waiting.publish;
            self.hand(waiting.id, waiting.qos, topic, qos, payload);
            if self.backlog.len() > before {
                // Still no room: it went back to the end; put it first again and stop.
                if let Some(last) = self.backlog.pop_back() {
                    self.backlog.push_front(last);
                }
                return;
            }
        }
    }

    pub(crate) fn subscribe(&self, topics: Vec<String>) {
        let filters: Vec<_> = topics
            .into_iter()
            .map(|topic| SubscribeFilter::new(topic, QoS::AtMostOnce))
            .collect();
        if let Err(err) = self.client.try_subscribe_many(filters) {
            tracing::error!(error = %err, "could not queue the subscriptions");
        }
    }

    pub(crate) fn unsubscribe(&self, topics: Vec<String>) {
        for topic in topics {
            let _ = self.client.try_unsubscribe(topic);
        }
    }

    pub(crate) fn disconnect(&self) {
        let _ = self.client.try_disconnect();
    }

    /// Translates one wire event, keeping the packet-id bookkeeping.
    pub(crate) fn on_event(&mut self, event: MqttEvent, config: &ClientConfig) -> Outcome {
        match event {
            MqttEvent::Failed(err) => Outcome::Failed(classify(&err, config)),
            MqttEvent::ConnAck => Outcome::ConnAck,
            MqttEvent::Publish(publish) => Outcome::Publish(publish),
            MqttEvent::PubAck(pkid) => self
                .take_inflight(pkid)
                .map_or(Outcome::Nothing, Outcome::Delivered),
            MqttEvent::SubAck { refused } => Outcome::SubAck { refused },
            MqttEvent::OtherIncoming => Outcome::Nothing,
            MqttEvent::Written(pkid) => self.on_written(pkid),
            MqttEvent::AwaitAck(pkid) => {
                if let Some((id, _)) = self.handed.pop_front() {
                    self.collided = Some((pkid, id));
                }
                Outcome::Nothing
            }
        }
    }

    fn on_written(&mut self, pkid: u16) -> Outcome {
        if let Some((collided_pkid, id)) = self.collided
            && collided_pkid == pkid
            && !self.inflight_contains(pkid)
        {
            self.collided = None;
            self.put_inflight(pkid, id);
            return Outcome::Nothing;
        }
        let Some((id, qos)) = self.handed.pop_front() else {
            return Outcome::Nothing;
        };
        if qos == Qos::AtMostOnce {
            // Written: as delivered as QoS 0 gets.
            return Outcome::Delivered(id);
        }
        self.put_inflight(pkid, id);
        Outcome::Nothing
    }

    fn put_inflight(&mut self, pkid: u16, id: MessageId) {
        let index = usize::from(pkid);
        if index >= self.inflight.len() {
            self.inflight.resize(index + 1, None);
        }
        if let Some(previous) = self.inflight[index].replace(id) {
            // rumqttc never reuses an id in flight (it reports AwaitAck instead); if it did, the
            // older message stays unconfirmed and the engine re-sends it after a reconnect.
            tracing::error!(pkid, previous, "packet id reused while in flight");
        }
    }

    fn take_inflight(&mut self, pkid: u16) -> Option<MessageId> {
        self.inflight.get_mut(usize::from(pkid))?.take()
    }

    fn inflight_contains(&self, pkid: u16) -> bool {
        matches!(self.inflight.get(usize::from(pkid)), Some(Some(_)))
    }
}

fn channel_capacity(config: &ClientConfig) -> usize {
    // Room for a full window of publishes plus subscriptions, unsubscriptions, disconnect.
    usize::from(config.max_inflight) + 64
}

fn options(config: &ClientConfig, tls: &Arc<rustls::ClientConfig>) -> MqttOptions {
    let c = config;
    let tls = c.tls.enabled.then(|| tls.clone());
    let mut options = match c.transport {
        Transport::MqttWebSocket => {
            let url = c.mqtt_ws_url();
            let default_port = if url.starts_with("wss://") { 443 } else { 80 };
            let mut options = MqttOptions::new("", url, default_port);
            options.set_transport(match tls {
                Some(tls) => rumqttc::Transport::Wss(TlsConfiguration::Rustls(tls)),
                None => rumqttc::Transport::Ws,
            });
            options
        }
        Transport::Mqtt | Transport::Http => {
            let mut options = MqttOptions::new("", c.mqtt_host.clone(), c.mqtt_port());
            if let Some(tls) = tls {
                options.set_transport(rumqttc::Transport::Tls(TlsConfiguration::Rustls(tls)));
            }
            options
        }
    };
    options
        .set_credentials(c.device_id.to_string(), c.api_key.expose())
        .set_clean_session(true)
        .set_keep_alive(c.keepalive)
        .set_max_packet_size(c.max_message_size, c.max_message_size)
        .set_inflight(c.max_inflight)
        .set_request_channel_capacity(channel_capacity(config));
    options
}

/// Why a connection failed, in words a user can act on; a refused key is `AuthFailed`, which
/// puts the engine on its longer schedule.
fn classify(err: &ConnectionError, config: &ClientConfig) -> DisconnectReason {
    if let ConnectionError::ConnectionRefused(code) = err {
        return match code {
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => {
                DisconnectReason::AuthFailed(format!(
                    "the broker refused device {} (CONNACK {code:?})",
                    config.device_id
                ))
            }
            other => DisconnectReason::Network(format!(
                "the broker refused the connection (CONNACK {other:?})"
            )),
        };
    }
    if let Some(tls) = find_rustls_error(err) {
        let host = match config.transport {
            Transport::MqttWebSocket => config.mqtt_ws_url(),
            _ => config.mqtt_host.clone(),
        };
        return DisconnectReason::Tls(describe_tls(tls, &host));
    }
    DisconnectReason::Network(error_chain(err))
}
