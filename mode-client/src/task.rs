//! The connection task: the driver of one [`Engine`](mode_core::engine::Engine). It owns the
//! link (an MQTT connection, or the HTTP transport's WebSockets and REST sends) and one timer,
//! carries out what the engine asks, feeds it what happened with the time, and turns its events
//! into notifications and delivery outcomes. It makes no protocol decision of its own: when to
//! connect, what to send, when to give up on a silent link and how to close are the engine's.
//!
//! The MQTT link is driven here too, in the same task (no second task, no channel): one
//! wake-up handles everything that is there (a burst of sends, every packet one read brought)
//! under one lock, carries out the engine's work once for all of it, and the link writes
//! everything that work encoded in one write.

use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mode_core::engine::{DisconnectReason, DropReason, Event, MessageId, Transmit};
use mode_core::time::Instant as CoreInstant;
use tokio::sync::oneshot;
use tokio::time::sleep_until;
use tracing::Instrument;

use super::config::{ClientConfig, Transport};
use super::error::ClientError;
use super::http::{HttpConn, HttpEvent, classify_send_error};
use super::mqtt::{MqttConn, Outcome};
use super::notification::{Notification, Notifier};
use super::rest::Rest;
use super::shared::{Shared, State};

enum Link {
    None,
    Mqtt(Box<MqttConn>),
    Http {
        conn: Box<HttpConn>,
        /// The message whose REST request is in flight (one at a time keeps the cloud's order).
        sending: Option<MessageId>,
    },
}

/// What a link reported.
enum LinkEvent {
    /// The MQTT link has outcomes to take.
    Mqtt,
    Http(Option<HttpEvent>),
}

async fn next_event(link: &mut Link) -> LinkEvent {
    match link {
        Link::Mqtt(conn) => {
            poll_fn(|cx| conn.poll_io(cx)).await;
            LinkEvent::Mqtt
        }
        Link::Http { conn, .. } => LinkEvent::Http(conn.events.recv().await),
        Link::None => std::future::pending().await,
    }
}

/// Waits for `at`, or forever when there is nothing to wait for.
async fn sleep_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Callers of `close`, and what they are told.
type CloseReplies = (
    Vec<oneshot::Sender<Result<(), ClientError>>>,
    Result<(), ClientError>,
);

pub(crate) struct Task {
    config: Arc<ClientConfig>,
    tls: Arc<rustls::ClientConfig>,
    rest: Arc<Rest>,
    shared: Arc<Shared>,
    notifier: Notifier,
    link: Link,
    /// REST refusals, kept so the sender learns the cloud's own answer.
    refused: HashMap<MessageId, ClientError>,
    /// Delivery outcomes for the hook, called once the lock is released.
    outcomes: Vec<(MessageId, Result<(), ClientError>)>,
    /// A message finished in this round: its queue place is free for a Block sender.
    room_made: bool,
    dropped_total: u64,
    /// The close replies and their answer, once the engine closed; sent after the hook.
    closed_replies: Option<CloseReplies>,
    /// Messages given up at close: the durable outbox keeps them for the next start.
    kept: HashSet<MessageId>,
    timer: Option<CoreInstant>,
    done: bool,
}

impl Task {
    pub(crate) fn new(
        config: Arc<ClientConfig>,
        tls: Arc<rustls::ClientConfig>,
        rest: Arc<Rest>,
        shared: Arc<Shared>,
        notifier: Notifier,
    ) -> Self {
        Task {
            config,
            tls,
            rest,
            shared,
            notifier,
            link: Link::None,
            refused: HashMap::new(),
            outcomes: Vec::new(),
            room_made: false,
            dropped_total: 0,
            closed_replies: None,
            kept: HashSet::new(),
            timer: None,
            done: false,
        }
    }

