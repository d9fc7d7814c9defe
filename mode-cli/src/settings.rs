//! Where identity and endpoints come from: a flag, else its environment variable (clap merges
//! the two), else the selected profile of the profile file, else the real cloud's defaults.
//! The profile file holds keys, so like ssh we refuse one that others can read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use mode_client::{
    ClientConfig, ClientConfigBuilder, DEFAULT_API_URL, DEFAULT_MQTT_HOST, TlsOptions, Transport,
};
use mode_core::backoff::BackoffPolicy;
use serde::{Deserialize, Serialize};

use crate::error::CliError;
use crate::output;

/// A transport on the command line or in a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportArg {
    /// MQTT 3.1.1 over TCP (TLS unless --plain).
    Mqtt,
    /// MQTT 3.1.1 over WebSocket (`ws` and `mqtt-ws`: older spellings, still accepted).
    #[value(name = "mqtt-websocket", alias = "mqtt-ws", alias = "ws")]
    #[serde(rename = "mqtt-websocket", alias = "mqtt-ws", alias = "ws")]
    MqttWebsocket,
    /// REST for sending, WebSockets for commands and kv sync.
    Http,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Transport {
        match t {
            TransportArg::Mqtt => Transport::Mqtt,
            TransportArg::MqttWebsocket => Transport::MqttWebSocket,
            TransportArg::Http => Transport::Http,
        }
    }
}

/// Identity and endpoints: from flags or the environment, and (the same settings under the same
/// names) one profile of the profile file.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[command(next_help_heading = "Connection (flag, else environment, else profile)")]
#[serde(deny_unknown_fields)]
pub struct ConnArgs {
    /// Device id, in decimal.
    #[arg(long, global = true, env = "MODE_DEVICE_ID", value_name = "ID")]
    pub device_id: Option<u64>,
    /// Device API key (prefer MODE_API_KEY or a profile: flags show in `ps`).
    #[arg(
        long,
        global = true,
        env = "MODE_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// App API key, for `mode app`.
    #[arg(
        long,
        global = true,
        env = "MODE_APP_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub app_key: Option<String>,
    /// The server of the transport: MQTT host, or the host of --transport mqtt-websocket (wss://HOST/mqtt)
    /// or http (https://HOST) [default: mqtt.tinkermode.com]. Not the REST API of `mode info`
    /// unless --transport http: give --api-url for it.
    #[arg(long, global = true, env = "MODE_HOST")]
    pub host: Option<String>,
    /// Port of --host [default: 8883, or 1883 with --plain, for MQTT].
    #[arg(long, global = true, env = "MODE_PORT")]
    pub port: Option<u16>,
    /// MQTT over WebSocket URL, for --transport mqtt-websocket [default: wss://HOST/mqtt].
    /// (`--ws-url` and MODE_WS_URL: older spellings, still accepted.)
    #[arg(
        long,
        alias = "ws-url",
        global = true,
        env = "MODE_MQTT_WS_URL",
        value_name = "URL"
    )]
    #[serde(alias = "ws_url")]
    pub mqtt_ws_url: Option<String>,
    /// REST base URL [default: https://api.tinkermode.com, unless --host names another server].
    #[arg(long, global = true, env = "MODE_API_URL", value_name = "URL")]
    pub api_url: Option<String>,
    /// Transport: mqtt (TCP), mqtt-websocket (MQTT over WebSocket; `ws` also accepted) or http
    /// (REST + WebSockets) [default: mqtt].
    #[arg(long, global = true, value_enum, env = "MODE_TRANSPORT")]
    pub transport: Option<TransportArg>,
    /// Plain TCP and ws:// instead of TLS (the local simulator); MODE_PLAIN=1 (or true, yes).
    #[arg(
        long,
        global = true,
        env = "MODE_PLAIN",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain: bool,
    /// Extra CA certificate to trust (PEM).
    #[arg(long, global = true, env = "MODE_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Keep the device's outbox in this directory: every QoS 1 message is on disk before the
    /// command reports it sent, and one the cloud did not confirm is sent at the next start
    /// (one process per directory).
    #[arg(long, global = true, env = "MODE_OUTBOX_DIR", value_name = "DIR")]
    pub outbox_dir: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS, with --client-key.
    #[arg(
        long,
        global = true,
        env = "MODE_CLIENT_CERT",
        value_name = "PEM",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(
        long,
        global = true,
        env = "MODE_CLIENT_KEY",
        value_name = "PEM",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// Profile of the profile file ($MODE_CONFIG or ~/.config/mode/config.toml) [default: default].
    #[arg(long, global = true, env = "MODE_PROFILE", value_name = "NAME")]
    #[serde(skip)]
    pub profile: Option<String>,
}

