//! The simulator's configuration: where it listens and which projects, homes, devices, app keys
//! and bulk-data modules its cloud holds. Read from TOML, or [`SimConfig::demo`] built in.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use mode_core::proto::{DeviceId, is_valid_label};
use serde::Deserialize;

/// Everything the simulator needs to start. Every field has a default, so a TOML file only
/// states what differs; see `mode-sim/examples/demo.toml` for one that equals [`SimConfig::demo`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Address every listener binds to (default 127.0.0.1).
    pub bind: IpAddr,
    /// MQTT over TCP port; 0 picks a free port.
    pub mqtt_port: u16,
    /// MQTT over WebSocket port (subprotocol `mqtt`); 0 picks a free port.
    pub mqtt_ws_port: u16,
    /// MQTT over TLS port, used only when [`SimConfig::tls`] is set; 0 picks a free port.
    pub mqtt_tls_port: u16,
    /// REST + WebSocket port for the HTTP server; 0 picks a free port.
    pub http_port: u16,
    /// HTTPS (REST + WebSocket over TLS) port, used only when [`SimConfig::tls`] is set; 0 picks
    /// a free port.
    pub https_port: u16,
    /// MQTT over WebSocket over TLS (`wss://`) port, used only when [`SimConfig::tls`] is set;
    /// 0 picks a free port.
    pub mqtt_wss_port: u16,
    /// Certificate and key of the TLS listeners (MQTT over TLS, MQTT over `wss://`, HTTPS);
    /// none of them without it. The plain listeners run either way.
    pub tls: Option<TlsConfig>,
    /// The key guarding the admin (test control) API of the HTTP server; no admin API without it.
    pub admin_key: Option<String>,
    /// Where the DDP stores and the event log persist (file `mode-sim.redb`); in memory when
    /// `None`. Devices, keys and homes always come from the configuration.
    pub data_dir: Option<PathBuf>,
    /// Largest MQTT packet accepted (remaining length, bytes); larger ones close the connection.
    pub max_packet_size: usize,
    /// Most live device connections (all transports together); more are refused.
    pub max_connections: usize,
    /// Most MQTT connections (all transports together) that have not authenticated yet; when
    /// another arrives, the oldest of them is closed. Each holds at most a 64 KiB CONNECT
    /// (over WebSocket, one message of `max_packet_size`) until it authenticates.
    pub max_unauthenticated: usize,
    /// How long an HTTP client may take to send a request's headers, in milliseconds; the
    /// connection is closed after that.
    pub http_header_timeout_ms: u64,
    /// Messages queued per subscriber before it counts as too slow and is disconnected.
    pub subscriber_queue: usize,
    /// How often the HTTP server's WebSockets send a ping frame, in milliseconds.
    pub ws_ping_interval_ms: u64,
    /// Largest HTTP request body accepted, in bytes; larger ones get `413`.
    pub http_max_body: usize,
    /// The projects of this cloud.
    #[serde(rename = "project")]
    pub projects: Vec<ProjectConfig>,
}

/// PEM files for the TLS listeners.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Client-certificate mode **(ours)**: every TLS listener requires a client certificate
    /// issued by a CA in this PEM file. A certificate whose subject CN is a device id in
    /// decimal authenticates that device: its API key may then be empty.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// TLS with `cert` and `key` (PEM), no client certificates.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsConfig {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
        }
    }

    /// Requires client certificates issued by the CAs in `ca` (PEM).
    pub fn with_client_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(ca.into());
        self
    }
}

/// One MODE project.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Project id.
    pub id: u64,
    /// Its homes.
    #[serde(default, rename = "home")]
    pub homes: Vec<HomeConfig>,
    /// Its devices.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceConfig>,
    /// API keys of apps and external servers.
    #[serde(default, rename = "app_key")]
    pub app_keys: Vec<AppKeyConfig>,
    /// Smart modules reachable by bulk data, by label.
    #[serde(default, rename = "bulk_data")]
    pub bulk_data: Vec<BulkModuleConfig>,
    /// Tokens that let `POST /devices` provision a new device into this project.
    #[serde(default)]
    pub provisioning_tokens: Vec<String>,
}

/// One home.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeConfig {
    /// Home id, unique across the simulator.
    pub id: u64,
    /// A name for humans.
    #[serde(default)]
    pub name: String,
}

/// One device.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device id, unique across the simulator.
    pub id: DeviceId,
    /// Its API key (MQTT password, REST `Authorization: ModeCloud <key>`).
    pub api_key: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its tag.
    #[serde(default)]
    pub tag: String,
    /// Its device class.
    #[serde(default)]
    pub device_class: String,
    /// The home it is in; a device without a home sends events nowhere.
    #[serde(default)]
    pub home_id: Option<u64>,
}

/// An API key of an app or external server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppKeyConfig {
    /// The key.
    pub key: String,
    /// The homes it may see; every home of the project when absent.
    #[serde(default)]
    pub homes: Option<Vec<u64>>,
}

/// A smart module reachable over bulk data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkModuleConfig {
    /// The bulk-data label devices use in topics.
    pub label: String,
    /// What the module does with requests.
    pub module: BulkModuleKind,
    /// False starts the module "down": requests get `SERVICE_UNAVAILABLE`.
    #[serde(default = "yes")]
    pub available: bool,
}

fn yes() -> bool {
    true
}

/// The modules built into the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkModuleKind {
    /// Answers every request with status `OK` and the request's own payload.
    Echo,
}

/// A configuration that cannot work, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown fields.
    #[error("invalid simulator config: {0}")]
    Toml(#[from] toml::de::Error),
    /// The TOML parsed but describes an impossible cloud.
    #[error("invalid simulator config: {0}")]
    Invalid(String),
}

