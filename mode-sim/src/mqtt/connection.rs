//! One connected device's MQTT session: the event loop over the client's packets, the cloud's
//! feeds (commands, kv sync, bulk responses, raw test publishes) and the durable acks; what
//! each packet from the client does; and which topics it may publish and subscribe to.

use std::collections::VecDeque;
use std::future::pending;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mode_core::proto::{
    BulkDataRequest, Command, Event, KvUpdate, Reload, SyncMessage, Topic, TopicKind,
};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::codec::{FrameError, Io, packet_name};
use crate::cloud::{
    BulkResponse, Cloud, CloudError, ConnectionGuard, KvSource, KvSubscription, RawChannel,
    RawPublish, Subscription,
};
use crate::persist::{NotDurable, Ticket};
use crate::untrusted::untrusted;

/// Why a connection ended, for the log.
pub(super) type Reason = String;

/// A connected device's session.
pub(super) struct Connection<S> {
    pub(super) framed: Io<S>,
    cloud: Cloud,
    guard: ConnectionGuard,
    keep_alive: Option<Duration>,
    stop: CancellationToken,
    commands: Option<Subscription<Command>>,
    kv: Option<KvSubscription>,
    /// Raw publishes of the test control [`Cloud::publish_raw`], from the first command or kv
    /// subscription on; forwarded on the channels this connection subscribed to.
    raw: Option<Subscription<RawPublish>>,
    /// The device's bulk-data responses, from the first bulk response subscription on.
    bulk: Option<Subscription<BulkResponse>>,
    /// Labels whose response topic this connection subscribed to: the responses it forwards.
    bulk_labels: Vec<String>,
    /// QoS 1 publishes recorded but not acknowledged yet, oldest first: each PUBACK waits
    /// until what the publish changed is on disk (with `--data-dir`), and PUBACKs leave in the
    /// order the publishes came (MQTT 3.1.1 §4.6). Reading goes on meanwhile, so the writer
    /// commits a connection's burst as one batch.
    unacked: VecDeque<(Ticket, u16)>,
    /// Packets were queued with `feed` and not flushed yet.
    unflushed: bool,
}

/// The next packet from the client if one is already there; otherwise, flushes what was
/// written (when `unflushed`) while waiting for one. Answers to a burst of packets so go out
/// in one write, as a broker under load writes them, rather than one system call each.
async fn next_packet_or_flush<S>(framed: &mut Io<S>, unflushed: bool) -> Wake
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(packet) = framed.poll_next_unpin(cx) {
            return std::task::Poll::Ready(Wake::Packet(packet));
        }
        if unflushed {
            return framed.poll_flush_unpin(cx).map(Wake::Flushed);
        }
        std::task::Poll::Pending
    })
    .await
}

fn write_failed(err: FrameError) -> Reason {
    format!("could not write to the client: {err}")
}

