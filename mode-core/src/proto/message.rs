//! The JSON messages of the MODE device protocol, typed, with their exact wire shapes
//! (`docs/protocol.md`). Every decoder tolerates unknown extra fields, never panics, and
//! says which field was wrong; every encoder writes the camelCase names the cloud expects.

use crate::prelude::*;
use alloc::borrow::Cow;
use alloc::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::error::{DecodeError, MessageKind};

/// A device id: a number written in decimal on the wire and in topics.
pub type DeviceId = u64;

/// A DDP store revision. It grows by one on every set or delete in the cloud.
pub type Rev = u64;

/// MQTT quality of service the MODE broker accepts for a publish. QoS 2 does not exist here on
/// purpose: the broker refuses it, so the type cannot express it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Qos {
    /// Fire and forget.
    #[default]
    AtMostOnce = 0,
    /// Acknowledged by the broker (PUBACK); re-sent until then.
    AtLeastOnce = 1,
}

impl Qos {
    /// The QoS for a numeric level, `None` for anything but 0 or 1.
    pub fn from_level(level: u8) -> Option<Qos> {
        match level {
            0 => Some(Qos::AtMostOnce),
            1 => Some(Qos::AtLeastOnce),
            _ => None,
        }
    }

    /// The numeric level, 0 or 1.
    pub fn level(self) -> u8 {
        self as u8
    }
}

/// Decodes `bytes` as `T`. The fast path is a plain serde_json parse; only when that fails is
/// the input parsed again with path tracking, so a good message pays nothing for good errors.
pub(crate) fn decode_json<'de, T: Deserialize<'de>>(
    kind: MessageKind,
    bytes: &'de [u8],
) -> Result<T, DecodeError> {
    match serde_json::from_slice::<T>(bytes) {
        Ok(value) => Ok(value),
        Err(first) => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let path = match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(tracked) => tracked.path().to_string(),
                Ok(_) => String::new(), // failed after the value, e.g. trailing characters
            };
            let path = if path == "." { String::new() } else { path };
            Err(DecodeError::from_json(kind, path, &first))
        }
    }
}

fn encode_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serializing our own types into a Vec cannot fail: every map key is a string and no
    // Serialize impl here returns an error.
    serde_json::to_vec(value).expect("protocol types always serialize")
}

/// `null` and a missing field both mean "empty object": MODE's Go SDK sends `null` for a nil map.
fn object_or_null<'de, D: Deserializer<'de>>(de: D) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(de)?.unwrap_or_default())
}

/// Keeps a present `null` apart from a missing field: `Some(Value::Null)` versus `None`.
fn present<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(de).map(Some)
}

// ---------------------------------------------------------------------------------------------
// Events and commands
// ---------------------------------------------------------------------------------------------

/// An event sent by a device to its home: `{"eventType": "...", "eventData": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The event's type; types that start and end with `_` are the system's own.
    pub event_type: String,
    /// The event's data, a JSON object (empty when absent or `null` on the wire).
    #[serde(default, deserialize_with = "object_or_null")]
    pub event_data: Map<String, Value>,
}

impl Event {
    /// An event of `event_type` carrying `event_data`.
    pub fn new(event_type: impl Into<String>, event_data: Map<String, Value>) -> Self {
        Event {
            event_type: event_type.into(),
            event_data,
        }
    }

    /// Decodes an event object. An empty `eventType` is refused, as it is on send
    /// ([`EncodeError::EmptyEventType`](super::EncodeError::EmptyEventType)): it names nothing.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let event: Event = decode_json(MessageKind::Event, bytes)?;
        if event.event_type.is_empty() {
            return Err(DecodeError::shape(
                MessageKind::Event,
                "eventType",
                "eventType must not be empty",
            ));
        }
        Ok(event)
    }

    /// Encodes the event as the cloud expects it.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }

    /// True for event types the system generates (`_deviceKVSaved_` and the like).
    pub fn is_system(&self) -> bool {
        is_system_event_type(&self.event_type)
    }
}

