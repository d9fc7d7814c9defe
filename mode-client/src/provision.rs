//! Provisioning: a new device's id and key from a project's provisioning token, before any
//! client exists (`POST /devices`).

use std::sync::Arc;
use std::time::Duration;

use mode_core::proto::{DeviceId, DeviceInfo, rest as paths};
use serde_json::{Map, Value};

use super::rest::Rest;
use super::{ApiKey, ClientError, TlsOptions, tls};

/// A device created by [`provision`]: its id and key, and what the cloud says of it.
#[derive(Debug, Clone)]
pub struct ProvisionedDevice {
    /// The new device's id.
    pub device_id: DeviceId,
    /// Its API key (redacted in `Debug`).
    pub api_key: ApiKey,
    /// The device object the cloud returned.
    pub info: DeviceInfo,
}

/// Provisions a new device with a project's provisioning `token` (`POST /devices`,
/// `{"token": ...}`), before any client exists. `api_url` is the REST base URL (e.g.
/// [`DEFAULT_API_URL`](crate::DEFAULT_API_URL)); `tls` says whom to trust.
pub async fn provision(
    api_url: &str,
    token: &str,
    tls: &TlsOptions,
) -> Result<ProvisionedDevice, ClientError> {
    let tls_config = Arc::new(tls::client_config(tls)?);
    let timeout = Duration::from_secs(30);
    let rest = Rest::build(api_url, None, timeout, timeout, 1024 * 1024, &tls_config)?;
    let mut body = Map::new();
    body.insert("token".into(), token.into());
    let body = serde_json::to_vec(&body).expect("a JSON object serializes");
    let answer = rest
        .send(::http::Method::POST, paths::PROVISION_PATH, Some(body))
        .await?;
    let info = DeviceInfo::decode(&answer)?;
    let api_key = match info.raw.get("apiKey") {
        Some(Value::String(key)) if !key.is_empty() => ApiKey::new(key.clone()),
        _ => {
            return Err(ClientError::Http(
                "the provisioning answer holds no apiKey".to_owned(),
            ));
        }
    };
    let mut info = info;
    info.raw.remove("apiKey");
    Ok(ProvisionedDevice {
        device_id: info.id,
        api_key,
        info,
    })
}
