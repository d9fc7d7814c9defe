//! The errors of the simulated cloud, in words a user can act on, with their REST form (HTTP
//! status and `{"reason", "data"}` body) derived from one `match` each so they cannot drift.

use mode_core::proto::{DeviceId, ErrorBody, Map, Value};

use super::{HomeId, ProjectId};
use crate::untrusted::untrusted;

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
