//! The simulated MODE cloud: projects, homes, devices, keys, DDP stores, events, commands and
//! bulk data, plus the test controls. One shared, thread-safe model behind every transport.
//!
//! # How a server uses it
//! [`Cloud`] is a cheap `Arc` handle; clone it into every connection task. Every operation is a
//! short synchronous call that never blocks on a subscriber: fan-out goes through bounded
//! per-subscriber queues, and a subscriber whose queue is full is disconnected (its
//! [`Subscription`] ends and its connection, if any, is cancelled) with a logged reason.
//!
//! - [`Cloud::open`] builds it from a [`SimConfig`] (loading `data_dir` when set);
//!   [`Cloud::new`] is the in-memory form.
//! - A device connection (MQTT, MQTT over WebSocket, or the HTTP server's `/devices/{id}/command`
//!   and `/devices/{id}/kv` WebSockets) starts with [`Cloud::connect_device`]: it checks the
//!   key, counts the attempt, and returns a [`ConnectionGuard`]. Keep the guard for as long as
//!   the socket lives; stop serving when [`ConnectionGuard::cancelled`] fires (the test controls
//!   drop connections that way), and stop reading the socket while
//!   [`ConnectionGuard::is_paused`] (await [`ConnectionGuard::wait_unpaused`]).
//! - Commands to a device: [`Cloud::subscribe_commands`] with the guard.
//! - DDP sync: [`Cloud::subscribe_kv`] gives the `reload` snapshot and a [`KvSubscription`] of
//!   later changes (already passed through the device's sync fault injector).
//! - REST: [`Cloud::authenticate`] maps an API key to a [`Principal`] (a device or an app);
//!   [`Cloud::device_info`], [`Cloud::record_event`], [`Cloud::send_command`],
//!   [`Cloud::kv_get`] / [`Cloud::kv_list`] / [`Cloud::kv_set`] / [`Cloud::kv_delete`],
//!   [`Cloud::provision`], [`Cloud::register_claim`]. Map a [`CloudError`] to a response with
//!   [`CloudError::http_status`] and [`CloudError::error_body`].
//! - An app's event stream: [`Cloud::subscribe_home`] (check [`AppAccess::can_see_home`]).
//! - Test controls (admin API): [`Cloud::drop_connections`], [`Cloud::pause_connections`],
//!   [`Cloud::resume_connections`], [`Cloud::set_sync_faults`], [`Cloud::set_bulk_module_available`],
//!   the records ([`Cloud::events`], [`Cloud::bulk_data`], [`Cloud::kv_ops`],
//!   [`Cloud::bulk_requests`], [`Cloud::commands`]) and counters
//!   ([`Cloud::connect_attempts`], [`Cloud::live_connections`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mode_core::proto::{
    BulkDataRequest, BulkDataResponse, BulkStatus, Command, DeviceId, DeviceInfo, ErrorBody, Event,
    HomeEvent, KV_DELETED_EVENT, KV_SAVED_EVENT, KvItem, KvUpdate, Map, Reload, Rev, SyncMessage,
    Value,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::config::{BulkModuleKind, SimConfig};
use crate::untrusted::untrusted;

/// A home id.
pub type HomeId = u64;
/// A project id.
pub type ProjectId = u64;

/// What went wrong, in words a user can act on. [`CloudError::http_status`] and
/// [`CloudError::error_body`] give the REST form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// No such device.
    #[error("no device {0} in this simulator; use a device id from its configuration")]
    UnknownDevice(DeviceId),
    /// No such home.
    #[error("no home {0} in this simulator")]
    UnknownHome(HomeId),
    /// The key is not the device's.
    #[error("wrong API key for device {0}; use the api_key configured for it")]
    WrongDeviceKey(DeviceId),
    /// The key belongs to nobody.
    #[error("unknown API key; use a device key or app key from the simulator's configuration")]
    UnknownApiKey,
    /// The app key may not see that device or home.
    #[error("this app key has no access to {0}")]
    Forbidden(String),
    /// A DDP key breaks the key rule.
    #[error("invalid kv key {:?}: {reason}", untrusted(key))]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The device's store has no such key.
    #[error("device {device} has no kv key {:?}", untrusted(key))]
    KeyNotFound {
        /// The device.
        device: DeviceId,
        /// The key.
        key: String,
    },
    /// No project accepts the provisioning token.
    #[error("provisioning token is not one of any project's provisioning_tokens")]
    UnknownToken,
    /// The device is not in claim mode (or its claim expired).
    #[error("device {0} is not in claim mode; POST /deviceRegistration from the device first")]
    NotClaimable(DeviceId),
    /// The project has no bulk-data module with that label.
    #[error(
        "no bulk data module labelled {:?} in project {project}",
        untrusted(label)
    )]
    UnknownBulkLabel {
        /// The project.
        project: ProjectId,
        /// The label.
        label: String,
    },
    /// The simulator holds its maximum number of connections.
    #[error(
        "too many connections (max_connections = {0}); close some or raise the limit \
         (--max-connections, or max_connections in the config)"
    )]
    TooManyConnections(usize),
}

impl CloudError {
    /// The HTTP status a REST server answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            CloudError::UnknownDevice(_)
            | CloudError::UnknownHome(_)
            | CloudError::KeyNotFound { .. }
            | CloudError::UnknownBulkLabel { .. } => 404,
            CloudError::WrongDeviceKey(_)
            | CloudError::UnknownApiKey
            | CloudError::UnknownToken => 401,
            CloudError::Forbidden(_) => 403,
            CloudError::InvalidKey { .. } => 400,
            CloudError::NotClaimable(_) => 409,
            CloudError::TooManyConnections(_) => 503,
        }
    }

    /// The machine-readable reason of the REST error body.
    pub fn reason(&self) -> &'static str {
        match self {
            CloudError::UnknownDevice(_) => "DEVICE_NOT_FOUND",
            CloudError::UnknownHome(_) => "HOME_NOT_FOUND",
            CloudError::WrongDeviceKey(_) | CloudError::UnknownApiKey => "AUTH_FAILED",
            CloudError::Forbidden(_) => "FORBIDDEN",
            CloudError::InvalidKey { .. } => "INVALID_KEY",
            CloudError::KeyNotFound { .. } => "KEY_NOT_FOUND",
            CloudError::UnknownToken => "INVALID_TOKEN",
            CloudError::NotClaimable(_) => "DEVICE_NOT_CLAIMABLE",
            CloudError::UnknownBulkLabel { .. } => "INVALID_BULK_DATA_LABEL",
            CloudError::TooManyConnections(_) => "SERVICE_UNAVAILABLE",
        }
    }

    /// The REST error body: `{"reason": ..., "data": {"message": ..., ...}}`.
    pub fn error_body(&self) -> ErrorBody {
        let mut data = Map::new();
        data.insert("message".into(), self.to_string().into());
        match self {
            CloudError::InvalidKey { key, .. } | CloudError::KeyNotFound { key, .. } => {
                data.insert("key".into(), untrusted(key).to_string().into());
            }
            CloudError::UnknownDevice(id)
            | CloudError::WrongDeviceKey(id)
            | CloudError::NotClaimable(id) => {
                data.insert("deviceId".into(), (*id).into());
            }
            _ => {}
        }
        ErrorBody::new(self.reason(), Value::Object(data))
    }
}

/// Checks a DDP key against the rule of docs/protocol.md **(ours)**: 1-255 characters of ASCII
/// letters, digits, `_` and `-`, starting and ending with a letter or digit.
pub fn validate_kv_key(key: &str) -> Result<(), CloudError> {
    let fail = |reason| {
        Err(CloudError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return fail("a key must not be empty");
    }
    if key.len() > 255 {
        return fail("a key must be at most 255 characters");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return fail("a key may hold only letters, digits, '_' and '-'");
    }
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !ends_ok(key.bytes().next()) || !ends_ok(key.bytes().last()) {
        return fail("a key must start and end with a letter or digit");
    }
    Ok(())
}

/// `t` as RFC 3339 in UTC with nanoseconds, e.g. `2026-01-02T03:04:05.123456789Z`.
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_nanos()
    )
}

