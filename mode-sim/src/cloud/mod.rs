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

/// The public subscriptions of a connection to one feed of its device: each is its doc
/// comment, its name, what it streams, and the device's subscribers it joins.
macro_rules! feeds {
    ($($(#[$doc:meta])* $name:ident -> $item:ty: $subscribers:ident;)*) => {$(
        $(#[$doc])*
        pub fn $name(&self, conn: &ConnectionGuard) -> Result<Subscription<$item>, CloudError> {
            self.subscribe_device(conn, |device| &mut device.$subscribers)
        }
    )*};
}

// The state behind the one lock lives here, private to this module so that only its children
// see it; each child adds the `impl Cloud` methods of one concern over it.
mod access;
mod bulk;
mod commands;
mod connections;
mod controls;
mod errors;
mod events;
mod faults;
mod kv;
mod provisioning;
mod records;
mod subscriptions;
#[cfg(test)]
mod tests;
mod time;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use mode_core::proto::{Command, DeviceId, DeviceInfo, HomeEvent, Map, Rev, SyncMessage, Value};
use tokio::sync::Notify;

pub use access::{AppAccess, Principal};
pub use bulk::BulkResponse;
pub use connections::{ConnectStats, ConnectionGuard, Transport};
pub use controls::{RawChannel, RawPublish};
pub use errors::CloudError;
pub use faults::{KvSubscription, SyncFaults};
pub use kv::{KvSource, validate_kv_key};
pub use provisioning::{CLAIM_DURATION, ClaimTicket, ProvisionedDevice};
pub use records::{BulkRecord, BulkRequestRecord, CommandRecord, EventRecord, KvOpRecord};
pub use subscriptions::Subscription;
pub use time::rfc3339_nanos;

use crate::config::{BulkModuleKind, SimConfig};
use connections::ConnEntry;
use records::Records;
use subscriptions::Subscriber;

/// A home id.
pub type HomeId = u64;
/// A project id.
pub type ProjectId = u64;

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

impl State {
    /// Device `id`, or the error that names it unknown.
    fn device(&self, id: DeviceId) -> Result<&Device, CloudError> {
        self.devices.get(&id).ok_or(CloudError::UnknownDevice(id))
    }

    /// [`State::device`], to change.
    fn device_mut(&mut self, id: DeviceId) -> Result<&mut Device, CloudError> {
        self.devices
            .get_mut(&id)
            .ok_or(CloudError::UnknownDevice(id))
    }

    /// The live connections of device `id` (none when it has none or is unknown).
    fn connections_of(&self, id: DeviceId) -> &[ConnEntry] {
        self.connections.get(&id).map_or(&[], Vec::as_slice)
    }
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

    /// What `GET /devices/{id}` answers.
    pub fn device_info(&self, device_id: DeviceId) -> Result<DeviceInfo, CloudError> {
        let state = self.state();
        let d = state.device(device_id)?;
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
}
