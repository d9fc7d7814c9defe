//! Helpers for the integration tests in `tests/`: a demo simulator on loopback, client
//! configurations with small timings so the suite stays fast, and waiting on notifications.

use std::time::Duration;

pub mod streams;

use mode_client::{Client, ClientConfigBuilder, Notification, Notifications};
use mode_core::backoff::BackoffPolicy;
use mode_sim::{Sim, SimConfig};

/// The demo devices.
pub const D1: u64 = 1001;
/// The second demo device.
pub const D2: u64 = 1002;
/// The demo home.
pub const HOME: u64 = 10;
/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// The API key of a demo device.
pub fn key(device: u64) -> String {
    mode_sim::config::demo_device_key(device)
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A simulator with the demo cloud, on free loopback ports.
pub async fn demo() -> Sim {
    init_tracing();
    Sim::start(SimConfig::demo())
        .await
        .expect("simulator starts")
}

/// Fast reconnects for tests: 10 ms Fibonacci units capped at 200 ms; 300 ms after an
/// authentication failure, doubling up to 2 s.
pub fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy {
        cap: Duration::from_millis(200),
        unit: Duration::from_millis(10),
        jitter: 0.2,
        stable_after: Duration::from_secs(5),
        auth_failure_wait: Duration::from_millis(300),
        auth_failure_cap: Duration::from_secs(2),
    }
}

/// A configuration of `device` against the simulator's plain MQTT port, with test timings.
pub fn config(sim: &Sim, device: u64) -> ClientConfigBuilder {
    let addr = sim.mqtt_addr();
    let builder = mode_client::ClientConfig::builder(device, key(device))
        .plain_tcp()
        .mqtt_host(addr.ip().to_string())
        .mqtt_port(addr.port())
        .keepalive(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
        .backoff(fast_backoff());
    // Never the real cloud from a test: without an HTTP server, a port nothing listens on.
    let api = sim.http_addr().map_or_else(
        || "http://127.0.0.1:9".to_owned(),
        |http| format!("http://{http}"),
    );
    builder.api_url(api)
}

/// Connects `device` and waits until its mirror holds the first reload.
pub async fn connected(sim: &Sim, device: u64) -> (Client, Notifications) {
    start(config(sim, device)).await
}

/// Connects with `builder` and waits until the first reload arrived.
pub async fn start(builder: ClientConfigBuilder) -> (Client, Notifications) {
    let (client, mut notifications) =
        Client::connect(builder.build().expect("valid config")).expect("client starts");
    next(&mut notifications, |n| {
        matches!(n, Notification::KvReloaded { .. })
    })
    .await;
    (client, notifications)
}

/// The next notification for which `pick` holds; panics after [`WAIT`].
pub async fn next(
    notifications: &mut Notifications,
    mut pick: impl FnMut(&Notification) -> bool,
) -> Notification {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(notification) = notifications.recv().await {
            if pick(&notification) {
                return Some(notification);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(notification)) => notification,
        Ok(None) => panic!("the notification stream ended"),
        Err(_) => panic!("timed out waiting for a notification"),
    }
}

/// Waits until `done` holds, polling every 10 ms; false after `timeout`.
pub async fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