/// Encodes an event whose data is JSON text already (a C or Python caller's), as
/// [`Event::encode`] would encode it with that data parsed: the text is checked to be one JSON
/// object and copied as it is, never built into a [`Map`] only to be written out again.
pub fn encode_event_json(event_type: &str, data: &str) -> Result<Vec<u8>, super::EncodeError> {
    let data = data.trim_matches([' ', '\t', '\n', '\r']);
    if !data.starts_with('{') {
        return Err(super::EncodeError::EventData(
            "event data must be a JSON object, e.g. {\"celsius\": 21.5}".into(),
        ));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(data).map_err(|err| {
        super::EncodeError::EventData(format!("event data is not valid JSON: {err}"))
    })?;
    let mut out = Vec::with_capacity(data.len() + event_type.len() + 28);
    out.extend_from_slice(b"{\"eventType\":");
    out.extend_from_slice(&encode_json(event_type));
    out.extend_from_slice(b",\"eventData\":");
    out.extend_from_slice(data.as_bytes());
    out.push(b'}');
    Ok(out)
}

/// True when `event_type` starts and ends with `_`, the mark of events the MODE system makes.
pub fn is_system_event_type(event_type: &str) -> bool {
    event_type.len() >= 2 && event_type.starts_with('_') && event_type.ends_with('_')
}

/// The system event emitted to a home when a device's key is set.
pub const KV_SAVED_EVENT: &str = "_deviceKVSaved_";
/// The system event emitted to a home when a device's key is deleted.
pub const KV_DELETED_EVENT: &str = "_deviceKVDeleted_";

/// An event as the cloud delivers it to a home's subscribers, with the fields it adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HomeEvent {
    /// The home the event was delivered to.
    pub home_id: u64,
    /// When the cloud received it, RFC 3339 in UTC with nanoseconds.
    pub timestamp: String,
    /// The event's type.
    pub event_type: String,
    /// The event's data.
    #[serde(default, deserialize_with = "object_or_null")]
    pub event_data: Map<String, Value>,
    /// The device that sent it; absent for events from apps or the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_device_id: Option<DeviceId>,
}

impl HomeEvent {
    /// Decodes a home event.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_json(MessageKind::HomeEvent, bytes)
    }

    /// Encodes the home event.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
}

/// A command sent to a device: `{"action": "...", "parameters": {...}}`. Integers in the
/// parameters keep every digit (serde_json's `arbitrary_precision`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// What the device is asked to do.
    pub action: String,
    /// The command's arguments, a JSON object (empty when absent or `null`).
    #[serde(default, deserialize_with = "object_or_null")]
    pub parameters: Map<String, Value>,
}

impl Command {
    /// A command `action` with `parameters`.
    pub fn new(action: impl Into<String>, parameters: Map<String, Value>) -> Self {
        Command {
            action: action.into(),
            parameters,
        }
    }

    /// Decodes a command object.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_json(MessageKind::Command, bytes)
    }

    /// Encodes the command.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
}

// ---------------------------------------------------------------------------------------------
// Device Data Proxy
// ---------------------------------------------------------------------------------------------

/// One key of a `reload`, and the REST form of one key (`GET /devices/{id}/kv/{key}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvItem {
    /// The key.
    pub key: String,
    /// Its value, any JSON.
    pub value: Value,
    /// When the cloud last changed it (RFC 3339), when the cloud says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modification_time: Option<String>,
}

/// A full dump of the store, sent right after the device subscribes (MQTT) or connects
/// (WebSocket). It is authoritative as of `rev`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    /// The store's revision at the time of the dump.
    pub rev: Rev,
    /// Every key of the store, each once.
    pub items: Vec<KvItem>,
}

/// A DDP sync message from the cloud to the device.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncMessage {
    /// The whole store.
    Reload(Reload),
    /// `key` now holds `value`, as of `rev`.
    Set {
        /// The store's revision after this change.
        rev: Rev,
        /// The key that changed.
        key: String,
        /// Its new value.
        value: Value,
    },
    /// `key` was deleted, as of `rev`.
    Delete {
        /// The store's revision after this change.
        rev: Rev,
        /// The key that was deleted.
        key: String,
    },
}

