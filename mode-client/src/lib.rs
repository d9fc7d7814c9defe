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

mod bulk;
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
mod provision;
mod queue;
mod rest;
mod runtime;
mod shared;
mod socket;
mod task;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use mode_core::engine::{Engine, EngineConfig};
use serde_json::{Map, Value};

pub use bulk::PendingResponse;
pub use config::{
    ApiKey, ClientConfig, ClientConfigBuilder, ConfigError, DEFAULT_API_URL, DEFAULT_MQTT_HOST,
    DEFAULT_OUTBOX_MAX_BYTES, DeliveryFn, DeliveryHook, FullQueuePolicy, SyncPolicy, TlsOptions,
    Transport,
};
pub use error::{ClientError, error_chain};
pub use mode_core::ddp::Change;
pub use mode_core::engine::{DisconnectReason, MessageId, Stats};
pub use notification::{Notification, Notifications};
pub use provision::{ProvisionedDevice, provision};
pub use queue::Delivery;
pub use runtime::Runtime;

use self::clock::Clock;
use self::durable::Tracker;
use self::queue::start_close;
use self::rest::Rest;
use self::shared::Shared;
use mode_core::proto::{DeviceId, DeviceInfo, Qos, rest as paths};

/// Each sending call in its two forms (see [`Client`]): `$name`, async, waits for queue room
/// under the `Block` policy; `$try_name` never waits. Both first run `http_check` when given
/// (`Some(key)`: over HTTP the kv key must fit in a REST path; `None`: the message has no REST
/// form, so the HTTP transport refuses it), then queue the message with `$send`.
macro_rules! sends {
    ($(
        $(#[$doc:meta])*
        $name:ident, $try_name:ident($($arg:ident: $ty:ty),*) $([http_check: $rest:expr])?
            => $send:expr;
    )*) => {$(
        $(#[$doc])*
        pub async fn $name(&self, $($arg: $ty),*) -> Result<Delivery, ClientError> {
            $(self.http_check($rest)?;)?
            self.enqueue($send).await
        }

        #[doc = concat!(
            "[`", stringify!($name), "`](Self::", stringify!($name), ") without waiting."
        )]
        pub fn $try_name(&self, $($arg: $ty),*) -> Result<Delivery, ClientError> {
            $(self.http_check($rest)?;)?
            self.try_enqueue($send)
        }
    )*};
}

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
    // Events, kv writes, bulk data, data for routing
    // -----------------------------------------------------------------------------------------

    sends! {
        /// Sends an event to the device's home (MQTT QoS 0 or 1). Waits only for queue room.
        send_event, try_send_event(event_type: &str, data: Map<String, Value>, qos: Qos)
            => |state| state.engine.send_event(event_type, data, qos);
        /// Sets `key` to `value` in the device's cloud store (QoS 1). The mirror changes when
        /// the cloud broadcasts the change with its rev ([`Notification::KvChanged`]).
        kv_set, try_kv_set(key: &str, value: Value) [http_check: Some(key)]
            => |state| state.engine.kv_set(key, value);
        /// Deletes `key` from the device's cloud store (QoS 1).
        kv_delete, try_kv_delete(key: &str) [http_check: Some(key)]
            => |state| state.engine.kv_delete(key);
        /// Sends raw bytes to the smart module of `label`.
        send_bulk_data, try_send_bulk_data(label: &str, data: &[u8], qos: Qos) [http_check: None]
            => |state| state.engine.send_bulk_data(label, data, qos);
        /// Publishes data for routing on `/devices/{id}/data`.
        send_data_for_routing, try_send_data_for_routing(data: &[u8], qos: Qos)
            [http_check: None] => |state| state.engine.send_data(data, qos);
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
