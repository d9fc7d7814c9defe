//! Provisioning and claiming: new devices from a project's provisioning token, claim mode, and
//! claiming a device into a home.

use std::time::{Duration, SystemTime};

use mode_core::proto::DeviceId;

use super::time::now_nanos;
use super::{Cloud, CloudError, Device, HomeId, Principal, ProjectId, rfc3339_nanos};
use mode_core::random::SplitMix64;

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

/// How long claim mode lasts.
pub const CLAIM_DURATION: Duration = Duration::from_secs(15 * 60);

impl Cloud {
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
            SplitMix64(device_id ^ now_nanos()).next_u64()
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
        let device = state.device_mut(device_id)?;
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
        let device = state.device_mut(device_id)?;
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
        let device = state.device_mut(device_id)?;
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
}