/// A change to the store that the device asks for (no `rev`: the cloud assigns it).
#[derive(Debug, Clone, PartialEq)]
pub enum KvUpdate {
    /// Set `key` to `value`.
    Set {
        /// The key to set.
        key: String,
        /// Its new value.
        value: Value,
    },
    /// Delete `key`.
    Delete {
        /// The key to delete.
        key: String,
    },
}

/// The one wire shape behind both sync messages and device updates: an `action` and the fields
/// that action uses. Decoded as a plain struct so typed numbers survive `arbitrary_precision`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKv<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    rev: Option<Rev>,
    key: Option<String>,
    #[serde(default, deserialize_with = "present")]
    value: Option<Value>,
    num_items: Option<u64>,
    items: Option<Vec<KvItem>>,
}

/// What both directions write: a borrowed mirror of [`RawKv`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutKv<'a> {
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rev: Option<Rev>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_items: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<&'a [KvItem]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Value>,
}

impl RawKv<'_> {
    fn key(&mut self, kind: MessageKind) -> Result<String, DecodeError> {
        match self.key.take() {
            None => Err(DecodeError::shape(kind, "key", "missing field `key`")),
            Some(key) if key.is_empty() => {
                Err(DecodeError::shape(kind, "key", "key must not be empty"))
            }
            Some(key) => Ok(key),
        }
    }

    fn rev(&self, kind: MessageKind) -> Result<Rev, DecodeError> {
        self.rev
            .ok_or_else(|| DecodeError::shape(kind, "rev", "missing field `rev`"))
    }

    fn value(&mut self, kind: MessageKind) -> Result<Value, DecodeError> {
        self.value
            .take()
            .ok_or_else(|| DecodeError::shape(kind, "value", "missing field `value`"))
    }

    fn unknown_action(&self, kind: MessageKind, expected: &str) -> DecodeError {
        DecodeError::shape(
            kind,
            "action",
            format!("unknown action {:?}, expected {expected}", self.action),
        )
    }
}

impl SyncMessage {
    /// Decodes a sync message from the cloud. A `reload` must list each key once, and its
    /// `numItems`, when present, must match the items: a truncated dump is refused rather than
    /// applied as the whole truth.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let kind = MessageKind::KvSync;
        let mut raw: RawKv = decode_json(kind, bytes)?;
        match &*raw.action {
            "reload" => {
                let rev = raw.rev(kind)?;
                let items = raw.items.take().unwrap_or_default();
                if let Some(n) = raw.num_items
                    && n != items.len() as u64
                {
                    return Err(DecodeError::shape(
                        kind,
                        "numItems",
                        format!("numItems is {n} but items holds {}", items.len()),
                    ));
                }
                let mut seen = BTreeSet::new();
                for (i, item) in items.iter().enumerate() {
                    if item.key.is_empty() {
                        return Err(DecodeError::shape(
                            kind,
                            format!("items[{i}].key"),
                            "key must not be empty",
                        ));
                    }
                    if !seen.insert(item.key.as_str()) {
                        return Err(DecodeError::shape(
                            kind,
                            format!("items[{i}].key"),
                            format!("key {:?} appears twice in one reload", item.key),
                        ));
                    }
                }
                Ok(SyncMessage::Reload(Reload { rev, items }))
            }
            "set" => Ok(SyncMessage::Set {
                rev: raw.rev(kind)?,
                key: raw.key(kind)?,
                value: raw.value(kind)?,
            }),
            "delete" => Ok(SyncMessage::Delete {
                rev: raw.rev(kind)?,
                key: raw.key(kind)?,
            }),
            _ => Err(raw.unknown_action(kind, "\"reload\", \"set\" or \"delete\"")),
        }
    }

    /// Encodes the message as the cloud sends it.
    pub fn encode(&self) -> Vec<u8> {
        let out = match self {
            SyncMessage::Reload(reload) => OutKv {
                action: "reload",
                rev: Some(reload.rev),
                num_items: Some(reload.items.len()),
                items: Some(&reload.items),
                key: None,
                value: None,
            },
            SyncMessage::Set { rev, key, value } => OutKv {
                action: "set",
                rev: Some(*rev),
                num_items: None,
                items: None,
                key: Some(key),
                value: Some(value),
            },
            SyncMessage::Delete { rev, key } => OutKv {
                action: "delete",
                rev: Some(*rev),
                num_items: None,
                items: None,
                key: Some(key),
                value: None,
            },
        };
        encode_json(&out)
    }

    /// The revision the message carries.
    pub fn rev(&self) -> Rev {
        match self {
            SyncMessage::Reload(reload) => reload.rev,
            SyncMessage::Set { rev, .. } | SyncMessage::Delete { rev, .. } => *rev,
        }
    }
}

