//! The plain REST endpoints: events, device info, commands, the kv API, provisioning, claim
//! mode and `/auth`. Each checks the caller, decodes the body with mode-core, calls the cloud.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mode_core::proto::rest::decode_path_segment;
use mode_core::proto::{
    Command, DeviceId, DeviceInfo, Event, KvValue, Map, Value, encode_kv_item, encode_kv_list,
};
use serde::Deserialize;

use super::auth::Callers;
use super::error::{ApiError, json_response};
use super::{Body, Call};
use crate::cloud::{KvSource, Principal, validate_kv_key};
use crate::untrusted::untrusted;

fn json_value(status: StatusCode, value: &Value) -> Response {
    // Serializing a `Value` into a Vec cannot fail.
    json_response(status, serde_json::to_vec(value).unwrap_or_default())
}

/// `GET /auth`: who the key (or the client certificate) is.
pub(crate) async fn whoami(Call { app, key, .. }: Call) -> Response {
    let mut out = Map::new();
    let principal = key.principal(&app.cloud).ok();
    match principal {
        Some(Principal::Device(id)) => {
            out.insert("type".into(), "device".into());
            out.insert("deviceId".into(), id.into());
            if let Ok(info) = app.cloud.device_info(id)
                && let Some(project) = info.project_id
            {
                out.insert("projectId".into(), project.into());
            }
        }
        Some(Principal::App(access)) => {
            out.insert("type".into(), "app".into());
            out.insert("projectId".into(), access.project_id.into());
        }
        None => {
            out.insert("type".into(), "nobody".into());
        }
    }
    json_value(StatusCode::OK, &Value::Object(out))
}

/// `GET /devices/{id}`.
pub(crate) async fn device_info(call: Call) -> Result<Response, ApiError> {
    let device_id = call.device(Callers::Both)?;
    let info = call.app.cloud.device_info(device_id)?;
    Ok(json_response(StatusCode::OK, info.encode()))
}

/// `PUT /devices/{id}/event`.
pub(crate) async fn put_event(call: Call, body: Body) -> Result<StatusCode, ApiError> {
    let device_id = call.device(Callers::Device)?;
    let body = call.body(body)?;
    let event = Event::decode(&body).map_err(|e| ApiError::bad_body(&e))?;
    if event.event_type.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
            "invalid event: eventType must not be empty",
        )
        .with("path", "eventType"));
    }
    tracing::debug!(device_id, event_type = %event.event_type, "event received over HTTP");
    call.app.cloud.record_event(device_id, event)?;
    call.app.cloud.ticket().wait().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /devices/{id}/command`.
pub(crate) async fn put_command(call: Call, body: Body) -> Result<StatusCode, ApiError> {
    let device_id = call.device(Callers::App)?;
    let body = call.body(body)?;
    let command = Command::decode(&body).map_err(|e| ApiError::bad_body(&e))?;
    let delivered = call.app.cloud.send_command(device_id, command)?;
    tracing::debug!(device_id, delivered, "command sent over HTTP");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /devices/{id}/kv` without a WebSocket upgrade: the list form.
pub(crate) fn kv_list(call: &Call) -> Result<Response, ApiError> {
    let device_id = call.device(Callers::Both)?;
    let items = call.app.cloud.kv_list(device_id)?;
    Ok(json_response(StatusCode::OK, encode_kv_list(&items)))
}

/// The device and the decoded, checked key of a `/devices/{id}/kv/{key}` request.
fn kv_target(call: &Call) -> Result<(DeviceId, String), ApiError> {
    let device_id = call.device(Callers::Both)?;
    let raw = call.segment(3);
    let kv_key = decode_path_segment(raw).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_KEY",
            format_args!(
                "kv key {:?} is not UTF-8 once percent-decoded",
                untrusted(raw)
            ),
        )
    })?;
    validate_kv_key(&kv_key)?;
    Ok((device_id, kv_key))
}

/// `GET /devices/{id}/kv/{key}`.
pub(crate) async fn kv_get(call: Call) -> Result<Response, ApiError> {
    let (device_id, kv_key) = kv_target(&call)?;
    let item = call.app.cloud.kv_get(device_id, &kv_key)?;
    Ok(json_response(StatusCode::OK, encode_kv_item(&item)))
}