/// What the event loop woke up for.
enum Wake {
    Stop(&'static str),
    Paused,
    Expired,
    Packet(Option<Result<Packet, FrameError>>),
    /// Everything written so far reached the socket.
    Flushed(Result<(), FrameError>),
    Command(Option<Command>),
    Sync(Option<SyncMessage>),
    Bulk(Option<BulkResponse>),
    Raw(Option<RawPublish>),
    /// The oldest unacknowledged publish is on disk (or cannot be).
    Durable(Result<(), NotDurable>),
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(super) fn new(
        framed: Io<S>,
        cloud: Cloud,
        guard: ConnectionGuard,
        keep_alive: Option<Duration>,
        stop: CancellationToken,
    ) -> Self {
        Connection {
            framed,
            cloud,
            guard,
            keep_alive,
            stop,
            commands: None,
            kv: None,
            raw: None,
            bulk: None,
            bulk_labels: Vec::new(),
            unacked: VecDeque::new(),
            unflushed: false,
        }
    }

    fn device_id(&self) -> u64 {
        self.guard.device_id()
    }

    /// Serves the session until it ends; why it ended, for the log.
    pub(super) async fn run(&mut self) -> Reason {
        let stop = self.stop.clone();
        let mut deadline = self.keep_alive.map(|k| Instant::now() + k);
        loop {
            let wake = {
                let commands = &mut self.commands;
                let kv = &mut self.kv;
                let bulk = &mut self.bulk;
                let raw = &mut self.raw;
                let oldest = self.unacked.front_mut();
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => Wake::Stop("the simulator stopped its listeners"),
                    _ = self.guard.cancelled() => Wake::Stop("the cloud dropped the connection"),
                    _ = self.guard.paused() => Wake::Paused,
                    _ = async { match deadline { Some(d) => sleep_until(d).await, None => pending().await } } => Wake::Expired,
                    wake = next_packet_or_flush(&mut self.framed, self.unflushed) => wake,
                    command = async { match commands { Some(s) => s.recv().await, None => pending().await } } => Wake::Command(command),
                    sync = async { match kv { Some(s) => s.recv().await, None => pending().await } } => Wake::Sync(sync),
                    response = async { match bulk { Some(s) => s.recv().await, None => pending().await } } => Wake::Bulk(response),
                    published = async { match raw { Some(s) => s.recv().await, None => pending().await } } => Wake::Raw(published),
                    durable = async { match oldest { Some((ticket, _)) => ticket.wait().await, None => pending().await } } => Wake::Durable(durable),
                }
            };
            match wake {
                Wake::Stop(why) => return why.into(),
                Wake::Paused => {
                    tracing::info!("connection paused by a test control");
                    self.guard.wait_unpaused().await;
                    // The link "comes back": the silence while paused does not count.
                    deadline = self.keep_alive.map(|k| Instant::now() + k);
                }
                Wake::Expired => return "keepalive expired (no packet for 1.5 x keepalive)".into(),
                Wake::Packet(None) => return "the client closed the connection".into(),
                Wake::Packet(Some(Err(err))) => {
                    return format!("bad packet from the client: {}", untrusted(&err));
                }
                Wake::Packet(Some(Ok(packet))) => {
                    deadline = self.keep_alive.map(|k| Instant::now() + k);
                    if let Err(reason) = self.handle(packet).await {
                        return reason;
                    }
                }
                Wake::Flushed(Ok(())) => self.unflushed = false,
                Wake::Flushed(Err(err)) => return write_failed(err),
                Wake::Command(None) => {
                    self.commands = None;
                    return "command stream ended (subscriber fell behind)".into();
                }
                Wake::Command(Some(command)) => {
                    let topic = Topic::command(self.device_id()).to_string();
                    if let Err(reason) = self.publish(topic, command.encode()).await {
                        return reason;
                    }
                }
                Wake::Sync(None) => {
                    self.kv = None;
                    return "kv sync stream ended (subscriber fell behind)".into();
                }
                Wake::Durable(Err(err)) => return err.to_string(),
                Wake::Durable(Ok(())) => {
                    if let Err(reason) = self.send_durable_acks().await {
                        return reason;
                    }
                }
                Wake::Bulk(None) => {
                    self.bulk = None;
                    return "bulk data response stream ended (subscriber fell behind)".into();
                }
                Wake::Bulk(Some(BulkResponse { label, response })) => {
                    if self.bulk_labels.contains(&label) {
                        let topic =
                            Topic::new(self.device_id(), TopicKind::BulkDataResponse(label))
                                .to_string();
                        if let Err(reason) = self.publish(topic, response.encode()).await {
                            return reason;
                        }
                    }
                }
                Wake::Raw(None) => {
                    self.raw = None;
                    return "raw publish stream ended (subscriber fell behind)".into();
                }
                Wake::Raw(Some(RawPublish { channel, payload })) => {
                    let topic = match channel {
                        RawChannel::Command if self.commands.is_some() => {
                            Some(Topic::command(self.device_id()))
                        }
                        RawChannel::Kv if self.kv.is_some() => Some(Topic::kv(self.device_id())),
                        _ => None,
                    };
                    if let Some(topic) = topic
                        && let Err(reason) = self.publish(topic.to_string(), payload.to_vec()).await
                    {
                        return reason;
                    }
                }
                Wake::Sync(Some(msg)) => {
                    let topic = Topic::kv(self.device_id()).to_string();
                    if let Err(reason) = self.publish(topic, msg.encode()).await {
                        return reason;
                    }
                }
            }
        }
    }

