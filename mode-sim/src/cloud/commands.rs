//! Commands from the cloud to a device: sent to every live command subscriber of the device,
//! recorded either way.

use mode_core::proto::{Command, DeviceId};

use super::subscriptions::{Subscriber, Subscription, fan_out};
use super::{Cloud, CloudError, CommandRecord, ConnectionGuard};

impl Cloud {
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
}