/// `PUT /devices/{id}/kv/{key}`.
pub(crate) async fn kv_put(call: Call, body: Body) -> Result<StatusCode, ApiError> {
    let (device_id, kv_key) = kv_target(&call)?;
    let body = call.body(body)?;
    let KvValue { value } = KvValue::decode(&body).map_err(|e| ApiError::bad_body(&e))?;
    let cloud = &call.app.cloud;
    let rev = cloud.kv_set(device_id, &kv_key, value, KvSource::Rest)?;
    cloud.ticket().wait().await?;
    tracing::debug!(device_id, key = %kv_key, rev, "kv set over HTTP");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /devices/{id}/kv/{key}`.
pub(crate) async fn kv_delete(call: Call) -> Result<StatusCode, ApiError> {
    let (device_id, kv_key) = kv_target(&call)?;
    let cloud = &call.app.cloud;
    let rev = cloud.kv_delete(device_id, &kv_key, KvSource::Rest)?;
    cloud.ticket().wait().await?;
    tracing::debug!(device_id, key = %kv_key, rev, "kv delete over HTTP");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisionBody {
    token: String,
}

/// `POST /devices` **(ours)**: `{"token": "..."}` gives a new device and its key.
pub(crate) async fn provision(call: Call, body: Body) -> Result<Response, ApiError> {
    let (app, body) = (&call.app, call.body(body)?);
    let ProvisionBody { token } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_json("provisioning body {\"token\": ...}", &e))?;
    let new = app.cloud.provision(&token)?;
    let mut info = app.cloud.device_info(new.device_id)?;
    info.raw.insert("apiKey".into(), new.api_key.into());
    Ok(json_response(StatusCode::CREATED, info.encode()))
}

/// The fields of a claim-mode request, from a form or a JSON body.
#[derive(Default)]
struct ClaimRequest {
    device_id: Option<String>,
    claimable: Option<String>,
}

fn parse_claim_request(headers: &HeaderMap, body: &[u8]) -> Result<ClaimRequest, ApiError> {
    let mut out = ClaimRequest::default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(out);
    }
    // JSON by its content type, or by its look when a client sent none.
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
        || body.trim_ascii_start().starts_with(b"{");
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if is_json {
        let fields: Map<String, Value> =
            serde_json::from_slice(body).map_err(|e| ApiError::bad_json("claim mode body", &e))?;
        out.device_id = fields.get("deviceId").map(text);
        out.claimable = fields.get("claimable").map(text);
    } else {
        let body = std::str::from_utf8(body).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_BODY",
                "claim mode body is not UTF-8",
            )
        })?;
        for pair in body.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode_path_segment(&value.replace('+', " ")).unwrap_or_default();
            match name {
                "deviceId" => out.device_id = Some(value),
                "claimable" => out.claimable = Some(value),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// `POST /deviceRegistration`: claim mode on (or off with `claimable` 0 / false), for the key's
/// device.
pub(crate) async fn register_claim(
    call: Call,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let app = &call.app;
    let device_id = match call.key.principal(&app.cloud)? {
        Principal::Device(id) => id,
        Principal::App(_) => {
            return Err(ApiError::forbidden(
                "claim mode is turned on by the device itself; use its device key",
            ));
        }
    };
    let body = call.body(body)?;
    let request = parse_claim_request(&headers, &body)?;
    if let Some(raw) = &request.device_id
        && raw.trim() != device_id.to_string()
    {
        return Err(ApiError::forbidden(format_args!(
            "deviceId {:?} is not the device of this key ({device_id})",
            untrusted(raw)
        )));
    }
    let on = match request.claimable.as_deref().map(str::trim) {
        None | Some("1" | "true") => true,
        Some("0" | "false") => false,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_BODY",
                format_args!(
                    "claimable={:?}: use 1 or true (claim mode on), 0 or false (off)",
                    untrusted(other)
                ),
            ));
        }
    };
    if !on {
        app.cloud.end_claim(device_id)?;
        tracing::info!(device_id, "claim mode off over HTTP");
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let ticket = app.cloud.register_claim(device_id)?;
    tracing::info!(device_id, "claim mode on over HTTP");
    let mut out = Map::new();
    out.insert("claimExpirationTime".into(), ticket.expires.into());
    Ok(json_value(StatusCode::OK, &Value::Object(out)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClaimBody {
    device_id: DeviceId,
}

/// `POST /homes/{home}/devices` **(ours)**: an app claims a device in claim mode into a home.
pub(crate) async fn claim_device(call: Call, body: Body) -> Result<Response, ApiError> {
    let (home, access) = call.home()?;
    let (app, body) = (&call.app, call.body(body)?);
    let ClaimBody { device_id } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_json("claim body {\"deviceId\": ...}", &e))?;
    let info: DeviceInfo = app.cloud.device_info(device_id)?;
    if info.project_id != Some(access.project_id) {
        return Err(ApiError::forbidden(format_args!(
            "device {device_id} is not in this app key's project"
        )));
    }
    app.cloud.claim(device_id, home)?;
    tracing::info!(device_id, home, "device claimed over HTTP");
    Ok(json_response(
        StatusCode::OK,
        app.cloud.device_info(device_id)?.encode(),
    ))
}
