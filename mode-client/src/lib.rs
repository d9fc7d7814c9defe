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
//! queue does is the [`FullQueuePolicy`]; nothing is dropped silently.

#![deny(missing_docs)]

mod clock;
mod config;
mod error;
mod gate;
mod http;
mod notification;
mod outbox;
mod rest;
mod shared;
mod task;
mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

pub use config::{
    ApiKey, ClientConfig, ClientConfigBuilder, ConfigError, DEFAULT_API_URL, DEFAULT_MQTT_HOST,
    DeliveryFn, DeliveryHook, FullQueuePolicy, TlsOptions, Transport,
};
pub use error::ClientError;
pub use notification::{DisconnectReason, Notification, Notifications};
pub use shared::Stats;

use self::outbox::Message;
use self::rest::Rest;
use self::shared::Shared;
use self::task::Cmd;
use mode_core::proto::{BulkDataResponse, DeviceId, DeviceInfo, Event, Qos, rest as paths};
use mode_core::session::{Outgoing, Session};

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
    cmds: mpsc::UnboundedSender<Cmd>,
    permits: Arc<gate::Gate>,
    config: Arc<ClientConfig>,
    rest: Arc<Rest>,
}

/// The identity of one accepted message: unique for the client's lifetime, increasing in the
/// order the sends were accepted, kept across re-sends after a reconnect.
pub type MessageId = u64;

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

impl std::future::Future for Delivery {
    type Output = Result<(), ClientError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.rx)
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
    cmds: mpsc::UnboundedSender<Cmd>,
}

impl PendingResponse {
    /// The request id the response will carry.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Waits up to `timeout` for the response.
    pub async fn response(self, timeout: Duration) -> Result<BulkDataResponse, ClientError> {
        let PendingResponse {
            request_id,
            delivery,
            rx,
            cmds,
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
                let _ = cmds.send(Cmd::ForgetBulk(request_id));
                Err(ClientError::Timeout(timeout))
            }
        }
    }
}

