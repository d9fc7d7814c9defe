//! The MODE wire protocol: typed messages with their JSON encodings, MQTT topics and REST paths.
//! No IO, no threads, no clock: bytes in, typed values out, and back.

mod error;
mod message;
pub mod rest;
mod topic;

pub use error::{DecodeError, DecodeFault, EncodeError, MessageKind};
pub use message::{
    BulkDataRequest, BulkDataResponse, BulkStatus, Command, DeviceId, DeviceInfo, ErrorBody, Event,
    HomeEvent, KV_DELETED_EVENT, KV_SAVED_EVENT, KvItem, KvUpdate, KvValue, Qos, Reload, Rev,
    SyncMessage, decode_kv_item, decode_kv_list, encode_event_json, encode_kv_item, encode_kv_list,
    is_system_event_type,
};
pub use topic::{Topic, TopicError, TopicKind, is_valid_label, parse_device_id};

/// Re-exported so users build values with the same `serde_json` the protocol uses.
pub use serde_json::{Map, Value};