impl Default for SimConfig {
    /// Loopback, free ports, no TLS, no projects.
    fn default() -> Self {
        SimConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mqtt_port: 0,
            mqtt_ws_port: 0,
            mqtt_tls_port: 0,
            http_port: 0,
            https_port: 0,
            mqtt_wss_port: 0,
            tls: None,
            admin_key: None,
            data_dir: None,
            max_packet_size: 1024 * 1024,
            max_connections: 1024,
            max_unauthenticated: 128,
            http_header_timeout_ms: 10_000,
            subscriber_queue: 1024,
            ws_ping_interval_ms: 30_000,
            http_max_body: 1024 * 1024,
            projects: Vec::new(),
        }
    }
}

/// The demo project's id.
pub const DEMO_PROJECT: u64 = 1;
/// The demo home's id.
pub const DEMO_HOME: u64 = 10;
/// The demo devices' ids.
pub const DEMO_DEVICES: [DeviceId; 2] = [1001, 1002];
/// The demo app key (sees the whole demo project).
pub const DEMO_APP_KEY: &str = "v1.demo-app";
/// The demo provisioning token.
pub const DEMO_PROVISIONING_TOKEN: &str = "demo-provisioning-token";

/// The API key of demo device `id`: `v1.demo-device-{id}`.
pub fn demo_device_key(id: DeviceId) -> String {
    format!("v1.demo-device-{id}")
}

impl SimConfig {
    /// The built-in demo: project 1 with home 10, devices 1001 and 1002 in it (keys
    /// `v1.demo-device-1001`, `v1.demo-device-1002`), app key `v1.demo-app`, the `echo` bulk-data
    /// module, and provisioning token `demo-provisioning-token`. Listens on loopback, free ports.
    pub fn demo() -> Self {
        let devices = DEMO_DEVICES
            .iter()
            .map(|&id| DeviceConfig {
                id,
                api_key: demo_device_key(id),
                name: format!("demo device {id}"),
                tag: "demo".into(),
                device_class: "sensor".into(),
                home_id: Some(DEMO_HOME),
            })
            .collect();
        SimConfig {
            projects: vec![ProjectConfig {
                id: DEMO_PROJECT,
                homes: vec![HomeConfig {
                    id: DEMO_HOME,
                    name: "demo home".into(),
                }],
                devices,
                app_keys: vec![AppKeyConfig {
                    key: DEMO_APP_KEY.into(),
                    homes: None,
                }],
                bulk_data: vec![BulkModuleConfig {
                    label: "echo".into(),
                    module: BulkModuleKind::Echo,
                    available: true,
                }],
                provisioning_tokens: vec![DEMO_PROVISIONING_TOKEN.into()],
            }],
            ..SimConfig::default()
        }
    }

    /// Parses and checks a TOML configuration.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let config: SimConfig = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and checks a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Checks that ids are unique, references resolve, and keys and labels are usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError::Invalid(msg));
        let mut projects = HashSet::new();
        let mut homes = HashSet::new();
        let mut devices = HashSet::new();
        let mut keys = HashSet::new();
        if self.max_packet_size < 16 {
            return bad(format!(
                "max_packet_size {} is too small (at least 16)",
                self.max_packet_size
            ));
        }
        if self.subscriber_queue == 0 || self.max_connections == 0 || self.max_unauthenticated == 0
        {
            return bad(
                "subscriber_queue, max_connections and max_unauthenticated must be at least 1"
                    .into(),
            );
        }
        for project in &self.projects {
            if !projects.insert(project.id) {
                return bad(format!("project id {} appears twice", project.id));
            }
            let own_homes: HashSet<u64> = project.homes.iter().map(|h| h.id).collect();
            for home in &project.homes {
                if !homes.insert(home.id) {
                    return bad(format!("home id {} appears twice", home.id));
                }
            }
            for device in &project.devices {
                if !devices.insert(device.id) {
                    return bad(format!("device id {} appears twice", device.id));
                }
                if device.api_key.is_empty() || !keys.insert(device.api_key.clone()) {
                    return bad(format!(
                        "device {} has an empty or duplicate api_key",
                        device.id
                    ));
                }
                if let Some(home) = device.home_id
                    && !own_homes.contains(&home)
                {
                    return bad(format!(
                        "device {} is in home {home}, which is not a home of project {}",
                        device.id, project.id
                    ));
                }
            }
            for app in &project.app_keys {
                if app.key.is_empty() || !keys.insert(app.key.clone()) {
                    return bad(format!(
                        "app key {:?} is empty or duplicates another key",
                        app.key
                    ));
                }
                for home in app.homes.iter().flatten() {
                    if !own_homes.contains(home) {
                        return bad(format!(
                            "app key {:?} lists home {home}, not in project {}",
                            app.key, project.id
                        ));
                    }
                }
            }
            let mut labels = HashSet::new();
            for module in &project.bulk_data {
                if !is_valid_label(&module.label) || !labels.insert(module.label.as_str()) {
                    return bad(format!(
                        "bulk data label {:?} in project {} is unusable in a topic or appears twice",
                        module.label, project.id
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_equals_the_built_in_demo() {
        let text = include_str!("../examples/demo.toml");
        assert_eq!(SimConfig::from_toml_str(text).unwrap(), SimConfig::demo());
    }

    #[test]
    fn refuses_a_device_in_a_home_of_another_project() {
        let text = r#"
            [[project]]
            id = 1
            [[project.device]]
            id = 5
            api_key = "k"
            home_id = 99
        "#;
        let err = SimConfig::from_toml_str(text).unwrap_err();
        assert!(err.to_string().contains("home 99"), "{err}");
    }

    #[test]
    fn refuses_unknown_fields() {
        assert!(SimConfig::from_toml_str("mqtt_prot = 1").is_err());
    }
}
