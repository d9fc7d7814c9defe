//! The admin API **(ours)**: the cloud's test controls and records over HTTP, for tests in other
//! languages and for people poking at a running simulator with curl.
//!
//! Every route needs `Authorization: ModeCloud <admin_key>` (or `?authToken=<admin_key>`), the
//! `admin_key` of the configuration; a missing or wrong key gets `401 AUTH_FAILED`. Without an
//! `admin_key` in the configuration the admin API does not exist (`404`).
//!
//! Test controls:
//! - `POST /admin/devices/{id}/drop`: closes every live connection of the device (MQTT and
//!   WebSocket); `200 {"dropped": n}`. `POST /admin/drop`: every device's.
//! - `POST /admin/devices/{id}/pause` / `.../resume`: stops (restarts) reading from and writing
//!   to the device's live connections; `200 {"paused": n}` / `{"resumed": n}`.
//! - `PUT /admin/devices/{id}/syncFaults`: faults of the device's DDP sync stream, body
//!   `{"delayMs": 0, "duplicatePercent": 0, "reorderPercent": 0, "seed": 0}` (each optional,
//!   0 by default; percents 0-100); `204`. `DELETE` clears them.
//! - `POST /admin/devices/{id}/publish/{channel}`: sends the request body, as it is, on
//!   `channel` (`command` or `kv`) to every live connection of the device that receives it
//!   (MQTT: subscribed to `/devices/{id}/command` or `/kv`; HTTP: that WebSocket, as a text
//!   frame, non-UTF-8 bytes replaced); `200 {"delivered": n}`. For testing what a client does
//!   with a malformed message from the cloud.
//! - `PUT /admin/projects/{projectId}/bulkData/{label}`: body `{"available": false}` takes the
//!   bulk-data module down (requests get `SERVICE_UNAVAILABLE`), `true` brings it back; `204`.
//!
//! Records and counters (JSON arrays, oldest first; the wire objects are mode-core's encodings):
//! - `GET /admin/records/events`: `[{"projectId", "event": <HomeEvent>}]`.
//! - `GET /admin/records/bulkData?encoding=base64|hex` (base64 by default):
//!   `[{"deviceId", "label", "encoding", "data"}]`.
//! - `GET /admin/records/kvOps`: `[{"deviceId", "rev", "source": "device"|"rest",
//!   "update": {"action", "key", "value"?}}]`.
//! - `GET /admin/records/bulkRequests`: `[{"deviceId", "label", "request", "response"}]`.
//! - `GET /admin/records/commands`: `[{"deviceId", "delivered", "command": <Command>}]`.
//! - `DELETE /admin/records`: forgets every record and connect counter; `204`.
//! - `GET /admin/devices/{id}/connections`: `{"deviceId", "accepted", "refused", "live"}`
//!   (connection attempts since the start or the last `DELETE /admin/records`).

use std::time::Duration;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post, put};
use bytes::Bytes;
use mode_core::proto::{DeviceId, Map, Value, parse_device_id};
use serde::Deserialize;

use super::auth::ApiKey;
use super::error::{ApiError, json_response, read_body};
use super::{AppState, raw_segment};
use crate::cloud::{
    BulkRequestRecord, Cloud, CommandRecord, EventRecord, KvOpRecord, KvSource, RawChannel,
    SyncFaults,
};
use crate::untrusted::untrusted;

