//! REST bodies: what `GET /devices/{id}` says of a device, and the cloud's error body.

use crate::prelude::*;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{DecodeError, MessageKind};
use super::message::{DeviceId, decode_json, encode_json};

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
