//! mode-sim: a local MODE cloud (MQTT 3.1.1 over TCP, TLS and WebSocket; the HTTP REST and
//! WebSocket API, see [`http`]) that tests embed and firmware developers run.
//!
//! ```
//! use mode_sim::cloud::KvSource;
//! use mode_sim::{Sim, SimConfig};
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let sim = Sim::start(SimConfig::demo()).await?; // free loopback ports
//! println!("MQTT on {}, REST on {:?}", sim.mqtt_addr(), sim.http_addr());
//! // Drive and inspect the cloud directly: commands, DDP stores, records, test controls.
//! let cloud = sim.cloud();
//! let rev = cloud.kv_set(1001, "firmware", "1.0.0".into(), KvSource::Rest)?;
//! assert_eq!(cloud.kv_get(1001, "firmware")?.value, "1.0.0");
//! assert_eq!(cloud.kv_snapshot(1001)?.rev, rev);
//! sim.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod admission;
pub mod args;
pub mod cloud;
pub mod config;
pub mod fd_limit;
pub mod fleet;
pub mod http;
mod mqtt;
mod net;
pub mod persist;
mod untrusted;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use cloud::{Cloud, CloudError};
pub use config::SimConfig;

use net::Flavor;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A port could not be bound.
    #[error(
        "cannot listen on {addr} for {what}: {source} (is another simulator or broker running there? pick another port)"
    )]
    Bind {
        /// What the listener was for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate, key or client CA cannot be used.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The data directory (`--data-dir`) cannot be used.
    #[error(transparent)]
    Persistence(#[from] persist::PersistError),
}

/// A running simulator: its cloud and its listeners.
pub struct Sim {
    cloud: Cloud,
    config: Arc<SimConfig>,
    mqtt_addr: SocketAddr,
    mqtt_ws_addr: SocketAddr,
    mqtt_tls_addr: Option<SocketAddr>,
    mqtt_wss_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    tls: Option<TlsAcceptor>,
    running: Mutex<Option<Running>>,
}

/// The TLS listeners, bound when TLS is configured.
struct Secure {
    mqtt: TcpListener,
    wss: TcpListener,
    https: TcpListener,
}

/// The listener tasks of one start (or restart).
struct Running {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("mqtt_addr", &self.mqtt_addr)
            .field("mqtt_ws_addr", &self.mqtt_ws_addr)
            .field("mqtt_tls_addr", &self.mqtt_tls_addr)
            .field("mqtt_wss_addr", &self.mqtt_wss_addr)
            .field("http_addr", &self.http_addr)
            .field("https_addr", &self.https_addr)
            .finish_non_exhaustive()
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, SimError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { what, addr, source })
}

