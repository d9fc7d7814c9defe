//! The test controls of the admin API: raw publishes, dropping and pausing connections, sync
//! faults, and the connection counters tests assert on.

use bytes::Bytes;
use mode_core::proto::DeviceId;

use super::subscriptions::{Subscription, fan_out};
use super::{Cloud, CloudError, ConnEntry, ConnectStats, ConnectionGuard, SyncFaults, lock};

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

impl Cloud {
    feeds! {
        /// Subscribes connection `conn` to the raw publishes of its device (every channel: the
        /// connection forwards those of the channels it receives).
        subscribe_raw -> RawPublish: raw_subs;
    }

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
        let device = state.device_mut(device_id)?;
        let sent = fan_out(
            &mut device.raw_subs,
            &RawPublish { channel, payload },
            "raw publishes",
        );
        tracing::info!(device_id, ?channel, sent, "test control: raw publish");
        Ok(sent)
    }

    /// Drops every live connection of `device_id` (all transports). Returns how many.
    pub fn drop_connections(&self, device_id: DeviceId) -> usize {
        let count = self.each_connection(device_id, |c| c.cancel.cancel());
        tracing::info!(device_id, count, "test control: dropping connections");
        count
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
        let count = self.each_connection(device_id, |c| {
            c.pause.send_replace(paused);
        });
        tracing::info!(device_id, paused, count, "test control: pause");
        count
    }

    /// Does `act` to every live connection of `device_id`; how many there were.
    fn each_connection(&self, device_id: DeviceId, act: impl FnMut(&ConnEntry)) -> usize {
        let state = self.state();
        let conns = state.connections_of(device_id);
        conns.iter().for_each(act);
        conns.len()
    }

    /// Sets the sync faults of `device_id` (applies to live and future sync subscriptions).
    pub fn set_sync_faults(
        &self,
        device_id: DeviceId,
        faults: SyncFaults,
    ) -> Result<(), CloudError> {
        let state = self.state();
        let device = state.device(device_id)?;
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
        self.state().connections_of(device_id).len()
    }
}
