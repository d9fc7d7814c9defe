//! Errors of the wire layer: a peer sent bytes we cannot decode, or the caller asked us to
//! build something the protocol cannot carry. The two are kept apart (see the house style).

use crate::prelude::*;
use core::fmt;

/// Which message a decoder was reading; part of every [`DecodeError`] so a log line says what
/// kind of traffic was bad without the caller adding context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// An event object (`eventType`, `eventData`).
    Event,
    /// An event as delivered to a home (`homeId`, `timestamp`, ...).
    HomeEvent,
    /// A command object (`action`, `parameters`).
    Command,
    /// A DDP sync message from the cloud (`reload`, `set`, `delete`).
    KvSync,
    /// A DDP update from the device (`set`, `delete` without `rev`).
    KvUpdate,
    /// A `{"value": ...}` body of the REST key-value API.
    KvValue,
    /// One key of the REST key-value API (`key`, `value`, `modificationTime`).
    KvItem,
    /// The list of all keys of the REST key-value API.
    KvList,
    /// A bulk-data request.
    BulkRequest,
    /// A bulk-data response.
    BulkResponse,
    /// A device info object from `GET /devices/{id}`.
    DeviceInfo,
    /// A REST error body (`reason`, `data`).
    ErrorBody,
}

impl MessageKind {
    /// A short human name, as used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Event => "event",
            MessageKind::HomeEvent => "home event",
            MessageKind::Command => "command",
            MessageKind::KvSync => "kv sync message",
            MessageKind::KvUpdate => "kv update",
            MessageKind::KvValue => "kv value body",
            MessageKind::KvItem => "kv item",
            MessageKind::KvList => "kv list",
            MessageKind::BulkRequest => "bulk data request",
            MessageKind::BulkResponse => "bulk data response",
            MessageKind::DeviceInfo => "device info",
            MessageKind::ErrorBody => "error body",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What class of fault the bytes had: not JSON at all, cut short, or JSON of the wrong shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeFault {
    /// Not valid JSON (or not UTF-8).
    Syntax,
    /// The input ended in the middle of a value.
    Truncated,
    /// Valid JSON, but a field is missing, has the wrong type, or breaks a protocol rule.
    Shape,
}

/// A message from the peer that could not be decoded: which message, where in it (a JSON path
/// such as `items[2].rev`, empty for the whole message), and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {}{detail}{}", self.at(), self.position())]
pub struct DecodeError {
    /// The message being decoded.
    pub kind: MessageKind,
    /// The class of fault.
    pub fault: DecodeFault,
    /// Path of the offending field inside the message; empty when the message as a whole is bad.
    pub path: String,
    /// What was wrong, e.g. `invalid type: string "x", expected u64`.
    pub detail: String,
    /// 1-based line and column in the input where the JSON parser stopped, when known.
    pub line_column: Option<(usize, usize)>,
}

impl DecodeError {
    /// An error found by our own checks after the JSON parsed (a protocol rule, not a type).
    pub(crate) fn shape(
        kind: MessageKind,
        path: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        DecodeError {
            kind,
            fault: DecodeFault::Shape,
            path: path.into(),
            detail: detail.into(),
            line_column: None,
        }
    }

    pub(crate) fn from_json(kind: MessageKind, path: String, err: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let fault = match err.classify() {
            Category::Syntax | Category::Io => DecodeFault::Syntax,
            Category::Eof => DecodeFault::Truncated,
            Category::Data => DecodeFault::Shape,
        };
        // serde_json appends " at line L column C" to its message; we keep that apart.
        let mut detail = err.to_string();
        if let Some(cut) = detail.rfind(" at line ") {
            detail.truncate(cut);
        }
        let line_column = (err.line() > 0).then(|| (err.line(), err.column()));
        // serde reports a missing field at its parent; the field itself is the place to look.
        let path = match missing_field(&detail) {
            Some(field) if path.is_empty() => field.to_owned(),
            Some(field) => format!("{path}.{field}"),
            None => path,
        };
        DecodeError {
            kind,
            fault,
            path,
            detail,
            line_column,
        }
    }

    fn at(&self) -> String {
        if self.path.is_empty() {
            String::new()
        } else {
            format!("at `{}`: ", self.path)
        }
    }

    fn position(&self) -> String {
        match self.line_column {
            Some((line, column)) => format!(" (line {line}, column {column})"),
            None => String::new(),
        }
    }
}

/// The field named by serde's "missing field `x`" message.
fn missing_field(detail: &str) -> Option<&str> {
    detail.strip_prefix("missing field `")?.strip_suffix('`')
}

/// The caller asked for something the protocol cannot express: an empty key, a bulk-data label
/// with a `/` in it, and so on. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A DDP key was empty.
    #[error("kv key must not be empty")]
    EmptyKey,
    /// A bulk-data label was empty or holds a character that cannot stand in one topic level.
    #[error(
        "bulk data label {0:?} is not usable in an MQTT topic: it must be non-empty and hold no '/', '+', '#' or NUL"
    )]
    BadLabel(String),
    /// An event type was empty.
    #[error("event type must not be empty")]
    EmptyEventType,
    /// Event data given as JSON text was not one JSON object; says what is wrong and where.
    #[error("{0}")]
    EventData(String),
    /// A bulk-data request's payload was not a JSON object (MODE requires one).
    #[error(
        "a bulk data request's payload must be a JSON object, not {0}; wrap it, e.g. {{\"value\": ...}}"
    )]
    BulkPayloadNotObject(&'static str),
}
