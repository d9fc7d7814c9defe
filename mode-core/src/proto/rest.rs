//! REST and WebSocket paths of the MODE API and its `Authorization` header, shared by the HTTP
//! transport and the simulator. Keys are percent-encoded wherever they enter a path.

use crate::prelude::*;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::error::EncodeError;
use super::message::DeviceId;

/// The scheme word of MODE's `Authorization` header.
pub const AUTH_SCHEME: &str = "ModeCloud";

/// The query parameter a WebSocket client may use instead of the header.
pub const AUTH_TOKEN_PARAM: &str = "authToken";

/// Everything but RFC 3986's unreserved characters is encoded, so any key survives any router.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The value of the `Authorization` header for `api_key`: `ModeCloud <key>`.
pub fn authorization_value(api_key: &str) -> String {
    format!("{AUTH_SCHEME} {api_key}")
}

/// The API key in an `Authorization` header value, if it uses the `ModeCloud` scheme.
pub fn parse_authorization(header: &str) -> Option<&str> {
    let (scheme, key) = header.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case(AUTH_SCHEME) && !key.is_empty()).then_some(key)
}

/// Percent-encodes `segment` for use as one path segment.
pub fn encode_path_segment(segment: &str) -> String {
    utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

/// Decodes one percent-encoded path segment; `None` when the result is not UTF-8.
pub fn decode_path_segment(segment: &str) -> Option<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `/devices/{id}`: device info.
pub fn device_path(device_id: DeviceId) -> String {
    format!("/devices/{device_id}")
}

/// `/devices/{id}/event`: `PUT` an event.
pub fn event_path(device_id: DeviceId) -> String {
    format!("/devices/{device_id}/event")
}

/// `/devices/{id}/command`: the device's command WebSocket, or an app's `PUT` of a command.
pub fn command_path(device_id: DeviceId) -> String {
    format!("/devices/{device_id}/command")
}

/// `/devices/{id}/kv`: the sync WebSocket, or the list of all keys.
pub fn kv_path(device_id: DeviceId) -> String {
    format!("/devices/{device_id}/kv")
}

/// `/devices/{id}/kv/{key}` with the key percent-encoded; fails for an empty key.
pub fn kv_key_path(device_id: DeviceId, key: &str) -> Result<String, EncodeError> {
    if key.is_empty() {
        return Err(EncodeError::EmptyKey);
    }
    Ok(format!(
        "/devices/{device_id}/kv/{}",
        encode_path_segment(key)
    ))
}

/// `/devices`: provisioning a device with a token.
pub const PROVISION_PATH: &str = "/devices";

/// `/deviceRegistration`: claim mode.
pub const REGISTRATION_PATH: &str = "/deviceRegistration";
