//! Commands from the cloud to a device: sent to every live command subscriber of the device,
//! recorded either way.

use mode_core::proto::{Command, DeviceId};

use super::subscriptions::{Subscription, fan_out};
use super::{Cloud, CloudError, CommandRecord, ConnectionGuard};

impl Cloud {
    feeds! {
        /// Subscribes connection `conn` to its device's commands.
        subscribe_commands -> Command: command_subs;
    }

    /// Sends `command` to every live command subscriber of `device_id` (MQTT and WebSocket
    /// alike). Returns how many received it; 0 when the device is offline (not an error).
    pub fn send_command(&self, device_id: DeviceId, command: Command) -> Result<usize, CloudError> {
        let mut state = self.state();
        let device = state.device_mut(device_id)?;
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
}