    /// Queues `packet`; the event loop flushes once no packet from the client is waiting, and
    /// a full buffer is written at once. A client that stops reading blocks that write, so the
    /// wait also ends when the cloud drops the connection or the listeners stop.
    async fn send(&mut self, packet: Packet) -> Result<(), Reason> {
        self.unflushed = true;
        tokio::select! {
            sent = self.framed.feed(packet) => sent.map_err(write_failed),
            _ = self.guard.cancelled() => Err("the cloud dropped the connection (while writing)".into()),
            _ = self.stop.cancelled() => Err("the simulator stopped its listeners (while writing)".into()),
        }
    }

    /// Acknowledges `pkid` once what came before it is on disk: now when it already is and no
    /// older PUBACK waits, else in its turn.
    async fn ack_when_durable(&mut self, pkid: u16) -> Result<(), Reason> {
        let ticket = self.cloud.ticket();
        if self.unacked.is_empty() && ticket.is_ready() {
            let mut ticket = ticket;
            ticket.wait().await.map_err(|e| e.to_string())?;
            return self.send(Packet::PubAck(PubAck::new(pkid))).await;
        }
        self.unacked.push_back((ticket, pkid));
        Ok(())
    }

    /// Sends the PUBACKs, oldest first, of every publish now on disk.
    async fn send_durable_acks(&mut self) -> Result<(), Reason> {
        while let Some((ticket, pkid)) = self.unacked.front() {
            if !ticket.is_ready() {
                break;
            }
            let pkid = *pkid;
            let (mut ticket, _) = self.unacked.pop_front().expect("front exists");
            ticket.wait().await.map_err(|e| e.to_string())?;
            self.send(Packet::PubAck(PubAck::new(pkid))).await?;
        }
        Ok(())
    }

    async fn publish(&mut self, topic: String, payload: Vec<u8>) -> Result<(), Reason> {
        self.send(Packet::Publish(Publish::new(
            topic,
            QoS::AtMostOnce,
            payload,
        )))
        .await
    }

