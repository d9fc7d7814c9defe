//! The managed MODE device client: a cheap cloneable [`Client`] handle and one
//! tokio task that owns the connection, keeps it alive and keeps the DDP mirror true.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mode_client::ClientError> {
//! use mode_client::{Client, ClientConfig, Notification};
//! use mode_core::proto::{Map, Qos};
//!
//! let config = ClientConfig::builder(1234, "v1.device-api-key").build()?;
//! let (client, mut notifications) = Client::connect(config)?;
//! client.send_event("boot", Map::new(), Qos::AtLeastOnce).await?;
//! while let Some(notification) = notifications.recv().await {
//!     if let Notification::Command(command) = notification {
//!         // Calling the client from here never deadlocks; `try_` calls never wait.
//!         client.try_send_event("ack", command.parameters, Qos::AtMostOnce)?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Delivery: QoS 1 messages (events, kv writes, bulk requests) are kept in the client's own
//! outbox until the cloud acknowledges them; a lost connection re-sends them after the
//! reconnect, in order. The outbox is bounded ([`ClientConfig`]'s `queue_size`) and what a full
//! queue does is the [`FullQueuePolicy`]; nothing is dropped silently. With
//! [`outbox_dir`](ClientConfigBuilder::outbox_dir) the outbox is also kept on disk, so accepted
//! QoS 1 messages survive the process dying or the power going out (see [`SyncPolicy`]).

#![deny(missing_docs)]

mod clock;
mod config;
#[cfg(feature = "durable-outbox")]
mod durable;
#[cfg(not(feature = "durable-outbox"))]
#[path = "durable_off.rs"]
mod durable;
mod error;
mod http;
mod mqtt;
mod notification;
mod rest;
mod runtime;
mod shared;
mod socket;
mod task;
mod tls;

use std::collections::HashSet;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mode_core::engine::{Engine, EngineConfig, SendError};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

pub use config::{
    ApiKey, ClientConfig, ClientConfigBuilder, ConfigError, DEFAULT_API_URL, DEFAULT_MQTT_HOST,
    DEFAULT_OUTBOX_MAX_BYTES, DeliveryFn, DeliveryHook, FullQueuePolicy, SyncPolicy, TlsOptions,
    Transport,
};
pub use error::{ClientError, error_chain};
pub use mode_core::ddp::Change;
pub use mode_core::engine::{DisconnectReason, MessageId, Stats};
pub use notification::{Notification, Notifications};
pub use runtime::Runtime;

use self::clock::Clock;
use self::durable::{Ticket, Tracker};
use self::rest::Rest;
use self::shared::{Shared, State};
use mode_core::proto::{BulkDataResponse, DeviceId, DeviceInfo, Qos, rest as paths};

/// A handle on one device's connection. Clones are cheap and share the connection; the
/// connection task ends when the client is closed or every clone is dropped (dropping without
/// [`close`](Client::close) gives up what is still queued).
///
/// Every sending call has two forms: an `async` one that waits for room in the queue when the
/// [`FullQueuePolicy`] is `Block`, and a `try_` one that never waits. Neither waits for the
/// network: both return a [`Delivery`] that says when the cloud has the message. Both may be
/// called from anywhere, a notification handler included: the connection task never waits for
/// the application, so no call can deadlock it.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    config: Arc<ClientConfig>,
    rest: Arc<Rest>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Every handle is gone: nobody can wait for a flush, so close at once.
        start_close(&self.shared, Duration::ZERO);
    }
}

/// One sender waiting for queue room, counted while it lives.
struct RoomWaiter<'a>(&'a Shared);

impl<'a> RoomWaiter<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared
            .room_waiters
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        RoomWaiter(shared)
    }
}

