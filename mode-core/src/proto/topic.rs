//! MQTT topic names of the MODE broker: building them for a device and parsing them back, so the
//! client, the sans-IO session and the simulator share one definition.

use crate::prelude::*;
use core::fmt;

use super::error::EncodeError;
use super::message::DeviceId;

/// What a topic under `/devices/{id}/` is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// `/devices/{id}/event`: the device publishes events.
    Event,
    /// `/devices/{id}/command`: the device subscribes to commands.
    Command,
    /// `/devices/{id}/kv`: DDP sync (subscribe) and updates (publish).
    Kv,
    /// `/devices/{id}/data`: data for routing.
    Data,
    /// `/devices/{id}/bulkData/{label}`: bulk data to a smart module.
    BulkData(String),
    /// `/devices/{id}/bulkData/{label}/request`: a bulk-data request.
    BulkDataRequest(String),
    /// `/devices/{id}/bulkData/{label}/response`: the module's responses.
    BulkDataResponse(String),
}

/// A MODE device topic: the device it belongs to and what it is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    /// The device whose topic this is.
    pub device_id: DeviceId,
    /// What the topic is for.
    pub kind: TopicKind,
}

/// A topic that is not one of MODE's device topics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic does not start with `/devices/`.
    #[error("topic {0:?} is not a MODE device topic (expected /devices/{{id}}/...)")]
    NotDeviceTopic(String),
    /// The device id is not a canonical decimal u64 (no sign, no leading zero).
    #[error("topic {0:?} has no valid device id (expected a decimal number)")]
    BadDeviceId(String),
    /// The part after the device id is not one MODE defines.
    #[error(
        "topic {0:?} is not one of event, command, kv, data, bulkData/{{label}}[/request|/response]"
    )]
    UnknownKind(String),
}

/// True when `label` can stand as one topic level: non-empty, no level separator, no wildcard,
/// no NUL (MQTT forbids it in topic names).
pub fn is_valid_label(label: &str) -> bool {
    !label.is_empty() && !label.contains(['/', '+', '#', '\0'])
}

fn checked_label(label: &str) -> Result<String, EncodeError> {
    if is_valid_label(label) {
        Ok(label.to_owned())
    } else {
        Err(EncodeError::BadLabel(label.to_owned()))
    }
}

/// Parses a device id as it stands in topics and paths: decimal digits, no sign, no leading
/// zero, so every id has exactly one spelling and a topic cannot alias another device's.
pub fn parse_device_id(s: &str) -> Option<DeviceId> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

impl Topic {
    /// A topic of `device_id` for `kind`.
    pub fn new(device_id: DeviceId, kind: TopicKind) -> Self {
        Topic { device_id, kind }
    }

    /// `/devices/{id}/event`.
    pub fn event(device_id: DeviceId) -> Self {
        Topic::new(device_id, TopicKind::Event)
    }

    /// `/devices/{id}/command`.
    pub fn command(device_id: DeviceId) -> Self {
        Topic::new(device_id, TopicKind::Command)
    }

    /// `/devices/{id}/kv`.
    pub fn kv(device_id: DeviceId) -> Self {
        Topic::new(device_id, TopicKind::Kv)
    }

    /// `/devices/{id}/data`.
    pub fn data(device_id: DeviceId) -> Self {
        Topic::new(device_id, TopicKind::Data)
    }

    /// `/devices/{id}/bulkData/{label}`; fails for a label that cannot be one topic level.
    pub fn bulk_data(device_id: DeviceId, label: &str) -> Result<Self, EncodeError> {
        Ok(Topic::new(
            device_id,
            TopicKind::BulkData(checked_label(label)?),
        ))
    }

    /// `/devices/{id}/bulkData/{label}/request`.
    pub fn bulk_request(device_id: DeviceId, label: &str) -> Result<Self, EncodeError> {
        Ok(Topic::new(
            device_id,
            TopicKind::BulkDataRequest(checked_label(label)?),
        ))
    }

    /// `/devices/{id}/bulkData/{label}/response`.
    pub fn bulk_response(device_id: DeviceId, label: &str) -> Result<Self, EncodeError> {
        Ok(Topic::new(
            device_id,
            TopicKind::BulkDataResponse(checked_label(label)?),
        ))
    }

    /// Parses a topic name.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let rest = topic
            .strip_prefix("/devices/")
            .ok_or_else(|| TopicError::NotDeviceTopic(topic.to_owned()))?;
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let device_id =
            parse_device_id(id).ok_or_else(|| TopicError::BadDeviceId(topic.to_owned()))?;
        let unknown = || TopicError::UnknownKind(topic.to_owned());
        let kind = match tail {
            "event" => TopicKind::Event,
            "command" => TopicKind::Command,
            "kv" => TopicKind::Kv,
            "data" => TopicKind::Data,
            _ => {
                let bulk = tail.strip_prefix("bulkData/").ok_or_else(unknown)?;
                let (label, suffix) = match bulk.split_once('/') {
                    Some((label, suffix)) => (label, Some(suffix)),
                    None => (bulk, None),
                };
                if !is_valid_label(label) {
                    return Err(unknown());
                }
                let label = label.to_owned();
                match suffix {
                    None => TopicKind::BulkData(label),
                    Some("request") => TopicKind::BulkDataRequest(label),
                    Some("response") => TopicKind::BulkDataResponse(label),
                    Some(_) => return Err(unknown()),
                }
            }
        };
        Ok(Topic { device_id, kind })
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.device_id;
        match &self.kind {
            TopicKind::Event => write!(f, "/devices/{id}/event"),
            TopicKind::Command => write!(f, "/devices/{id}/command"),
            TopicKind::Kv => write!(f, "/devices/{id}/kv"),
            TopicKind::Data => write!(f, "/devices/{id}/data"),
            TopicKind::BulkData(label) => write!(f, "/devices/{id}/bulkData/{label}"),
            TopicKind::BulkDataRequest(label) => {
                write!(f, "/devices/{id}/bulkData/{label}/request")
            }
            TopicKind::BulkDataResponse(label) => {
                write!(f, "/devices/{id}/bulkData/{label}/response")
            }
        }
    }
}
