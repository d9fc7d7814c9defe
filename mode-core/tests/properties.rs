//! Properties of the core over random inputs: the mirror converges to the cloud's state however
//! sync messages are reordered and duplicated, and no decoder panics on any bytes.

use std::collections::BTreeMap;

use mode_core::ddp::Mirror;
use mode_core::proto::*;
use mode_core::session::Session;
use proptest::prelude::*;
use serde_json::{Value, json};

/// What the cloud does to the store, or a reconnect of the device (a new sync subscription).
#[derive(Debug, Clone)]
enum Op {
    Set(usize, i64),
    Delete(usize),
    Resubscribe,
}

const KEYS: [&str; 5] = ["a", "b", "c", "d", "e"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..KEYS.len(), -3i64..3).prop_map(|(k, v)| Op::Set(k, v)),
        3 => (0..KEYS.len()).prop_map(Op::Delete),
        1 => Just(Op::Resubscribe),
    ]
}

/// A tiny deterministic RNG so a failing case replays from its seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The cloud: the store, its rev, and the sync messages it sent in each subscription epoch.
struct Cloud {
    store: BTreeMap<String, Value>,
    rev: u64,
    epochs: Vec<(SyncMessage, Vec<SyncMessage>)>,
}

impl Cloud {
    fn run(ops: &[Op]) -> Cloud {
        let mut cloud = Cloud {
            store: BTreeMap::new(),
            rev: 0,
            epochs: Vec::new(),
        };
        cloud.resubscribe();
        for op in ops {
            match op {
                Op::Set(k, v) => {
                    cloud.rev += 1;
                    cloud.store.insert(KEYS[*k].into(), json!(v));
                    cloud.send(SyncMessage::Set {
                        rev: cloud.rev,
                        key: KEYS[*k].into(),
                        value: json!(v),
                    });
                }
                Op::Delete(k) => {
                    cloud.rev += 1;
                    cloud.store.remove(KEYS[*k]);
                    cloud.send(SyncMessage::Delete {
                        rev: cloud.rev,
                        key: KEYS[*k].into(),
                    });
                }
                Op::Resubscribe => cloud.resubscribe(),
            }
        }
        cloud
    }

    fn resubscribe(&mut self) {
        let items = self
            .store
            .iter()
            .map(|(key, value)| KvItem {
                key: key.clone(),
                value: value.clone(),
                modification_time: None,
            })
            .collect();
        self.epochs.push((
            SyncMessage::Reload(Reload {
                rev: self.rev,
                items,
            }),
            Vec::new(),
        ));
    }

    fn send(&mut self, message: SyncMessage) {
        self.epochs.last_mut().expect("an epoch").1.push(message);
    }

    fn snapshot(&self) -> Value {
        Value::Object(self.store.clone().into_iter().collect())
    }
}