impl Drop for RoomWaiter<'_> {
    fn drop(&mut self) {
        self.0
            .room_waiters
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The outcome of one sent message, for callers who want to know when the cloud has it.
/// Dropping it is fine: the message is delivered all the same.
#[derive(Debug)]
pub struct Delivery {
    id: MessageId,
    rx: oneshot::Receiver<Result<(), ClientError>>,
}

impl Delivery {
    /// The message's id, as the [`DeliveryHook`] will name it.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// Waits until the cloud acknowledged the message (QoS 1: PUBACK; QoS 0: written to the
    /// network; HTTP: a 2xx answer), or it was dropped or given up at close. Awaiting the
    /// `Delivery` itself does the same.
    pub async fn wait(self) -> Result<(), ClientError> {
        self.await
    }
}

impl Future for Delivery {
    type Output = Result<(), ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(ClientError::Closed)))
    }
}

/// A bulk-data request on its way; its response is matched by `requestId`.
#[derive(Debug)]
pub struct PendingResponse {
    request_id: String,
    delivery: Delivery,
    rx: oneshot::Receiver<BulkDataResponse>,
    shared: Arc<Shared>,
}

impl PendingResponse {
    /// The request id the response will carry.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The id of the request's message, as the [`DeliveryHook`] will name it.
    pub fn message_id(&self) -> MessageId {
        self.delivery.id
    }

