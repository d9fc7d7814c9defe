//! How one record of the durable outbox is laid out inside a queue-file element: a
//! self-checking frame (magic, length, CRC-32, then id, kind, topic, payload). queue-file checks
//! its own elements; the frame is what lets a file queue-file cannot open any more be searched
//! for intact records ([`salvage`]), and it tells a message from an id marker.

use std::collections::BTreeMap;

use mode_core::engine::{MessageId, Publish};
use mode_core::proto::Qos;

const MAGIC: [u8; 4] = *b"MDOB";
/// Magic, body length, CRC-32 of the body.
const HEADER: usize = 12;
/// id, kind, topic length.
const BODY_FIXED: usize = 8 + 1 + 2;
/// The kind byte of an id marker (0 and 1 are a message's QoS).
const MARKER: u8 = 0xFF;

/// One record of the store.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Record {
    /// A message not yet confirmed.
    Message(Publish),
    /// No message: the largest id handed out so far, kept when every message is finished so
    /// that ids continue after a restart.
    LastId(MessageId),
}

impl Record {
    pub(super) fn id(&self) -> MessageId {
        match self {
            Record::Message(message) => message.id,
            Record::LastId(id) => *id,
        }
    }
}

/// How many bytes a message takes in the store (its frame), for the size bound.
pub(crate) fn stored_size(message: &Publish) -> usize {
    HEADER + BODY_FIXED + message.topic.len() + message.payload.len()
}

pub(super) fn encode(record: &Record) -> Vec<u8> {
    let (id, kind, topic, payload): (MessageId, u8, &[u8], &[u8]) = match record {
        Record::Message(message) => (
            message.id,
            match message.qos {
                Qos::AtMostOnce => 0,
                Qos::AtLeastOnce => 1,
            },
            message.topic.as_bytes(),
            &message.payload,
        ),
        Record::LastId(id) => (*id, MARKER, b"", b""),
    };
    let topic_len = u16::try_from(topic.len()).expect("MODE topics are short");
    let mut body = Vec::with_capacity(BODY_FIXED + topic.len() + payload.len());
    body.extend_from_slice(&id.to_le_bytes());
    body.push(kind);
    body.extend_from_slice(&topic_len.to_le_bytes());
    body.extend_from_slice(topic);
    body.extend_from_slice(payload);
    let mut frame = Vec::with_capacity(HEADER + body.len());
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// The record in `bytes` (a frame at its start), and the frame's length; `None` when it is not
/// an intact frame.
pub(super) fn decode(bytes: &[u8]) -> Option<(Record, usize)> {
    if bytes.len() < HEADER || bytes[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    let body = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    if len < BODY_FIXED || crc32fast::hash(body) != crc {
        return None;
    }
    let id = u64::from_le_bytes(body[..8].try_into().ok()?);
    let topic_len = usize::from(u16::from_le_bytes(body[9..11].try_into().ok()?));
    let topic = body.get(BODY_FIXED..BODY_FIXED + topic_len)?;
    let payload = &body[BODY_FIXED + topic_len..];
    let record = match body[8] {
        MARKER if topic.is_empty() && payload.is_empty() => Record::LastId(id),
        kind @ (0 | 1) => Record::Message(Publish {
            id,
            topic: String::from_utf8(topic.to_vec()).ok()?,
            payload: payload.to_vec(),
            qos: if kind == 0 {
                Qos::AtMostOnce
            } else {
                Qos::AtLeastOnce
            },
        }),
        _ => return None,
    };
    (id != 0).then_some((record, HEADER + len))
}

/// Every intact message frame in `bytes` (a file queue-file could not open), by id, the
/// largest id any intact record names, and how many frames were found damaged (their magic is
/// there, their checksum is not right).
pub(super) fn salvage(bytes: &[u8]) -> (BTreeMap<MessageId, Publish>, MessageId, u64) {
    let mut found = BTreeMap::new();
    let mut last_id = 0;
    let mut damaged = 0;
    let mut at = 0;
    while let Some(offset) = find_magic(&bytes[at..]) {
        let start = at + offset;
        match decode(&bytes[start..]) {
            Some((record, len)) => {
                last_id = last_id.max(record.id());
                if let Record::Message(message) = record {
                    found.insert(message.id, message);
                }
                at = start + len;
            }
            None => {
                damaged += 1;
                at = start + 1;
            }
        }
    }
    (found, last_id, damaged)
}

fn find_magic(bytes: &[u8]) -> Option<usize> {
    bytes.windows(MAGIC.len()).position(|w| w == MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: MessageId, payload: &[u8]) -> Publish {
        Publish {
            id,
            topic: "/devices/1001/event".into(),
            payload: payload.to_vec(),
            qos: Qos::AtLeastOnce,
        }
    }

    #[test]
    fn a_frame_reads_back_and_any_flipped_byte_is_noticed() {
        let m = Record::Message(message(7, br#"{"eventType":"x","eventData":{}}"#));
        let marker = Record::LastId(9);
        for record in [m, marker] {
            let frame = encode(&record);
            assert_eq!(decode(&frame), Some((record.clone(), frame.len())));
            for at in 0..frame.len() {
                let mut bad = frame.clone();
                bad[at] ^= 0x10;
                assert!(
                    decode(&bad).is_none_or(|(d, _)| d != record),
                    "a flip at {at} went unnoticed"
                );
            }
            for cut in 0..frame.len() {
                assert!(decode(&frame[..cut]).is_none(), "cut at {cut}");
            }
        }
        let m = message(7, b"{}");
        assert_eq!(stored_size(&m), encode(&Record::Message(m)).len());
    }

    #[test]
    fn salvage_finds_every_intact_frame_among_garbage() {
        let mut bytes = b"garbage MDOB not a frame".to_vec();
        for id in 1..=5 {
            bytes.extend_from_slice(&encode(&Record::Message(message(id, b"{}"))));
            bytes.extend_from_slice(b"\0\0junk");
        }
        bytes.extend_from_slice(&encode(&Record::LastId(8)));
        let mut broken = encode(&Record::Message(message(6, b"{}")));
        let last = broken.len() - 1;
        broken[last] ^= 1;
        bytes.extend_from_slice(&broken);
        let (found, last_id, damaged) = salvage(&bytes);
        assert_eq!(found.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(last_id, 8);
        assert_eq!(damaged, 2);
    }
}