/// The admin routes, behind the admin key check.
pub(crate) fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin/drop", post(drop_all))
        .route(
            "/admin/devices/{id}/drop",
            connection_control(Cloud::drop_connections, "dropped"),
        )
        .route(
            "/admin/devices/{id}/pause",
            connection_control(Cloud::pause_connections, "paused"),
        )
        .route(
            "/admin/devices/{id}/resume",
            connection_control(Cloud::resume_connections, "resumed"),
        )
        .route("/admin/devices/{id}/publish/{channel}", post(publish_raw))
        .route(
            "/admin/devices/{id}/syncFaults",
            put(set_faults).delete(clear_faults),
        )
        .route("/admin/devices/{id}/connections", get(connections))
        .route(
            "/admin/projects/{project}/bulkData/{label}",
            put(set_bulk_available),
        )
        .route("/admin/records", axum::routing::delete(clear_records))
        .route("/admin/records/events", records(Cloud::events, event_json))
        .route("/admin/records/bulkData", get(bulk_data))
        .route("/admin/records/kvOps", records(Cloud::kv_ops, kv_op_json))
        .route(
            "/admin/records/bulkRequests",
            records(Cloud::bulk_requests, bulk_request_json),
        )
        .route(
            "/admin/records/commands",
            records(Cloud::commands, command_json),
        )
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

async fn require_admin(
    State(app): State<AppState>,
    key: ApiKey,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(admin_key) = app.options.admin_key.as_deref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "the admin API is off: set admin_key in the simulator's configuration",
        ));
    };
    if !constant_time_eq(key.require()?.as_bytes(), admin_key.as_bytes()) {
        return Err(ApiError::unauthenticated("wrong admin key"));
    }
    Ok(next.run(req).await)
}

/// Compares without an early exit, so the time taken says nothing about the key.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn ok_json(value: Value) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&value).unwrap_or_default(),
    )
}

/// A mode-core encoding as a JSON value, to embed it in a record.
fn wire(bytes: Vec<u8>) -> Value {
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<Map<String, Value>>(),
    )
}

/// The device of `/admin/devices/{id}/...`: it must exist.
fn device(app: &AppState, uri: &Uri) -> Result<DeviceId, ApiError> {
    let raw = raw_segment(uri, 2);
    let id = parse_device_id(raw).ok_or_else(|| ApiError::no_such_device(raw))?;
    app.cloud.device_info(id)?;
    Ok(id)
}

async fn drop_all(State(app): State<AppState>) -> Response {
    let n = app.cloud.drop_all_connections();
    ok_json(object([("dropped", n.into())]))
}

/// `POST` of a test control on one device's live connections: `act` applies it and says to
/// how many; the answer is `{what: n}`.
fn connection_control(
    act: fn(&Cloud, DeviceId) -> usize,
    what: &'static str,
) -> MethodRouter<AppState> {
    post(move |State(app): State<AppState>, uri: Uri| async move {
        let id = device(&app, &uri)?;
        Ok::<_, ApiError>(ok_json(object([(what, act(&app.cloud, id).into())])))
    })
}

async fn publish_raw(
    State(app): State<AppState>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = device(&app, &uri)?;
    let channel = match raw_segment(&uri, 4) {
        "command" => RawChannel::Command,
        "kv" => RawChannel::Kv,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format_args!(
                    "no channel {:?}: publish to `command` or `kv`",
                    untrusted(other)
                ),
            ));
        }
    };
    let body = read_body(body, app.options.max_body)?;
    let n = app.cloud.publish_raw(id, channel, body)?;
    Ok(ok_json(object([("delivered", n.into())])))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct FaultsBody {
    delay_ms: u64,
    duplicate_percent: u8,
    reorder_percent: u8,
    seed: u64,
}

async fn set_faults(
    State(app): State<AppState>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let id = device(&app, &uri)?;
    let body = read_body(body, app.options.max_body)?;
    let faults: FaultsBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_json("sync faults body", &e))?;
    if faults.duplicate_percent > 100 || faults.reorder_percent > 100 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
            "duplicatePercent and reorderPercent must be between 0 and 100",
        ));
    }
    app.cloud.set_sync_faults(
        id,
        SyncFaults {
            delay: Duration::from_millis(faults.delay_ms),
            duplicate_percent: faults.duplicate_percent,
            reorder_percent: faults.reorder_percent,
            seed: faults.seed,
        },
    )?;
    tracing::info!(device_id = id, "admin: sync faults set");
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(State(app): State<AppState>, uri: Uri) -> Result<StatusCode, ApiError> {
    let id = device(&app, &uri)?;
    app.cloud.set_sync_faults(id, SyncFaults::default())?;
    Ok(StatusCode::NO_CONTENT)
}

