//! How a [`Client`](super::Client) connects: identity, transport, endpoints, TLS, limits and the
//! reconnect policy. Built with [`ClientConfig::builder`]; every host, port and TLS setting can be
//! overridden so the same client talks to the real cloud and to the local simulator.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use mode_core::backoff::BackoffPolicy;
use mode_core::proto::DeviceId;

#[path = "outbox_config.rs"]
mod outbox;
pub(crate) use outbox::OutboxSettings;
pub use outbox::{DEFAULT_OUTBOX_MAX_BYTES, SyncPolicy};

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

/// A configuration that cannot work; nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The API key is empty.
    #[error("the API key is empty: pass the key the cloud issued to device {0}")]
    EmptyApiKey(DeviceId),
    /// The keepalive is below one second (MQTT counts it in whole seconds).
    #[error("keepalive {0:?} is too short: use at least 1 s (MQTT counts keepalive in seconds)")]
    KeepaliveTooShort(Duration),
    /// A size limit is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A URL does not parse or has the wrong scheme.
    #[error("invalid URL {url:?}: {detail}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A REST request (device info, claim mode) was made, but only the server of a non-HTTP
    /// transport was given ([`ClientConfigBuilder::server`]), which says nothing of where the
    /// REST API is.
    #[error(
        "no REST API URL: {server} is where the device connects, not the REST API; \
         set api_url to the REST base URL (e.g. http://127.0.0.1:8080 for the simulator)"
    )]
    NoApiUrl {
        /// Where the device connects, in words (e.g. `MQTT 127.0.0.1:1883`).
        server: String,
    },
    /// Another process (or another client of this one) has the durable outbox directory open.
    #[error(
        "the outbox directory {dir} is in use by another client (its lock is held); one client per directory"
    )]
    OutboxLocked {
        /// The directory.
        dir: String,
    },
    /// The durable outbox directory cannot be used (or could not be written).
    #[error("durable outbox in {dir}: {detail}")]
    Outbox {
        /// The directory.
        dir: String,
        /// What went wrong.
        detail: String,
    },
    /// `outbox_dir` was set, but this build has no durable outbox.
    #[error("outbox_dir needs the durable-outbox feature of mode-client, which this build lacks")]
    OutboxUnavailable,
    /// A TLS file could not be read or holds nothing usable.
    #[error("TLS setting {what} ({path}): {detail}")]
    Tls {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
}

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
pub type DeliveryFn = dyn Fn(u64, &Result<(), super::ClientError>) + Send + Sync;

impl DeliveryHook {
    /// Wraps `hook`.
    pub fn new(
        hook: impl Fn(u64, &Result<(), super::ClientError>) + Send + Sync + 'static,
    ) -> Self {
        DeliveryHook(std::sync::Arc::new(hook))
    }
}

impl fmt::Debug for DeliveryHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeliveryHook")
    }
}

impl ClientConfig {
    /// A builder with the defaults: MQTT over TLS to `mqtt.tinkermode.com:8883`, keepalive
    /// 60 s, a queue of 10,000 messages that blocks when full, messages up to 1 MiB.
    pub fn builder(device_id: DeviceId, api_key: impl Into<ApiKey>) -> ClientConfigBuilder {
        ClientConfigBuilder {
            config: ClientConfig {
                device_id,
                api_key: api_key.into(),
                transport: Transport::Mqtt,
                mqtt_host: DEFAULT_MQTT_HOST.to_owned(),
                mqtt_port: None,
                mqtt_ws_url: None,
                api_url: Some(DEFAULT_API_URL.to_owned()),
                tls: TlsOptions::default(),
                keepalive: Duration::from_secs(60),
                connect_timeout: Duration::from_secs(10),
                request_timeout: Duration::from_secs(30),
                queue_size: 10_000,
                full_queue: FullQueuePolicy::Block,
                max_message_size: 1024 * 1024,
                max_inflight: 100,
                notification_capacity: 1024,
                backoff: BackoffPolicy::default(),
                delivery_hook: None,
                outbox: OutboxSettings::default(),
            },
            server: None,
            mqtt_host_set: false,
            api_url_set: false,
        }
    }

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

/// Builds a [`ClientConfig`]; see [`ClientConfig::builder`].
#[derive(Debug, Clone)]
pub struct ClientConfigBuilder {
    config: ClientConfig,
    /// From [`ClientConfigBuilder::server`], applied at build, when the transport is known.
    server: Option<(String, Option<u16>)>,
    mqtt_host_set: bool,
    api_url_set: bool,
}

impl ClientConfigBuilder {
    /// The transport (default [`Transport::Mqtt`]).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.config.transport = transport;
        self
    }

    /// The MQTT broker host (default `mqtt.tinkermode.com`).
    pub fn mqtt_host(mut self, host: impl Into<String>) -> Self {
        self.config.mqtt_host = host.into();
        self.mqtt_host_set = true;
        self
    }

