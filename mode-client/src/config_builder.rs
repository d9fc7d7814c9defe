//! [`ClientConfigBuilder`]: the defaults of a [`ClientConfig`], one setter per setting, and
//! `build`, which resolves [`server`](ClientConfigBuilder::server) for the chosen transport and
//! refuses settings that cannot work.

use std::path::PathBuf;
use std::time::Duration;

use mode_core::backoff::BackoffPolicy;
use mode_core::proto::DeviceId;

use super::{
    ApiKey, ClientConfig, ConfigError, DEFAULT_API_URL, DEFAULT_MQTT_HOST, DeliveryHook,
    FullQueuePolicy, OutboxSettings, TlsOptions, Transport,
};

/// Builds a [`ClientConfig`]; see [`ClientConfig::builder`].
#[derive(Debug, Clone)]
pub struct ClientConfigBuilder {
    pub(super) config: ClientConfig,
    /// From [`ClientConfigBuilder::server`], applied at build, when the transport is known.
    server: Option<(String, Option<u16>)>,
    mqtt_host_set: bool,
    api_url_set: bool,
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
}

impl ClientConfigBuilder {
    /// The MQTT broker host (default `mqtt.tinkermode.com`).
    pub fn mqtt_host(mut self, host: impl Into<String>) -> Self {
        self.config.mqtt_host = host.into();
        self.mqtt_host_set = true;
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
    /// such as [`Client::device_info`](crate::Client::device_info) then fail with
    /// [`ConfigError::NoApiUrl`] instead of going to the real cloud.
    pub fn server(mut self, host: impl Into<String>, port: Option<u16>) -> Self {
        self.server = Some((host.into(), port));
        self
    }

    /// No TLS: plain TCP, `ws://` and `http://`, for the local simulator (`plain` in every front
    /// end: C `mode_config_set_plain`, Python `plain=True`, `mode --plain`).
    pub fn plain(mut self) -> Self {
        self.config.tls.enabled = false;
        self
    }

    /// The name [`plain`](Self::plain) had before the naming table (README, Configuration);
    /// kept for code written against it.
    pub fn plain_tcp(self) -> Self {
        self.plain()
    }

    /// Trusts the CA certificates in `pem_file` in addition to the webpki roots (`ca_file` in
    /// every front end).
    pub fn ca_file(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.config.tls.extra_ca_files.push(pem_file.into());
        self
    }

    /// The name [`ca_file`](Self::ca_file) had before the naming table; kept for code written
    /// against it.
    pub fn extra_ca_file(self, pem_file: impl Into<PathBuf>) -> Self {
        self.ca_file(pem_file)
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

    setters! {
        /// The transport (default [`Transport::Mqtt`]).
        transport(transport: Transport) => transport = transport;
        /// The MQTT broker port (default 8883 with TLS, 1883 without).
        mqtt_port(port: u16) => mqtt_port = Some(port);
        /// The full URL of MQTT over WebSocket, e.g. `ws://127.0.0.1:9001/mqtt` (default
        /// `wss://{mqtt_host}/mqtt`).
        mqtt_ws_url(url: impl Into<String>) => mqtt_ws_url = Some(url.into());
        /// All TLS settings at once.
        tls(tls: TlsOptions) => tls = tls;
        /// Accepts any server certificate, for a self-signed local server. **Never in production**:
        /// anyone on the path can then impersonate the cloud and read the API key.
        danger_accept_invalid_certs(accept: bool) => tls.danger_accept_invalid_certs = accept;
        /// MQTT keepalive (default 60 s, at least 1 s). A connection from which nothing arrives for
        /// 1.5 times this is taken for dead and replaced.
        keepalive(keepalive: Duration) => keepalive = keepalive;
        /// How long a connection attempt may take (default 10 s; MQTT rounds up to whole seconds).
        connect_timeout(timeout: Duration) => connect_timeout = timeout;
        /// How long a REST request may take (default 30 s).
        request_timeout(timeout: Duration) => request_timeout = timeout;
        /// How many outgoing messages may wait for delivery, acknowledgement included (default
        /// 10,000).
        queue_size(size: usize) => queue_size = size;
        /// What a send does when the queue is full (default [`FullQueuePolicy::Block`]).
        full_queue_policy(policy: FullQueuePolicy) => full_queue = policy;
        /// The largest MQTT packet (or HTTP body) sent or accepted, default 1 MiB.
        max_message_size(bytes: usize) => max_message_size = bytes;
        /// How many QoS 1 publishes may await their PUBACK at once (default 100).
        max_inflight(inflight: u16) => max_inflight = inflight;
        /// How many notifications may wait for the application (default 1024); more are dropped
        /// and counted, never blocking the connection.
        notification_capacity(capacity: usize) => notification_capacity = capacity;
        /// The reconnect policy (Fibonacci seconds capped at 60 s, longer after auth failures).
        backoff(policy: BackoffPolicy) => backoff = policy;
        /// Calls `hook` once with the outcome of every message a send accepted (see
        /// [`DeliveryHook`]); a per-message alternative to awaiting each
        /// [`Delivery`](crate::Delivery).
        delivery_hook(hook: DeliveryHook) => delivery_hook = Some(hook);
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
