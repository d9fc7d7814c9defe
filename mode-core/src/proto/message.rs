//! The JSON messages of the MODE device protocol, typed, with their exact wire shapes
//! (`docs/protocol.md`). Every decoder tolerates unknown extra fields, never panics, and
//! says which field was wrong; every encoder writes the camelCase names the cloud expects.
//!
//! Here: ids, QoS, the JSON helpers every message uses, events and commands; the Device Data
//! Proxy's messages are in kv.rs, bulk data in bulk.rs, REST bodies in body.rs.

use crate::prelude::*;

use serde::{Deserialize, Deserializer, Serialize};
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

pub(super) fn encode_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serializing our own types into a Vec cannot fail: every map key is a string and no
    // Serialize impl here returns an error.
    serde_json::to_vec(value).expect("protocol types always serialize")
}

/// `null` and a missing field both mean "empty object": MODE's Go SDK sends `null` for a nil map.
pub(super) fn object_or_null<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(de)?.unwrap_or_default())
}

/// Keeps a present `null` apart from a missing field: `Some(Value::Null)` versus `None`.
pub(super) fn present<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Value>, D::Error> {
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