impl Client {
    /// Starts the client's connection task on the current tokio runtime and returns the handle
    /// and the notification stream. The first connection attempt starts at once; failures are
    /// reported as [`Notification::Disconnected`] and retried with backoff.
    pub fn connect(config: ClientConfig) -> Result<(Client, Notifications), ClientError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ClientError::NoRuntime);
        }
        // Built even for plain connections: REST and the WebSockets take it whatever the scheme.
        let tls = Arc::new(tls::client_config(&config.tls)?);
        let rest = Arc::new(Rest::new(&config, &tls)?);
        let session = Session::new(config.device_id, rand::random());
        let shared = Arc::new(Shared::new(session));
        let (notifier, notifications) =
            notification::channel(config.notification_capacity, shared.clone());
        let permits = gate::Gate::new(config.queue_size);
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let config = Arc::new(config);
        let task = task::Task::new(
            config.clone(),
            tls,
            rest.clone(),
            shared.clone(),
            notifier,
            permits.clone(),
            cmd_rx,
        );
        tokio::spawn(task.run());
        let inner = Inner {
            shared,
            cmds,
            permits,
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
        self.inner.shared.stats()
    }

    // -----------------------------------------------------------------------------------------
    // Queueing: one path for every outgoing publish.
    // -----------------------------------------------------------------------------------------

    fn check(&self, out: &Outgoing) -> Result<(), ClientError> {
        if self.inner.shared.is_closed() {
            return Err(ClientError::Closed);
        }
        if self.inner.config.transport == Transport::Http {
            // Only what has a REST form can go; refuse the rest now rather than at send time.
            http::rest_request(self.device_id(), &out.topic, &out.payload)?;
        }
        let size = publish_packet_size(out);
        let max = self.inner.config.max_message_size;
        if size > max {
            return Err(ClientError::MessageTooLarge { size, max });
        }
        Ok(())
    }

    async fn enqueue(&self, out: Outgoing) -> Result<Delivery, ClientError> {
        self.check(&out)?;
        let permit = match self.inner.config.full_queue {
            FullQueuePolicy::Block => Some(
                self.inner
                    .permits
                    .acquire()
                    .await
                    .ok_or(ClientError::Closed)?,
            ),
            FullQueuePolicy::DropOldest | FullQueuePolicy::Error => {
                self.inner.permits.try_acquire()
            }
        };
        self.submit(out, permit)
    }

    fn try_enqueue(&self, out: Outgoing) -> Result<Delivery, ClientError> {
        self.check(&out)?;
        let permit = self.inner.permits.try_acquire();
        self.submit(out, permit)
    }

    fn submit(&self, out: Outgoing, permit: Option<gate::Slot>) -> Result<Delivery, ClientError> {
        if permit.is_none() && self.inner.config.full_queue != FullQueuePolicy::DropOldest {
            return Err(ClientError::QueueFull {
                capacity: self.inner.config.queue_size,
            });
        }
        let (tx, rx) = oneshot::channel();
        let id = self
            .inner
            .shared
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let message = Message {
            seq: id,
            topic: out.topic,
            payload: out.payload,
            qos: out.qos,
            done: Some(tx),
            permit,
        };
        self.inner
            .cmds
            .send(Cmd::Publish(message))
            .map_err(|_| ClientError::Closed)?;
        Ok(Delivery { id, rx })
    }

    fn event_outgoing(
        &self,
        event_type: &str,
        data: Map<String, Value>,
        qos: Qos,
    ) -> Result<Outgoing, ClientError> {
        let event = Event::new(event_type, data);
        Ok(self.inner.shared.session().event(&event, qos)?)
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
        self.enqueue(self.event_outgoing(event_type, data, qos)?)
            .await
    }

    /// [`send_event`](Self::send_event) without waiting.
    pub fn try_send_event(
        &self,
        event_type: &str,
        data: Map<String, Value>,
        qos: Qos,
    ) -> Result<Delivery, ClientError> {
        self.try_enqueue(self.event_outgoing(event_type, data, qos)?)
    }

    /// Sets `key` to `value` in the device's cloud store (QoS 1). The mirror changes when the
    /// cloud broadcasts the change with its rev ([`Notification::KvSet`]).
    pub async fn kv_set(&self, key: &str, value: Value) -> Result<Delivery, ClientError> {
        let out = self.inner.shared.session().kv_set(key, value)?;
        self.enqueue(out).await
    }

    /// [`kv_set`](Self::kv_set) without waiting.
    pub fn try_kv_set(&self, key: &str, value: Value) -> Result<Delivery, ClientError> {
        let out = self.inner.shared.session().kv_set(key, value)?;
        self.try_enqueue(out)
    }

    /// Deletes `key` from the device's cloud store (QoS 1).
    pub async fn kv_delete(&self, key: &str) -> Result<Delivery, ClientError> {
        let out = self.inner.shared.session().kv_delete(key)?;
        self.enqueue(out).await
    }

    /// [`kv_delete`](Self::kv_delete) without waiting.
    pub fn try_kv_delete(&self, key: &str) -> Result<Delivery, ClientError> {
        let out = self.inner.shared.session().kv_delete(key)?;
        self.try_enqueue(out)
    }

    /// Sends raw bytes to the smart module of `label`.
    pub async fn send_bulk_data(
        &self,
        label: &str,
        data: &[u8],
        qos: Qos,
    ) -> Result<Delivery, ClientError> {
        let out = self.inner.shared.session().bulk_data(label, data, qos)?;
        self.enqueue(out).await
    }

    /// [`send_bulk_data`](Self::send_bulk_data) without waiting.
    pub fn try_send_bulk_data(
        &self,
        label: &str,
        data: &[u8],
        qos: Qos,
    ) -> Result<Delivery, ClientError> {
        let out = self.inner.shared.session().bulk_data(label, data, qos)?;
        self.try_enqueue(out)
    }

    /// Publishes data for routing on `/devices/{id}/data`.
    pub async fn send_data_for_routing(
        &self,
        data: &[u8],
        qos: Qos,
    ) -> Result<Delivery, ClientError> {
        let out = self.inner.shared.session().data(data, qos);
        self.enqueue(out).await
    }

    /// [`send_data_for_routing`](Self::send_data_for_routing) without waiting.
    pub fn try_send_data_for_routing(
        &self,
        data: &[u8],
        qos: Qos,
    ) -> Result<Delivery, ClientError> {
        let out = self.inner.shared.session().data(data, qos);
        self.try_enqueue(out)
    }

    // -----------------------------------------------------------------------------------------
    // Bulk-data request / response
    // -----------------------------------------------------------------------------------------

    fn bulk_request_outgoing(
        &self,
        label: &str,
        payload: Value,
    ) -> Result<(String, Outgoing, String), ClientError> {
        let mut session = self.inner.shared.session();
        let response_topic = session.watch_bulk_responses(label)?;
        let (request_id, out) = session.bulk_request(label, payload, Qos::AtLeastOnce)?;
        Ok((request_id, out, response_topic))
    }

    fn expect(
        &self,
        request_id: &str,
        response_topic: String,
    ) -> Result<oneshot::Receiver<BulkDataResponse>, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .cmds
            .send(Cmd::ExpectBulk {
                request_id: request_id.to_owned(),
                response_topic,
                reply,
            })
            .map_err(|_| ClientError::Closed)?;
        Ok(rx)
    }

    /// Sends a bulk-data request to the module of `label` and waits up to `timeout` for the
    /// response with the same `requestId` (subscribing to the label's responses first).
    pub async fn bulk_request(
        &self,
        label: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<BulkDataResponse, ClientError> {
        let (request_id, out, topic) = self.bulk_request_outgoing(label, payload)?;
        self.check(&out)?;
        let rx = self.expect(&request_id, topic)?;
        let delivery = self.enqueue(out).await?;
        PendingResponse {
            request_id,
            delivery,
            rx,
            cmds: self.inner.cmds.clone(),
        }
        .response(timeout)
        .await
    }

    /// Sends a bulk-data request without waiting; await the response on the returned handle.
    pub fn try_bulk_request(
        &self,
        label: &str,
        payload: Value,
    ) -> Result<PendingResponse, ClientError> {
        let (request_id, out, topic) = self.bulk_request_outgoing(label, payload)?;
        self.check(&out)?;
        let rx = self.expect(&request_id, topic)?;
        let delivery = match self.try_enqueue(out) {
            Ok(delivery) => delivery,
            Err(err) => {
                let _ = self.inner.cmds.send(Cmd::ForgetBulk(request_id));
                return Err(err);
            }
        };
        Ok(PendingResponse {
            request_id,
            delivery,
            rx,
            cmds: self.inner.cmds.clone(),
        })
    }

    // -----------------------------------------------------------------------------------------
    // The local DDP mirror
    // -----------------------------------------------------------------------------------------

    /// The value of `key` in the local mirror of the cloud store.
    pub fn kv_get(&self, key: &str) -> Option<Value> {
        self.inner.shared.session().mirror().get(key).cloned()
    }

    /// The whole mirror as one JSON object, keys in order.
    pub fn kv_snapshot(&self) -> Value {
        self.inner.shared.session().mirror().snapshot()
    }

    /// The mirror's revision; `None` until the first `reload` arrived.
    pub fn kv_rev(&self) -> Option<u64> {
        let session = self.inner.shared.session();
        let mirror = session.mirror();
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

    fn start_close(&self, timeout: Duration) -> Option<oneshot::Receiver<Result<(), ClientError>>> {
        self.inner
            .shared
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        // Senders waiting for queue room give up now.
        self.inner.permits.close();
        let (reply, rx) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        self.inner.cmds.send(Cmd::Close { deadline, reply }).ok()?;
        Some(rx)
    }

    /// Closes the client: no new messages are accepted, queued ones are delivered until
    /// `timeout`, then the client unsubscribes and sends DISCONNECT. Fails with
    /// [`ClientError::CloseIncomplete`] when messages were left undelivered.
    pub async fn close(&self, timeout: Duration) -> Result<(), ClientError> {
        match self.start_close(timeout) {
            Some(rx) => rx.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }

    /// Starts [`close`](Self::close) and returns at once; the notification stream ends when
    /// the client has closed.
    pub fn try_close(&self, timeout: Duration) {
        let _ = self.start_close(timeout);
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
    let tls_config = tls::client_config(tls)?;
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

/// The size of the MQTT PUBLISH packet that carries `out`: fixed header, remaining length,
/// topic, packet id (QoS 1) and payload. Checked before queueing so an oversized message fails
/// its caller instead of breaking the connection later.
fn publish_packet_size(out: &Outgoing) -> usize {
    let remaining =
        2 + out.topic.len() + if out.qos == Qos::AtLeastOnce { 2 } else { 0 } + out.payload.len();
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_size_counts_header_length_topic_packet_id_and_payload() {
        let out = |payload: usize, qos| Outgoing {
            topic: "/devices/1/event".into(),
            payload: vec![0; payload],
            qos,
        };
        // 1 type byte + 1 length byte + 2 + 16 topic + 2 packet id + 10 payload.
        assert_eq!(publish_packet_size(&out(10, Qos::AtLeastOnce)), 32);
        assert_eq!(publish_packet_size(&out(10, Qos::AtMostOnce)), 30);
        // Remaining length 128 takes two bytes.
        assert_eq!(publish_packet_size(&out(110, Qos::AtMostOnce)), 131);
    }
}
