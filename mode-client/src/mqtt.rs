//! The MQTT link: one connection (attempt) on a [`Socket`], driven by the connection task
//! itself, with rumqttc's MQTT 3.1.1 packet codec. It decides nothing: the engine says what to
//! send, subscribe and when to leave (and judges a silent link dead); this moves the packets and
//! says what happened on the wire.
//!
//! What it keeps is only what the wire needs: the packet ids of the QoS 1 publishes in flight on
//! this connection (at most the engine's in-flight window), the bytes read and not yet decoded,
//! the packets encoded and not yet written (everything the engine hands out in one round goes
//! out in one write), and when it last wrote and read, for PINGREQ. Nothing carries over between
//! connections (clean session): the engine re-sends what was not confirmed.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mode_core::engine::{DisconnectReason, MessageId, Publish};
use mode_core::proto::Qos;
use rumqttc::mqttbytes::v4::{
    ConnectReturnCode, Disconnect, Login, Packet, PingReq, PubAck, Subscribe, SubscribeFilter,
    SubscribeReasonCode, Unsubscribe,
};
use rumqttc::mqttbytes::{self, Protocol, QoS};
use tokio::time::Instant;

use super::config::{ClientConfig, Transport};
use super::error::{describe_tls, error_chain, find_rustls_error};
use super::socket::Socket;

/// The read buffer's size while packets are small (acknowledgements, pings, commands); it grows
/// for a larger packet, up to `max_message_size`, and goes back to this size after it.
const READ_START: usize = 512;
/// A read buffer that grew above this is let go once it is empty.
const READ_KEEP: usize = 4 * 1024;
/// A write buffer that grew above this (a large batch) is let go once it is written.
const WRITE_KEEP: usize = 4 * 1024;
/// The packet id of SUBSCRIBE and UNSUBSCRIBE: above every publish's (those number from 1 up to
/// the in-flight window), so the two never share an id while both are unacknowledged.
const CONTROL_PKID: u16 = u16::MAX;

/// What happened on the link, for the engine.
pub(crate) enum Outcome {
    /// CONNACK accepted: the link is up.
    ConnAck,
    SubAck {
        refused: usize,
    },
    Publish(rumqttc::Publish),
    /// The PUBACK of a QoS 1 message.
    Acked(MessageId),
    /// A QoS 0 message was written (as delivered as QoS 0 gets).
    Written(MessageId),
    /// Any other packet from the broker: it only shows the connection is alive.
    Activity,
    /// The link is gone (or never came up); always the last outcome of a link.
    Failed(DisconnectReason),
}

impl Outcome {
    /// Whether a packet from the broker brought it (the connection is alive).
    pub(crate) fn is_incoming(&self) -> bool {
        !matches!(self, Outcome::Written(_) | Outcome::Failed(_))
    }
}

/// A connection that has sent CONNECT and received the CONNACK.
struct Opened {
    socket: Socket,
    /// What arrived after the CONNACK, still to decode.
    read: BytesMut,
    code: ConnectReturnCode,
}

type Opening = Pin<Box<dyn Future<Output = Result<Opened, DisconnectReason>> + Send>>;

enum State {
    Opening(Opening),
    Open(Socket),
    Gone,
}

/// One MQTT connection (attempt).
pub(crate) struct MqttConn {
    config: Arc<ClientConfig>,
    state: State,
    /// Bytes read and not yet decoded.
    read: BytesMut,
    /// The read buffer grew for a large packet: let it go once empty.
    read_grown: bool,
    /// Packets encoded and not yet written.
    write: BytesMut,
    /// The most bytes `write` held since it was last empty: a large batch lets the buffer go.
    write_peak: usize,
    /// `write` holds bytes not yet written and flushed.
    unflushed: bool,
    /// QoS 0 messages whose packets went into `write`, in order; the first `written` of them have
    /// left.
    qos0: VecDeque<MessageId>,
    written: usize,
    inflight: InFlight,
    /// The CONNACK's code, until reported.
    connack: Option<ConnectReturnCode>,
    failure: Option<DisconnectReason>,
    last_sent: Instant,
    last_received: Instant,
    last_ping: Instant,
}