    /// The MQTT broker port (default 8883 with TLS, 1883 without).
    pub fn mqtt_port(mut self, port: u16) -> Self {
        self.config.mqtt_port = Some(port);
        self
    }

    /// The full URL of MQTT over WebSocket, e.g. `ws://127.0.0.1:9001/mqtt` (default
    /// `wss://{mqtt_host}/mqtt`).
    pub fn mqtt_ws_url(mut self, url: impl Into<String>) -> Self {
        self.config.mqtt_ws_url = Some(url.into());
        self
    }

    /// The REST base URL (default `https://api.tinkermode.com`); its scheme decides TLS.
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.config.api_url = Some(url.into().trim_end_matches('/').to_owned());
        self.api_url_set = true;
        self
    }

    /// Where the chosen transport's server is, whatever the transport: MQTT connects to
    /// `host:port` (default port 8883, 1883 without TLS), MQTT over WebSocket to
    /// `wss://host:port/mqtt` (`ws://` without TLS), the HTTP transport to
    /// `https://host:port` (`http://`). The settings of one endpoint (`mqtt_host`, `mqtt_port`,
    /// `mqtt_ws_url`, `api_url`) win over it. With a non-HTTP transport and no `api_url` the
    /// REST API's place is unknown (a device's MQTT server says nothing of it): REST calls
    /// such as [`Client::device_info`](super::Client::device_info) then fail with
    /// [`ConfigError::NoApiUrl`] instead of going to the real cloud.
    pub fn server(mut self, host: impl Into<String>, port: Option<u16>) -> Self {
        self.server = Some((host.into(), port));
        self
    }

    /// All TLS settings at once.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.config.tls = tls;
        self
    }

    /// Plain TCP / `ws://` instead of TLS, for the local simulator.
    pub fn plain_tcp(mut self) -> Self {
        self.config.tls.enabled = false;
        self
    }

    /// Trusts the CA certificates in `pem_file` in addition to the webpki roots.
    pub fn extra_ca_file(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.config.tls.extra_ca_files.push(pem_file.into());
        self
    }

    /// Authenticates with a client certificate (mutual TLS).
    pub fn client_cert(
        mut self,
        cert_pem: impl Into<PathBuf>,
        key_pem: impl Into<PathBuf>,
    ) -> Self {
        self.config.tls.client_cert = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Accepts any server certificate, for a self-signed local server. **Never in production**:
    /// anyone on the path can then impersonate the cloud and read the API key.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.config.tls.danger_accept_invalid_certs = accept;
        self
    }

    /// MQTT keepalive (default 60 s, at least 1 s). A connection from which nothing arrives for
    /// 1.5 times this is taken for dead and replaced.
    pub fn keepalive(mut self, keepalive: Duration) -> Self {
        self.config.keepalive = keepalive;
        self
    }

    /// How long a connection attempt may take (default 10 s; MQTT rounds up to whole seconds).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long a REST request may take (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// How many outgoing messages may wait for delivery, acknowledgement included (default
    /// 10,000).
    pub fn queue_size(mut self, size: usize) -> Self {
        self.config.queue_size = size;
        self
    }

    /// What a send does when the queue is full (default [`FullQueuePolicy::Block`]).
    pub fn full_queue_policy(mut self, policy: FullQueuePolicy) -> Self {
        self.config.full_queue = policy;
        self
    }

    /// The largest MQTT packet (or HTTP body) sent or accepted, default 1 MiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// How many QoS 1 publishes may await their PUBACK at once (default 100).
    pub fn max_inflight(mut self, inflight: u16) -> Self {
        self.config.max_inflight = inflight;
        self
    }

    /// How many notifications may wait for the application (default 1024); more are dropped
    /// and counted, never blocking the connection.
    pub fn notification_capacity(mut self, capacity: usize) -> Self {
        self.config.notification_capacity = capacity;
        self
    }

    /// The reconnect policy (Fibonacci seconds capped at 60 s, longer after auth failures).
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.config.backoff = policy;
        self
    }

    /// Calls `hook` once with the outcome of every message a send accepted (see
    /// [`DeliveryHook`]); a per-message alternative to awaiting each [`Delivery`](super::Delivery).
    pub fn delivery_hook(mut self, hook: DeliveryHook) -> Self {
        self.config.delivery_hook = Some(hook);
        self
    }

    /// Checks the settings and returns the configuration.
    pub fn build(self) -> Result<ClientConfig, ConfigError> {
        let mut c = self.config;
        if let Some((host, port)) = self.server {
            let host_port = match port {
                Some(port) => format!("{host}:{port}"),
                None => host.clone(),
            };
            let tls = c.tls.enabled;
            match c.transport {
                Transport::Mqtt => {
                    if !self.mqtt_host_set {
                        c.mqtt_host = host;
                    }
                    c.mqtt_port = c.mqtt_port.or(port);
                }
                Transport::MqttWebSocket => {
                    let scheme = if tls { "wss" } else { "ws" };
                    c.mqtt_ws_url
                        .get_or_insert_with(|| format!("{scheme}://{host_port}/mqtt"));
                }
                Transport::Http => {
                    if !self.api_url_set {
                        let scheme = if tls { "https" } else { "http" };
                        c.api_url = Some(format!("{scheme}://{host_port}"));
                    }
                }
            }
            if c.transport != Transport::Http && !self.api_url_set {
                c.api_url = None;
            }
        }
        if c.api_key.expose().is_empty() {
            return Err(ConfigError::EmptyApiKey(c.device_id));
        }
        if c.keepalive < Duration::from_secs(1) {
            return Err(ConfigError::KeepaliveTooShort(c.keepalive));
        }
        for (what, n) in [
            ("queue_size", c.queue_size),
            ("max_message_size", c.max_message_size),
            ("max_inflight", usize::from(c.max_inflight)),
            ("notification_capacity", c.notification_capacity),
        ] {
            if n == 0 {
                return Err(ConfigError::Zero(what));
            }
        }
        let url_error = |url: &str, detail: &str| ConfigError::InvalidUrl {
            url: url.to_owned(),
            detail: detail.to_owned(),
        };
        if let Some(api_url) = &c.api_url
            && !(api_url.starts_with("http://") || api_url.starts_with("https://"))
        {
            return Err(url_error(
                api_url,
                "the REST base URL must start with http:// or https://",
            ));
        }
        let ws = c.mqtt_ws_url();
        if !(ws.starts_with("ws://") || ws.starts_with("wss://")) {
            return Err(url_error(
                &ws,
                "the MQTT WebSocket URL must start with ws:// or wss://",
            ));
        }
        c.outbox.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_key_never_shows_in_debug_or_display() {
        let config = ClientConfig::builder(7, "v1.secret-key").build().unwrap();
        let shown = format!("{config:?} {}", config.api_key);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn defaults_are_tls_on_8883_with_a_one_mebibyte_limit() {
        let config = ClientConfig::builder(7, "k").build().unwrap();
        assert_eq!(config.mqtt_port(), 8883);
        assert_eq!(config.max_message_size(), 1024 * 1024);
        assert_eq!(config.keepalive(), Duration::from_secs(60));
        let plain = ClientConfig::builder(7, "k").plain_tcp().build().unwrap();
        assert_eq!(plain.mqtt_port(), 1883);
    }

    #[test]
    fn server_points_the_chosen_transport_at_a_host_and_leaves_rest_unknown_unless_http() {
        let build = |transport, tls: bool| {
            let b = ClientConfig::builder(7, "k")
                .transport(transport)
                .server("10.0.0.5", Some(4000));
            if tls { b } else { b.plain_tcp() }.build().unwrap()
        };
        let mqtt = build(Transport::Mqtt, true);
        assert_eq!(mqtt.endpoint(), "MQTT 10.0.0.5:4000");
        assert_eq!(mqtt.api_url(), None);
        let ws = build(Transport::MqttWebSocket, false);
        assert_eq!(ws.mqtt_ws_url(), "ws://10.0.0.5:4000/mqtt");
        assert_eq!(ws.api_url(), None);
        let http = build(Transport::Http, true);
        assert_eq!(http.api_url(), Some("https://10.0.0.5:4000"));
        // One endpoint's own setting wins, and a REST URL given is kept.
        let explicit = ClientConfig::builder(7, "k")
            .server("10.0.0.5", None)
            .mqtt_port(1883)
            .api_url("http://10.0.0.5:8080/")
            .build()
            .unwrap();
        assert_eq!(explicit.endpoint(), "MQTT 10.0.0.5:1883");
        assert_eq!(explicit.api_url(), Some("http://10.0.0.5:8080"));
        // Without server(), the real cloud's REST URL stays the default.
        let plain = ClientConfig::builder(7, "k")
            .mqtt_host("h")
            .build()
            .unwrap();
        assert_eq!(plain.api_url(), Some(DEFAULT_API_URL));
    }

    #[test]
    fn unusable_settings_are_refused_with_the_reason() {
        assert_eq!(
            ClientConfig::builder(7, "").build().unwrap_err(),
            ConfigError::EmptyApiKey(7)
        );
        assert!(matches!(
            ClientConfig::builder(7, "k")
                .keepalive(Duration::from_millis(10))
                .build(),
            Err(ConfigError::KeepaliveTooShort(_))
        ));
        assert_eq!(
            ClientConfig::builder(7, "k")
                .queue_size(0)
                .build()
                .unwrap_err(),
            ConfigError::Zero("queue_size")
        );
    }
}
