//! How a [`Client`](super::Client) connects: identity, transport, endpoints, TLS, limits and the
//! reconnect policy. Built with [`ClientConfig::builder`]; every host, port and TLS setting can be
//! overridden so the same client talks to the real cloud and to the local simulator.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use mode_core::backoff::BackoffPolicy;
use mode_core::proto::DeviceId;

use super::error::ClientError;
pub use super::error::ConfigError;

/// Builder setters that only store their argument: each is its doc comment, its name and
/// argument, and the field of the [`ClientConfig`] it sets to what.
macro_rules! setters {
    ($(
        $(#[$doc:meta])*
        $name:ident($arg:ident: $ty:ty) => $($field:ident).+ = $value:expr;
    )*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, $arg: $ty) -> Self {
            self.config.$($field).+ = $value;
            self
        }
    )*};
}

#[path = "config_builder.rs"]
mod builder;
pub use builder::ClientConfigBuilder;

#[path = "outbox_config.rs"]
mod outbox;
pub use outbox::{DEFAULT_OUTBOX_MAX_BYTES, SyncPolicy};
pub(crate) use outbox::{Opened, OutboxSettings};

/// A device API key. It never shows itself: `Debug` and `Display` print `<redacted>`, so a key
/// cannot leak into a log line through a config or an error.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps `key`.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The key itself, for the few places that must send it (MQTT password, `Authorization`).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        ApiKey::new(key)
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        ApiKey(key)
    }
}

/// How the device talks to the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// MQTT 3.1.1 over TCP (TLS on 8883 by default).
    #[default]
    Mqtt,
    /// MQTT 3.1.1 over WebSocket (`wss://` by default).
    MqttWebSocket,
    /// REST for events and writes, WebSockets for commands and DDP sync.
    Http,
}

/// What a send does when the outgoing queue is full: `Block` (the default; the async call waits
/// for room, the `try_` call fails with [`ClientError::QueueFull`](super::ClientError::QueueFull)),
/// `DropOldest` (each drop counted in [`Stats`](super::Stats) and announced by
/// [`Notification::MessageDropped`](super::Notification::MessageDropped)) or `Error`.
pub use mode_core::engine::FullQueuePolicy;

/// TLS settings, shared by every transport. The server is verified against the webpki roots
/// (Mozilla's CA list) plus any extra CA file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Use TLS at all (default true). Plain TCP is for the local simulator only.
    pub enabled: bool,
    /// Trust the webpki roots (default true).
    pub webpki_roots: bool,
    /// Extra CA certificates to trust, PEM files.
    pub extra_ca_files: Vec<PathBuf>,
    /// Client certificate chain and private key (PEM) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate. For local development against a self-signed server
    /// only: it removes all protection against an impostor.
    pub danger_accept_invalid_certs: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            enabled: true,
            webpki_roots: true,
            extra_ca_files: Vec::new(),
            client_cert: None,
            danger_accept_invalid_certs: false,
        }
    }
}

/// The real cloud's MQTT host.
pub const DEFAULT_MQTT_HOST: &str = "mqtt.tinkermode.com";
/// The real cloud's REST and WebSocket base URL.
pub const DEFAULT_API_URL: &str = "https://api.tinkermode.com";

/// Everything a [`Client`](super::Client) needs. Build it with [`ClientConfig::builder`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) device_id: DeviceId,
    pub(crate) api_key: ApiKey,
    pub(crate) transport: Transport,
    pub(crate) mqtt_host: String,
    pub(crate) mqtt_port: Option<u16>,
    pub(crate) mqtt_ws_url: Option<String>,
    /// None when [`ClientConfigBuilder::server`] named a non-HTTP server and no REST URL was
    /// given: REST calls then fail with [`ConfigError::NoApiUrl`].
    pub(crate) api_url: Option<String>,
    pub(crate) tls: TlsOptions,
    pub(crate) keepalive: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) queue_size: usize,
    pub(crate) full_queue: FullQueuePolicy,
    pub(crate) max_message_size: usize,
    pub(crate) max_inflight: u16,
    pub(crate) notification_capacity: usize,
    pub(crate) backoff: BackoffPolicy,
    pub(crate) delivery_hook: Option<DeliveryHook>,
    pub(crate) outbox: OutboxSettings,
}

/// Called once for every message a send accepted, with its [`MessageId`](super::MessageId) and
/// outcome: delivered (QoS 1: PUBACK; QoS 0: written; HTTP: a 2xx answer), dropped by the
/// full-queue policy, refused by the cloud, or given up at close. It runs on the connection
/// task: it must return quickly and never wait (hand the outcome to another thread if it must).
#[derive(Clone)]
pub struct DeliveryHook(pub(crate) std::sync::Arc<DeliveryFn>);

/// The function behind a [`DeliveryHook`].
pub type DeliveryFn = dyn Fn(u64, &Result<(), ClientError>) + Send + Sync;

impl DeliveryHook {
    /// Wraps `hook`.
    pub fn new(hook: impl Fn(u64, &Result<(), ClientError>) + Send + Sync + 'static) -> Self {
        DeliveryHook(std::sync::Arc::new(hook))
    }
}

impl fmt::Debug for DeliveryHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeliveryHook")
    }
}

impl ClientConfig {
    /// The device this configuration is for.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The MQTT keepalive.
    pub fn keepalive(&self) -> Duration {
        self.keepalive
    }

    /// The largest message (MQTT packet or HTTP body) sent or accepted.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// The MQTT port in use: the one set, or 8883 with TLS and 1883 without.
    pub fn mqtt_port(&self) -> u16 {
        self.mqtt_port
            .unwrap_or(if self.tls.enabled { 8883 } else { 1883 })
    }

    /// The MQTT-over-WebSocket URL in use.
    pub fn mqtt_ws_url(&self) -> String {
        match &self.mqtt_ws_url {
            Some(url) => url.clone(),
            None => {
                let scheme = if self.tls.enabled { "wss" } else { "ws" };
                format!("{scheme}://{}/mqtt", self.mqtt_host)
            }
        }
    }

    /// The REST base URL in use; None when only a non-HTTP server was named (see
    /// [`ClientConfigBuilder::server`]).
    pub fn api_url(&self) -> Option<&str> {
        self.api_url.as_deref()
    }

    /// Where the device connects, in words: `MQTT host:port`, `MQTT over WebSocket URL` or
    /// `HTTP URL`.
    pub fn endpoint(&self) -> String {
        match self.transport {
            Transport::Mqtt => format!("MQTT {}:{}", self.mqtt_host, self.mqtt_port()),
            Transport::MqttWebSocket => format!("MQTT over WebSocket {}", self.mqtt_ws_url()),
            Transport::Http => format!("HTTP {}", self.api_url.as_deref().unwrap_or_default()),
        }
    }
}
