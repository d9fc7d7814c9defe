//! Who is asking: the API key of a request (`Authorization: ModeCloud <key>` or `?authToken=`)
//! and the checks that a device key acts only on its own device and an app only in its homes.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Query};
use axum::http::header;
use axum::http::request::Parts;
use mode_core::proto::rest::{AUTH_SCHEME, AUTH_TOKEN_PARAM, parse_authorization};
use mode_core::proto::{DeviceId, parse_device_id};
use serde::Deserialize;

use super::error::ApiError;
use crate::cloud::{AppAccess, Cloud, HomeId, Principal};
use crate::untrusted::untrusted;

/// The API key a request carries: the `Authorization` header first, else the `authToken` query
/// parameter (for WebSocket clients that cannot set headers); an empty key counts as none.
/// Over HTTPS in client-certificate mode, also the device the client's certificate names.
/// Never logged.
pub(crate) struct ApiKey {
    key: Option<String>,
    certified: Option<DeviceId>,
}

/// The device a verified client certificate names (subject CN = device id), put on every
/// request of an HTTPS connection **(ours)**.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Certified(pub(crate) Option<DeviceId>);

#[derive(Deserialize)]
struct AuthQuery {
    #[serde(rename = "authToken")]
    auth_token: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ApiKey {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let from_header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_authorization)
            .filter(|k| !k.is_empty())
            .map(str::to_owned);
        let key = from_header.or_else(|| {
            Query::<AuthQuery>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|q| q.0.auth_token)
                .filter(|k| !k.is_empty())
        });
        let certified = parts.extensions.get::<Certified>().and_then(|c| c.0);
        Ok(ApiKey { key, certified })
    }
}

impl ApiKey {
    /// The key, or 401 when the request carries none.
    pub(crate) fn require(&self) -> Result<&str, ApiError> {
        self.key.as_deref().ok_or_else(|| {
            ApiError::unauthenticated(format_args!(
                "no API key: send `Authorization: {AUTH_SCHEME} <key>` or `?{AUTH_TOKEN_PARAM}=<key>`"
            ))
        })
    }

    /// The key's owner, or 401 for a missing or unknown key. Without a key, the device of the
    /// client certificate (when there is one); with both, they must agree (403).
    pub(crate) fn principal(&self, cloud: &Cloud) -> Result<Principal, ApiError> {
        let Some(certified) = self.certified else {
            return Ok(cloud.authenticate(self.require()?)?);
        };
        if self.key.is_none() {
            return Ok(Principal::Device(certified));
        }
        match cloud.authenticate(self.require()?)? {
            Principal::Device(other) if other != certified => {
                Err(ApiError::forbidden(format_args!(
                    "the key of device {other} came with the client certificate of device {certified}"
                )))
            }
            principal => Ok(principal),
        }
    }

    /// The key to check for a device connection: `None` when the client certificate proved
    /// the device and no key came (nothing to check), else the key (401 without one).
    pub(crate) fn connection_key(&self) -> Result<Option<&str>, ApiError> {
        match (&self.key, self.certified) {
            (None, Some(_)) => Ok(None),
            _ => self.require().map(Some),
        }
    }
}

/// Which callers an endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Callers {
    /// The device itself only (events, its WebSockets, claim mode).
    Device,
    /// Apps only (commands).
    App,
    /// The device itself and apps that see its home (info, kv).
    Both,
}

/// Checks that the request's key may use an endpoint of device `raw_id` (the path segment):
/// 401 without a known key, 404 for an unknown device, 403 for a device key of another device,
/// an app outside the device's homes, or a caller the endpoint does not serve.
pub(crate) fn authorize_device(
    cloud: &Cloud,
    key: &ApiKey,
    raw_id: &str,
    callers: Callers,
) -> Result<(DeviceId, Principal), ApiError> {
    let principal = key.principal(cloud)?;
    let device_id = parse_device_id(raw_id).ok_or_else(|| ApiError::no_such_device(raw_id))?;
    match &principal {
        Principal::Device(own) => {
            if *own != device_id {
                return Err(ApiError::forbidden(format_args!(
                    "the key of device {own} cannot act on device {device_id}"
                ))
                .with("deviceId", device_id));
            }
            if callers == Callers::App {
                return Err(ApiError::forbidden(
                    "this endpoint is for apps; a device key cannot use it",
                ));
            }
        }
        Principal::App(access) => {
            if callers == Callers::Device {
                return Err(ApiError::forbidden(format_args!(
                    "this endpoint is for device {device_id} itself; use its device key"
                )));
            }
            cloud.device_info(device_id)?;
            if !cloud.app_can_access_device(access, device_id) {
                return Err(ApiError::forbidden(format_args!(
                    "this app key has no access to device {device_id} (not in its homes)"
                ))
                .with("deviceId", device_id));
            }
        }
    }
    Ok((device_id, principal))
}

/// Checks that the request's key is an app key that sees home `raw_home` (the path segment).
pub(crate) fn authorize_home(
    cloud: &Cloud,
    key: &ApiKey,
    raw_home: &str,
) -> Result<(HomeId, AppAccess), ApiError> {
    let access = match key.principal(cloud)? {
        Principal::App(access) => access,
        Principal::Device(_) => {
            return Err(ApiError::forbidden(
                "home endpoints are for apps; a device key cannot use them",
            ));
        }
    };
    // Home ids follow the same canonical decimal rule as device ids.
    let home = parse_device_id(raw_home).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "HOME_NOT_FOUND",
            format_args!(
                "{:?} is not the id of a home in this simulator",
                untrusted(raw_home)
            ),
        )
    })?;
    let project = cloud.home_project(home)?;
    if !access.can_see_home(project, home) {
        return Err(
            ApiError::forbidden(format_args!("this app key has no access to home {home}"))
                .with("homeId", home),
        );
    }
    Ok((home, access))
}
