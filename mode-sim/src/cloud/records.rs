//! What the cloud records for tests to inspect (events, bulk data, kv ops, bulk requests,
//! commands, undecodable messages, pings), and the accessors that copy them out.

use std::collections::HashMap;
use std::fmt;

use mode_core::proto::{
    BulkDataRequest, BulkDataResponse, Command, DeviceId, HomeEvent, KvUpdate, Rev,
};

use super::{Cloud, KvSource, ProjectId};
use crate::untrusted::untrusted;

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

#[derive(Default)]
pub(super) struct Records {
    pub(super) events: Vec<EventRecord>,
    pub(super) bulk: Vec<BulkRecord>,
    pub(super) kv_ops: Vec<KvOpRecord>,
    pub(super) bulk_requests: Vec<BulkRequestRecord>,
    pub(super) commands: Vec<CommandRecord>,
    pub(super) undecodable: u64,
    /// PINGREQs per device: a test waits for keepalive rounds as events, not as time.
    pub(super) pings: HashMap<DeviceId, u64>,
}

impl Cloud {
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

    /// The types of the events `device_id` sent, in order: what most tests compare.
    pub fn event_types_from(&self, device_id: DeviceId) -> Vec<String> {
        self.events_from(device_id)
            .into_iter()
            .map(|event| event.event_type)
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
