//! What the `mode-sim` binary and the `mode` command line's `mode sim` share: the simulator's
//! flags as a clap struct, so both take the same flags and build the same configuration, and
//! the signal that tells either to shut down.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::Args;

use crate::SimConfig;
use crate::config::TlsConfig;
use crate::fleet;

/// The simulator's command-line flags, shared by the `mode-sim` binary and `mode sim`.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// TOML configuration (projects, homes, devices, keys; see mode-sim/examples/demo.toml).
    /// Without it the built-in demo project runs.
    #[arg(long, value_name = "FILE", env = "MODE_SIM_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// MQTT over TCP port (0: any free port).
    #[arg(long, default_value_t = 1883)]
    mqtt_port: u16,
    /// MQTT over WebSocket port (0: any free port).
    #[arg(long, default_value_t = 8081)]
    ws_port: u16,
    /// MQTT over TLS port, used with --tls-cert and --tls-key (0: any free port).
    #[arg(long, default_value_t = 8883)]
    tls_port: u16,
    /// HTTP (REST + WebSocket) port (0: any free port).
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// HTTPS (REST + WebSocket over TLS) port, used with --tls-cert and --tls-key (0: any free
    /// port).
    #[arg(long, default_value_t = 8443)]
    https_port: u16,
    /// MQTT over WebSocket over TLS (wss://) port, used with --tls-cert and --tls-key (0: any
    /// free port).
    #[arg(long, default_value_t = 8444)]
    wss_port: u16,
    /// Certificate chain (PEM) of every TLS listener (MQTT over TLS, MQTT over wss://, HTTPS).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the TLS listeners.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates issued by these CAs (PEM) on every TLS listener; a
    /// certificate whose subject CN is a device id authenticates that device (its key may be
    /// empty).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Key of the admin (test control) HTTP API; no admin API without it.
    #[arg(long, env = "MODE_SIM_ADMIN_KEY")]
    admin_key: Option<String>,
    /// Keep stores and the event log in this directory across restarts.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Add N generated devices for load tests to the demo project (or to the first project of
    /// --config, in its first home): ids from 100000 on (above the highest configured id, if
    /// that is higher), keys `v1.fleet-device-{id}`.
    #[arg(long, value_name = "N", default_value_t = 0)]
    devices: usize,
    /// Write the credentials of the --devices to FILE as CSV, with the header
    /// `device_id,api_key,project_id,home_id`.
    #[arg(long, value_name = "FILE")]
    devices_csv: Option<PathBuf>,
    /// Most live device connections, all transports together; more get CONNACK 3 or `503`.
    /// Default: the configuration's `max_connections` (1024), raised to the number of devices
    /// when there are more, so every device can hold a connection.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
}

impl SimArgs {
    /// The configuration these flags ask for: the `--config` file or the demo, with the
    /// flags written over it and the `--devices` added. Writes the `--devices-csv` file.
    pub fn config(&self) -> Result<SimConfig, Box<dyn std::error::Error>> {
        let mut config = match &self.config {
            Some(path) => SimConfig::from_file(path)?,
            None => SimConfig::demo(),
        };
        config.bind = self.bind;
        config.mqtt_port = self.mqtt_port;
        config.mqtt_ws_port = self.ws_port;
        config.mqtt_tls_port = self.tls_port;
        config.http_port = self.http_port;
        config.https_port = self.https_port;
        config.mqtt_wss_port = self.wss_port;
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(TlsConfig {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.client_ca.clone(),
            });
        }
        if self.admin_key.is_some() {
            config.admin_key = self.admin_key.clone();
        }
        if self.data_dir.is_some() {
            config.data_dir = self.data_dir.clone();
        }
        let fleet = fleet::add_devices(&mut config, self.devices)?;
        if let Some(path) = &self.devices_csv {
            fleet::write_csv(path, &fleet).map_err(|e| {
                format!(
                    "cannot write the devices' credentials to {} (--devices-csv): {e}",
                    path.display()
                )
            })?;
        }
        let devices: usize = config.projects.iter().map(|p| p.devices.len()).sum();
        config.max_connections = self
            .max_connections
            .unwrap_or(config.max_connections.max(devices));
        Ok(config)
    }
}

/// Waits for Ctrl-C (SIGINT) or, on Unix, SIGTERM: what ends a simulator run from a shell or
/// stopped by a service manager.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
