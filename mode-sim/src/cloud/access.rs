//! Who an API key belongs to ([`Principal`]) and what an app key may see ([`AppAccess`]): the
//! checks every REST request starts with.

use mode_core::proto::DeviceId;

use super::{Cloud, CloudError, HomeId, ProjectId};

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

impl Cloud {
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
        let device = state.device(device_id)?;
        if device.api_key == api_key {
            Ok(())
        } else {
            Err(CloudError::WrongDeviceKey(device_id))
        }
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
}