/// Who an API key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A device.
    Device(DeviceId),
    /// An app or external server.
    App(AppAccess),
}

/// What an app key may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAccess {
    /// The project of the key.
    pub project_id: ProjectId,
    /// The homes it sees; `None` is every home of the project (now and later).
    pub homes: Option<Vec<HomeId>>,
}

impl AppAccess {
    /// True when the key may see home `home` of project `project`.
    pub fn can_see_home(&self, project: ProjectId, home: HomeId) -> bool {
        project == self.project_id
            && self
                .homes
                .as_ref()
                .is_none_or(|homes| homes.contains(&home))
    }
}

/// How a device connection reaches the simulator (for logs and stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// MQTT over TCP.
    Mqtt,
    /// MQTT over TLS.
    MqttTls,
    /// MQTT over WebSocket.
    MqttWs,
    /// MQTT over WebSocket over TLS (`wss://`).
    MqttWss,
    /// The HTTP server's device WebSockets.
    WebSocket,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Mqtt => "mqtt",
            Transport::MqttTls => "mqtt+tls",
            Transport::MqttWs => "mqtt+ws",
            Transport::MqttWss => "mqtt+wss",
            Transport::WebSocket => "websocket",
        })
    }
}

/// CONNECT attempts of one device, accepted and refused (client tests check for reconnect
/// storms with it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectStats {
    /// Attempts whose credentials were accepted.
    pub accepted: u64,
    /// Attempts refused (bad key, or the connection limit).
    pub refused: u64,
}

impl ConnectStats {
    /// Every attempt.
    pub fn total(&self) -> u64 {
        self.accepted + self.refused
    }
}

/// Faults the cloud injects into one device's DDP sync stream (after the `reload`), to test a
/// mirror's handling of delayed, duplicated and reordered messages. Deterministic for a seed:
/// the same seed and the same messages give the same faults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncFaults {
    /// Each message waits this long before delivery.
    pub delay: Duration,
    /// Percent (0-100) of messages delivered twice.
    pub duplicate_percent: u8,
    /// Percent (0-100) of messages held back and delivered after the next one.
    pub reorder_percent: u8,
    /// Seed of the fault choices.
    pub seed: u64,
}

/// An event as the cloud recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// The project of the home.
    pub project_id: ProjectId,
    /// The event as delivered to the home (with `homeId`, `timestamp`, `originDeviceId`).
    pub event: HomeEvent,
}

/// Bulk data the cloud received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRecord {
    /// The sender.
    pub device_id: DeviceId,
    /// The label of the topic.
    pub label: String,
    /// The bytes as received.
    pub data: Vec<u8>,
}

/// Where a kv change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvSource {
    /// The device, over its sync channel (MQTT `/kv` publish).
    Device,
    /// The REST API (app or device).
    Rest,
}

/// A kv change the cloud applied.
#[derive(Debug, Clone, PartialEq)]
pub struct KvOpRecord {
    /// The store's device.
    pub device_id: DeviceId,
    /// The change.
    pub update: KvUpdate,
    /// The store's revision after it.
    pub rev: Rev,
    /// Who asked.
    pub source: KvSource,
}

/// A bulk-data response on its way to a device, with the label of its response topic.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkResponse {
    /// The label: the response goes on `/devices/{id}/bulkData/{label}/response`.
    pub label: String,
    /// The response.
    pub response: BulkDataResponse,
}

/// A bulk-data request and the answer the cloud gave.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkRequestRecord {
    /// The sender.
    pub device_id: DeviceId,
    /// The label of the topic the request came on.
    pub label: String,
    /// The request.
    pub request: BulkDataRequest,
    /// The answer.
    pub response: BulkDataResponse,
}

/// A command the cloud sent.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRecord {
    /// The target.
    pub device_id: DeviceId,
    /// The command.
    pub command: Command,
    /// How many live subscribers it reached.
    pub delivered: usize,
}

/// A new device made by [`Cloud::provision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedDevice {
    /// Its id.
    pub device_id: DeviceId,
    /// Its API key.
    pub api_key: String,
    /// Its project.
    pub project_id: ProjectId,
}

/// A device put in claim mode by [`Cloud::register_claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTicket {
    /// The device.
    pub device_id: DeviceId,
    /// Until when it can be claimed, RFC 3339.
    pub expires: String,
}

/// A channel of the cloud to a device, for [`Cloud::publish_raw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawChannel {
    /// Commands: MQTT topic `/devices/{id}/command`, the command WebSocket.
    Command,
    /// DDP sync: MQTT topic `/devices/{id}/kv`, the kv WebSocket.
    Kv,
}

/// Bytes the cloud sends as they are, on one channel ([`Cloud::publish_raw`]).
#[derive(Debug, Clone)]
pub struct RawPublish {
    /// Where they go.
    pub channel: RawChannel,
    /// The payload, unchecked.
    pub payload: Bytes,
}

/// How long claim mode lasts.
pub const CLAIM_DURATION: Duration = Duration::from_secs(15 * 60);

// ---------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------

/// A bounded stream of messages from the cloud to one subscriber. It ends (`recv` gives `None`)
/// when the subscriber fell too far behind ([`Subscription::overflowed`] then says so), or when
/// its connection was dropped.
#[derive(Debug)]
pub struct Subscription<T> {
    rx: mpsc::Receiver<T>,
    overflowed: Arc<AtomicBool>,
}

impl<T> Subscription<T> {
    /// The next message; `None` when the stream ended.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    /// True when the stream was cut because the subscriber fell behind.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }
}

/// The sending half the cloud keeps for one subscriber.
struct Subscriber<T> {
    tx: mpsc::Sender<T>,
    overflowed: Arc<AtomicBool>,
    /// The connection to cancel when this subscriber falls behind.
    owner: Option<CancellationToken>,
}

impl<T: Clone> Subscriber<T> {
    fn new(capacity: usize, owner: Option<CancellationToken>) -> (Self, Subscription<T>) {
        let (tx, rx) = mpsc::channel(capacity);
        let overflowed = Arc::new(AtomicBool::new(false));
        let sub = Subscriber {
            tx,
            overflowed: overflowed.clone(),
            owner,
        };
        (sub, Subscription { rx, overflowed })
    }
}

/// Sends `msg` to every subscriber in `subs`, dropping the closed ones and disconnecting the
/// ones that fell behind. Never waits. Returns how many received it.
fn fan_out<T: Clone>(subs: &mut Vec<Subscriber<T>>, msg: &T, what: &str) -> usize {
    let mut delivered = 0;
    subs.retain(|sub| match sub.tx.try_send(msg.clone()) {
        Ok(()) => {
            delivered += 1;
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!(
                stream = what,
                "subscriber fell behind (queue full); disconnecting it"
            );
            sub.overflowed.store(true, Ordering::Relaxed);
            if let Some(owner) = &sub.owner {
                owner.cancel();
            }
            false
        }
    });
    delivered
}

/// A device's DDP sync stream after the `reload`, with the device's [`SyncFaults`] applied.
/// [`KvSubscription::recv`] is cancel-safe: a message waiting out a delay or held back for
/// reordering stays in the subscription when the future is dropped (a server selects on it
/// next to its socket).
pub struct KvSubscription {
    inner: Subscription<SyncMessage>,
    faults: Arc<Mutex<SyncFaults>>,
    device_id: DeviceId,
    /// Boxed so the subscription stays small next to the other streams a server holds.
    queue: Box<FaultQueue>,
}