/// The settings in force, every source merged.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Each setting from its flag or environment variable, else from the profile.
    given: ConnArgs,
    /// The transport.
    pub transport: TransportArg,
    /// Client certificate and key (PEM), both or neither.
    client_cert: Option<(PathBuf, PathBuf)>,
    /// Where values missing from flags and environment may be added, for messages.
    hint: String,
    /// Wait for the cloud this long.
    pub wait: Duration,
    /// Reconnect backoff unit.
    pub backoff: Duration,
}

/// The profile file: `$MODE_CONFIG`, else `$XDG_CONFIG_HOME/mode/config.toml`, else
/// `~/.config/mode/config.toml`.
pub fn profile_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MODE_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("mode").join("config.toml"))
}

/// Refuses a profile file that group or others may read or write, as ssh does for keys.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CliError::usage(format!(
            "profile file {} is accessible by others (permissions {mode:04o}) and holds keys; \
             refusing to use it. Run: chmod 600 {}",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), CliError> {
    Ok(())
}

/// Reads the whole profile file as a TOML table, after the privacy check.
fn read_table(path: &Path) -> Result<toml::Table, CliError> {
    check_private(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    text.parse::<toml::Table>()
        .map_err(|e| CliError::usage(format!("{} is not valid TOML: {e}", path.display())))
}

/// The selected profile, or an empty one when there is no file and none was asked for.
fn load_profile(name: Option<&str>) -> Result<(ConnArgs, String), CliError> {
    // A missing file is no profile (`mode provision --save-profile` creates it), unless one
    // was asked for by name.
    let Some(path) = profile_path() else {
        return match name {
            Some(name) => Err(CliError::usage(format!(
                "--profile {name}: no profile file (set MODE_CONFIG or HOME)"
            ))),
            None => Ok((ConnArgs::default(), "a profile".into())),
        };
    };
    let shown = path.display().to_string();
    if !path.exists() {
        if let Some(name) = name {
            return Err(CliError::usage(format!(
                "--profile {name}: there is no profile file {shown}"
            )));
        }
        return Ok((ConnArgs::default(), format!("a profile in {shown}")));
    }
    let table = read_table(&path)?;
    let wanted = name.unwrap_or("default");
    let Some(value) = table.get(wanted) else {
        if name.is_some() {
            let names: Vec<&str> = table.keys().map(String::as_str).collect();
            return Err(CliError::usage(format!(
                "no profile {wanted:?} in {shown} (it has: {})",
                names.join(", ")
            )));
        }
        return Ok((ConnArgs::default(), format!("profile [default] in {shown}")));
    };
    // Register keys before decoding so a decoding error cannot show one.
    for key in ["api_key", "app_key"] {
        if let Some(secret) = value.get(key).and_then(|v| v.as_str()) {
            output::register_secret(secret);
        }
    }
    let profile = ConnArgs::deserialize(value.clone())
        .map_err(|e| CliError::usage(format!("profile [{wanted}] in {shown}: {}", e.message())))?;
    Ok((profile, format!("profile [{wanted}] in {shown}")))
}

impl Settings {
    /// Merges flags and environment with the profile file.
    pub fn resolve(args: &ConnArgs, wait: Duration, backoff: Duration) -> Result<Self, CliError> {
        for secret in [&args.api_key, &args.app_key].into_iter().flatten() {
            output::register_secret(secret);
        }
        let (p, hint) = load_profile(args.profile.as_deref())?;
        // Flags and environment (clap makes them come in pairs), else the profile's pair.
        let client_cert = match (&args.client_cert, &args.client_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => match (p.client_cert, p.client_key) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => {
                    return Err(CliError::usage(format!(
                        "{hint}: client_cert and client_key go together: give both or neither"
                    )));
                }
            },
        };
        let transport = args.transport.or(p.transport).unwrap_or(TransportArg::Mqtt);
        let given = ConnArgs {
            device_id: args.device_id.or(p.device_id),
            api_key: args.api_key.clone().or(p.api_key),
            app_key: args.app_key.clone().or(p.app_key),
            host: args.host.clone().or(p.host),
            port: args.port.or(p.port),
            mqtt_ws_url: (args.mqtt_ws_url.clone())
                .or_else(|| std::env::var("MODE_WS_URL").ok())
                .or(p.mqtt_ws_url),
            api_url: args.api_url.clone().or(p.api_url),
            transport: Some(transport),
            plain: args.plain || p.plain,
            ca_file: args.ca_file.clone().or(p.ca_file),
            outbox_dir: args.outbox_dir.clone().or(p.outbox_dir),
            client_cert: client_cert.as_ref().map(|(cert, _)| cert.clone()),
            client_key: client_cert.as_ref().map(|(_, key)| key.clone()),
            profile: None,
        };
        Ok(Settings {
            given,
            transport,
            client_cert,
            hint,
            wait,
            backoff,
        })
    }

    fn missing(&self, what: &str, flag: &str, env: &str, field: &str) -> CliError {
        CliError::usage(format!(
            "no {what}: pass {flag}, set {env}, or add {field} to {}",
            self.hint
        ))
    }

    /// The device id and API key, or a usage error naming where to give them.
    pub fn device(&self) -> Result<(u64, &str), CliError> {
        let id = self.given.device_id.ok_or_else(|| {
            self.missing("device id", "--device-id", "MODE_DEVICE_ID", "device_id")
        })?;
        let key = self
            .given
            .api_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| self.missing("API key", "--api-key", "MODE_API_KEY", "api_key"))?;
        Ok((id, key))
    }

    /// The app key, or a usage error naming where to give it.
    pub fn app_key(&self) -> Result<&str, CliError> {
        self.given
            .app_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| self.missing("app key", "--app-key", "MODE_APP_KEY", "app_key"))
    }

    /// The REST base URL of the app commands and provisioning: the one given, else the real
    /// cloud's.
    pub fn api_url(&self) -> String {
        self.given
            .api_url
            .clone()
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned())
    }

    /// The extra CA file, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        self.given.ca_file.as_deref()
    }

    /// TLS settings for mode-core.
    pub fn tls(&self) -> TlsOptions {
        TlsOptions {
            enabled: !self.given.plain,
            extra_ca_files: self.given.ca_file.iter().cloned().collect(),
            client_cert: self.client_cert.clone(),
            ..TlsOptions::default()
        }
    }

    /// Where the device connects, in words for messages (mode-client derives it).
    pub fn endpoint(&self) -> String {
        match self.builder(0, "-").build() {
            Ok(config) => config.endpoint(),
            Err(e) => e.to_string(),
        }
    }

    /// The usage error of a REST call (`mode info`) when only a non-HTTP server was given.
    pub fn no_api_url(&self) -> CliError {
        CliError::usage(format!(
            "no REST API URL: `mode info` asks the REST API, and {} is the {} server only; \
             pass --api-url, set MODE_API_URL, or add api_url to {}",
            self.given.host.as_deref().unwrap_or(DEFAULT_MQTT_HOST),
            match self.transport {
                TransportArg::Mqtt => "MQTT",
                TransportArg::MqttWebsocket => "MQTT over WebSocket",
                TransportArg::Http => "HTTP",
            },
            self.hint
        ))
    }

    /// The device client's configuration.
    pub fn client_config(&self) -> Result<ClientConfig, CliError> {
        let (id, key) = self.device()?;
        self.builder(id, key)
            .build()
            .map_err(|e| CliError::usage(e.to_string()))
    }

    /// The settings as a builder: `--host`/`--port` name the transport's server (mode-client
    /// derives its URL), the endpoint flags win over it.
    fn builder(&self, id: u64, key: &str) -> ClientConfigBuilder {
        let mut builder = ClientConfig::builder(id, key)
            .transport(self.transport.into())
            .tls(self.tls())
            .connect_timeout(self.wait)
            .request_timeout(self.wait)
            .backoff(BackoffPolicy {
                unit: self.backoff,
                auth_failure_wait: self.backoff * 60,
                ..BackoffPolicy::default()
            });
        if let Some(dir) = &self.given.outbox_dir {
            builder = builder.outbox_dir(dir.clone());
        }
        match (&self.given.host, self.given.port) {
            (Some(host), port) => builder = builder.server(host.clone(), port),
            (None, Some(port)) => builder = builder.mqtt_port(port),
            (None, None) => {}
        }
        if let Some(url) = &self.given.mqtt_ws_url {
            builder = builder.mqtt_ws_url(url.clone());
        }
        if let Some(url) = &self.given.api_url {
            builder = builder.api_url(url.clone());
        }
        builder
    }
}