async fn connections(State(app): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let id = device(&app, &uri)?;
    let stats = app.cloud.connect_attempts(id);
    Ok(ok_json(object([
        ("deviceId", id.into()),
        ("accepted", stats.accepted.into()),
        ("refused", stats.refused.into()),
        ("live", app.cloud.live_connections(id).into()),
    ])))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AvailableBody {
    available: bool,
}

async fn set_bulk_available(
    State(app): State<AppState>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let raw_project = raw_segment(&uri, 2);
    // Project ids follow the same canonical decimal rule as device ids.
    let project = parse_device_id(raw_project).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "PROJECT_NOT_FOUND",
            format_args!("{:?} is not a project id", untrusted(raw_project)),
        )
    })?;
    let label =
        mode_core::proto::rest::decode_path_segment(raw_segment(&uri, 4)).unwrap_or_default();
    let body = read_body(body, app.options.max_body)?;
    let AvailableBody { available } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_json("body {\"available\": true|false}", &e))?;
    app.cloud
        .set_bulk_module_available(project, &label, available)?;
    tracing::info!(
        project,
        label,
        available,
        "admin: bulk data module availability"
    );
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_records(State(app): State<AppState>) -> StatusCode {
    app.cloud.clear_records();
    StatusCode::NO_CONTENT
}

/// `GET` of one kind of record: `list` copies them out of the cloud, `json` writes one.
fn records<T: 'static>(list: fn(&Cloud) -> Vec<T>, json: fn(T) -> Value) -> MethodRouter<AppState> {
    get(move |State(app): State<AppState>| async move {
        ok_json(Value::Array(
            list(&app.cloud).into_iter().map(json).collect(),
        ))
    })
}

fn event_json(r: EventRecord) -> Value {
    object([
        ("projectId", r.project_id.into()),
        ("event", wire(r.event.encode())),
    ])
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EncodingQuery {
    encoding: Option<String>,
}

async fn bulk_data(State(app): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let query = axum::extract::Query::<EncodingQuery>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let encoding = query.encoding.as_deref().unwrap_or("base64");
    let encode: fn(&[u8]) -> String = match encoding {
        "base64" => base64,
        "hex" => hex,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_ENCODING",
                format_args!(
                    "encoding {:?} is not \"base64\" or \"hex\"",
                    untrusted(other)
                ),
            ));
        }
    };
    let records = app.cloud.bulk_data().into_iter().map(|r| {
        object([
            ("deviceId", r.device_id.into()),
            ("label", r.label.into()),
            ("encoding", encoding.into()),
            ("data", encode(&r.data).into()),
        ])
    });
    Ok(ok_json(Value::Array(records.collect())))
}

fn kv_op_json(r: KvOpRecord) -> Value {
    let source = match r.source {
        KvSource::Device => "device",
        KvSource::Rest => "rest",
    };
    object([
        ("deviceId", r.device_id.into()),
        ("rev", r.rev.into()),
        ("source", source.into()),
        ("update", wire(r.update.encode())),
    ])
}

fn bulk_request_json(r: BulkRequestRecord) -> Value {
    object([
        ("deviceId", r.device_id.into()),
        ("label", r.label.into()),
        ("request", wire(r.request.encode())),
        ("response", wire(r.response.encode())),
    ])
}

fn command_json(r: CommandRecord) -> Value {
    object([
        ("deviceId", r.device_id.into()),
        ("delivered", r.delivered.into()),
        ("command", wire(r.command.encode())),
    ])
}

fn hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(data.len() * 2);
    for b in data {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_base64_and_hex_like_rfc_4648() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }

    #[test]
    fn compares_admin_keys_exactly() {
        assert!(constant_time_eq(b"k1", b"k1"));
        assert!(!constant_time_eq(b"k1", b"k2"));
        assert!(!constant_time_eq(b"k1", b"k11"));
    }
}
