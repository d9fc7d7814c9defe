//! The test controls of the admin API: raw publishes, dropping and pausing connections, sync
//! faults, and the connection counters tests assert on.

use bytes::Bytes;
use mode_core::proto::DeviceId;

use super::subscriptions::{Subscriber, Subscription, fan_out};
use super::{Cloud, CloudError, ConnectStats, ConnectionGuard, SyncFaults, lock};

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
}
