//! Bulk data: a request to a smart module, and its response with the module's status.

use crate::prelude::*;
use alloc::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::error::{DecodeError, MessageKind};
use super::message::{decode_json, encode_json};

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