/// Where [`KvSubscription`] keeps messages between its fault decisions.
struct FaultQueue {
    rng: SplitMix64,
    seeded_with: Option<u64>,
    /// Decided, delivered in this order.
    ready: VecDeque<SyncMessage>,
    /// Received, waiting out its delay until then.
    delayed: Option<(SyncMessage, tokio::time::Instant)>,
    /// Held back to go after its successor, or alone at that time.
    held: Option<(SyncMessage, tokio::time::Instant)>,
}

/// How long a message held back for reordering waits for a successor before going out alone.
const REORDER_WAIT: Duration = Duration::from_millis(20);

impl KvSubscription {
    fn new(
        inner: Subscription<SyncMessage>,
        faults: Arc<Mutex<SyncFaults>>,
        device_id: DeviceId,
    ) -> Self {
        KvSubscription {
            inner,
            faults,
            device_id,
            queue: Box::new(FaultQueue {
                rng: SplitMix64(0),
                seeded_with: None,
                ready: VecDeque::new(),
                delayed: None,
                held: None,
            }),
        }
    }

    /// The next sync message; `None` when the stream ended.
    pub async fn recv(&mut self) -> Option<SyncMessage> {
        loop {
            if let Some(msg) = self.queue.ready.pop_front() {
                return Some(msg);
            }
            if let Some((_, until)) = &self.queue.delayed {
                tokio::time::sleep_until(*until).await;
                if let Some((msg, _)) = self.queue.delayed.take() {
                    self.decide(msg);
                }
                continue;
            }
            let received = match &self.queue.held {
                Some((_, until)) => {
                    let until = *until;
                    tokio::select! {
                        msg = self.inner.recv() => Some(msg),
                        _ = tokio::time::sleep_until(until) => None,
                    }
                }
                None => Some(self.inner.recv().await),
            };
            match received {
                // The held message waited long enough for a successor: it goes alone.
                None => {
                    if let Some((held, _)) = self.queue.held.take() {
                        self.deliver(held);
                    }
                }
                Some(None) => match self.queue.held.take() {
                    Some((held, _)) => self.deliver(held),
                    None => return None,
                },
                Some(Some(msg)) => {
                    let delay = self.faults().delay;
                    if delay.is_zero() {
                        self.decide(msg);
                    } else {
                        self.queue.delayed = Some((msg, tokio::time::Instant::now() + delay));
                    }
                }
            }
        }
    }

    /// The device's faults now, with the generator seeded for them.
    fn faults(&mut self) -> SyncFaults {
        let faults = lock(&self.faults).clone();
        if self.queue.seeded_with != Some(faults.seed) {
            self.queue.rng =
                SplitMix64(faults.seed ^ self.device_id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            self.queue.seeded_with = Some(faults.seed);
        }
        faults
    }

    /// Places a message that is due: after a held one's successor, held back itself, or ready.
    fn decide(&mut self, msg: SyncMessage) {
        let faults = self.faults();
        if let Some((held, _)) = self.queue.held.take() {
            self.deliver(msg);
            self.deliver(held);
        } else if self.queue.rng.percent(faults.reorder_percent) {
            self.queue.held = Some((msg, tokio::time::Instant::now() + REORDER_WAIT));
        } else {
            self.deliver(msg);
        }
    }

    /// Makes `msg` ready, twice when the duplicate fault says so.
    fn deliver(&mut self, msg: SyncMessage) {
        let faults = self.faults();
        if self.queue.rng.percent(faults.duplicate_percent) {
            self.queue.ready.push_back(msg.clone());
        }
        self.queue.ready.push_back(msg);
    }

    /// True when the stream was cut because the subscriber fell behind.
    pub fn overflowed(&self) -> bool {
        self.inner.overflowed()
    }
}

/// A small deterministic generator for fault choices (no dependency, same sequence everywhere).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn percent(&mut self, p: u8) -> bool {
        p > 0 && self.next() % 100 < u64::from(p)
    }
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

/// One live device connection, registered with the cloud. Dropping it unregisters it.
pub struct ConnectionGuard {
    cloud: Cloud,
    device_id: DeviceId,
    conn_id: u64,
    transport: Transport,
    cancel: CancellationToken,
    paused: watch::Receiver<bool>,
}

impl ConnectionGuard {
    /// The device.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The transport it was registered with.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Resolves when the cloud wants this connection closed (a test dropped it, the simulator
    /// stops, or one of its subscriptions fell behind).
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// True once the connection should close.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// A token that fires with [`ConnectionGuard::cancelled`], for tasks of the connection.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// True while a test has paused the device's connections: read nothing from the socket.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Resolves when a test pauses the connection (at once if it is paused now). Select on it
    /// next to the socket read, then stop reading and await [`ConnectionGuard::wait_unpaused`].
    pub async fn paused(&self) {
        let mut paused = self.paused.clone();
        if paused.wait_for(|paused| *paused).await.is_err() {
            // The cloud forgot the connection; it will never be paused again.
            std::future::pending::<()>().await;
        }
    }

    /// Waits until the connection is no longer paused (or is cancelled).
    pub async fn wait_unpaused(&mut self) {
        tokio::select! {
            _ = self.paused.wait_for(|paused| !*paused) => {}
            _ = self.cancel.cancelled() => {}
        }
    }
}

impl fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionGuard")
            .field("device_id", &self.device_id)
            .field("conn_id", &self.conn_id)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut state = self.cloud.state();
        if let Some(conns) = state.connections.get_mut(&self.device_id) {
            conns.retain(|c| c.id != self.conn_id);
        }
        state.live_total = state.live_total.saturating_sub(1);
        drop(state);
        self.cloud.notify();
    }
}

struct ConnEntry {
    id: u64,
    cancel: CancellationToken,
    pause: watch::Sender<bool>,
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

struct Device {
    project_id: ProjectId,
    api_key: String,
    name: String,
    tag: String,
    device_class: String,
    home_id: Option<HomeId>,
    store: BTreeMap<String, (Value, String)>,
    rev: Rev,
    faults: Arc<Mutex<SyncFaults>>,
    claimable_until: Option<SystemTime>,
    command_subs: Vec<Subscriber<Command>>,
    raw_subs: Vec<Subscriber<RawPublish>>,
    kv_subs: Vec<Subscriber<SyncMessage>>,
    bulk_subs: Vec<Subscriber<BulkResponse>>,
}

struct Home {
    project_id: ProjectId,
    subs: Vec<Subscriber<HomeEvent>>,
}

struct BulkModule {
    kind: BulkModuleKind,
    available: bool,
}

#[derive(Default)]
struct Records {
    events: Vec<EventRecord>,
    bulk: Vec<BulkRecord>,
    kv_ops: Vec<KvOpRecord>,
    bulk_requests: Vec<BulkRequestRecord>,
    commands: Vec<CommandRecord>,
    undecodable: u64,
    /// PINGREQs per device: a test waits for keepalive rounds as events, not as time.
    pings: HashMap<DeviceId, u64>,
}

#[derive(Default)]
struct State {
    devices: BTreeMap<DeviceId, Device>,
    homes: HashMap<HomeId, Home>,
    keys: HashMap<String, Principal>,
    bulk_modules: HashMap<(ProjectId, String), BulkModule>,
    provisioning_tokens: HashMap<String, ProjectId>,
    connections: HashMap<DeviceId, Vec<ConnEntry>>,
    connect_stats: HashMap<DeviceId, ConnectStats>,
    live_total: usize,
    records: Records,
    /// The writer of `--data-dir`, when persistence is on.
    persist: Option<crate::persist::Writer>,
    /// Sequence number of the next event in the persistent log.
    event_seq: u64,
}

struct Inner {
    state: Mutex<State>,
    changed: Notify,
    next_conn: AtomicU64,
    subscriber_queue: usize,
    max_connections: usize,
}

/// The simulated cloud. Cheap to clone; every clone is the same cloud.
#[derive(Clone)]
pub struct Cloud {
    inner: Arc<Inner>,
}

impl fmt::Debug for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cloud").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data (every update is one step), so a
    // poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cloud {
    /// A cloud holding the projects of `config`, with the stores and event log kept in
    /// `config.data_dir` when it is set (loaded now, written as they change), in memory
    /// otherwise. Stored keys of devices the configuration no longer has are ignored.
    pub fn open(config: &SimConfig) -> Result<Cloud, crate::persist::PersistError> {
        let cloud = Cloud::new(config);
        if let Some(dir) = &config.data_dir {
            let (loaded, writer) = crate::persist::open(dir)?;
            let mut state = cloud.state();
            for (device_id, rev, items) in loaded.stores {
                match state.devices.get_mut(&device_id) {
                    Some(device) => {
                        device.rev = rev;
                        device.store = items
                            .into_iter()
                            .map(|item| {
                                (
                                    item.key,
                                    (item.value, item.modification_time.unwrap_or_default()),
                                )
                            })
                            .collect();
                    }
                    None => tracing::warn!(
                        device_id,
                        "stored keys of a device not in the configuration are ignored"
                    ),
                }
            }
            state.event_seq = loaded.events.len() as u64;
            state.records.events = loaded
                .events
                .into_iter()
                .map(|(project_id, event)| EventRecord { project_id, event })
                .collect();
            state.persist = Some(writer);
        }
        Ok(cloud)
    }