    /// Waits up to `timeout` for the response.
    pub async fn response(self, timeout: Duration) -> Result<BulkDataResponse, ClientError> {
        let PendingResponse {
            request_id,
            delivery,
            rx,
            shared,
        } = self;
        // A request that could not be delivered fails with that reason rather than a timeout.
        let sent = async {
            delivery.wait().await?;
            std::future::pending::<Result<BulkDataResponse, ClientError>>().await
        };
        let answer = async { rx.await.map_err(|_| ClientError::Closed) };
        let outcome = tokio::time::timeout(timeout, async {
            tokio::select! {
                result = sent => result,
                response = answer => response,
            }
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(_) => {
                let mut state = shared.lock();
                state.bulk.remove(&request_id);
                state.engine.forget_bulk_request(&request_id);
                Err(ClientError::Timeout(timeout))
            }
        }
    }
}

impl From<SendError> for ClientError {
    fn from(err: SendError) -> Self {
        match err {
            SendError::Closed => ClientError::Closed,
            SendError::QueueFull { capacity } => ClientError::QueueFull { capacity },
            SendError::TooLarge { size, max } => ClientError::MessageTooLarge { size, max },
            SendError::Encode(err) => ClientError::Encode(err),
        }
    }
}

/// Starts closing the engine of `shared` by `now + timeout`; `None` when it is already closed.
fn start_close(
    shared: &Shared,
    timeout: Duration,
) -> Option<oneshot::Receiver<Result<(), ClientError>>> {
    shared
        .closed
        .store(true, std::sync::atomic::Ordering::Release);
    // Senders waiting for queue room give up now.
    shared.room.notify_waiters();
    let rx = {
        let mut state = shared.lock();
        if state.engine.is_closed() {
            return None;
        }
        let (reply, rx) = oneshot::channel();
        state.close_replies.push(reply);
        let now = shared.clock.now();
        state.engine.close(now + timeout, now);
        rx
    };
    shared.wake.notify();
    Some(rx)
}

/// The engine's settings for `config`.
fn engine_config(config: &ClientConfig) -> EngineConfig {
    let http = config.transport == Transport::Http;
    EngineConfig {
        queue_size: config.queue_size,
        full_queue: config.full_queue,
        // One REST request at a time keeps the cloud's order the device's order.
        max_inflight: if http { 1 } else { config.max_inflight },
        max_message_size: config.max_message_size,
        backoff: config.backoff.clone(),
        // The WebSockets watch themselves (they ping); over MQTT, 1.5 keepalives of silence.
        watchdog: (!http).then(|| config.keepalive.mul_f64(1.5)),
        ..EngineConfig::new(config.device_id, rand::random())
    }
}

impl Client {
    /// Starts the client's connection task on the current tokio runtime and returns the handle
    /// and the notification stream. The first connection attempt starts at once; failures are
    /// reported as [`Notification::Disconnected`] and retried with backoff.
    pub fn connect(config: ClientConfig) -> Result<(Client, Notifications), ClientError> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Err(ClientError::NoRuntime);
        };
        // Built even for plain connections: REST and the WebSockets take it whatever the scheme.
        let tls = Arc::new(tls::client_config(&config.tls)?);
        Client::start(&handle, tls, config)
    }

    /// Starts the client on a [`Runtime`] shared with other devices, with the runtime's TLS
    /// configuration for these settings (built once per distinct [`TlsOptions`]). Needs no
    /// ambient tokio runtime: callable from any thread.
    pub fn connect_in(
        runtime: &Runtime,
        config: ClientConfig,
    ) -> Result<(Client, Notifications), ClientError> {
        let tls = runtime.tls(&config.tls)?;
        Client::start(runtime.handle(), tls, config)
    }

    fn start(
        handle: &tokio::runtime::Handle,
        tls: Arc<rustls::ClientConfig>,
        config: ClientConfig,
    ) -> Result<(Client, Notifications), ClientError> {
        let rest = Arc::new(Rest::new(&config, &tls)?);
        let clock = Clock::new();
        let opened = match &config.outbox.dir {
            Some(dir) => Some(durable::start(dir, &config.outbox)?),
            None => None,
        };
        let mut settings = engine_config(&config);
        if let Some(opened) = &opened {
            settings.journal = true;
            // Everything the last run left goes back in, even beyond this run's queue size.
            settings.queue_size = settings.queue_size.max(opened.messages.len());
        }
        let mut engine = Engine::new(settings, clock.now());
        let mut report = None;
        let durable = opened.map(|opened| {
            engine.continue_ids_after(opened.last_id);
            let refused = engine.restore(opened.messages);
            debug_assert!(refused.is_empty(), "the queue was made large enough");
            report = opened.report;
            opened.tracker
        });
        let shared = Arc::new(Shared::new(engine, durable, clock));
        let (notifier, notifications) =
            notification::channel(config.notification_capacity, shared.clone());
        if let (Some(report), Some(dir)) = (report, &config.outbox.dir) {
            tracing::warn!(dir = %dir.display(), "{report}");
            notifier.send(Notification::Error {
                topic: format!("outbox:{}", dir.display()),
                error: mode_core::proto::DecodeError {
                    kind: mode_core::proto::MessageKind::Event,
                    fault: mode_core::proto::DecodeFault::Truncated,
                    path: String::new(),
                    detail: report,
                    line_column: None,
                },
            });
        }
        let config = Arc::new(config);
        let task = task::Task::new(config.clone(), tls, rest.clone(), shared.clone(), notifier);
        runtime::spawn_on(handle, task.run());
        let inner = Inner {
            shared,
            config,
            rest,
        };
        Ok((
            Client {
                inner: Arc::new(inner),
            },
            notifications,
        ))
    }

    /// The device this client speaks for.
    pub fn device_id(&self) -> DeviceId {
        self.inner.config.device_id
    }

    /// True while connected and subscribed.
    pub fn is_connected(&self) -> bool {
        self.inner
            .shared
            .connected
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// A snapshot of the client's counters.
    pub fn stats(&self) -> Stats {
        let shared = &self.inner.shared;
        let mut stats = {
            let state = shared.lock();
            let mut stats = state.engine.stats().clone();
            stats.outbox_unrecovered = state.durable.as_ref().map_or(0, Tracker::unrecovered);
            stats
        };
        stats.notifications_dropped = shared
            .notifications_dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        stats
    }

    // -----------------------------------------------------------------------------------------
    // Queueing: one path for every outgoing message.
    // -----------------------------------------------------------------------------------------

    /// Refuses what the HTTP transport has no REST form for, before anything is queued.
    fn http_check(&self, kv_key: Option<&str>) -> Result<(), ClientError> {
        if self.inner.config.transport != Transport::Http {
            return Ok(());
        }
        match kv_key {
            Some(key) => paths::kv_key_path(self.device_id(), key)
                .map(drop)
                .map_err(ClientError::from),
            None => Err(ClientError::Unsupported(http::NO_REST_FORM)),
        }
    }

    /// Queues one message with `send` under the lock, with a sender for its outcome; with a
    /// durable outbox, also the ticket its sender waits on before the send returns.
    fn submit_locked(
        &self,
        state: &mut State,
        send: impl FnOnce(&mut State) -> Result<MessageId, SendError>,
    ) -> Result<(Delivery, Option<Ticket>), ClientError> {
        if let Some(durable) = &state.durable {
            durable.check()?;
        }
        let id = send(state)?;
        let State {
            engine, durable, ..
        } = state;
        let ticket = match durable {
            Some(durable) => {
                let ticket = durable.take_journal(engine, &HashSet::new());
                durable.holds(id).then_some(ticket)
            }
            None => None,
        };
        let (tx, rx) = oneshot::channel();
        state.deliveries.insert(id, tx);
        Ok((Delivery { id, rx }, ticket))
    }

    /// False when the durable outbox holds its size bound and a send must wait or fail; under
    /// `DropOldest` it makes room first (the oldest messages not on the network go).
    fn store_room(&self, state: &mut State) -> bool {
        let State {
            engine, durable, ..
        } = state;
        let Some(durable) = durable else {
            return true;
        };
        if !durable.is_full() {
            return true;
        }
        if self.inner.config.full_queue == FullQueuePolicy::DropOldest {
            while durable.is_full() && engine.drop_oldest().is_some() {
                durable.take_journal(engine, &HashSet::new());
            }
            return true;
        }
        false
    }

    /// Queues without waiting for room.
    fn try_submit(
        &self,
        send: impl FnOnce(&mut State) -> Result<MessageId, SendError>,
    ) -> Result<(Delivery, Option<Ticket>), ClientError> {
        let shared = &self.inner.shared;
        if shared.is_closed() {
            return Err(ClientError::Closed);
        }
        let submitted = {
            let mut state = shared.lock();
            if !self.store_room(&mut state) {
                let capacity = state.durable.as_ref().map_or(0, Tracker::len);
                return Err(ClientError::QueueFull { capacity });
            }
            self.submit_locked(&mut state, send)?
        };
        shared.wake.notify();
        Ok(submitted)
    }

    /// Queues without waiting for room; with a durable outbox, blocks until the message is
    /// written.
    fn try_enqueue(
        &self,
        send: impl FnOnce(&mut State) -> Result<MessageId, SendError>,
    ) -> Result<Delivery, ClientError> {
        let (delivery, ticket) = self.try_submit(send)?;
        if let Some(ticket) = ticket {
            ticket.wait_blocking()?;
        }
        Ok(delivery)
    }

    /// Queues, waiting for room first when the policy is `Block`, then (with a durable outbox)
    /// until the message is written.
    async fn enqueue(
        &self,
        send: impl FnOnce(&mut State) -> Result<MessageId, SendError>,
    ) -> Result<Delivery, ClientError> {
        let (delivery, ticket) = if self.inner.config.full_queue == FullQueuePolicy::Block {
            self.submit_when_room(send).await?
        } else {
            self.try_submit(send)?
        };
        if let Some(ticket) = ticket {
            ticket.wait().await?;
        }
        Ok(delivery)
    }

    /// Queues once there is room (in the queue and in the durable outbox).
    async fn submit_when_room(
        &self,
        send: impl FnOnce(&mut State) -> Result<MessageId, SendError>,
    ) -> Result<(Delivery, Option<Ticket>), ClientError> {
        let shared = &self.inner.shared;
        let mut send = Some(send);
        loop {
            if shared.is_closed() {
                return Err(ClientError::Closed);
            }
            {
                let mut state = shared.lock();
                let room = state.engine.room() > 0 && self.store_room(&mut state);
                if room || state.engine.is_closing() {
                    let send = send.take().expect("sent only once: this returns");
                    let submitted = self.submit_locked(&mut state, send)?;
                    drop(state);
                    shared.wake.notify();
                    return Ok(submitted);
                }
            }
            // Full: wait for room. Counted as a waiter (the task wakes waiters only when there
            // are some) and registered before looking again, so a release between the look and
            // the wait is never missed.
            let _waiting = RoomWaiter::new(shared);
            let mut room = pin!(shared.room.notified());
            room.as_mut().enable();
            let full = {
                let mut state = shared.lock();
                let room = state.engine.room() > 0 && self.store_room(&mut state);
                !room && !state.engine.is_closing()
            };
            if full && !shared.is_closed() {
                room.await;
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Events, kv writes, bulk data, data for routing
    // -----------------------------------------------------------------------------------------

    /// Sends an event to the device's home (MQTT QoS 0 or 1). Waits only for queue room.
    pub async fn send_event(
        &self,
        event_type: &str,
        data: Map<String, Value>,
        qos: Qos,
    ) -> Result<Delivery, ClientError> {
        self.enqueue(|state| state.engine.send_event(event_type, data, qos))
            .await
    }

    /// [`send_event`](Self::send_event) without waiting.
    pub fn try_send_event(
        &self,
        event_type: &str,
        data: Map<String, Value>,
        qos: Qos,
    ) -> Result<Delivery, ClientError> {
        self.try_enqueue(|state| state.engine.send_event(event_type, data, qos))
    }

    /// [`try_send_event`](Self::try_send_event) with the data as JSON text (one JSON object),
    /// sent as it is: for callers that hold JSON text already (the C and Python front ends).
    pub fn try_send_event_json(
        &self,
        event_type: &str,
        data: &str,
        qos: Qos,
    ) -> Result<Delivery, ClientError> {
        self.try_enqueue(|state| state.engine.send_event_json(event_type, data, qos))
    }

    /// Sets `key` to `value` in the device's cloud store (QoS 1). The mirror changes when the
    /// cloud broadcasts the change with its rev ([`Notification::KvChanged`]).
    pub async fn kv_set(&self, key: &str, value: Value) -> Result<Delivery, ClientError> {
        self.http_check(Some(key))?;
        self.enqueue(|state| state.engine.kv_set(key, value)).await
    }

    /// [`kv_set`](Self::kv_set) without waiting.
    pub fn try_kv_set(&self, key: &str, value: Value) -> Result<Delivery, ClientError> {
        self.http_check(Some(key))?;
        self.try_enqueue(|state| state.engine.kv_set(key, value))
    }

    /// Deletes `key` from the device's cloud store (QoS 1).
    pub async fn kv_delete(&self, key: &str) -> Result<Delivery, ClientError> {
        self.http_check(Some(key))?;
        self.enqueue(|state| state.engine.kv_delete(key)).await
    }

    /// [`kv_delete`](Self::kv_delete) without waiting.
    pub fn try_kv_delete(&self, key: &str) -> Result<Delivery, ClientError> {
        self.http_check(Some(key))?;
        self.try_enqueue(|state| state.engine.kv_delete(key))
    }

    /// Sends raw bytes to the smart module of `label`.
    pub async fn send_bulk_data(
        &self,
        label: &str,
        data: &[u8],
        qos: Qos,
    ) -> Result<Delivery, ClientError> {
        self.http_check(None)?;
        self.enqueue(|state| state.engine.send_bulk_data(label, data, qos))
            .await
    }

    /// [`send_bulk_data`](Self::send_bulk_data) without waiting.
    pub fn try_send_bulk_data(
        &self,
        label: &str,
        data: &[u8],
        qos: Qos,
    ) -> Result<Delivery, ClientError> {
        self.http_check(None)?;
        self.try_enqueue(|state| state.engine.send_bulk_data(label, data, qos))
    }

    /// Publishes data for routing on `/devices/{id}/data`.
    pub async fn send_data_for_routing(
        &self,
        data: &[u8],
        qos: Qos,
    ) -> Result<Delivery, ClientError> {
        self.http_check(None)?;
        self.enqueue(|state| state.engine.send_data(data, qos))
            .await
    }

    /// [`send_data_for_routing`](Self::send_data_for_routing) without waiting.
    pub fn try_send_data_for_routing(
        &self,
        data: &[u8],
        qos: Qos,
    ) -> Result<Delivery, ClientError> {
        self.http_check(None)?;
        self.try_enqueue(|state| state.engine.send_data(data, qos))
    }

    // -----------------------------------------------------------------------------------------
    // Bulk-data request / response
    // -----------------------------------------------------------------------------------------

    fn pending(
        &self,
        delivery: Delivery,
        request_id: String,
        rx: oneshot::Receiver<BulkDataResponse>,
    ) -> PendingResponse {
        PendingResponse {
            request_id,
            delivery,
            rx,
            shared: self.inner.shared.clone(),
        }
    }

    /// Sends a bulk-data request to the module of `label` and waits up to `timeout` for the
    /// response with the same `requestId` (subscribing to the label's responses first).
    pub async fn bulk_request(
        &self,
        label: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<BulkDataResponse, ClientError> {
        self.http_check(None)?;
        let mut waiter = None;
        let delivery = self
            .enqueue(|engine| self.bulk_with_waiter(engine, label, payload, &mut waiter))
            .await?;
        let (request_id, rx) = waiter.expect("a queued request has a waiter");
        self.pending(delivery, request_id, rx)
            .response(timeout)
            .await
    }

    /// Sends a bulk-data request without waiting; await the response on the returned handle.
    pub fn try_bulk_request(
        &self,
        label: &str,
        payload: Value,
    ) -> Result<PendingResponse, ClientError> {
        self.http_check(None)?;
        let mut waiter = None;
        let delivery =
            self.try_enqueue(|state| self.bulk_with_waiter(state, label, payload, &mut waiter))?;
        let (request_id, rx) = waiter.expect("a queued request has a waiter");
        Ok(self.pending(delivery, request_id, rx))
    }

    /// Queues the request and files its waiter. Runs under the state lock, so the waiter is
    /// there before the connection task can see the response.
    fn bulk_with_waiter(
        &self,
        state: &mut State,
        label: &str,
        payload: Value,
        waiter: &mut Option<(String, oneshot::Receiver<BulkDataResponse>)>,
    ) -> Result<MessageId, SendError> {
        let now = self.inner.shared.clock.now();
        let (id, request_id) = state.engine.bulk_request(label, payload, None, now)?;
        let (tx, rx) = oneshot::channel();
        state.bulk.insert(request_id.clone(), tx);
        *waiter = Some((request_id, rx));
        Ok(id)
    }

    // -----------------------------------------------------------------------------------------
    // The local DDP mirror
    // -----------------------------------------------------------------------------------------

    /// The value of `key` in the local mirror of the cloud store.
    pub fn kv_get(&self, key: &str) -> Option<Value> {
        self.inner.shared.lock().engine.mirror().get(key).cloned()
    }

    /// The whole mirror as one JSON object, keys in order.
    pub fn kv_snapshot(&self) -> Value {
        self.inner.shared.lock().engine.mirror().snapshot()
    }

    /// The mirror's revision; `None` until the first `reload` arrived.
    pub fn kv_rev(&self) -> Option<u64> {
        let state = self.inner.shared.lock();
        let mirror = state.engine.mirror();
        (mirror.reloads() > 0).then(|| mirror.rev())
    }

    // -----------------------------------------------------------------------------------------
    // REST
    // -----------------------------------------------------------------------------------------

    /// What the cloud knows of this device (`GET /devices/{id}`). A plain REST request: it does
    /// not involve the connection task.
    pub async fn device_info(&self) -> Result<DeviceInfo, ClientError> {
        let path = paths::device_path(self.device_id());
        let body = self
            .inner
            .rest
            .send(::http::Method::GET, &path, None)
            .await?;
        Ok(DeviceInfo::decode(&body)?)
    }

    /// Turns claim mode on (`POST /deviceRegistration`), so an app can claim the device into a
    /// home; returns the cloud's answer (e.g. `claimExpirationTime`). A plain REST request.
    pub async fn enter_claim_mode(&self) -> Result<Value, ClientError> {
        let mut body = Map::new();
        body.insert("deviceId".into(), self.device_id().into());
        body.insert("claimable".into(), true.into());
        let body = serde_json::to_vec(&body).expect("a JSON object serializes");
        let answer = self
            .inner
            .rest
            .send(::http::Method::POST, paths::REGISTRATION_PATH, Some(body))
            .await?;
        if answer.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&answer)
            .map_err(|e| ClientError::Http(format!("claim mode answer is not JSON: {e}")))
    }

    // -----------------------------------------------------------------------------------------
    // Closing
    // -----------------------------------------------------------------------------------------

    /// Closes the client: no new messages are accepted, queued ones are delivered until
    /// `timeout`, then the client unsubscribes and sends DISCONNECT. Fails with
    /// [`ClientError::CloseIncomplete`] when messages were left undelivered.
    pub async fn close(&self, timeout: Duration) -> Result<(), ClientError> {
        match start_close(&self.inner.shared, timeout) {
            Some(rx) => rx.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }

    /// Starts [`close`](Self::close) and returns at once; the notification stream ends when
    /// the client has closed.
    pub fn try_close(&self, timeout: Duration) {
        let _ = start_close(&self.inner.shared, timeout);
    }
}

/// A device created by [`provision`]: its id and key, and what the cloud says of it.
#[derive(Debug, Clone)]
pub struct ProvisionedDevice {
    /// The new device's id.
    pub device_id: DeviceId,
    /// Its API key (redacted in `Debug`).
    pub api_key: ApiKey,
    /// The device object the cloud returned.
    pub info: DeviceInfo,
}

/// Provisions a new device with a project's provisioning `token` (`POST /devices`,
/// `{"token": ...}`), before any client exists. `api_url` is the REST base URL (e.g.
/// [`DEFAULT_API_URL`]); `tls` says whom to trust.
pub async fn provision(
    api_url: &str,
    token: &str,
    tls: &TlsOptions,
) -> Result<ProvisionedDevice, ClientError> {
    let tls_config = Arc::new(tls::client_config(tls)?);
    let timeout = Duration::from_secs(30);
    let rest = Rest::build(api_url, None, timeout, timeout, 1024 * 1024, &tls_config)?;
    let mut body = Map::new();
    body.insert("token".into(), token.into());
    let body = serde_json::to_vec(&body).expect("a JSON object serializes");
    let answer = rest
        .send(::http::Method::POST, paths::PROVISION_PATH, Some(body))
        .await?;
    let info = DeviceInfo::decode(&answer)?;
    let api_key = match info.raw.get("apiKey") {
        Some(Value::String(key)) if !key.is_empty() => ApiKey::new(key.clone()),
        _ => {
            return Err(ClientError::Http(
                "the provisioning answer holds no apiKey".to_owned(),
            ));
        }
    };
    let mut info = info;
    info.raw.remove("apiKey");
    Ok(ProvisionedDevice {
        device_id: info.id,
        api_key,
        info,
    })
}