    /// Handles one packet from the client; `Err` closes the connection with that reason.
    async fn handle(&mut self, packet: Packet) -> Result<(), Reason> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish).await,
            Packet::Subscribe(subscribe) => {
                let mut codes = Vec::with_capacity(subscribe.filters.len());
                let mut granted = Vec::new();
                for filter in &subscribe.filters {
                    match self.subscribable(&filter.path) {
                        Some(kind) => {
                            codes.push(SubscribeReasonCode::Success(QoS::AtMostOnce));
                            granted.push(kind);
                        }
                        None => {
                            tracing::info!(topic = ?untrusted(&filter.path), "refusing subscription (SUBACK 0x80)");
                            codes.push(SubscribeReasonCode::Failure);
                        }
                    }
                }
                // Registered before the SUBACK, so a command sent once the client holds its
                // SUBACK reaches it; the reload goes out after the SUBACK, as MODE sends it.
                let mut reloads = Vec::new();
                for kind in granted {
                    reloads.extend(self.start_subscription(kind)?);
                }
                self.send(Packet::SubAck(SubAck::new(subscribe.pkid, codes)))
                    .await?;
                for reload in reloads {
                    let topic = Topic::kv(self.device_id()).to_string();
                    self.publish(topic, SyncMessage::Reload(reload).encode())
                        .await?;
                }
                Ok(())
            }
            Packet::Unsubscribe(unsubscribe) => {
                for path in &unsubscribe.topics {
                    match Topic::parse(path) {
                        Ok(t) if t.device_id == self.device_id() => match t.kind {
                            TopicKind::Command => self.commands = None,
                            TopicKind::Kv => self.kv = None,
                            TopicKind::BulkDataResponse(label) => {
                                self.bulk_labels.retain(|l| *l != label)
                            }
                            _ => {}
                        },
                        _ => {}
                    }
                }
                self.send(Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid)))
                    .await
            }
            Packet::PingReq => {
                self.cloud.count_ping(self.device_id());
                self.send(Packet::PingResp).await
            }
            Packet::Disconnect => Err("the client sent DISCONNECT".into()),
            Packet::PubAck(_) => Ok(()), // we only publish at QoS 0; a stray ack is harmless
            Packet::Connect(_) => Err("a second CONNECT on the connection".into()),
            other => Err(format!(
                "{} is not a packet a client sends to MODE",
                packet_name(&other)
            )),
        }
    }

    /// The kind of a topic this device may subscribe to.
    fn subscribable(&self, path: &str) -> Option<TopicKind> {
        let topic = Topic::parse(path).ok()?;
        let own = topic.device_id == self.device_id();
        match topic.kind {
            TopicKind::Command | TopicKind::Kv | TopicKind::BulkDataResponse(_) if own => {
                Some(topic.kind)
            }
            _ => None,
        }
    }

    /// Registers a granted subscription with the cloud; for `kv`, the reload to send.
    fn start_subscription(&mut self, kind: TopicKind) -> Result<Option<Reload>, Reason> {
        if matches!(kind, TopicKind::Command | TopicKind::Kv) && self.raw.is_none() {
            let sub = self
                .cloud
                .subscribe_raw(&self.guard)
                .map_err(|e| e.to_string())?;
            self.raw = Some(sub);
        }
        match kind {
            TopicKind::Command => {
                let sub = self
                    .cloud
                    .subscribe_commands(&self.guard)
                    .map_err(|e| e.to_string())?;
                self.commands = Some(sub);
            }
            TopicKind::Kv => {
                let (reload, sub) = self
                    .cloud
                    .subscribe_kv(&self.guard)
                    .map_err(|e| e.to_string())?;
                self.kv = Some(sub);
                return Ok(Some(reload));
            }
            TopicKind::BulkDataResponse(label) if !self.bulk_labels.contains(&label) => {
                if self.bulk.is_none() {
                    let sub = self
                        .cloud
                        .subscribe_bulk_responses(&self.guard)
                        .map_err(|e| e.to_string())?;
                    self.bulk = Some(sub);
                }
                self.bulk_labels.push(label);
            }
            _ => {}
        }
        Ok(None)
    }

    async fn on_publish(&mut self, publish: Publish) -> Result<(), Reason> {
        if publish.retain {
            return Err(format!(
                "retained publish on {:?}: MODE does not support retain",
                untrusted(&publish.topic)
            ));
        }
        if publish.qos == QoS::ExactlyOnce {
            return Err(format!(
                "QoS 2 publish on {:?}: MODE accepts QoS 0 and 1",
                untrusted(&publish.topic)
            ));
        }
        let device_id = self.device_id();
        let topic = match Topic::parse(&publish.topic) {
            Ok(topic) if topic.device_id == device_id => topic,
            Ok(_) => {
                return Err(format!(
                    "publish to another device's topic {:?}",
                    untrusted(&publish.topic)
                ));
            }
            Err(err) => {
                return Err(format!("publish to an unknown topic: {}", untrusted(&err)));
            }
        };
        let payload = &publish.payload[..];
        let recorded = match topic.kind {
            TopicKind::Event => match Event::decode(payload) {
                Ok(event) => self.cloud.record_event(device_id, event).map(drop),
                Err(err) => {
                    self.cloud.count_undecodable(device_id, "event", &err);
                    Ok(())
                }
            },
            TopicKind::Kv => match KvUpdate::decode(payload) {
                Ok(update) => match self.cloud.kv_apply(device_id, update, KvSource::Device) {
                    Err(err @ (CloudError::InvalidKey { .. } | CloudError::KeyNotFound { .. })) => {
                        tracing::warn!(%err, "kv update refused");
                        Ok(())
                    }
                    other => other.map(drop),
                },
                Err(err) => {
                    self.cloud.count_undecodable(device_id, "kv update", &err);
                    Ok(())
                }
            },
            TopicKind::BulkData(label) => self.cloud.record_bulk_data(device_id, &label, payload),
            TopicKind::BulkDataRequest(label) => match BulkDataRequest::decode(payload) {
                // The response reaches every subscribed connection through `bulk`.
                Ok(request) => self
                    .cloud
                    .bulk_request(device_id, &label, request)
                    .map(drop),
                Err(err) => {
                    self.cloud
                        .count_undecodable(device_id, "bulk data request", &err);
                    Ok(())
                }
            },
            TopicKind::Data => {
                tracing::debug!(
                    "data publish accepted and discarded (no routing in the simulator)"
                );
                Ok(())
            }
            TopicKind::Command | TopicKind::BulkDataResponse(_) => {
                return Err(format!(
                    "publish to {:?}, a topic only the cloud publishes on",
                    untrusted(&publish.topic)
                ));
            }
        };
        recorded.map_err(|err| err.to_string())?;
        if publish.qos == QoS::AtLeastOnce {
            self.ack_when_durable(publish.pkid).await?;
        }
        Ok(())
    }
}