    /// A ticket for every change made so far (kv writes, events): [`Ticket::wait`] returns
    /// once they are on disk with `data_dir`, at once without. A server acknowledges a change
    /// to its client only after waiting for it.
    ///
    /// [`Ticket::wait`]: crate::persist::Ticket::wait
    pub fn ticket(&self) -> crate::persist::Ticket {
        match &self.state().persist {
            Some(writer) => writer.ticket(),
            None => crate::persist::Ticket::ready(),
        }
    }

    /// Waits until every change so far is on disk (a no-op without persistence).
    pub fn flush(&self) {
        // Flushing under the state lock would stall the cloud; the writer keeps order anyway.
        let writer_tx = self.state().persist.as_ref().map(|w| w.flusher());
        if let Some(flush) = writer_tx {
            flush();
        }
    }

    /// An in-memory cloud holding the projects of `config` (already validated by
    /// [`SimConfig::validate`]; invalid parts are skipped; `data_dir` is not used: see
    /// [`Cloud::open`]).
    pub fn new(config: &SimConfig) -> Cloud {
        let mut state = State::default();
        for project in &config.projects {
            for home in &project.homes {
                state.homes.insert(
                    home.id,
                    Home {
                        project_id: project.id,
                        subs: Vec::new(),
                    },
                );
            }
            for d in &project.devices {
                state
                    .keys
                    .insert(d.api_key.clone(), Principal::Device(d.id));
                state.devices.insert(
                    d.id,
                    Device::new(project.id, d.api_key.clone(), d.home_id, d),
                );
            }
            for app in &project.app_keys {
                let access = AppAccess {
                    project_id: project.id,
                    homes: app.homes.clone(),
                };
                state.keys.insert(app.key.clone(), Principal::App(access));
            }
            for m in &project.bulk_data {
                state.bulk_modules.insert(
                    (project.id, m.label.clone()),
                    BulkModule {
                        kind: m.module,
                        available: m.available,
                    },
                );
            }
            for token in &project.provisioning_tokens {
                state.provisioning_tokens.insert(token.clone(), project.id);
            }
        }
        Cloud {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                changed: Notify::new(),
                next_conn: AtomicU64::new(1),
                subscriber_queue: config.subscriber_queue.max(1),
                max_connections: config.max_connections.max(1),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    fn notify(&self) {
        self.inner.changed.notify_waiters();
    }

    /// Waits until `done(self)` holds, re-checking after every change the cloud records
    /// (events, kv ops, bulk data, commands, connections). False on timeout.
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&Cloud) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(self);
            }
        }
    }

    // -- authentication and connections ----------------------------------------------------

    /// Who `api_key` belongs to.
    pub fn authenticate(&self, api_key: &str) -> Result<Principal, CloudError> {
        self.state()
            .keys
            .get(api_key)
            .cloned()
            .ok_or(CloudError::UnknownApiKey)
    }

    /// Checks `api_key` for `device_id` without counting a connection attempt.
    pub fn authenticate_device(
        &self,
        device_id: DeviceId,
        api_key: &str,
    ) -> Result<(), CloudError> {
        let state = self.state();
        let device = state
            .devices
            .get(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?;
        if device.api_key == api_key {
            Ok(())
        } else {
            Err(CloudError::WrongDeviceKey(device_id))
        }
    }

    /// A device connection attempt: checks the key, counts the attempt (accepted or refused),
    /// and registers the connection. Keep the guard while the connection lives.
    pub fn connect_device(
        &self,
        device_id: DeviceId,
        api_key: &str,
        transport: Transport,
    ) -> Result<ConnectionGuard, CloudError> {
        self.connect_device_with(device_id, Some(api_key), transport)
    }

    /// [`connect_device`](Self::connect_device), with `api_key` `None` when the device proved
    /// who it is otherwise (a verified client certificate naming it): no key is checked then.
    pub fn connect_device_with(
        &self,
        device_id: DeviceId,
        api_key: Option<&str>,
        transport: Transport,
    ) -> Result<ConnectionGuard, CloudError> {
        let result = self.connect_locked(device_id, api_key, transport);
        match &result {
            Ok(_) => tracing::info!(device_id, %transport, "device connected"),
            Err(err) => tracing::info!(device_id, %transport, %err, "device connection refused"),
        }
        self.notify();
        result
    }

    fn connect_locked(
        &self,
        device_id: DeviceId,
        api_key: Option<&str>,
        transport: Transport,
    ) -> Result<ConnectionGuard, CloudError> {
        let mut state = self.state();
        let verdict = match state.devices.get(&device_id) {
            None => Err(CloudError::UnknownDevice(device_id)),
            Some(d) if api_key.is_some_and(|k| k != d.api_key) => {
                Err(CloudError::WrongDeviceKey(device_id))
            }
            Some(_) if state.live_total >= self.inner.max_connections => {
                Err(CloudError::TooManyConnections(self.inner.max_connections))
            }
            Some(_) => Ok(()),
        };
        let stats = state.connect_stats.entry(device_id).or_default();
        if let Err(err) = verdict {
            stats.refused += 1;
            return Err(err);
        }
        stats.accepted += 1;
        state.live_total += 1;
        let conn_id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        let (pause, paused) = watch::channel(false);
        state
            .connections
            .entry(device_id)
            .or_default()
            .push(ConnEntry {
                id: conn_id,
                cancel: cancel.clone(),
                pause,
            });
        Ok(ConnectionGuard {
            cloud: self.clone(),
            device_id,
            conn_id,
            transport,
            cancel,
            paused,
        })
    }

    /// Counts a refused CONNECT whose credentials never reached [`Cloud::connect_device`]
    /// (e.g. a refused protocol level), when the username named a device.
    pub fn count_refused_connect(&self, device_id: DeviceId) {
        self.state()
            .connect_stats
            .entry(device_id)
            .or_default()
            .refused += 1;
        self.notify();
    }

    // -- devices and homes -------------------------------------------------------------------

    /// What `GET /devices/{id}` answers.
    pub fn device_info(&self, device_id: DeviceId) -> Result<DeviceInfo, CloudError> {
        let state = self.state();
        let d = state
            .devices
            .get(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?;
        Ok(DeviceInfo {
            id: device_id,
            project_id: Some(d.project_id),
            name: d.name.clone(),
            tag: d.tag.clone(),
            device_class: d.device_class.clone(),
            home_id: d.home_id,
            raw: Map::new(),
        })
    }

    /// Every device id, ascending.
    pub fn device_ids(&self) -> Vec<DeviceId> {
        self.state().devices.keys().copied().collect()
    }

    /// The project of home `home`.
    pub fn home_project(&self, home: HomeId) -> Result<ProjectId, CloudError> {
        self.state()
            .homes
            .get(&home)
            .map(|h| h.project_id)
            .ok_or(CloudError::UnknownHome(home))
    }

    /// True when `app` may act on device `device_id` (it sees the device's home).
    pub fn app_can_access_device(&self, app: &AppAccess, device_id: DeviceId) -> bool {
        let state = self.state();
        state.devices.get(&device_id).is_some_and(|d| {
            d.project_id == app.project_id
                && d.home_id
                    .is_none_or(|home| app.can_see_home(d.project_id, home))
        })
    }

    // -- events ------------------------------------------------------------------------------

    /// Records an event from `device_id` and delivers it to the device's home. Returns the
    /// event as delivered (a device without a home has its events recorded with home id 0 and
    /// delivered nowhere).
    pub fn record_event(&self, device_id: DeviceId, event: Event) -> Result<HomeEvent, CloudError> {
        let mut state = self.state();
        let device = state
            .devices
            .get(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?;
        let (project_id, home_id) = (device.project_id, device.home_id);
        let home_event = HomeEvent {
            home_id: home_id.unwrap_or(0),
            timestamp: rfc3339_nanos(SystemTime::now()),
            event_type: event.event_type,
            event_data: event.event_data,
            origin_device_id: Some(device_id),
        };
        state.deliver_home_event(project_id, home_id, home_event.clone());
        drop(state);
        self.notify();
        Ok(home_event)
    }

    /// Subscribes to the events of home `home` (what an app's event WebSocket streams).
    pub fn subscribe_home(&self, home: HomeId) -> Result<Subscription<HomeEvent>, CloudError> {
        let mut state = self.state();
        let h = state
            .homes
            .get_mut(&home)
            .ok_or(CloudError::UnknownHome(home))?;
        let (sub, subscription) = Subscriber::new(self.inner.subscriber_queue, None);
        h.subs.push(sub);
        Ok(subscription)
    }

    /// Counts a message a device sent that could not be decoded (the connection stays).
    pub fn count_undecodable(&self, device_id: DeviceId, what: &str, err: &dyn fmt::Display) {
        tracing::warn!(device_id, what, err = %untrusted(err), "undecodable message from device");
        self.state().records.undecodable += 1;
        self.notify();
    }

    /// Counts a keepalive PINGREQ of `device_id`.
    pub(crate) fn count_ping(&self, device_id: DeviceId) {
        *self.state().records.pings.entry(device_id).or_default() += 1;
        self.notify();
    }

    /// How many keepalive PINGREQs `device_id` sent, over all its connections.
    pub fn pings_from(&self, device_id: DeviceId) -> u64 {
        self.state()
            .records
            .pings
            .get(&device_id)
            .copied()
            .unwrap_or(0)
    }

    /// How many undecodable messages devices sent.
    pub fn undecodable_count(&self) -> u64 {
        self.state().records.undecodable
    }

    // -- commands ----------------------------------------------------------------------------

    /// Sends `command` to every live command subscriber of `device_id` (MQTT and WebSocket
    /// alike). Returns how many received it; 0 when the device is offline (not an error).
    pub fn send_command(&self, device_id: DeviceId, command: Command) -> Result<usize, CloudError> {
        let mut state = self.state();
        let device = state
            .devices
            .get_mut(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?;
        let delivered = fan_out(&mut device.command_subs, &command, "commands");
        tracing::debug!(device_id, action = %command.action, delivered, "command sent");
        state.records.commands.push(CommandRecord {
            device_id,
            command,
            delivered,
        });
        drop(state);
        self.notify();
        Ok(delivered)
    }

    /// Subscribes connection `conn` to its device's commands.
    pub fn subscribe_commands(
        &self,
        conn: &ConnectionGuard,
    ) -> Result<Subscription<Command>, CloudError> {
        let mut state = self.state();
        let device = state
            .devices
            .get_mut(&conn.device_id)
            .ok_or(CloudError::UnknownDevice(conn.device_id))?;
        let (sub, subscription) = Subscriber::new(self.inner.subscriber_queue, Some(conn.token()));
        device.command_subs.push(sub);
        Ok(subscription)
    }

    /// Subscribes connection `conn` to its device's bulk-data responses, every label alike:
    /// the connection picks the labels whose response topic it subscribed to.
    pub fn subscribe_bulk_responses(
        &self,
        conn: &ConnectionGuard,
    ) -> Result<Subscription<BulkResponse>, CloudError> {
        let mut state = self.state();
        let device = state
            .devices
            .get_mut(&conn.device_id)
            .ok_or(CloudError::UnknownDevice(conn.device_id))?;
        let (sub, subscription) = Subscriber::new(self.inner.subscriber_queue, Some(conn.token()));
        device.bulk_subs.push(sub);
        Ok(subscription)
    }

    // -- DDP ---------------------------------------------------------------------------------

    /// Subscribes connection `conn` to its device's DDP sync channel: the `reload` snapshot and
    /// every later change, taken atomically (nothing lost or repeated between the two).
    pub fn subscribe_kv(
        &self,
        conn: &ConnectionGuard,
    ) -> Result<(Reload, KvSubscription), CloudError> {
        let device_id = conn.device_id;
        let mut state = self.state();
        let device = state
            .devices
            .get_mut(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?;
        let (sub, subscription) = Subscriber::new(self.inner.subscriber_queue, Some(conn.token()));
        device.kv_subs.push(sub);
        let reload = device.reload();
        let kv = KvSubscription::new(subscription, device.faults.clone(), device_id);
        Ok((reload, kv))
    }

    /// The whole store of `device_id` as a `reload` would carry it.
    pub fn kv_snapshot(&self, device_id: DeviceId) -> Result<Reload, CloudError> {
        let state = self.state();
        let device = state
            .devices
            .get(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?;
        Ok(device.reload())
    }

    /// Every key of `device_id`'s store, in key order (the list form of `GET /devices/{id}/kv`).
    pub fn kv_list(&self, device_id: DeviceId) -> Result<Vec<KvItem>, CloudError> {
        Ok(self.kv_snapshot(device_id)?.items)
    }

    /// One key of `device_id`'s store.
    pub fn kv_get(&self, device_id: DeviceId, key: &str) -> Result<KvItem, CloudError> {
        let state = self.state();
        let device = state
            .devices
            .get(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?;
        let (value, time) = device
            .store
            .get(key)
            .ok_or_else(|| CloudError::KeyNotFound {
                device: device_id,
                key: key.to_owned(),
            })?;
        Ok(KvItem {
            key: key.to_owned(),
            value: value.clone(),
            modification_time: Some(time.clone()),
        })
    }

    /// Applies `update` to `device_id`'s store: checks the key, bumps the revision, sends the
    /// resulting `set`/`delete` to every sync subscriber of the device, and emits
    /// `_deviceKVSaved_` / `_deviceKVDeleted_` to its home. Returns the new revision. Deleting a
    /// missing key is [`CloudError::KeyNotFound`] and changes nothing.
    pub fn kv_apply(
        &self,
        device_id: DeviceId,
        update: KvUpdate,
        source: KvSource,
    ) -> Result<Rev, CloudError> {
        validate_kv_key(update.key())?;
        let mut state = self.state();
        let device = state
            .devices
            .get_mut(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?;
        let (sync, event) = match &update {
            KvUpdate::Set { key, value } => {
                device.rev += 1;
                let now = rfc3339_nanos(SystemTime::now());
                device.store.insert(key.clone(), (value.clone(), now));
                let mut data = Map::new();
                data.insert("deviceId".into(), device_id.into());
                data.insert("key".into(), key.clone().into());
                data.insert("value".into(), value.clone());
                let sync = SyncMessage::Set {
                    rev: device.rev,
                    key: key.clone(),
                    value: value.clone(),
                };
                (sync, Event::new(KV_SAVED_EVENT, data))
            }
            KvUpdate::Delete { key } => {
                if device.store.remove(key).is_none() {
                    return Err(CloudError::KeyNotFound {
                        device: device_id,
                        key: key.clone(),
                    });
                }
                device.rev += 1;
                let mut data = Map::new();
                data.insert("deviceId".into(), device_id.into());
                data.insert("key".into(), key.clone().into());
                let sync = SyncMessage::Delete {
                    rev: device.rev,
                    key: key.clone(),
                };
                (sync, Event::new(KV_DELETED_EVENT, data))
            }
        };
        let rev = device.rev;
        fan_out(&mut device.kv_subs, &sync, "kv sync");
        let persisted = match &update {
            KvUpdate::Set { key, .. } => {
                device
                    .store
                    .get(key)
                    .map(|(value, time)| crate::persist::Op::KvSet {
                        device: device_id,
                        item: KvItem {
                            key: key.clone(),
                            value: value.clone(),
                            modification_time: Some(time.clone()),
                        },
                        rev,
                    })
            }
            KvUpdate::Delete { key } => Some(crate::persist::Op::KvDelete {
                device: device_id,
                key: key.clone(),
                rev,
            }),
        };
        let (project_id, home_id) = (device.project_id, device.home_id);
        let home_event = HomeEvent {
            home_id: home_id.unwrap_or(0),
            timestamp: rfc3339_nanos(SystemTime::now()),
            event_type: event.event_type,
            event_data: event.event_data,
            origin_device_id: None,
        };
        if let (Some(persist), Some(op)) = (&state.persist, persisted) {
            persist.send(op);
        }
        state.deliver_home_event(project_id, home_id, home_event);
        state.records.kv_ops.push(KvOpRecord {
            device_id,
            update,
            rev,
            source,
        });
        drop(state);
        tracing::debug!(device_id, rev, "kv store changed");
        self.notify();
        Ok(rev)
    }

    /// Sets `key` of `device_id` to `value` (see [`Cloud::kv_apply`]).
    pub fn kv_set(
        &self,
        device_id: DeviceId,
        key: &str,
        value: Value,
        source: KvSource,
    ) -> Result<Rev, CloudError> {
        let update = KvUpdate::Set {
            key: key.to_owned(),
            value,
        };
        self.kv_apply(device_id, update, source)
    }

    /// Deletes `key` of `device_id` (see [`Cloud::kv_apply`]).
    pub fn kv_delete(
        &self,
        device_id: DeviceId,
        key: &str,
        source: KvSource,
    ) -> Result<Rev, CloudError> {
        self.kv_apply(
            device_id,
            KvUpdate::Delete {
                key: key.to_owned(),
            },
            source,
        )
    }

    // -- bulk data ---------------------------------------------------------------------------

    /// Records bulk data `data` sent by `device_id` on `label`.
    pub fn record_bulk_data(
        &self,
        device_id: DeviceId,
        label: &str,
        data: &[u8],
    ) -> Result<(), CloudError> {
        let mut state = self.state();
        if !state.devices.contains_key(&device_id) {
            return Err(CloudError::UnknownDevice(device_id));
        }
        state.records.bulk.push(BulkRecord {
            device_id,
            label: label.to_owned(),
            data: data.to_vec(),
        });
        drop(state);
        self.notify();
        Ok(())
    }

    /// Answers a bulk-data request that `device_id` published on `label`'s request topic, by
    /// the project's module for `label`: `OK` with the module's result, `INVALID_BULK_DATA_LABEL`
    /// when no module has the label, `SERVICE_UNAVAILABLE` when the module is down. The response
    /// goes to every bulk-response subscriber of the device (any of its connections, not only
    /// the one that asked), and is returned.
    pub fn bulk_request(
        &self,
        device_id: DeviceId,
        label: &str,
        request: BulkDataRequest,
    ) -> Result<BulkDataResponse, CloudError> {
        let mut state = self.state();
        let project = state
            .devices
            .get(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?
            .project_id;
        let (status, payload) = match state.bulk_modules.get(&(project, label.to_owned())) {
            None => (BulkStatus::InvalidBulkDataLabel, Value::Object(Map::new())),
            Some(m) if !m.available => (BulkStatus::ServiceUnavailable, Value::Object(Map::new())),
            Some(m) => match m.kind {
                BulkModuleKind::Echo => (BulkStatus::Ok, request.payload.clone()),
            },
        };
        let response = BulkDataResponse {
            request_id: request.request_id.clone(),
            status,
            payload,
        };
        if let Some(device) = state.devices.get_mut(&device_id) {
            let labelled = BulkResponse {
                label: label.to_owned(),
                response: response.clone(),
            };
            fan_out(&mut device.bulk_subs, &labelled, "bulk data responses");
        }
        state.records.bulk_requests.push(BulkRequestRecord {
            device_id,
            label: label.to_owned(),
            request,
            response: response.clone(),
        });
        drop(state);
        self.notify();
        Ok(response)
    }

    /// Takes project `project`'s module `label` down (`false`: requests get
    /// `SERVICE_UNAVAILABLE`) or up again.
    pub fn set_bulk_module_available(
        &self,
        project: ProjectId,
        label: &str,
        available: bool,
    ) -> Result<(), CloudError> {
        let mut state = self.state();
        let module = state
            .bulk_modules
            .get_mut(&(project, label.to_owned()))
            .ok_or_else(|| CloudError::UnknownBulkLabel {
                project,
                label: label.to_owned(),
            })?;
        module.available = available;
        Ok(())
    }

    // -- provisioning ------------------------------------------------------------------------

    /// Provisions a new device with a project's provisioning token (`POST /devices`): a fresh
    /// id (one more than the largest) and key, in no home. It can then connect at once.
    pub fn provision(&self, token: &str) -> Result<ProvisionedDevice, CloudError> {
        let mut state = self.state();
        let project_id = *state
            .provisioning_tokens
            .get(token)
            .ok_or(CloudError::UnknownToken)?;
        let device_id = state.devices.keys().next_back().map_or(1, |id| id + 1);
        let api_key = format!(
            "v1.sim-device-{device_id}-{:016x}",
            SplitMix64(device_id ^ now_nanos()).next()
        );
        let config = crate::config::DeviceConfig {
            id: device_id,
            api_key: api_key.clone(),
            name: format!("device {device_id}"),
            tag: String::new(),
            device_class: String::new(),
            home_id: None,
        };
        state
            .keys
            .insert(api_key.clone(), Principal::Device(device_id));
        state.devices.insert(
            device_id,
            Device::new(project_id, api_key.clone(), None, &config),
        );
        tracing::info!(device_id, project_id, "device provisioned");
        Ok(ProvisionedDevice {
            device_id,
            api_key,
            project_id,
        })
    }

    /// Puts `device_id` in claim mode for [`CLAIM_DURATION`] (`POST /deviceRegistration`).
    pub fn register_claim(&self, device_id: DeviceId) -> Result<ClaimTicket, CloudError> {
        let mut state = self.state();
        let device = state
            .devices
            .get_mut(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?;
        let until = SystemTime::now() + CLAIM_DURATION;
        device.claimable_until = Some(until);
        Ok(ClaimTicket {
            device_id,
            expires: rfc3339_nanos(until),
        })
    }

    /// Takes `device_id` out of claim mode (`POST /deviceRegistration` with `claimable` false);
    /// a device not in claim mode stays so.
    pub fn end_claim(&self, device_id: DeviceId) -> Result<(), CloudError> {
        let mut state = self.state();
        let device = state
            .devices
            .get_mut(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?;
        device.claimable_until = None;
        Ok(())
    }

    /// Claims a device in claim mode into `home` of the same project; it leaves claim mode.
    pub fn claim(&self, device_id: DeviceId, home: HomeId) -> Result<(), CloudError> {
        let mut state = self.state();
        let home_project = state
            .homes
            .get(&home)
            .ok_or(CloudError::UnknownHome(home))?
            .project_id;
        let device = state
            .devices
            .get_mut(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?;
        let claimable = device
            .claimable_until
            .is_some_and(|t| t > SystemTime::now());
        if !claimable || device.project_id != home_project {
            return Err(CloudError::NotClaimable(device_id));
        }
        device.claimable_until = None;
        device.home_id = Some(home);
        Ok(())
    }

    // -- test controls -----------------------------------------------------------------------

    /// Publishes `payload` as is on `channel` of every live connection of `device_id` that
    /// receives that channel (an MQTT subscription to the topic, or the HTTP WebSocket of the
    /// channel): malformed messages from the cloud, for client tests. Returns how many
    /// connections it went to; 0 when the device is offline (not an error).
    pub fn publish_raw(
        &self,
        device_id: DeviceId,
        channel: RawChannel,
        payload: Bytes,
    ) -> Result<usize, CloudError> {
        let mut state = self.state();
        let device = state
            .devices
            .get_mut(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?;
        let sent = fan_out(
            &mut device.raw_subs,
            &RawPublish { channel, payload },
            "raw publishes",
        );
        tracing::info!(device_id, ?channel, sent, "test control: raw publish");
        Ok(sent)
    }

    /// Subscribes connection `conn` to the raw publishes of its device (every channel: the
    /// connection forwards those of the channels it receives).
    pub fn subscribe_raw(
        &self,
        conn: &ConnectionGuard,
    ) -> Result<Subscription<RawPublish>, CloudError> {
        let mut state = self.state();
        let device = state
            .devices
            .get_mut(&conn.device_id)
            .ok_or(CloudError::UnknownDevice(conn.device_id))?;
        let (sub, subscription) = Subscriber::new(self.inner.subscriber_queue, Some(conn.token()));
        device.raw_subs.push(sub);
        Ok(subscription)
    }

    /// Drops every live connection of `device_id` (all transports). Returns how many.
    pub fn drop_connections(&self, device_id: DeviceId) -> usize {
        let state = self.state();
        let conns = state
            .connections
            .get(&device_id)
            .map_or(&[][..], |c| &c[..]);
        for c in conns {
            c.cancel.cancel();
        }
        tracing::info!(
            device_id,
            count = conns.len(),
            "test control: dropping connections"
        );
        conns.len()
    }

    /// Drops every live connection of every device.
    pub fn drop_all_connections(&self) -> usize {
        let state = self.state();
        let mut n = 0;
        for c in state.connections.values().flatten() {
            c.cancel.cancel();
            n += 1;
        }
        n
    }

    /// Pauses the live connections of `device_id`: the servers stop reading from their sockets
    /// and sending to them, like a half-open link. New connections are not paused. Returns how
    /// many were paused.
    pub fn pause_connections(&self, device_id: DeviceId) -> usize {
        self.set_paused(device_id, true)
    }

    /// Resumes paused connections of `device_id`.
    pub fn resume_connections(&self, device_id: DeviceId) -> usize {
        self.set_paused(device_id, false)
    }

    fn set_paused(&self, device_id: DeviceId, paused: bool) -> usize {
        let state = self.state();
        let conns = state
            .connections
            .get(&device_id)
            .map_or(&[][..], |c| &c[..]);
        for c in conns {
            c.pause.send_replace(paused);
        }
        tracing::info!(
            device_id,
            paused,
            count = conns.len(),
            "test control: pause"
        );
        conns.len()
    }

    /// Sets the sync faults of `device_id` (applies to live and future sync subscriptions).
    pub fn set_sync_faults(
        &self,
        device_id: DeviceId,
        faults: SyncFaults,
    ) -> Result<(), CloudError> {
        let state = self.state();
        let device = state
            .devices
            .get(&device_id)
            .ok_or(CloudError::UnknownDevice(device_id))?;
        *lock(&device.faults) = faults;
        Ok(())
    }

    /// CONNECT attempts of `device_id` so far.
    pub fn connect_attempts(&self, device_id: DeviceId) -> ConnectStats {
        self.state()
            .connect_stats
            .get(&device_id)
            .copied()
            .unwrap_or_default()
    }

    /// Live connections of `device_id`.
    pub fn live_connections(&self, device_id: DeviceId) -> usize {
        self.state().connections.get(&device_id).map_or(0, Vec::len)
    }

    /// Every event the cloud delivered to a home, in order (device events and system events).
    pub fn events(&self) -> Vec<EventRecord> {
        self.state().records.events.clone()
    }

    /// How many events the cloud recorded.
    pub fn event_count(&self) -> usize {
        self.state().records.events.len()
    }

    /// Events sent by `device_id` (system events excluded), in order.
    pub fn events_from(&self, device_id: DeviceId) -> Vec<HomeEvent> {
        let state = self.state();
        let from = |r: &&EventRecord| r.event.origin_device_id == Some(device_id);
        state
            .records
            .events
            .iter()
            .filter(from)
            .map(|r| r.event.clone())
            .collect()
    }

    /// How many events `device_id` sent (system events excluded), without copying them: the
    /// cheap check for [`Cloud::wait_for`] loops over long event streams.
    pub fn count_events_from(&self, device_id: DeviceId) -> usize {
        let state = self.state();
        let from = |r: &&EventRecord| r.event.origin_device_id == Some(device_id);
        state.records.events.iter().filter(from).count()
    }

    /// Bulk data received, in order.
    pub fn bulk_data(&self) -> Vec<BulkRecord> {
        self.state().records.bulk.clone()
    }

    /// Kv changes applied, in order.
    pub fn kv_ops(&self) -> Vec<KvOpRecord> {
        self.state().records.kv_ops.clone()
    }

    /// Bulk-data requests answered, in order.
    pub fn bulk_requests(&self) -> Vec<BulkRequestRecord> {
        self.state().records.bulk_requests.clone()
    }

    /// Commands sent, in order.
    pub fn commands(&self) -> Vec<CommandRecord> {
        self.state().records.commands.clone()
    }

    /// Forgets every record (events, bulk data, kv ops, bulk requests, commands) and counter;
    /// stores and connections stay.
    pub fn clear_records(&self) {
        let mut state = self.state();
        state.records = Records::default();
        state.connect_stats.clear();
    }
}

impl Device {
    fn new(
        project_id: ProjectId,
        api_key: String,
        home_id: Option<HomeId>,
        d: &crate::config::DeviceConfig,
    ) -> Self {
        Device {
            project_id,
            api_key,
            name: d.name.clone(),
            tag: d.tag.clone(),
            device_class: d.device_class.clone(),
            home_id,
            store: BTreeMap::new(),
            rev: 0,
            faults: Arc::default(),
            claimable_until: None,
            command_subs: Vec::new(),
            raw_subs: Vec::new(),
            kv_subs: Vec::new(),
            bulk_subs: Vec::new(),
        }
    }

    fn reload(&self) -> Reload {
        let items = self
            .store
            .iter()
            .map(|(key, (value, time))| KvItem {
                key: key.clone(),
                value: value.clone(),
                modification_time: Some(time.clone()),
            })
            .collect();
        Reload {
            rev: self.rev,
            items,
        }
    }
}

impl State {
    /// Records `event` and sends it to the home's subscribers (when the device has a home).
    fn deliver_home_event(
        &mut self,
        project_id: ProjectId,
        home_id: Option<HomeId>,
        event: HomeEvent,
    ) {
        if let Some(home) = home_id.and_then(|id| self.homes.get_mut(&id)) {
            fan_out(&mut home.subs, &event, "home events");
        }
        if let Some(persist) = &self.persist {
            persist.send(crate::persist::Op::Event {
                seq: self.event_seq,
                project: project_id,
                event: event.clone(),
            });
        }
        self.event_seq += 1;
        self.records.events.push(EventRecord { project_id, event });
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mode_core::proto::Value;

    fn demo() -> Cloud {
        Cloud::new(&SimConfig::demo())
    }

    fn key(s: &str) -> Result<(), CloudError> {
        validate_kv_key(s)
    }

    #[test]
    fn formats_timestamps_as_rfc3339_utc_with_nanoseconds() {
        let t = UNIX_EPOCH + Duration::new(1_511_054_602, 5);
        assert_eq!(rfc3339_nanos(t), "2017-11-19T01:23:22.000000005Z");
        assert_eq!(
            rfc3339_nanos(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn enforces_the_kv_key_rule() {
        assert!(key("a").is_ok());
        assert!(key("temp_1-x").is_ok());
        assert!(key(&"k".repeat(255)).is_ok());
        assert!(key("").is_err());
        assert!(key(&"k".repeat(256)).is_err());
        assert!(key("_a").is_err());
        assert!(key("a-").is_err());
        assert!(key("a b").is_err());
        assert!(key("é").is_err());
        let err = key("a/b").unwrap_err();
        assert_eq!(err.http_status(), 400);
        assert!(err.to_string().contains("letters, digits"), "{err}");
    }

    #[test]
    fn counts_accepted_and_refused_connects() {
        let cloud = demo();
        let guard = cloud
            .connect_device(1001, "v1.demo-device-1001", Transport::Mqtt)
            .unwrap();
        assert_eq!(
            cloud
                .connect_device(1001, "nope", Transport::Mqtt)
                .unwrap_err(),
            CloudError::WrongDeviceKey(1001)
        );
        assert_eq!(
            cloud.connect_attempts(1001),
            ConnectStats {
                accepted: 1,
                refused: 1
            }
        );
        assert_eq!(cloud.live_connections(1001), 1);
        drop(guard);
        assert_eq!(cloud.live_connections(1001), 0);
    }

    #[tokio::test]
    async fn kv_subscription_sees_every_change_after_its_snapshot_exactly_once() {
        let cloud = demo();
        cloud
            .kv_set(1001, "a", Value::from(1), KvSource::Rest)
            .unwrap();
        let guard = cloud
            .connect_device(1001, "v1.demo-device-1001", Transport::Mqtt)
            .unwrap();
        let (reload, mut sub) = cloud.subscribe_kv(&guard).unwrap();
        assert_eq!(reload.rev, 1);
        assert_eq!(reload.items.len(), 1);
        cloud
            .kv_set(1001, "b", Value::from(2), KvSource::Rest)
            .unwrap();
        cloud.kv_delete(1001, "a", KvSource::Rest).unwrap();
        assert_eq!(sub.recv().await.unwrap().rev(), 2);
        assert_eq!(
            sub.recv().await.unwrap(),
            SyncMessage::Delete {
                rev: 3,
                key: "a".into()
            }
        );
        assert!(sub.inner.try_recv().is_none());
        let types: Vec<_> = cloud
            .events()
            .into_iter()
            .map(|r| r.event.event_type)
            .collect();
        assert_eq!(types, [KV_SAVED_EVENT, KV_SAVED_EVENT, KV_DELETED_EVENT]);
    }

    #[test]
    fn deleting_a_missing_key_changes_nothing() {
        let cloud = demo();
        assert!(matches!(
            cloud.kv_delete(1001, "x", KvSource::Rest),
            Err(CloudError::KeyNotFound { .. })
        ));
        assert_eq!(cloud.kv_snapshot(1001).unwrap().rev, 0);
        assert!(cloud.events().is_empty());
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_cut_off_without_blocking_others() {
        let config = SimConfig {
            subscriber_queue: 2,
            ..SimConfig::demo()
        };
        let cloud = Cloud::new(&config);
        let slow = cloud
            .connect_device(1001, "v1.demo-device-1001", Transport::Mqtt)
            .unwrap();
        let fast = cloud
            .connect_device(1001, "v1.demo-device-1001", Transport::WebSocket)
            .unwrap();
        let mut slow_sub = cloud.subscribe_commands(&slow).unwrap();
        let mut fast_sub = cloud.subscribe_commands(&fast).unwrap();
        for i in 0..3 {
            let delivered = cloud
                .send_command(1001, Command::new(format!("c{i}"), Map::new()))
                .unwrap();
            assert_eq!(fast_sub.recv().await.unwrap().action, format!("c{i}"));
            assert_eq!(delivered, if i < 2 { 2 } else { 1 });
        }
        assert!(slow.is_cancelled());
        assert!(!fast.is_cancelled());
        assert!(slow_sub.overflowed());
        assert_eq!(slow_sub.recv().await.unwrap().action, "c0");
    }

    #[tokio::test]
    async fn sync_faults_duplicate_and_reorder_deterministically() {
        let run = || async {
            let cloud = demo();
            let guard = cloud
                .connect_device(1001, "v1.demo-device-1001", Transport::Mqtt)
                .unwrap();
            cloud
                .set_sync_faults(
                    1001,
                    SyncFaults {
                        duplicate_percent: 30,
                        reorder_percent: 30,
                        seed: 7,
                        ..Default::default()
                    },
                )
                .unwrap();
            let (_, mut sub) = cloud.subscribe_kv(&guard).unwrap();
            for i in 0..20 {
                cloud
                    .kv_set(1001, "k", Value::from(i), KvSource::Rest)
                    .unwrap();
            }
            let mut revs = Vec::new();
            while let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(100), sub.recv()).await
            {
                revs.push(msg.rev());
            }
            revs
        };
        let first = run().await;
        assert_eq!(first, run().await);
        assert!(first.len() > 20, "no duplicates in {first:?}");
        assert!(
            first.windows(2).any(|w| w[0] > w[1]),
            "no reordering in {first:?}"
        );
        let mut unique = first.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique, (1..=20).collect::<Vec<_>>());
    }

    #[test]
    fn bulk_requests_are_answered_by_the_labels_module() {
        let cloud = demo();
        let req = |label: &str| BulkDataRequest {
            bulk_data_label: label.into(),
            request_id: "r1".into(),
            payload: serde_json::json!({"x": 1}),
        };
        let ok = cloud.bulk_request(1001, "echo", req("echo")).unwrap();
        assert_eq!(
            (ok.status, ok.payload),
            (BulkStatus::Ok, serde_json::json!({"x": 1}))
        );
        assert_eq!(
            cloud
                .bulk_request(1001, "nope", req("nope"))
                .unwrap()
                .status,
            BulkStatus::InvalidBulkDataLabel
        );
        cloud.set_bulk_module_available(1, "echo", false).unwrap();
        assert_eq!(
            cloud
                .bulk_request(1001, "echo", req("echo"))
                .unwrap()
                .status,
            BulkStatus::ServiceUnavailable
        );
        assert_eq!(cloud.bulk_requests().len(), 3);
    }

    #[test]
    fn provisions_a_device_that_can_connect_and_be_claimed() {
        let cloud = demo();
        assert_eq!(
            cloud.provision("wrong").unwrap_err(),
            CloudError::UnknownToken
        );
        let new = cloud
            .provision(crate::config::DEMO_PROVISIONING_TOKEN)
            .unwrap();
        assert_eq!(new.device_id, 1003);
        assert!(
            cloud
                .connect_device(new.device_id, &new.api_key, Transport::Mqtt)
                .is_ok()
        );
        assert_eq!(
            cloud.claim(new.device_id, 10).unwrap_err(),
            CloudError::NotClaimable(1003)
        );
        cloud.register_claim(new.device_id).unwrap();
        cloud.claim(new.device_id, 10).unwrap();
        assert_eq!(cloud.device_info(1003).unwrap().home_id, Some(10));
    }
}
