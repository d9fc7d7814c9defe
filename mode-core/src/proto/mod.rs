//! The MODE wire protocol: typed messages with their JSON encodings, MQTT topics and REST paths.
//! No IO, no threads, no clock: bytes in, typed values out, and back.

mod body;
mod bulk;
mod error;
mod kv;
mod message;
pub mod rest;
mod topic;

pub use body::{DeviceInfo, ErrorBody};
pub use bulk::{BulkDataRequest, BulkDataResponse, BulkStatus};
pub use error::{DecodeError, DecodeFault, EncodeError, MessageKind};
pub use kv::{
    KvItem, KvUpdate, KvValue, Reload, SyncMessage, decode_kv_item, decode_kv_list, encode_kv_item,
    encode_kv_list,
};
pub use message::{
    Command, DeviceId, Event, HomeEvent, KV_DELETED_EVENT, KV_SAVED_EVENT, Qos, Rev,
    encode_event_json, is_system_event_type,
};
pub use topic::{Topic, TopicError, TopicKind, is_valid_label, parse_device_id};

/// Re-exported so users build values with the same `serde_json` the protocol uses.
pub use serde_json::{Map, Value};
