//! A sans-IO MODE session for a device that keeps its own MQTT stack: it says which topics to
//! subscribe to, turns each incoming `(topic, payload)` into a typed [`Incoming`] (applying DDP
//! sync to its [`Mirror`]), and turns what the device wants to send into `(topic, payload, qos)`.

use crate::prelude::*;
use alloc::collections::BTreeSet;

use serde_json::Value;

use crate::ddp::{Applied, Mirror};
use crate::proto::{
    BulkDataRequest, BulkDataResponse, Command, DecodeError, DeviceId, EncodeError, Event,
    KvUpdate, Qos, SyncMessage, Topic, TopicKind, encode_event_json,
};

/// One MQTT publish for the device's own stack to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The topic to publish on.
    pub topic: String,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// The QoS to publish with.
    pub qos: Qos,
}

/// What an incoming publish meant.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A command for this device.
    Command(Command),
    /// A DDP sync message, already applied to the session's mirror; what it changed.
    Kv(Applied),
    /// A smart module's answer to a bulk-data request.
    BulkResponse {
        /// The bulk-data label it came on.
        label: String,
        /// The response.
        response: BulkDataResponse,
    },
    /// A publish that is not for this device's session (another device's topic, or a topic a
    /// device only publishes on). Nothing was changed.
    Unrelated {
        /// The topic.
        topic: String,
        /// Why it is not ours, for a log line.
        reason: String,
    },
    /// A publish on one of our topics whose payload could not be decoded. Nothing was changed.
    Invalid {
        /// The topic.
        topic: String,
        /// What was wrong with the payload.
        error: DecodeError,
    },
}

/// The protocol state of one device: its id, its DDP mirror, the bulk-data labels whose
/// responses it listens for, and the counter behind its bulk request ids.
///
/// ```
/// use mode_core::proto::{Event, Map, Qos};
/// use mode_core::session::{Incoming, Session};
///
/// let mut session = Session::new(1001, 42);
/// // Subscribe to these with your MQTT client (QoS 0, as MODE's broker allows)...
/// assert_eq!(session.subscriptions(), ["/devices/1001/command", "/devices/1001/kv"]);
/// // ...and hand every publish that arrives to the session.
/// let incoming = session.handle(
///     "/devices/1001/command",
///     br#"{"action":"blink","parameters":{"times":18446744073709551617}}"#,
/// );
/// let Incoming::Command(command) = incoming else { panic!("a command: {incoming:?}") };
/// assert_eq!(command.parameters["times"].to_string(), "18446744073709551617"); // exact
///
/// // What the device sends comes back as (topic, payload, qos) for your client to publish.
/// let out = session.event(&Event::new("boot", Map::new()), Qos::AtLeastOnce)?;
/// assert_eq!(out.topic, "/devices/1001/event");
/// assert_eq!(out.payload, br#"{"eventType":"boot","eventData":{}}"#);
/// # Ok::<(), mode_core::proto::EncodeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    device_id: DeviceId,
    mirror: Mirror,
    bulk_labels: BTreeSet<String>,
    request_prefix: String,
    next_request: u64,
    /// The topics of every event and kv write, built once: formatting one costs more than the
    /// rest of queueing an event.
    event_topic: String,
    kv_topic: String,
}

impl Session {
    /// A session for `device_id`. `request_seed` should be random (the caller's RNG): it makes
    /// bulk request ids unique across restarts of the device.
    pub fn new(device_id: DeviceId, request_seed: u64) -> Self {
        Session {
            device_id,
            mirror: Mirror::new(),
            bulk_labels: BTreeSet::new(),
            request_prefix: format!("{device_id}-{request_seed:016x}-"),
            next_request: 0,
            event_topic: Topic::event(device_id).to_string(),
            kv_topic: Topic::kv(device_id).to_string(),
        }
    }

    /// The device this session speaks for.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The DDP mirror, as the cloud's messages have left it.
    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// The mirror, for callers that apply sync messages from another channel (REST, WebSocket).
    pub fn mirror_mut(&mut self) -> &mut Mirror {
        &mut self.mirror
    }

    /// Starts listening for responses of bulk-data `label`; returns the topic to subscribe to.
    pub fn watch_bulk_responses(&mut self, label: &str) -> Result<String, EncodeError> {
        let topic = Topic::bulk_response(self.device_id, label)?.to_string();
        self.bulk_labels.insert(label.to_owned());
        Ok(topic)
    }

    /// Every topic to subscribe to (all at QoS 0, the only level MODE grants): commands, DDP
    /// sync, and the responses of each watched bulk-data label.
    pub fn subscriptions(&self) -> Vec<String> {
        let id = self.device_id;
        let mut topics = vec![Topic::command(id).to_string(), self.kv_topic.clone()];
        topics.extend(
            self.bulk_labels.iter().map(|label| {
                Topic::new(id, TopicKind::BulkDataResponse(label.clone())).to_string()
            }),
        );
        topics
    }

    /// Call on every (re)connect when the SUBSCRIBE to the kv topic is sent, before its SUBACK:
    /// the cloud may send the `reload` before the SUBACK arrives, and that reload is the new
    /// truth even if the cloud's revisions went backwards meanwhile.
    pub fn on_subscribed(&mut self) {
        self.mirror.expect_reload();
    }

