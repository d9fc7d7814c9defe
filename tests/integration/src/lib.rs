//! Helpers for the integration tests in `tests/`: a demo simulator on loopback, client
//! configurations with small timings so the suite stays fast, and waiting on notifications.

use std::time::Duration;

pub mod streams;

use mode_client::{
    ApiKey, Change, Client, ClientConfig, ClientConfigBuilder, ClientError, Delivery,
    DisconnectReason, FullQueuePolicy, Notification, Notifications,
};
use mode_core::backoff::BackoffPolicy;
use mode_core::proto::{Command, Map, Qos, Value};
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

/// A configuration of `device` with `api_key` against the simulator's plain MQTT port, with
/// nothing else set: the library's own timings, and the real cloud's REST API.
pub fn plain(sim: &Sim, device: u64, api_key: impl Into<ApiKey>) -> ClientConfigBuilder {
    let addr = sim.mqtt_addr();
    ClientConfig::builder(device, api_key)
        .plain()
        .mqtt_host(addr.ip().to_string())
        .mqtt_port(addr.port())
}

/// A configuration of `device` against the simulator's plain MQTT port, with test timings.
pub fn config(sim: &Sim, device: u64) -> ClientConfigBuilder {
    let builder = plain(sim, device, key(device))
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

/// [`config`] with a queue of `size` messages and `policy` for when it is full.
pub fn with_queue(
    sim: &Sim,
    device: u64,
    size: usize,
    policy: FullQueuePolicy,
) -> ClientConfigBuilder {
    config(sim, device)
        .queue_size(size)
        .full_queue_policy(policy)
}

/// Starts a client of `device` from `builder` with a keepalive of 2 s, then freezes its `links`
/// connections (the simulator stops answering and the sockets stay open); asserts the client
/// drops them after 1.5 keepalives of silence, saying so, and connects again.
pub async fn a_frozen_link_is_replaced(
    sim: &Sim,
    builder: ClientConfigBuilder,
    device: u64,
    links: usize,
) -> Client {
    let (client, mut notifications) = start(builder.keepalive(Duration::from_secs(2))).await;
    assert_eq!(sim.cloud().pause_connections(device), links);
    let (reason, _) = disconnected(&mut notifications).await;
    // The reason names the watchdog's 1.5 keepalives; when exactly it fires is the engine's,
    // tested on simulated time (mode-core/tests/engine.rs), not measured here.
    assert_eq!(
        reason,
        DisconnectReason::KeepaliveTimeout(Duration::from_millis(3000))
    );
    next(&mut notifications, |n| matches!(n, Notification::Connected)).await;
    client
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

/// The next `Disconnected`: its reason and the wait before the next attempt.
pub async fn disconnected(
    notifications: &mut Notifications,
) -> (DisconnectReason, Option<Duration>) {
    match next(notifications, |n| {
        matches!(n, Notification::Disconnected { .. })
    })
    .await
    {
        Notification::Disconnected { reason, retry_in } => (reason, retry_in),
        _ => unreachable!(),
    }
}

/// Waits for the `Disconnected` that says the application closed the client: no retry.
pub async fn closed(notifications: &mut Notifications) {
    next(notifications, |n| {
        matches!(
            n,
            Notification::Disconnected {
                reason: DisconnectReason::Closed,
                retry_in: None
            }
        )
    })
    .await;
}

/// The next change of the device's store: its rev and the change.
pub async fn kv_changed(notifications: &mut Notifications) -> (u64, Change) {
    match next(notifications, |n| {
        matches!(n, Notification::KvChanged { .. })
    })
    .await
    {
        Notification::KvChanged { rev, change } => (rev, change),
        _ => unreachable!(),
    }
}

/// Takes the cloud away (stops the simulator's listeners) and waits until the client of
/// `notifications` has noticed.
pub async fn cloud_gone(sim: &Sim, notifications: &mut Notifications) {
    sim.stop_listeners().await;
    disconnected(notifications).await;
}

/// The next command.
pub async fn next_command(notifications: &mut Notifications) -> Command {
    match next(notifications, |n| matches!(n, Notification::Command(_))).await {
        Notification::Command(command) => command,
        _ => unreachable!(),
    }
}

/// `{"i": i}`: the data of a numbered event, or a numbered command's parameters.
pub fn numbered(i: u64) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("i".into(), i.into());
    data
}

/// The JSON object `value` as event data or command parameters; panics on any other value.
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Queues a QoS 1 event of `event_type` with [`numbered`] data for each of `numbers`; their
/// deliveries.
pub fn send_numbered(
    client: &Client,
    event_type: &str,
    numbers: impl IntoIterator<Item = u64>,
) -> Vec<Delivery> {
    numbers
        .into_iter()
        .map(|i| {
            client
                .try_send_event(event_type, numbered(i), Qos::AtLeastOnce)
                .unwrap()
        })
        .collect()
}

/// Waits until `send` is queued and then until the cloud has the message.
pub async fn acked(send: impl Future<Output = Result<Delivery, ClientError>>) {
    let delivery = send.await.expect("queued");
    delivery.wait().await.expect("delivered");
}

/// Sends a QoS 1 event of `event_type` with `data` and waits until the cloud has it.
pub async fn send_acked(client: &Client, event_type: &str, data: Map<String, Value>) {
    acked(client.send_event(event_type, data, Qos::AtLeastOnce)).await;
}

/// Sends `count` commands `action` to `device`, with parameters `{"n": 0}`, `{"n": 1}`, ...
pub fn send_commands(sim: &Sim, device: u64, action: &str, count: u64) {
    for n in 0..count {
        let mut params = Map::new();
        params.insert("n".into(), n.into());
        sim.cloud()
            .send_command(device, Command::new(action, params))
            .unwrap();
    }
}

/// Waits until the cloud has every one of `deliveries`, each within [`WAIT`].
pub async fn delivered(deliveries: Vec<Delivery>) {
    for delivery in deliveries {
        tokio::time::timeout(WAIT, delivery.wait())
            .await
            .expect("delivered in time")
            .expect("delivered");
    }
}

/// The number (`"i"`) of each event the cloud has from `device`, in the order they arrived.
pub fn numbers_from(sim: &Sim, device: u64) -> Vec<u64> {
    sim.cloud()
        .events_from(device)
        .iter()
        .map(|e| e.event_data["i"].as_u64().unwrap())
        .collect()
}