impl KvUpdate {
    /// Decodes an update a device published (a `rev`, if present, is ignored: the cloud
    /// assigns revisions).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let kind = MessageKind::KvUpdate;
        let mut raw: RawKv = decode_json(kind, bytes)?;
        match &*raw.action {
            "set" => Ok(KvUpdate::Set {
                key: raw.key(kind)?,
                value: raw.value(kind)?,
            }),
            "delete" => Ok(KvUpdate::Delete {
                key: raw.key(kind)?,
            }),
            _ => Err(raw.unknown_action(kind, "\"set\" or \"delete\"")),
        }
    }

    /// Encodes the update as a device publishes it.
    pub fn encode(&self) -> Vec<u8> {
        let (action, key, value) = match self {
            KvUpdate::Set { key, value } => ("set", key, Some(value)),
            KvUpdate::Delete { key } => ("delete", key, None),
        };
        encode_json(&OutKv {
            action,
            rev: None,
            num_items: None,
            items: None,
            key: Some(key),
            value,
        })
    }

    /// The key the update touches.
    pub fn key(&self) -> &str {
        match self {
            KvUpdate::Set { key, .. } | KvUpdate::Delete { key } => key,
        }
    }
}

/// The body of `PUT /devices/{id}/kv/{key}`: `{"value": <json>}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KvValue {
    /// The value to store.
    pub value: Value,
}

impl KvValue {
    /// Decodes a value body; `value` must be present (it may be `null`).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let body: KvValueRaw = decode_json(MessageKind::KvValue, bytes)?;
        match body.value {
            Some(value) => Ok(KvValue { value }),
            None => Err(DecodeError::shape(
                MessageKind::KvValue,
                "value",
                "missing field `value`",
            )),
        }
    }

    /// Encodes `{"value": ...}`.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
}

#[derive(Deserialize)]
struct KvValueRaw {
    #[serde(default, deserialize_with = "present")]
    value: Option<Value>,
}

/// Encodes the list form of `GET /devices/{id}/kv` **(ours)**: an array of [`KvItem`].
pub fn encode_kv_list(items: &[KvItem]) -> Vec<u8> {
    encode_json(items)
}

/// Decodes the list form of `GET /devices/{id}/kv`.
pub fn decode_kv_list(bytes: &[u8]) -> Result<Vec<KvItem>, DecodeError> {
    decode_json(MessageKind::KvList, bytes)
}

/// Decodes the single-key form of `GET /devices/{id}/kv/{key}`.
pub fn decode_kv_item(bytes: &[u8]) -> Result<KvItem, DecodeError> {
    decode_json(MessageKind::KvItem, bytes)
}

/// Encodes the single-key form of `GET /devices/{id}/kv/{key}`.
pub fn encode_kv_item(item: &KvItem) -> Vec<u8> {
    encode_json(item)
}

// ---------------------------------------------------------------------------------------------
// Bulk data
// ---------------------------------------------------------------------------------------------

/// A bulk-data request to a smart module, published on `.../bulkData/{label}/request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkDataRequest {
    /// The smart module's bulk-data label.
    pub bulk_data_label: String,
    /// An id, unique across the system, that the response carries back.
    pub request_id: String,
    /// Module-specific request data.
    pub payload: Value,
}

impl BulkDataRequest {
    /// Decodes a request.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_json(MessageKind::BulkRequest, bytes)
    }

    /// Encodes the request.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
}