fn local_addr(
    what: &'static str,
    l: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, SimError> {
    l.local_addr()
        .map_err(|source| SimError::Bind { what, addr, source })
}

impl Sim {
    /// Starts a simulator: builds the cloud from `config` and binds its listeners (port 0 picks
    /// a free port; read the real ones from the `*_addr` methods).
    pub async fn start(config: SimConfig) -> Result<Sim, SimError> {
        config.validate()?;
        let tls = match &config.tls {
            Some(t) => Some(net::tls_acceptor(t).map_err(SimError::Tls)?),
            None => None,
        };
        let cloud = Cloud::open(&config)?;
        let at = |port| SocketAddr::new(config.bind, port);
        let mqtt = bind("MQTT", at(config.mqtt_port)).await?;
        let ws = bind("MQTT over WebSocket", at(config.mqtt_ws_port)).await?;
        let http = bind("HTTP", at(config.http_port)).await?;
        let secure = match tls {
            Some(_) => Some(Secure {
                mqtt: bind("MQTT over TLS", at(config.mqtt_tls_port)).await?,
                wss: bind("MQTT over wss://", at(config.mqtt_wss_port)).await?,
                https: bind("HTTPS", at(config.https_port)).await?,
            }),
            None => None,
        };
        let secure_addr = |what, l: Option<&TcpListener>, port| match l {
            Some(l) => local_addr(what, l, at(port)).map(Some),
            None => Ok(None),
        };
        let sim = Sim {
            mqtt_addr: local_addr("MQTT", &mqtt, at(config.mqtt_port))?,
            mqtt_ws_addr: local_addr("MQTT over WebSocket", &ws, at(config.mqtt_ws_port))?,
            mqtt_tls_addr: secure_addr(
                "MQTT over TLS",
                secure.as_ref().map(|s| &s.mqtt),
                config.mqtt_tls_port,
            )?,
            mqtt_wss_addr: secure_addr(
                "MQTT over wss://",
                secure.as_ref().map(|s| &s.wss),
                config.mqtt_wss_port,
            )?,
            http_addr: Some(local_addr("HTTP", &http, at(config.http_port))?),
            https_addr: secure_addr(
                "HTTPS",
                secure.as_ref().map(|s| &s.https),
                config.https_port,
            )?,
            cloud,
            config: Arc::new(config),
            tls,
            running: Mutex::new(None),
        };
        sim.spawn(mqtt, ws, http, secure);
        tracing::info!(
            mqtt = %sim.mqtt_addr,
            mqtt_ws = %sim.mqtt_ws_addr,
            mqtt_tls = ?sim.mqtt_tls_addr,
            mqtt_wss = ?sim.mqtt_wss_addr,
            http = ?sim.http_addr,
            https = ?sim.https_addr,
            "mode-sim started"
        );
        Ok(sim)
    }

    fn spawn(
        &self,
        mqtt: TcpListener,
        ws: TcpListener,
        http_listener: TcpListener,
        secure: Option<Secure>,
    ) {
        let stop = CancellationToken::new();
        let max = self.config.max_packet_size;
        let admission = admission::Admission::new(self.config.max_unauthenticated);
        let loop_for = |l, flavor| {
            tokio::spawn(net::accept_loop(
                l,
                flavor,
                self.cloud.clone(),
                stop.clone(),
                max,
                admission.clone(),
            ))
        };
        let mut tasks = vec![loop_for(mqtt, Flavor::Tcp), loop_for(ws, Flavor::WebSocket)];
        let http_options = http::HttpOptions::from_config(&self.config);
        tasks.push(tokio::spawn(http::serve(
            http_listener,
            self.cloud.clone(),
            http_options.clone(),
            stop.clone(),
        )));
        if let (Some(secure), Some(acceptor)) = (secure, &self.tls) {
            tasks.push(loop_for(secure.mqtt, Flavor::Tls(acceptor.clone())));
            tasks.push(loop_for(secure.wss, Flavor::WebSocketTls(acceptor.clone())));
            tasks.push(tokio::spawn(http::serve_tls(
                secure.https,
                acceptor.clone(),
                self.cloud.clone(),
                http_options,
                stop.clone(),
            )));
        }
        *self.running() = Some(Running { stop, tasks });
    }

    /// The shared cloud: drive it (commands, kv), read what it received, use the test controls.
    pub fn cloud(&self) -> &Cloud {
        &self.cloud
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// MQTT over TCP.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// MQTT over WebSocket (path `/mqtt` or any, subprotocol `mqtt`).
    pub fn mqtt_ws_addr(&self) -> SocketAddr {
        self.mqtt_ws_addr
    }

    /// MQTT over TLS, when configured.
    pub fn mqtt_tls_addr(&self) -> Option<SocketAddr> {
        self.mqtt_tls_addr
    }

    /// MQTT over WebSocket over TLS (`wss://`, path `/mqtt` or any), when TLS is configured.
    pub fn mqtt_wss_addr(&self) -> Option<SocketAddr> {
        self.mqtt_wss_addr
    }

    /// The HTTPS REST + WebSocket (`wss://`) server, when TLS is configured.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The HTTP REST + WebSocket server (always `Some`: it always runs).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The listeners' tasks and their stop switch, while they run.
    fn running(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        // Every update is one assignment: a poisoned lock still holds consistent data.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the listeners and their connections to stop (without waiting for them) and hands
    /// back their tasks; `None` when none run.
    fn stop_running(&self) -> Option<Running> {
        let running = self.running().take()?;
        running.stop.cancel();
        Some(running)
    }

    /// True while the listeners run.
    pub fn is_listening(&self) -> bool {
        self.running().is_some()
    }

    /// Stops every listener and closes every connection, like a cloud outage. The cloud's
    /// state (stores, records, counters) stays. Returns once the ports are free.
    pub async fn stop_listeners(&self) {
        if let Some(running) = self.stop_running() {
            for task in running.tasks {
                let _ = task.await;
            }
            tracing::info!("mode-sim listeners stopped");
        }
    }

    /// Listens again on the same addresses as before, so clients reconnect to the same ports.
    /// Stops the listeners first if they run.
    pub async fn restart_listeners(&self) -> Result<(), SimError> {
        self.stop_listeners().await;
        let mqtt = bind("MQTT", self.mqtt_addr).await?;
        let ws = bind("MQTT over WebSocket", self.mqtt_ws_addr).await?;
        let http = match self.http_addr {
            Some(addr) => bind("HTTP", addr).await?,
            None => bind("HTTP", SocketAddr::new(self.config.bind, 0)).await?,
        };
        let secure = match (self.mqtt_tls_addr, self.mqtt_wss_addr, self.https_addr) {
            (Some(mqtt), Some(wss), Some(https)) => Some(Secure {
                mqtt: bind("MQTT over TLS", mqtt).await?,
                wss: bind("MQTT over wss://", wss).await?,
                https: bind("HTTPS", https).await?,
            }),
            _ => None,
        };
        self.spawn(mqtt, ws, http, secure);
        tracing::info!("mode-sim listeners restarted");
        Ok(())
    }

    /// Stops everything, and with `data_dir` waits until every change is on disk.
    pub async fn shutdown(self) {
        self.stop_listeners().await;
        let cloud = self.cloud.clone();
        let _ = tokio::task::spawn_blocking(move || cloud.flush()).await;
    }
}

impl Drop for Sim {
    /// A dropped simulator stops its listeners and connections (without waiting for them):
    /// a test that ends without `shutdown` leaves nothing serving.
    fn drop(&mut self) {
        self.stop_running();
    }
}
