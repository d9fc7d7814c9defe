//! The connection task: it owns the outbox, one link at a time (an MQTT connection, or the HTTP
//! transport's WebSockets and REST sends), the reconnect schedule and the watchdog, and turns
//! what arrives into notifications.
//!
//! Over MQTT each connection attempt gets a fresh rumqttc `EventLoop`, polled in a task of its
//! own so that its socket writes run beside this task's work. `EventLoop::poll` must not be
//! cancelled mid-write, and it never is: the poller awaits every poll to its end. This task
//! takes every event that is already there in one go (`recv_many`), so a burst costs one
//! wake-up of this task and one pump, not one per event. Nothing carries over between
//! connections inside rumqttc (cleanSession is true and rumqttc drops unacknowledged publishes
//! on a new session); the outbox re-sends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, MqttOptions,
    NetworkOptions, Outgoing, QoS, SubscribeFilter, TlsConfiguration,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use super::clock::Clock;
use super::config::{ClientConfig, Transport};
use super::error::ClientError;
use super::gate::Gate;
use super::http::{HttpConn, HttpEvent, classify_send_error};
use super::notification::{DisconnectReason, Notification, Notifier};
use super::outbox::{Message, Outbox};
use super::rest::{Rest, error_chain};
use super::shared::{Shared, add};
use mode_core::backoff::{Backoff, Failure};
use mode_core::ddp::{Applied, Change};
use mode_core::proto::{BulkDataResponse, Qos, Topic, TopicKind};
use mode_core::session::Incoming as SessionIncoming;

/// What the handles ask of the connection task.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Queue a publish.
    Publish(Message),
    /// A bulk request is about to be queued: route its response to `reply`, subscribing to
    /// `response_topic` first if this connection has not.
    ExpectBulk {
        request_id: String,
        response_topic: String,
        reply: oneshot::Sender<BulkDataResponse>,
    },
    /// The caller stopped waiting for this response.
    ForgetBulk(String),
    /// Flush until `deadline`, then unsubscribe, disconnect and end.
    Close {
        deadline: std::time::Instant,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
}