    /// Interprets one incoming publish.
    pub fn handle(&mut self, topic: &str, payload: &[u8]) -> Incoming {
        let unrelated = |reason: String| Incoming::Unrelated {
            topic: topic.to_owned(),
            reason,
        };
        let invalid = |error: DecodeError| Incoming::Invalid {
            topic: topic.to_owned(),
            error,
        };
        let parsed = match Topic::parse(topic) {
            Ok(parsed) => parsed,
            Err(err) => return unrelated(err.to_string()),
        };
        if parsed.device_id != self.device_id {
            return unrelated(format!(
                "topic belongs to device {}, this session is device {}",
                parsed.device_id, self.device_id
            ));
        }
        match parsed.kind {
            TopicKind::Command => Command::decode(payload).map_or_else(invalid, Incoming::Command),
            TopicKind::Kv => match SyncMessage::decode(payload) {
                Ok(message) => Incoming::Kv(self.mirror.apply(message)),
                Err(err) => invalid(err),
            },
            TopicKind::BulkDataResponse(label) => match BulkDataResponse::decode(payload) {
                Ok(response) => Incoming::BulkResponse { label, response },
                Err(err) => invalid(err),
            },
            TopicKind::Event
            | TopicKind::Data
            | TopicKind::BulkData(_)
            | TopicKind::BulkDataRequest(_) => {
                unrelated("a device publishes on this topic; it never receives on it".into())
            }
        }
    }

    fn outgoing(&self, topic: String, payload: Vec<u8>, qos: Qos) -> Outgoing {
        Outgoing {
            topic,
            payload,
            qos,
        }
    }

    /// An event to publish.
    pub fn event(&self, event: &Event, qos: Qos) -> Result<Outgoing, EncodeError> {
        if event.event_type.is_empty() {
            return Err(EncodeError::EmptyEventType);
        }
        Ok(self.outgoing(self.event_topic.clone(), event.encode(), qos))
    }

    /// An event whose data is JSON text (see [`encode_event_json`]).
    pub fn event_json(
        &self,
        event_type: &str,
        data: &str,
        qos: Qos,
    ) -> Result<Outgoing, EncodeError> {
        if event_type.is_empty() {
            return Err(EncodeError::EmptyEventType);
        }
        let payload = encode_event_json(event_type, data)?;
        Ok(self.outgoing(self.event_topic.clone(), payload, qos))
    }

    /// A DDP update to publish (always QoS 1: a lost write would leave the cloud behind).
    pub fn kv_update(&self, update: &KvUpdate) -> Result<Outgoing, EncodeError> {
        if update.key().is_empty() {
            return Err(EncodeError::EmptyKey);
        }
        Ok(self.outgoing(self.kv_topic.clone(), update.encode(), Qos::AtLeastOnce))
    }

    /// `kv_update` of a set.
    pub fn kv_set(&self, key: &str, value: Value) -> Result<Outgoing, EncodeError> {
        self.kv_update(&KvUpdate::Set {
            key: key.to_owned(),
            value,
        })
    }

    /// `kv_update` of a delete.
    pub fn kv_delete(&self, key: &str) -> Result<Outgoing, EncodeError> {
        self.kv_update(&KvUpdate::Delete {
            key: key.to_owned(),
        })
    }

    /// Raw bulk data for the smart module of `label`.
    pub fn bulk_data(&self, label: &str, data: &[u8], qos: Qos) -> Result<Outgoing, EncodeError> {
        let topic = Topic::bulk_data(self.device_id, label)?.to_string();
        Ok(self.outgoing(topic, data.to_vec(), qos))
    }

    /// Data for routing, published on `/devices/{id}/data`.
    pub fn data(&self, data: &[u8], qos: Qos) -> Outgoing {
        self.outgoing(Topic::data(self.device_id).to_string(), data.to_vec(), qos)
    }

    /// A bulk-data request with a fresh request id (`payload` must be a JSON object); returns the id to match the response by.
    /// Remember to [`watch_bulk_responses`](Self::watch_bulk_responses) for the label.
    pub fn bulk_request(
        &mut self,
        label: &str,
        payload: Value,
        qos: Qos,
    ) -> Result<(String, Outgoing), EncodeError> {
        let request_id = self.next_request_id();
        let out = self.encode_bulk_request(label, payload, qos, &request_id)?;
        self.take_request_id();
        Ok((request_id, out))
    }

    /// The request id the next [`bulk_request`](Self::bulk_request) will use.
    pub(crate) fn next_request_id(&self) -> String {
        format!("{}{}", self.request_prefix, self.next_request)
    }

    /// Uses up the request id [`next_request_id`](Self::next_request_id) named.
    pub(crate) fn take_request_id(&mut self) {
        self.next_request += 1;
    }

    /// The publish of a bulk-data request with `request_id`; changes nothing, so a caller can
    /// check it (its size, the queue's room) before committing to it.
    pub(crate) fn encode_bulk_request(
        &self,
        label: &str,
        payload: Value,
        qos: Qos,
        request_id: &str,
    ) -> Result<Outgoing, EncodeError> {
        let topic = Topic::bulk_request(self.device_id, label)?;
        if !payload.is_object() {
            return Err(EncodeError::BulkPayloadNotObject(json_kind(&payload)));
        }
        let request = BulkDataRequest {
            bulk_data_label: label.to_owned(),
            request_id: request_id.to_owned(),
            payload,
        };
        Ok(self.outgoing(topic.to_string(), request.encode(), qos))
    }
}

/// What kind of JSON value `value` is, for an error message.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