    pub(crate) async fn run(mut self) {
        let span = tracing::info_span!("mode_client", device_id = self.config.device_id);
        async move {
            tracing::debug!(transport = ?self.config.transport, "connection task started");
            self.drive(|_, _| {});
            let shared = self.shared.clone();
            while !self.done {
                let timer = self.wake_at();
                // The link first: its progress (a write, acknowledgements) is what frees room,
                // and every round carries out all of the engine's work, so a wake-up that waits
                // behind it loses nothing.
                tokio::select! {
                    biased;
                    event = next_event(&mut self.link) => match event {
                        LinkEvent::Mqtt => self.drive(Task::on_mqtt),
                        LinkEvent::Http(event) => self.drive(|task, state| task.on_http_event(state, event)),
                    },
                    () = poll_fn(|cx| shared.wake.poll(cx)) => self.drive(|_, _| {}),
                    () = sleep_opt(timer) => self.drive(Task::on_time),
                }
            }
            tracing::debug!("connection task ended");
        }
        .instrument(span)
        .await
    }

    /// Feeds the engine with `input` under the lock, carries out what it asks, hands out its
    /// events, then tells the hook and the waiting senders outside the lock.
    fn drive(&mut self, input: impl FnOnce(&mut Task, &mut State)) {
        let shared = self.shared.clone();
        let finished = {
            let mut state = shared.lock();
            input(self, &mut state);
            // Carrying out work may feed the engine (a link that cannot start), so go round
            // until both are empty.
            loop {
                let mut busy = false;
                while let Some(transmit) = state.engine.poll_transmit() {
                    busy = true;
                    self.transmit(&mut state, transmit);
                }
                while let Some(event) = state.engine.poll_event() {
                    busy = true;
                    self.on_engine_event(&mut state, event);
                }
                if !busy {
                    break;
                }
            }
            // What the engine accepted and finished goes to the durable outbox's writer.
            let state = &mut *state;
            if let Some(durable) = &mut state.durable {
                durable.take_journal(&mut state.engine, &self.kept);
            }
            self.timer = state.engine.poll_timeout();
            std::mem::take(&mut self.room_made)
        };
        let closed = self.closed_replies.take();
        if let Some(hook) = &self.config.delivery_hook {
            for (id, result) in self.outcomes.drain(..) {
                (hook.0)(id, &result);
            }
        }
        // Room in the queue: senders waiting under the Block policy try again.
        if finished && self.shared.room_waiters.load(Ordering::Acquire) > 0 {
            self.shared.room.notify_waiters();
        }
        if let Some((replies, result)) = closed {
            for reply in replies {
                let _ = reply.send(result.clone());
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // The engine's work
    // -----------------------------------------------------------------------------------------

    fn transmit(&mut self, state: &mut State, transmit: Transmit) {
        match transmit {
            Transmit::Connect => {
                tracing::debug!("connecting");
                self.link = if self.config.transport == Transport::Http {
                    Link::Http {
                        conn: Box::new(HttpConn::connect(
                            self.config.clone(),
                            self.tls.clone(),
                            self.rest.clone(),
                        )),
                        sending: None,
                    }
                } else {
                    Link::Mqtt(Box::new(MqttConn::connect(&self.config, &self.tls)))
                };
            }
            Transmit::Subscribe(topics) => {
                if let Link::Mqtt(conn) = &mut self.link {
                    conn.subscribe(topics);
                }
            }
            Transmit::Unsubscribe(topics) => {
                if let Link::Mqtt(conn) = &mut self.link {
                    conn.unsubscribe(topics);
                }
            }
            Transmit::Publish(publish) => match &mut self.link {
                Link::Mqtt(conn) => conn.publish(publish),
                Link::Http { conn, sending } => {
                    *sending = Some(publish.id);
                    conn.send(self.config.device_id, &publish.topic, &publish.payload);
                }
                Link::None => {
                    // Cannot happen (the engine sends only on a link it was told is up); the
                    // engine re-sends it after the next connect.
                    tracing::error!(id = publish.id, "a publish with no link");
                }
            },
            Transmit::Disconnect => match &mut self.link {
                Link::Mqtt(conn) => conn.disconnect(),
                Link::Http { conn, .. } => {
                    if !conn.is_closing() {
                        conn.close();
                    }
                }
                Link::None => {
                    let now = self.shared.clock.now();
                    state.engine.disconnected(DisconnectReason::Closed, now);
                }
            },
            Transmit::Abort => self.link = Link::None,
        }
    }

    fn on_engine_event(&mut self, state: &mut State, event: Event) {
        match event {
            Event::Connected => {
                self.shared.connected.store(true, Ordering::Release);
                tracing::info!("connected");
                self.notifier.send(Notification::Connected);
            }
            Event::Disconnected { reason, retry_in } => {
                self.shared.connected.store(false, Ordering::Release);
                match (&reason, retry_in) {
                    (DisconnectReason::Closed, None) => {}
                    (DisconnectReason::AuthFailed(_), _) => {
                        tracing::error!(reason = %reason, ?retry_in, "connection refused")
                    }
                    _ => tracing::warn!(reason = %reason, ?retry_in, "disconnected"),
                }
                self.notifier
                    .send(Notification::Disconnected { reason, retry_in });
            }
            Event::Command(command) => self.notifier.send(Notification::Command(command)),
            Event::Kv {
                rev,
                reload,
                changes,
            } => {
                if reload {
                    tracing::debug!(rev, changes = changes.len(), "kv reload applied");
                    self.notifier
                        .send(Notification::KvReloaded { rev, diff: changes });
                } else {
                    for change in changes {
                        self.notifier.send(Notification::KvChanged { rev, change });
                    }
                }
            }
            Event::BulkResponse {
                label, response, ..
            } => {
                let unclaimed = match state.bulk.remove(&response.request_id) {
                    Some(waiter) => waiter.send(response).err(),
                    None => Some(response),
                };
                if let Some(response) = unclaimed {
                    self.notifier
                        .send(Notification::BulkResponse { label, response });
                }
            }
            // The client gives the engine no deadline: `PendingResponse` keeps its own.
            Event::BulkTimeout { .. } => {}
            Event::Delivered(id) => self.finish(state, id, Ok(())),
            Event::Dropped { id, topic, reason } => {
                let error = match reason {
                    DropReason::QueueFull => {
                        self.dropped_total += 1;
                        tracing::warn!(%topic, "outgoing queue full: message dropped");
                        self.notifier.send(Notification::MessageDropped {
                            topic,
                            total: self.dropped_total,
                        });
                        ClientError::Dropped
                    }
                    DropReason::Refused(why) => {
                        tracing::warn!(%topic, error = %why, "the cloud refused a message");
                        self.refused.remove(&id).unwrap_or(ClientError::Http(why))
                    }
                    DropReason::Closed => {
                        if state.durable.is_some() {
                            self.kept.insert(id);
                        }
                        ClientError::Closed
                    }
                };
                self.finish(state, id, Err(error));
            }
            Event::Error { topic, error } => {
                tracing::warn!(%topic, %error, "malformed message from the cloud ignored");
                self.notifier.send(Notification::Error { topic, error });
            }
            Event::Closed { unsent } => {
                self.shared.closed.store(true, Ordering::Release);
                self.shared.connected.store(false, Ordering::Release);
                self.link = Link::None;
                state.bulk.clear();
                // Written and closed before close returns, so the directory is free again.
                if let Some(durable) = &mut state.durable {
                    durable.take_journal(&mut state.engine, &self.kept);
                    durable.shutdown();
                }
                let result = if unsent == 0 {
                    Ok(())
                } else {
                    Err(ClientError::CloseIncomplete { unsent })
                };
                // Answered after the hook has heard every outcome (see `drive`): a caller of
                // close may rely on every message having been reported when close returns.
                let replies = std::mem::take(&mut state.close_replies);
                self.closed_replies = Some((replies, result));
                tracing::info!(unsent, "closed");
                self.done = true;
            }
        }
    }

    /// Tells message `id`'s sender (if still listening) and the hook its outcome.
    fn finish(&mut self, state: &mut State, id: MessageId, result: Result<(), ClientError>) {
        self.room_made = true;
        if self.config.delivery_hook.is_some() {
            self.outcomes.push((id, result.clone()));
        }
        if let Some(sender) = state.deliveries.remove(id) {
            let _ = sender.send(result);
        }
    }

    // -----------------------------------------------------------------------------------------
    // What the links report
    // -----------------------------------------------------------------------------------------

    fn link_lost(&mut self, state: &mut State, reason: DisconnectReason) {
        self.link = Link::None;
        state.engine.disconnected(reason, self.shared.clock.now());
    }

    /// When the task must wake up by itself: the engine's timer or the link's next ping.
    fn wake_at(&self) -> Option<tokio::time::Instant> {
        let engine = self.timer.map(|at| self.shared.clock.to_tokio(at));
        let ping = match &self.link {
            Link::Mqtt(conn) => conn.ping_at(),
            _ => None,
        };
        match (engine, ping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time passed: the link pings if it is due, the engine handles its timeout if it is due.
    fn on_time(&mut self, state: &mut State) {
        let at = tokio::time::Instant::now();
        let now = self.shared.clock.at(at);
        if let Link::Mqtt(conn) = &mut self.link {
            conn.ping_if_due(at);
        }
        if self.timer.is_some_and(|due| now >= due) {
            state.engine.handle_timeout(now);
        }
    }

    /// Takes what the MQTT link has, in order.
    fn on_mqtt(&mut self, state: &mut State) {
        let at = tokio::time::Instant::now();
        let now = self.shared.clock.at(at);
        loop {
            let Link::Mqtt(conn) = &mut self.link else {
                return; // the link ended
            };
            let Some(outcome) = conn.next() else { break };
            if outcome.is_incoming() {
                state.engine.handle_activity(now);
            }
            match outcome {
                Outcome::Activity => {}
                Outcome::ConnAck => state.engine.connected(now),
                Outcome::SubAck { refused } => {
                    state.engine.subscribed(now);
                    if refused > 0 {
                        let error = format!("the broker refused {refused} of our subscriptions");
                        tracing::error!("{error}");
                        state.engine.record_error(error);
                    }
                }
                Outcome::Publish(publish) => {
                    state
                        .engine
                        .handle_publish(&publish.topic, &publish.payload, now)
                }
                Outcome::Acked(id) | Outcome::Written(id) => state.engine.delivered(id, now),
                Outcome::Failed(reason) => self.link_lost(state, reason),
            }
        }
        // A link that never stops bringing packets must not hold back the timers.
        if self.timer.is_some_and(|due| now >= due) {
            state.engine.handle_timeout(now);
        }
        if let Link::Mqtt(conn) = &mut self.link {
            conn.ping_if_due(at);
        }
    }

    fn on_http_event(&mut self, state: &mut State, event: Option<HttpEvent>) {
        let now = self.shared.clock.now();
        let Link::Http { conn, sending } = &mut self.link else {
            return;
        };
        match event {
            Some(HttpEvent::Connected) => {
                conn.connected = true;
                state.engine.connected(now);
                // No subscriptions over HTTP: both channels are open, so the device is reachable.
                state.engine.subscribed(now);
            }
            Some(HttpEvent::Frame { topic, payload }) => {
                state.engine.handle_publish(&topic, &payload, now);
            }
            Some(HttpEvent::Sent(result)) => {
                // The request's task may not have finished yet, but its outcome is here.
                conn.request_ended();
                let Some(id) = sending.take() else { return };
                match result {
                    Ok(()) => state.engine.delivered(id, now),
                    Err(err) => match classify_send_error(&err) {
                        Some(reason) => self.link_lost(state, reason),
                        None => {
                            // The cloud refused this message itself: retrying cannot help.
                            let why = err.to_string();
                            self.refused.insert(id, err);
                            state.engine.failed(id, &why, now);
                        }
                    },
                }
            }
            Some(HttpEvent::Lost(reason)) => self.link_lost(state, reason),
            None => self.link_lost(
                state,
                DisconnectReason::Network("connection task ended".into()),
            ),
        }
    }
}