/// What this task needs of one rumqttc event: a few bytes to move between the tasks where
/// rumqttc's `Result<Event, ConnectionError>` is over a hundred. Events it has no use for
/// (pings, its own SUBSCRIBEs) are not sent at all. A failure is always the last.
#[derive(Debug)]
enum MqttEvent {
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
    Disconnect,
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
            Ok(Event::Outgoing(Outgoing::Disconnect)) => MqttEvent::Disconnect,
            Ok(Event::Outgoing(_)) => return None,
        })
    }

    fn is_incoming(&self) -> bool {
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
struct Conn {
    client: AsyncClient,
    events: mpsc::Receiver<MqttEvent>,
    poller: JoinHandle<()>,
    connected: bool,
    last_incoming: Instant,
    subscribed: HashSet<String>,
    /// `Connected` was announced: at the first SUBACK, not the CONNACK, so a command the cloud
    /// sends once the application saw `Connected` cannot miss a subscription still in flight.
    announced: bool,
    disconnect_sent: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

enum Link {
    Down { retry_at: Instant },
    Up(Box<Conn>),
    Http(Box<HttpConn>),
}

/// What a link reported.
enum LinkEvent {
    /// This many events were moved into the task's event buffer; 0: the poller ended.
    Mqtt(usize),
    Http(Option<HttpEvent>),
}

struct Closing {
    deadline: Instant,
    replies: Vec<oneshot::Sender<Result<(), ClientError>>>,
}

pub(crate) struct Task {
    config: Arc<ClientConfig>,
    tls: Arc<rustls::ClientConfig>,
    rest: Arc<Rest>,
    shared: Arc<Shared>,
    notifier: Notifier,
    permits: Arc<Gate>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    cmds_open: bool,
    outbox: Outbox,
    backoff: Backoff,
    clock: Clock,
    link: Link,
    waiters: HashMap<String, oneshot::Sender<BulkDataResponse>>,
    closing: Option<Closing>,
    ever_connected: bool,
    dropped_total: u64,
    done: bool,
    dead_after: Duration,
    /// Where the MQTT link's events are received, kept between rounds for its capacity.
    mqtt_events: Vec<MqttEvent>,
}

/// How many queued commands, or events that are already there, one wake-up of the connection
/// task takes at most; then the outbox is pumped once for all of them.
const BATCH: usize = 64;

/// How long close waits, after DISCONNECT is written, for the broker to close the connection.
/// Dropping the socket before the broker has read everything can make the kernel answer the
/// broker's last packets (UNSUBACK) with a reset, and a reset makes the broker's kernel throw
/// away what the broker had not read yet: the last messages would be lost.
const LINGER: Duration = Duration::from_secs(2);

/// Waits for `at`, or forever when there is nothing to wait for.
async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn next_event(link: &mut Link, buffer: &mut Vec<MqttEvent>) -> LinkEvent {
    match link {
        Link::Up(conn) => LinkEvent::Mqtt(conn.events.recv_many(buffer, BATCH).await),
        Link::Http(conn) => LinkEvent::Http(conn.events.recv().await),
        Link::Down { .. } => std::future::pending().await,
    }
}

fn mqtt_qos(qos: Qos) -> QoS {
    match qos {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    }
}

impl Task {
    pub(crate) fn new(
        config: Arc<ClientConfig>,
        tls: Arc<rustls::ClientConfig>,
        rest: Arc<Rest>,
        shared: Arc<Shared>,
        notifier: Notifier,
        permits: Arc<Gate>,
        cmds: mpsc::UnboundedReceiver<Cmd>,
    ) -> Self {
        let backoff = Backoff::new(config.backoff.clone());
        let dead_after = config.keepalive.mul_f64(1.5);
        Task {
            config,
            tls,
            rest,
            shared,
            notifier,
            permits,
            cmds,
            cmds_open: true,
            outbox: Outbox::default(),
            backoff,
            clock: Clock::new(),
            link: Link::Down {
                retry_at: Instant::now(),
            },
            waiters: HashMap::new(),
            closing: None,
            ever_connected: false,
            dropped_total: 0,
            done: false,
            dead_after,
            mqtt_events: Vec::with_capacity(BATCH),
        }
    }

    pub(crate) async fn run(mut self) {
        let span = tracing::info_span!("mode_client", device_id = self.config.device_id);
        async move {
            tracing::debug!(transport = ?self.config.transport, "connection task started");
            // One timer for the watchdog, armed when a link comes up and re-armed only when it
            // fires: the deadline (last packet + 1.5 keepalives) only ever moves later, so
            // detection stays exact without a timer-wheel insert for every packet.
            let mut watchdog = Box::pin(sleep_until(Instant::now()));
            let mut watchdog_armed = false;
            while !self.done {
                let retry_at = match &self.link {
                    Link::Down { retry_at } if self.closing_deadline_passed().is_none() => {
                        Some(*retry_at)
                    }
                    _ => None,
                };
                let watchdog_at = match &self.link {
                    Link::Up(conn) if conn.connected => {
                        Some(conn.last_incoming + self.dead_after())
                    }
                    _ => None,
                };
                match watchdog_at {
                    Some(at) if !watchdog_armed => {
                        watchdog.as_mut().reset(at);
                        watchdog_armed = true;
                    }
                    None => watchdog_armed = false,
                    Some(_) => {}
                }
                let close_at = self.closing.as_ref().map(|c| c.deadline);
                tokio::select! {
                    biased;
                    cmd = self.cmds.recv(), if self.cmds_open => match cmd {
                        Some(cmd) => {
                            self.on_cmd(cmd);
                            // Take what else is queued before pumping, so a burst of sends
                            // costs one wake-up rather than one each.
                            for _ in 0..BATCH {
                                let Ok(cmd) = self.cmds.try_recv() else { break };
                                self.on_cmd(cmd);
                            }
                        }
                        None => {
                            // Every handle is gone: nobody can wait for a flush.
                            self.cmds_open = false;
                            self.begin_close(Instant::now(), None);
                        }
                    },
                    event = next_event(&mut self.link, &mut self.mqtt_events) => match event {
                        LinkEvent::Mqtt(0) => self.on_event(None),
                        LinkEvent::Mqtt(_) => self.on_mqtt_events(),
                        LinkEvent::Http(event) => self.on_http_event(event),
                    },
                    () = sleep_opt(retry_at) => self.connect(),
                    () = &mut watchdog, if watchdog_armed => {
                        watchdog_armed = false;
                        self.check_watchdog();
                    }
                    () = sleep_opt(close_at) => self.finish_close(),
                }
                self.pump();
            }
            tracing::debug!("connection task ended");
        }
        .instrument(span)
        .await
    }

    /// Handles the events `recv_many` put in `mqtt_events`, in order.
    fn on_mqtt_events(&mut self) {
        // Taken out and put back, so the buffer keeps its capacity.
        let mut events = std::mem::take(&mut self.mqtt_events);
        if events.iter().any(MqttEvent::is_incoming)
            && let Link::Up(conn) = &mut self.link
        {
            conn.last_incoming = Instant::now();
        }
        for event in events.drain(..) {
            self.on_event(Some(event));
        }
        self.mqtt_events = events;
    }

    /// How long a silent connection is trusted: 1.5 keepalives, as MQTT gives the broker.
    fn dead_after(&self) -> Duration {
        self.dead_after
    }

    fn closing_deadline_passed(&self) -> Option<()> {
        let closing = self.closing.as_ref()?;
        (Instant::now() >= closing.deadline).then_some(())
    }

    // -----------------------------------------------------------------------------------------
    // Commands from the handles
    // -----------------------------------------------------------------------------------------

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Publish(mut message) => {
                if message.permit.is_none() {
                    if self.closing.is_some() {
                        // Raced with close (the queue's permits are closed): not accepted.
                        message
                            .finish(Err(ClientError::Closed), self.config.delivery_hook.as_ref());
                        return;
                    }
                    message.permit = self.permits.try_acquire();
                }
                if message.permit.is_none() {
                    // DropOldest with a full queue: the oldest unsent message gives its place.
                    match self.outbox.drop_oldest() {
                        Some(mut oldest) => {
                            message.permit = oldest.permit.take();
                            self.dropped(oldest, true);
                        }
                        None => {
                            // Everything queued is already on the wire: the new one goes.
                            self.dropped(message, false);
                            return;
                        }
                    }
                }
                add(&self.shared.counters.messages_queued, 1);
                add(&self.shared.counters.pending, 1);
                self.outbox.push(message);
            }
            Cmd::ExpectBulk {
                request_id,
                response_topic,
                reply,
            } => {
                self.waiters.retain(|_, waiter| !waiter.is_closed());
                self.waiters.insert(request_id, reply);
                // Goes into rumqttc's queue ahead of the request itself.
                if let Link::Up(conn) = &mut self.link
                    && conn.connected
                    && !conn.subscribed.contains(&response_topic)
                    && conn
                        .client
                        .try_subscribe(response_topic.clone(), QoS::AtMostOnce)
                        .is_ok()
                {
                    conn.subscribed.insert(response_topic);
                }
            }
            Cmd::ForgetBulk(request_id) => {
                self.waiters.remove(&request_id);
            }
            Cmd::Close { deadline, reply } => self.begin_close(deadline.into(), Some(reply)),
        }
    }

    /// Drops `message` for lack of room; `was_queued` says whether it counted as pending.
    fn dropped(&mut self, message: Message, was_queued: bool) {
        self.dropped_total += 1;
        add(&self.shared.counters.messages_dropped, 1);
        tracing::warn!(topic = %message.topic, "outgoing queue full: message dropped");
        self.notifier.send(Notification::MessageDropped {
            topic: message.topic.clone(),
            total: self.dropped_total,
        });
        if was_queued {
            self.shared.counters.pending.fetch_sub(1, Ordering::Relaxed);
        }
        message.finish(
            Err(ClientError::Dropped),
            self.config.delivery_hook.as_ref(),
        );
    }

    fn begin_close(
        &mut self,
        deadline: Instant,
        reply: Option<oneshot::Sender<Result<(), ClientError>>>,
    ) {
        self.shared.closed.store(true, Ordering::Release);
        self.permits.close();
        let closing = self.closing.get_or_insert(Closing {
            deadline,
            replies: Vec::new(),
        });
        closing.deadline = closing.deadline.min(deadline);
        closing.replies.extend(reply);
    }

    // -----------------------------------------------------------------------------------------
    // Connecting
    // -----------------------------------------------------------------------------------------

    fn mqtt_options(&self) -> MqttOptions {
        let c = &self.config;
        let tls = c.tls.enabled.then(|| self.tls.clone());
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
            .set_request_channel_capacity(self.channel_capacity());
        options
    }

    fn channel_capacity(&self) -> usize {
        // Room for a full window of publishes plus subscriptions, unsubscriptions, disconnect.
        usize::from(self.config.max_inflight) + 64
    }

    fn connect(&mut self) {
        add(&self.shared.counters.connection_attempts, 1);
        if self.config.transport == Transport::Http {
            // The kv socket sends its reload as soon as it opens.
            self.shared.session().on_subscribed();
            tracing::debug!("connecting");
            self.link = Link::Http(Box::new(HttpConn::connect(
                self.config.clone(),
                self.tls.clone(),
                self.rest.clone(),
            )));
            return;
        }
        let options = self.mqtt_options();
        let (client, mut eventloop): (AsyncClient, EventLoop) =
            AsyncClient::new(options, self.channel_capacity());
        let mut network = NetworkOptions::new();
        network.set_connection_timeout(
            self.config.connect_timeout.as_secs_f64().ceil().max(1.0) as u64
        );
        eventloop.set_network_options(network);
        let (tx, events) = mpsc::channel(BATCH);
        let poller = tokio::spawn(async move {
            // Ends after the first error: polling on would reconnect inside rumqttc, behind
            // the outbox's back. No span: rumqttc logs through `log`, and this loop logs nothing.
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
        tracing::debug!("connecting");
        self.link = Link::Up(Box::new(Conn {
            client,
            events,
            poller,
            connected: false,
            last_incoming: Instant::now(),
            subscribed: HashSet::new(),
            announced: false,
            disconnect_sent: false,
        }));
    }

    /// A link is up (MQTT: CONNACK; HTTP: both WebSockets open).
    fn link_up(&mut self) {
        self.backoff.on_connected(self.clock.now());
        if self.ever_connected {
            add(&self.shared.counters.reconnects, 1);
        }
        self.ever_connected = true;
        self.shared.connected.store(true, Ordering::Release);
        tracing::info!("connected");
        self.notifier.send(Notification::Connected);
    }

    fn on_http_event(&mut self, event: Option<HttpEvent>) {
        let Link::Http(conn) = &mut self.link else {
            return;
        };
        if let Some(HttpEvent::Sent(_)) = &event {
            // The request's task may not have finished yet, but its outcome is here: the link is
            // free for the next message now (asking the task instead could stall the queue).
            conn.request_ended();
        }
        match event {
            Some(HttpEvent::Connected) => {
                conn.connected = true;
                self.link_up();
            }
            Some(HttpEvent::Frame { topic, payload }) => {
                add(&self.shared.counters.bytes_in, payload.len() as u64);
                self.on_publish(&topic, &payload);
            }
            Some(HttpEvent::Sent(Ok(()))) => {
                if let Some(message) = self.outbox.complete_handed() {
                    self.acked(message);
                }
            }
            Some(HttpEvent::Sent(Err(err))) => match classify_send_error(&err) {
                Some((reason, failure)) => self.connection_ended(reason, failure),
                None => {
                    // The cloud refused this message itself (e.g. an invalid key): retrying
                    // cannot help, so it fails alone and the rest go on.
                    if let Some(message) = self.outbox.complete_handed() {
                        tracing::warn!(topic = %message.topic, error = %err, "the cloud refused a message");
                        self.shared
                            .set_last_error(format!("{}: {err}", message.topic));
                        add(&self.shared.counters.messages_dropped, 1);
                        self.shared.counters.pending.fetch_sub(1, Ordering::Relaxed);
                        message.finish(Err(err), self.config.delivery_hook.as_ref());
                    }
                }
            },
            Some(HttpEvent::Lost(reason, failure)) => self.connection_ended(reason, failure),
            None => self.connection_ended(
                DisconnectReason::Network("connection task ended".into()),
                Failure::Connection,
            ),
        }
    }

    fn on_connack(&mut self) {
        let Link::Up(conn) = &mut self.link else {
            return;
        };
        conn.connected = true;
        let topics = {
            let mut session = self.shared.session();
            // Before any sync message can arrive: the reload that follows the subscription is
            // the new truth even if the cloud's revisions went backwards.
            session.on_subscribed();
            session.subscriptions()
        };
        let filters: Vec<_> = topics
            .iter()
            .map(|topic| SubscribeFilter::new(topic.clone(), QoS::AtMostOnce))
            .collect();
        if let Err(err) = conn.client.try_subscribe_many(filters) {
            tracing::error!(error = %err, "could not queue the subscriptions");
        }
        conn.subscribed = topics.into_iter().collect();
    }

    // -----------------------------------------------------------------------------------------
    // Events from the connection
    // -----------------------------------------------------------------------------------------

    /// `None`: the poller ended without an error to say why.
    fn on_event(&mut self, event: Option<MqttEvent>) {
        match event {
            Some(MqttEvent::Failed(err)) => {
                let (reason, failure) = classify(&err, &self.config);
                self.connection_ended(reason, failure);
            }
            None => self.connection_ended(
                DisconnectReason::Network("connection task ended".into()),
                Failure::Connection,
            ),
            Some(MqttEvent::ConnAck) => self.on_connack(),
            Some(MqttEvent::Publish(publish)) => {
                add(&self.shared.counters.bytes_in, publish.payload.len() as u64);
                self.on_publish(&publish.topic, &publish.payload);
            }
            Some(MqttEvent::PubAck(pkid)) => {
                if let Some(message) = self.outbox.on_puback(pkid) {
                    self.acked(message);
                }
            }
            Some(MqttEvent::SubAck { refused }) => {
                if let Link::Up(conn) = &mut self.link
                    && !conn.announced
                {
                    conn.announced = true;
                    self.link_up();
                }
                if refused > 0 {
                    let error = format!("the broker refused {refused} of our subscriptions");
                    tracing::error!("{error}");
                    self.shared.set_last_error(error);
                }
            }
            Some(MqttEvent::OtherIncoming) => {}
            Some(MqttEvent::Written(pkid)) => {
                if let Some(message) = self.outbox.on_outgoing_publish(pkid) {
                    self.acked(message);
                }
            }
            Some(MqttEvent::AwaitAck(pkid)) => self.outbox.on_await_ack(pkid),
            Some(MqttEvent::Disconnect) => {
                // The close ends when the broker closes the connection (it must, after
                // DISCONNECT): by then it has read everything. See LINGER for why not sooner.
                if let Some(closing) = &mut self.closing {
                    closing.deadline = closing.deadline.min(Instant::now() + LINGER);
                }
            }
        }
    }

    fn acked(&mut self, message: Message) {
        add(&self.shared.counters.messages_acked, 1);
        self.shared.counters.pending.fetch_sub(1, Ordering::Relaxed);
        message.finish(Ok(()), self.config.delivery_hook.as_ref());
    }

    fn on_publish(&mut self, topic: &str, payload: &[u8]) {
        let incoming = self.shared.session().handle(topic, payload);
        let counters = &self.shared.counters;
        match incoming {
            SessionIncoming::Command(command) => {
                add(&counters.commands_received, 1);
                self.notifier.send(Notification::Command(command));
            }
            SessionIncoming::Kv(Applied::Changed {
                rev,
                reload,
                changes,
            }) => {
                add(&counters.kv_applied, 1);
                if reload {
                    tracing::debug!(rev, changes = changes.len(), "kv reload applied");
                    self.notifier
                        .send(Notification::KvReloaded { rev, diff: changes });
                } else {
                    for change in changes {
                        self.notifier.send(match change {
                            Change::Set {
                                key,
                                value,
                                previous,
                            } => Notification::KvSet {
                                rev,
                                key,
                                value,
                                previous,
                            },
                            Change::Deleted { key, previous } => {
                                Notification::KvDeleted { rev, key, previous }
                            }
                        });
                    }
                }
            }
            SessionIncoming::Kv(Applied::Ignored { rev, held, reason }) => {
                add(&counters.kv_stale, 1);
                tracing::debug!(rev, held, ?reason, "kv sync message ignored");
            }
            SessionIncoming::BulkResponse { label, response } => {
                match self.waiters.remove(&response.request_id) {
                    Some(waiter) => {
                        if let Err(response) = waiter.send(response) {
                            self.notifier
                                .send(Notification::BulkResponse { label, response });
                        }
                    }
                    None => self
                        .notifier
                        .send(Notification::BulkResponse { label, response }),
                }
            }
            SessionIncoming::Unrelated { topic, reason } => {
                tracing::debug!(%topic, %reason, "publish ignored");
            }
            SessionIncoming::Invalid { topic, error } => {
                if matches!(
                    Topic::parse(&topic),
                    Ok(Topic {
                        kind: TopicKind::Kv,
                        ..
                    })
                ) {
                    add(&counters.kv_invalid, 1);
                }
                tracing::warn!(%topic, %error, "malformed message from the cloud ignored");
                self.shared.set_last_error(format!("{topic}: {error}"));
                self.notifier.send(Notification::Error { topic, error });
            }
        }
    }

    fn check_watchdog(&mut self) {
        let dead_after = self.dead_after();
        let Link::Up(conn) = &self.link else { return };
        if conn.connected && conn.last_incoming.elapsed() >= dead_after {
            tracing::warn!(
                ?dead_after,
                "nothing received from the cloud: connection presumed half-open"
            );
            self.connection_ended(
                DisconnectReason::KeepaliveTimeout(dead_after),
                Failure::Connection,
            );
        }
    }

    fn connection_ended(&mut self, reason: DisconnectReason, failure: Failure) {
        let was_disconnecting = matches!(&self.link, Link::Up(conn) if conn.disconnect_sent);
        self.link = Link::Down {
            retry_at: Instant::now(),
        };
        self.shared.connected.store(false, Ordering::Release);
        self.outbox.requeue();
        if self.closing.is_some() && (was_disconnecting || self.outbox.is_empty()) {
            self.finish_close();
            return;
        }
        let wait = self
            .backoff
            .on_failure(failure, self.clock.now(), rand::random::<f64>());
        self.link = Link::Down {
            retry_at: Instant::now() + wait,
        };
        let text = reason.to_string();
        match failure {
            Failure::Auth => {
                tracing::error!(reason = %text, retry_in = ?wait, "connection refused")
            }
            Failure::Connection => tracing::warn!(reason = %text, retry_in = ?wait, "disconnected"),
        }
        self.shared.set_last_error(text);
        self.notifier.send(Notification::Disconnected {
            reason,
            retry_in: Some(wait),
        });
    }

    // -----------------------------------------------------------------------------------------
    // Sending
    // -----------------------------------------------------------------------------------------

    fn pump(&mut self) {
        if self.done {
            return;
        }
        let connected = matches!(&self.link, Link::Up(conn) if conn.connected);
        let http_connected = matches!(&self.link, Link::Http(conn) if conn.connected);
        if self.closing.is_some() && self.outbox.is_empty() && !connected && !http_connected {
            self.finish_close();
            return;
        }
        if let Link::Http(conn) = &mut self.link {
            if self.closing.is_some() && self.outbox.is_empty() {
                // Flushed: close the sockets cleanly; their end finishes the close.
                if !conn.is_closing() {
                    conn.close();
                }
                return;
            }
            // One request at a time keeps the cloud's order the device's order.
            if conn.connected
                && !conn.busy()
                && self.outbox.in_network() == 0
                && let Some(message) = self.outbox.front()
            {
                conn.send(self.config.device_id, &message.topic, &message.payload);
                add(&self.shared.counters.messages_sent, 1);
                add(
                    &self.shared.counters.bytes_out,
                    message.payload.len() as u64,
                );
                self.outbox.hand_front();
            }
            return;
        }
        let Link::Up(conn) = &mut self.link else {
            return;
        };
        if !conn.connected || conn.disconnect_sent {
            return;
        }
        let window = usize::from(self.config.max_inflight);
        while self.outbox.in_network() < window {
            let Some(message) = self.outbox.front() else {
                break;
            };
            let sent = conn.client.try_publish(
                message.topic.clone(),
                mqtt_qos(message.qos),
                false,
                message.payload.clone(),
            );
            if sent.is_err() {
                // rumqttc's queue is full or the connection is ending; its events say which.
                break;
            }
            add(&self.shared.counters.messages_sent, 1);
            add(
                &self.shared.counters.bytes_out,
                message.payload.len() as u64,
            );
            self.outbox.hand_front();
        }
        if self.closing.is_some() && self.outbox.is_empty() {
            // Flushed: leave cleanly as the MODE docs ask, UNSUBSCRIBE then DISCONNECT.
            for topic in conn.subscribed.drain() {
                let _ = conn.client.try_unsubscribe(topic);
            }
            let _ = conn.client.try_disconnect();
            conn.disconnect_sent = true;
        }
    }

    fn finish_close(&mut self) {
        if self.done {
            return;
        }
        if matches!(&self.link, Link::Down { .. })
            && self.closing.is_some()
            && !self.outbox.is_empty()
        {
            // Not connected, messages left: keep trying until the deadline.
            if self.closing_deadline_passed().is_none() {
                return;
            }
        }
        let unsent = self.outbox.drain();
        let unsent_count = unsent.len();
        for message in unsent {
            add(&self.shared.counters.messages_dropped, 1);
            self.shared.counters.pending.fetch_sub(1, Ordering::Relaxed);
            message.finish(Err(ClientError::Closed), self.config.delivery_hook.as_ref());
        }
        self.waiters.clear();
        self.link = Link::Down {
            retry_at: Instant::now(),
        };
        self.shared.connected.store(false, Ordering::Release);
        self.shared.closed.store(true, Ordering::Release);
        self.permits.close();
        // Messages that raced with the close are given up too.
        while let Ok(cmd) = self.cmds.try_recv() {
            match cmd {
                Cmd::Publish(message) => {
                    message.finish(Err(ClientError::Closed), self.config.delivery_hook.as_ref())
                }
                Cmd::Close { reply, .. } => {
                    let _ = reply.send(Ok(()));
                }
                Cmd::ExpectBulk { .. } | Cmd::ForgetBulk(_) => {}
            }
        }
        let result = if unsent_count == 0 {
            Ok(())
        } else {
            Err(ClientError::CloseIncomplete {
                unsent: unsent_count,
            })
        };
        if let Some(closing) = self.closing.take() {
            for reply in closing.replies {
                let _ = reply.send(result.clone());
            }
        }
        tracing::info!(unsent = unsent_count, "closed");
        self.notifier.send(Notification::Disconnected {
            reason: DisconnectReason::Closed,
            retry_in: None,
        });
        self.done = true;
    }
}

/// Why a connection failed, in words a user can act on, and which backoff schedule applies.
fn classify(err: &ConnectionError, config: &ClientConfig) -> (DisconnectReason, Failure) {
    if let ConnectionError::ConnectionRefused(code) = err {
        return match code {
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => (
                DisconnectReason::AuthFailed(format!(
                    "the broker refused device {} (CONNACK {code:?})",
                    config.device_id
                )),
                Failure::Auth,
            ),
            other => (
                DisconnectReason::Network(format!(
                    "the broker refused the connection (CONNACK {other:?})"
                )),
                Failure::Connection,
            ),
        };
    }
    if let Some(tls) = super::tls::find_rustls_error(err) {
        let host = match config.transport {
            Transport::MqttWebSocket => config.mqtt_ws_url(),
            _ => config.mqtt_host.clone(),
        };
        return (
            DisconnectReason::Tls(super::tls::describe_tls(tls, &host)),
            Failure::Connection,
        );
    }
    (
        DisconnectReason::Network(error_chain(err)),
        Failure::Connection,
    )
}