/// Delivers every message: each epoch starts with its reload; its own messages follow shuffled,
/// some twice; a message of an earlier epoch may straggle in after a later reload.
fn deliver(cloud: &Cloud, seed: u64, mirror: &mut Mirror) {
    let mut rng = XorShift(seed | 1);
    let last = cloud.epochs.len() - 1;
    let mut batches: Vec<Vec<SyncMessage>> = vec![Vec::new(); cloud.epochs.len()];
    for (epoch, (_, messages)) in cloud.epochs.iter().enumerate() {
        for message in messages {
            let target = epoch + rng.below(last - epoch + 1).min(rng.below(3));
            batches[target].push(message.clone());
            if rng.below(4) == 0 {
                batches[epoch + rng.below(last - epoch + 1)].push(message.clone());
            }
        }
    }
    for (epoch, batch) in batches.iter_mut().enumerate() {
        rng.shuffle(batch);
        mirror.expect_reload();
        let _ = mirror.apply(cloud.epochs[epoch].0.clone());
        for message in batch.drain(..) {
            let _ = mirror.apply(message);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_mirror_converges_to_the_cloud_under_reordering_and_duplication(
        ops in prop::collection::vec(op(), 0..60),
        seed in any::<u64>(),
    ) {
        let cloud = Cloud::run(&ops);
        let mut mirror = Mirror::new();
        deliver(&cloud, seed, &mut mirror);
        prop_assert_eq!(mirror.snapshot(), cloud.snapshot());
        prop_assert_eq!(mirror.rev(), cloud.rev);
        prop_assert_eq!(mirror.len(), mirror.iter().count());
    }

    #[test]
    fn the_changes_reported_replay_to_the_same_contents(
        ops in prop::collection::vec(op(), 0..60),
        seed in any::<u64>(),
    ) {
        // An application that only follows the reported changes ends with the mirror's contents.
        let cloud = Cloud::run(&ops);
        let mut mirror = Mirror::new();
        let mut follower: BTreeMap<String, Value> = BTreeMap::new();
        let mut rng = XorShift(seed | 1);
        for (reload, messages) in &cloud.epochs {
            let mut batch = messages.clone();
            rng.shuffle(&mut batch);
            mirror.expect_reload();
            for message in std::iter::once(reload.clone()).chain(batch) {
                for change in mirror.apply(message).changes() {
                    match change {
                        mode_core::ddp::Change::Set { key, value, previous } => {
                            let before = follower.insert(key.clone(), value.clone());
                            prop_assert_eq!(&before, previous);
                        }
                        mode_core::ddp::Change::Deleted { key, previous } => {
                            let before = follower.remove(key);
                            prop_assert_eq!(before.as_ref(), Some(previous));
                        }
                    }
                }
            }
        }
        prop_assert_eq!(Value::Object(follower.into_iter().collect()), mirror.snapshot());
    }
}

/// JSON that looks like the protocol's, so the decoders get past the first byte.
fn protocol_json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "action",
        "rev",
        "key",
        "value",
        "items",
        "numItems",
        "modificationTime",
        "eventType",
        "eventData",
        "parameters",
        "requestId",
        "status",
        "payload",
        "bulkDataLabel",
        "id",
        "homeId",
        "reason",
        "data",
        "timestamp",
        "originDeviceId",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec!["reload", "set", "delete", "OK", "", "k"]).prop_map(Value::from),
        ".*".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(names.clone(), inner, 0..6).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

/// Every decoder, and the session's router on every topic kind, fed the same bytes.
fn decode_everything(bytes: &[u8]) {
    let _ = Event::decode(bytes);
    let _ = HomeEvent::decode(bytes);
    let _ = Command::decode(bytes);
    let _ = SyncMessage::decode(bytes);
    let _ = KvUpdate::decode(bytes);
    let _ = KvValue::decode(bytes);
    let _ = decode_kv_list(bytes);
    let _ = decode_kv_item(bytes);
    let _ = BulkDataRequest::decode(bytes);
    let _ = BulkDataResponse::decode(bytes);
    let _ = DeviceInfo::decode(bytes);
    let _ = ErrorBody::decode(bytes);
    let mut session = Session::new(7, 0);
    for topic in [
        "/devices/7/command",
        "/devices/7/kv",
        "/devices/7/bulkData/x/response",
        "/devices/8/kv",
    ] {
        let _ = session.handle(topic, bytes);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = Topic::parse(text);
        let _ = rest::decode_path_segment(text);
        let _ = rest::parse_authorization(text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn no_decoder_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&bytes);
    }

    #[test]
    fn no_decoder_panics_on_protocol_like_json_cut_or_corrupted(
        value in protocol_json(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let bytes = serde_json::to_vec(&value).unwrap();
        decode_everything(&bytes);
        decode_everything(&bytes[..cut.index(bytes.len() + 1)]);
        let mut corrupted = bytes.clone();
        if !corrupted.is_empty() {
            corrupted[flip.index(bytes.len())] = byte;
        }
        decode_everything(&corrupted);
    }

    #[test]
    fn every_decode_error_names_a_message_and_reads_as_a_sentence(value in protocol_json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        if let Err(err) = SyncMessage::decode(&bytes) {
            let text = err.to_string();
            prop_assert!(text.starts_with("invalid kv sync message: "), "{}", text);
            prop_assert!(!err.detail.is_empty());
        }
    }
}