/// Writes `entries` as profile `name` of the profile file, creating it private (0600) or
/// keeping it so. Other profiles are kept; comments are not.
pub fn save_profile(name: &str, entries: toml::Table) -> Result<PathBuf, CliError> {
    let path = profile_path()
        .ok_or_else(|| CliError::usage("no profile file location: set MODE_CONFIG or HOME"))?;
    let mut table = if path.exists() {
        read_table(&path)?
    } else {
        toml::Table::new()
    };
    table.insert(name.to_owned(), toml::Value::Table(entries));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::other(format!("cannot create {}: {e}", dir.display())))?;
    }
    let text = toml::to_string(&table).map_err(|e| CliError::other(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(|e| CliError::other(format!("cannot write {}: {e}", path.display())))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|e| CliError::other(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// The settings of a fresh profile for a provisioned device: its identity plus the endpoints
/// in force now (not the app key, nor the outbox directory, which belongs to one device).
/// Fails only for a path that is not UTF-8 (TOML holds text).
pub fn profile_entries(
    settings: &Settings,
    device_id: u64,
    api_key: &str,
) -> Result<toml::Table, CliError> {
    let entries = ConnArgs {
        device_id: Some(device_id),
        api_key: Some(api_key.to_owned()),
        app_key: None,
        outbox_dir: None,
        ..settings.given.clone()
    };
    toml::Table::try_from(entries)
        .map_err(|e| CliError::usage(format!("the profile cannot hold these settings: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_profile_holds_the_identity_and_endpoints_in_force_and_nothing_unset() {
        let settings = Settings {
            given: ConnArgs {
                host: Some("127.0.0.1".into()),
                port: Some(1883),
                app_key: Some("app".into()),
                outbox_dir: Some("/tmp/outbox".into()),
                transport: Some(TransportArg::MqttWebsocket),
                plain: true,
                client_cert: Some("c.pem".into()),
                client_key: Some("k.pem".into()),
                ..ConnArgs::default()
            },
            transport: TransportArg::MqttWebsocket,
            client_cert: Some(("c.pem".into(), "k.pem".into())),
            hint: String::new(),
            wait: Duration::from_secs(1),
            backoff: Duration::from_secs(1),
        };
        let entries = profile_entries(&settings, 1001, "v1.key").unwrap();
        let text = toml::to_string(&entries).unwrap();
        assert_eq!(
            text,
            "api_key = \"v1.key\"\nclient_cert = \"c.pem\"\nclient_key = \"k.pem\"\n\
             device_id = 1001\nhost = \"127.0.0.1\"\nplain = true\nport = 1883\n\
             transport = \"mqtt-websocket\"\n"
        );
        let read_back = ConnArgs::deserialize(toml::Value::Table(entries)).unwrap();
        assert_eq!(read_back.device_id, Some(1001));
        assert_eq!(read_back.transport, Some(TransportArg::MqttWebsocket));
        // A profile written before the naming table still reads.
        let old: ConnArgs = toml::from_str("transport = \"ws\"").unwrap();
        assert_eq!(old.transport, Some(TransportArg::MqttWebsocket));
        assert!(read_back.plain);
        let plain_off = Settings {
            given: ConnArgs::default(),
            ..settings
        };
        let entries = profile_entries(&plain_off, 7, "k").unwrap();
        assert!(!entries.contains_key("plain"), "{entries:?}");
    }
}