/// What the module made of a request. `Ok` means only that the module processed it: the outcome
/// is in the response's payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BulkStatus {
    /// `OK`: processed by the module.
    Ok,
    /// `INVALID_BULK_DATA_LABEL`: no module has that label.
    InvalidBulkDataLabel,
    /// `SERVICE_UNAVAILABLE`: the module is down for now; try again later.
    ServiceUnavailable,
    /// A status this version does not know, kept as sent.
    Unknown(String),
}

impl BulkStatus {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            BulkStatus::Ok => "OK",
            BulkStatus::InvalidBulkDataLabel => "INVALID_BULK_DATA_LABEL",
            BulkStatus::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            BulkStatus::Unknown(other) => other,
        }
    }
}

impl From<&str> for BulkStatus {
    fn from(s: &str) -> Self {
        match s {
            "OK" => BulkStatus::Ok,
            "INVALID_BULK_DATA_LABEL" => BulkStatus::InvalidBulkDataLabel,
            "SERVICE_UNAVAILABLE" => BulkStatus::ServiceUnavailable,
            other => BulkStatus::Unknown(other.to_owned()),
        }
    }
}

impl Serialize for BulkStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for BulkStatus {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(de)?;
        Ok(BulkStatus::from(&*s))
    }
}

/// A module's answer, received on `.../bulkData/{label}/response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkDataResponse {
    /// The id of the request this answers.
    pub request_id: String,
    /// Whether the module processed it.
    pub status: BulkStatus,
    /// Module-specific result (`null` when absent).
    #[serde(default)]
    pub payload: Value,
}

impl BulkDataResponse {
    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_json(MessageKind::BulkResponse, bytes)
    }

    /// Encodes the response.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
}

// ---------------------------------------------------------------------------------------------
// REST bodies
// ---------------------------------------------------------------------------------------------

/// What `GET /devices/{id}` says of a device. The named fields are typed; `raw` keeps the whole
/// object so fields this version does not know are not lost.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// The device id.
    pub id: DeviceId,
    /// The project it belongs to.
    pub project_id: Option<u64>,
    /// Its name (empty when not set).
    pub name: String,
    /// Its tag (empty when not set).
    pub tag: String,
    /// Its device class (empty when not set).
    pub device_class: String,
    /// The home it is in, if claimed.
    pub home_id: Option<u64>,
    /// The whole object as received.
    pub raw: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDeviceInfo {
    id: DeviceId,
    project_id: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    device_class: Option<String>,
    home_id: Option<u64>,
}

impl DeviceInfo {
    /// Decodes a device info object.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let typed: RawDeviceInfo = decode_json(MessageKind::DeviceInfo, bytes)?;
        let raw: Map<String, Value> = decode_json(MessageKind::DeviceInfo, bytes)?;
        Ok(DeviceInfo {
            id: typed.id,
            project_id: typed.project_id,
            name: typed.name.unwrap_or_default(),
            tag: typed.tag.unwrap_or_default(),
            device_class: typed.device_class.unwrap_or_default(),
            home_id: typed.home_id,
            raw,
        })
    }

    /// Encodes the device info: `raw`, with the typed fields written over it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.raw.clone();
        out.insert("id".into(), self.id.into());
        if let Some(project_id) = self.project_id {
            out.insert("projectId".into(), project_id.into());
        }
        out.insert("name".into(), self.name.clone().into());
        out.insert("tag".into(), self.tag.clone().into());
        out.insert("deviceClass".into(), self.device_class.clone().into());
        if let Some(home_id) = self.home_id {
            out.insert("homeId".into(), home_id.into());
        }
        encode_json(&out)
    }
}

/// The body of a REST error: `{"reason": "...", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A machine-readable reason, e.g. `AUTH_FAILED` or `INVALID_KEY`.
    pub reason: String,
    /// Details (an empty object when absent).
    #[serde(default)]
    pub data: Value,
}

impl ErrorBody {
    /// An error body with `reason` and `data`.
    pub fn new(reason: impl Into<String>, data: Value) -> Self {
        ErrorBody {
            reason: reason.into(),
            data,
        }
    }

    /// Decodes an error body.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_json(MessageKind::ErrorBody, bytes)
    }

    /// Encodes the error body.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
}