impl MqttConn {
    /// Starts a connection attempt with `config`: the socket, CONNECT and the CONNACK, within the
    /// connect timeout. [`poll_io`](Self::poll_io) drives it.
    pub(crate) fn connect(config: &Arc<ClientConfig>, tls: &Arc<rustls::ClientConfig>) -> Self {
        let now = Instant::now();
        let opening = Box::pin(open(config.clone(), tls.clone()));
        MqttConn {
            config: config.clone(),
            state: State::Opening(opening),
            read: BytesMut::new(),
            read_grown: false,
            write: BytesMut::new(),
            write_peak: 0,
            unflushed: false,
            qos0: VecDeque::new(),
            written: 0,
            inflight: InFlight::new(config.max_inflight),
            connack: None,
            failure: None,
            last_sent: now,
            last_received: now,
            last_ping: now,
        }
    }

    /// Moves bytes: finishes opening, writes what is encoded, reads what arrived. Ready when
    /// [`next`](Self::next) has something: the CONNACK, a whole packet, QoS 0 messages written,
    /// or the failure. Cancel-safe: all progress is kept in `self`.
    pub(crate) fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.failure.is_some() {
            return Poll::Ready(());
        }
        let socket = match &mut self.state {
            State::Opening(opening) => {
                let result = std::task::ready!(opening.as_mut().poll(cx));
                match result {
                    Ok(opened) => {
                        let now = Instant::now();
                        (self.last_sent, self.last_received, self.last_ping) = (now, now, now);
                        self.state = State::Open(opened.socket);
                        self.read = opened.read;
                        self.connack = Some(opened.code);
                    }
                    Err(reason) => self.fail(reason),
                }
                return Poll::Ready(());
            }
            State::Open(socket) => socket,
            State::Gone => return Poll::Pending,
        };
        let mut ready = false;
        if self.unflushed {
            match socket.poll_write_all(cx, &mut self.write) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    self.last_sent = Instant::now();
                    if std::mem::take(&mut self.write_peak) > WRITE_KEEP {
                        self.write = BytesMut::new();
                    }
                    if self.written < self.qos0.len() {
                        self.written = self.qos0.len();
                        ready = true;
                    }
                }
                Poll::Ready(Err(err)) => {
                    let reason = classify(&err, &self.config);
                    self.fail(reason);
                    return Poll::Ready(());
                }
                Poll::Pending => {}
            }
        }
        let max = self.config.max_message_size;
        loop {
            let missing = match mqttbytes::check(self.read.iter(), max) {
                Ok(_) => return Poll::Ready(()),
                Err(mqttbytes::Error::InsufficientBytes(missing)) => missing,
                // Malformed or too large: `next` decodes it and reports why.
                Err(_) => return Poll::Ready(()),
            };
            if self.read.capacity() - self.read.len() < missing.max(64) {
                let want = missing.max(READ_START);
                self.read_grown |= self.read.len() + want > READ_KEEP;
                self.read.reserve(want);
            }
            let State::Open(socket) = &mut self.state else {
                unreachable!("checked above")
            };
            match socket.poll_read(cx, &mut self.read) {
                Poll::Ready(Ok(0)) => {
                    self.fail(DisconnectReason::Network(
                        "the broker closed the connection".into(),
                    ));
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(_)) => {
                    self.last_received = Instant::now();
                    // A WebSocket message is appended whole, however large.
                    self.read_grown |= self.read.capacity() > READ_KEEP;
                }
                Poll::Ready(Err(err)) => {
                    let reason = classify(&err, &self.config);
                    self.fail(reason);
                    return Poll::Ready(());
                }
                Poll::Pending => break,
            }
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// The next thing that happened, in order: the CONNACK, packets as they arrived, QoS 0
    /// messages written, and last the failure. `None`: nothing until [`poll_io`](Self::poll_io)
    /// is ready again.
    pub(crate) fn next(&mut self) -> Option<Outcome> {
        if let Some(code) = self.connack.take() {
            return Some(self.on_connack(code));
        }
        if !self.read.is_empty() {
            match Packet::read(&mut self.read, self.config.max_message_size) {
                Ok(packet) => return Some(self.on_packet(packet)),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(err) => {
                    let reason = DisconnectReason::Network(format!(
                        "the broker sent a packet we cannot read: {err}"
                    ));
                    self.fail(reason);
                }
            }
        }
        if self.read_grown && self.read.is_empty() {
            self.read = BytesMut::new();
            self.read_grown = false;
        }
        if self.written > 0 {
            self.written -= 1;
            return self.qos0.pop_front().map(Outcome::Written);
        }
        self.failure.take().map(Outcome::Failed)
    }

    /// When a PINGREQ is due, while connected: a keepalive after the last ping, or after the
    /// earlier of the last write and the last read. MQTT asks for a packet within every keepalive
    /// (the write side); the read side makes a link that only sends (QoS 0) still hear the broker
    /// now and then, which is what the engine's watchdog listens for.
    pub(crate) fn ping_at(&self) -> Option<Instant> {
        if !matches!(self.state, State::Open(_)) || self.failure.is_some() {
            return None;
        }
        let quiet_since = self.last_sent.min(self.last_received).max(self.last_ping);
        Some(quiet_since + self.config.keepalive)
    }

    /// Sends PINGREQ if it is due at `now`.
    pub(crate) fn ping_if_due(&mut self, now: Instant) {
        if self.ping_at().is_some_and(|at| now >= at) {
            self.last_ping = now;
            self.encode(&Packet::PingReq);
        }
    }

    /// Encodes a publish for the next write. The engine keeps its own copy until the cloud
    /// confirms, so the message survives a lost connection; this copy is consumed here.
    pub(crate) fn publish(&mut self, publish: Publish) {
        let (qos, pkid) = match publish.qos {
            Qos::AtMostOnce => (QoS::AtMostOnce, 0),
            Qos::AtLeastOnce => match self.inflight.assign(publish.id) {
                Some(pkid) => (QoS::AtLeastOnce, pkid),
                None => {
                    // Cannot happen: the engine hands out at most the window. If it did, the
                    // message stays unconfirmed and is re-sent on the next connection.
                    tracing::error!(id = publish.id, "no packet id free in the in-flight window");
                    self.fail(DisconnectReason::Network("no packet id free".into()));
                    return;
                }
            },
        };
        let packet = Packet::Publish(rumqttc::Publish {
            dup: false,
            qos,
            retain: false,
            topic: publish.topic,
            pkid,
            // The engine's copy was made for us (capacity = length): no second copy here.
            payload: Bytes::from(publish.payload),
        });
        if self.encode(&packet) && qos == QoS::AtMostOnce {
            self.qos0.push_back(publish.id);
        }
    }

    pub(crate) fn subscribe(&mut self, topics: Vec<String>) {
        let filters = topics
            .into_iter()
            .map(|topic| SubscribeFilter::new(topic, QoS::AtMostOnce))
            .collect();
        self.encode(&Packet::Subscribe(Subscribe {
            pkid: CONTROL_PKID,
            filters,
        }));
    }

    pub(crate) fn unsubscribe(&mut self, topics: Vec<String>) {
        self.encode(&Packet::Unsubscribe(Unsubscribe {
            pkid: CONTROL_PKID,
            topics,
        }));
    }

    /// Sends DISCONNECT; the broker then closes the connection, which ends the link.
    pub(crate) fn disconnect(&mut self) {
        self.encode(&Packet::Disconnect);
    }

    /// Appends `packet` to the write buffer; false (and the link fails) if it cannot be encoded.
    fn encode(&mut self, packet: &Packet) -> bool {
        let written = match packet {
            Packet::Publish(publish) => publish.write(&mut self.write),
            Packet::PubAck(ack) => ack.write(&mut self.write),
            Packet::Subscribe(subscribe) => subscribe.write(&mut self.write),
            Packet::Unsubscribe(unsubscribe) => unsubscribe.write(&mut self.write),
            Packet::PingReq => PingReq.write(&mut self.write),
            Packet::Disconnect => Disconnect.write(&mut self.write),
            other => unreachable!("the device never sends {other:?}"),
        };
        match written {
            Ok(_) => {
                self.unflushed = true;
                self.write_peak = self.write_peak.max(self.write.len());
                true
            }
            Err(err) => {
                // The engine checks sizes before queueing, so this is a bug, not the peer's.
                tracing::error!(error = %err, "could not encode a packet");
                self.fail(DisconnectReason::Network(format!(
                    "could not encode a packet: {err}"
                )));
                false
            }
        }
    }

    fn on_connack(&mut self, code: ConnectReturnCode) -> Outcome {
        let config = &self.config;
        let reason = match code {
            ConnectReturnCode::Success => return Outcome::ConnAck,
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
        self.state = State::Gone;
        Outcome::Failed(reason)
    }

    fn on_packet(&mut self, packet: Packet) -> Outcome {
        match packet {
            Packet::Publish(publish) => {
                // MODE grants QoS 0 subscriptions; a QoS 1 publish is still acknowledged.
                if publish.qos == QoS::AtLeastOnce {
                    self.encode(&Packet::PubAck(PubAck::new(publish.pkid)));
                }
                Outcome::Publish(publish)
            }
            Packet::PubAck(ack) => match self.inflight.take(ack.pkid) {
                Some(id) => Outcome::Acked(id),
                None => Outcome::Activity,
            },
            Packet::SubAck(suback) => Outcome::SubAck {
                refused: suback
                    .return_codes
                    .iter()
                    .filter(|code| matches!(code, SubscribeReasonCode::Failure))
                    .count(),
            },
            _ => Outcome::Activity,
        }
    }

    fn fail(&mut self, reason: DisconnectReason) {
        self.state = State::Gone;
        self.failure.get_or_insert(reason);
    }
}

/// The QoS 1 messages in flight on one connection, by packet id (slot `pkid - 1`). The table
/// grows only as far as the most messages in flight at once, at most the engine's window: no
/// table over all 65,535 ids.
struct InFlight {
    slots: Vec<Option<MessageId>>,
    next: u16,
    window: u16,
}

impl InFlight {
    fn new(max_inflight: u16) -> Self {
        InFlight {
            slots: Vec::new(),
            next: 1,
            window: max_inflight.clamp(1, CONTROL_PKID - 1),
        }
    }

    /// A free packet id for message `id`. Ids go round 1..=window like rumqttc's, but start
    /// over at 1 instead of growing the table when 1 is free. `None` only if all are taken.
    fn assign(&mut self, id: MessageId) -> Option<u16> {
        for _ in 0..self.window {
            let mut pkid = self.next;
            if usize::from(pkid - 1) == self.slots.len() && self.slots.first() == Some(&None) {
                pkid = 1;
            }
            self.next = if pkid >= self.window { 1 } else { pkid + 1 };
            let index = usize::from(pkid - 1);
            if index == self.slots.len() {
                self.slots.push(Some(id));
                return Some(pkid);
            }
            if self.slots[index].is_none() {
                self.slots[index] = Some(id);
                return Some(pkid);
            }
        }
        None
    }

    /// The message `pkid` was assigned to, now acknowledged; `None` for an id not in flight.
    fn take(&mut self, pkid: u16) -> Option<MessageId> {
        let index = usize::from(pkid.checked_sub(1)?);
        self.slots.get_mut(index)?.take()
    }
}

/// Opens the socket, sends CONNECT and reads the CONNACK, within the connect timeout.
async fn open(
    config: Arc<ClientConfig>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Opened, DisconnectReason> {
    let attempt = async {
        let mut socket = Socket::open(&config, &tls)
            .await
            .map_err(|err| classify(&*err, &config))?;
        let mut out = BytesMut::new();
        connect_packet(&config)
            .write(&mut out)
            .map_err(|err| DisconnectReason::Network(format!("could not encode CONNECT: {err}")))?;
        poll_fn(|cx| socket.poll_write_all(cx, &mut out))
            .await
            .map_err(|err| classify(&err, &config))?;
        let mut read = BytesMut::with_capacity(READ_START);
        loop {
            match Packet::read(&mut read, config.max_message_size) {
                Ok(Packet::ConnAck(connack)) => {
                    return Ok(Opened {
                        socket,
                        read,
                        code: connack.code,
                    });
                }
                Ok(other) => {
                    return Err(DisconnectReason::Network(format!(
                        "the broker answered CONNECT with {other:?}, not CONNACK"
                    )));
                }
                Err(mqttbytes::Error::InsufficientBytes(missing)) => {
                    read.reserve(missing);
                    let n = poll_fn(|cx| socket.poll_read(cx, &mut read))
                        .await
                        .map_err(|err| classify(&err, &config))?;
                    if n == 0 {
                        return Err(DisconnectReason::Network(
                            "the broker closed the connection before its CONNACK".into(),
                        ));
                    }
                }
                Err(err) => {
                    return Err(DisconnectReason::Network(format!(
                        "the broker's CONNACK cannot be read: {err}"
                    )));
                }
            }
        }
    };
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(DisconnectReason::Network(format!(
            "no CONNACK from {} within the connect timeout ({:?})",
            config.endpoint(),
            config.connect_timeout
        ))),
    }
}

/// CONNECT with a clean session (MODE forces it), the device id and API key as credentials,
/// an empty client id (MODE identifies the device by the user name) and the keepalive.
fn connect_packet(config: &ClientConfig) -> rumqttc::mqttbytes::v4::Connect {
    rumqttc::mqttbytes::v4::Connect {
        protocol: Protocol::V4,
        keep_alive: keepalive_secs(config.keepalive),
        client_id: String::new(),
        clean_session: true,
        last_will: None,
        login: Some(Login::new(
            config.device_id.to_string(),
            config.api_key.expose(),
        )),
    }
}

fn keepalive_secs(keepalive: Duration) -> u16 {
    u16::try_from(keepalive.as_secs()).unwrap_or(u16::MAX)
}

/// Why a connection failed, in words a user can act on.
fn classify(err: &(dyn std::error::Error + 'static), config: &ClientConfig) -> DisconnectReason {
    if let Some(tls) = find_rustls_error(err) {
        let host = match config.transport {
            Transport::MqttWebSocket => config.mqtt_ws_url(),
            _ => config.mqtt_host.clone(),
        };
        return DisconnectReason::Tls(describe_tls(tls, &host));
    }
    DisconnectReason::Network(error_chain(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_stay_within_the_window_and_the_table_as_small_as_what_is_in_flight() {
        let mut ids = InFlight::new(3);
        assert_eq!(
            (ids.assign(10), ids.assign(11), ids.assign(12)),
            (Some(1), Some(2), Some(3))
        );
        assert_eq!(ids.assign(13), None, "the window is full");
        assert_eq!(ids.take(2), Some(11));
        assert_eq!(ids.take(2), None, "acknowledged once");
        assert_eq!(ids.take(0), None);
        assert_eq!(ids.take(9), None);
        assert_eq!(ids.assign(13), Some(2));
        // Acknowledged as fast as sent: one slot, whatever the window.
        let mut ids = InFlight::new(100);
        for id in 1..1000 {
            let pkid = ids.assign(id).expect("free");
            assert_eq!(ids.take(pkid), Some(id));
        }
        assert_eq!(ids.slots.len(), 1);
    }
}
