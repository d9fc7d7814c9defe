//! The Device Data Proxy's messages: the `kv` topic's sync messages (reload, set, delete), a
//! device's writes to its store, and the REST forms of its keys.

use crate::prelude::*;
use alloc::borrow::Cow;
use alloc::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{DecodeError, MessageKind};
use super::message::{Rev, decode_json, encode_json, present};

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
