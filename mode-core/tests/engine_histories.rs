//! The engine on simulated time and a simulated transport: no sockets, no sleeps. Random
//! histories (disconnects at any point, lost acknowledgements, authentication refusals, sync
//! messages duplicated and reordered, close at any point) must keep the engine's promises: no
//! QoS 1 message lost, order kept, the backoff schedule exactly Fibonacci within its jitter,
//! never two connects within one backoff step, bulk requests timed out exactly at their
//! deadline, close always ended by its deadline. Single behaviours are in `engine.rs`.

mod world;

use std::collections::{BTreeMap, BTreeSet};

use mode_core::engine::{DisconnectReason, DropReason, Event, MessageId};
use mode_core::proto::Qos;
use mode_core::time::Instant;
use proptest::prelude::*;
use serde_json::json;
use world::*;

// ---------------------------------------------------------------------------------------------
// Random histories
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Send(Qos),
    Connack,
    Suback,
    RefuseNetwork,
    RefuseAuth,
    Drop,
    Ack(usize),
    Advance(u64),
    Sync { key: u8, rev: u64, duplicate: bool },
    Close(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => prop_oneof![Just(Qos::AtLeastOnce), Just(Qos::AtMostOnce)].prop_map(Step::Send),
        3 => Just(Step::Connack),
        2 => Just(Step::Suback),
        1 => Just(Step::RefuseNetwork),
        1 => Just(Step::RefuseAuth),
        2 => Just(Step::Drop),
        6 => (0usize..8).prop_map(Step::Ack),
        4 => (0u64..2_500).prop_map(Step::Advance),
        2 => (0u8..3, 1u64..20, any::<bool>())
            .prop_map(|(key, rev, duplicate)| Step::Sync { key, rev, duplicate }),
        1 => (0u64..3_000).prop_map(Step::Close),
    ]
}

/// Runs `steps`; returns the world and the ids accepted, with their QoS.
fn run(seed: u64, steps: &[Step]) -> (World, Vec<(MessageId, Qos)>, Option<u64>) {
    let mut w = World::new(config(seed));
    let mut accepted = Vec::new();
    let mut close_deadline = None;
    for (n, step) in steps.iter().enumerate() {
        match step {
            Step::Send(qos) => {
                if let Ok(id) = w.send(n as u64, *qos) {
                    accepted.push((id, *qos));
                }
            }
            Step::Connack => w.connack(),
            Step::Suback => w.suback(),
            Step::RefuseNetwork => w.refuse(DisconnectReason::Network("refused".into())),
            Step::RefuseAuth => w.refuse(DisconnectReason::AuthFailed("CONNACK 5".into())),
            Step::Drop => w.drop_link(),
            Step::Ack(nth) => w.ack(*nth),
            Step::Advance(ms) => w.advance(*ms),
            Step::Sync {
                key,
                rev,
                duplicate,
            } => {
                let message =
                    json!({"action": "set", "rev": rev, "key": format!("k{key}"), "value": rev});
                w.kv_from_cloud(message.clone());
                if *duplicate {
                    w.kv_from_cloud(message);
                }
            }
            Step::Close(after) => {
                if close_deadline.is_none() {
                    let deadline = w.now + after;
                    close_deadline = Some(deadline);
                    w.engine.close(Instant::from_millis(deadline), w.t());
                    w.pump();
                }
            }
        }
    }
    (w, accepted, close_deadline)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Every accepted QoS 1 message is delivered once the cloud is reachable again, or reported
    /// dropped at close; each is finished exactly once; each connection sends in id order,
    /// starting from the oldest unconfirmed message.
    #[test]
    fn no_qos1_message_is_lost_and_order_is_kept(seed in any::<u64>(), steps in prop::collection::vec(step(), 0..120)) {
        let (mut w, accepted, close_deadline) = run(seed, &steps);
        if close_deadline.is_none() {
            w.settle();
        } else {
            w.advance(30_000);
            if !w.engine.is_closed() {
                w.settle();
                w.advance(30_000);
            }
        }
        let delivered = w.delivered();
        let dropped = w.dropped();
        let mut finished: BTreeMap<MessageId, u32> = BTreeMap::new();
        for id in delivered.iter().chain(dropped.iter().map(|(id, _)| id)) {
            *finished.entry(*id).or_default() += 1;
        }
        for (id, qos) in &accepted {
            prop_assert_eq!(finished.get(id).copied(), Some(1), "message {} ({:?}) finished once", id, qos);
        }
        for (id, reason) in &dropped {
            prop_assert_eq!(reason, &DropReason::Closed, "only close drops a message ({})", id);
        }
        if close_deadline.is_none() {
            prop_assert!(dropped.is_empty());
        }
        for ids in &w.per_connection {
            prop_assert!(ids.windows(2).all(|p| p[0] < p[1]), "in order on one connection: {:?}", ids);
        }
        // The cloud saw every delivered QoS 1 message.
        let received: BTreeSet<_> = w.received.iter().copied().collect();
        for id in &delivered {
            prop_assert!(received.contains(id));
        }
    }

    /// Each wait between a failure and the next attempt is the Fibonacci (or authentication)
    /// schedule within the jitter, and the attempt starts exactly when the wait ends.
    #[test]
    fn reconnects_follow_the_backoff_schedule_exactly(seed in any::<u64>(), outcomes in prop::collection::vec(0u8..4, 1..25)) {
        let mut w = World::new(config(seed));
        let mut failures = 0u32;
        let mut auth_failures = 0u32;
        for outcome in outcomes {
            let before = w.connects.len();
            let failed_at = w.now;
            match outcome {
                0 => w.refuse(DisconnectReason::Network("refused".into())),
                1 => w.refuse(DisconnectReason::AuthFailed("no".into())),
                _ => { w.connack(); w.suback(); w.advance(10); w.drop_link(); }
            }
            let retry_in = match w.events.last() {
                Some((_, Event::Disconnected { retry_in: Some(wait), .. })) => *wait,
                other => panic!("{other:?}"),
            };
            let expected = match outcome {
                1 => {
                    auth_failures += 1;
                    (3_000u64 << (auth_failures - 1).min(20)).min(20_000)
                }
                _ => {
                    if outcome >= 2 { auth_failures = 0; }
                    failures += 1;
                    (fibonacci_units(failures) * UNIT_MS).min(2_000)
                }
            };
            let wait = retry_in.as_millis() as u64;
            prop_assert!(wait <= expected && wait * 10 >= expected * 8 - 10, "wait {} for schedule {}", wait, expected);
            let failed_at = if outcome >= 2 { w.now } else { failed_at };
            w.advance(wait.saturating_sub(1));
            prop_assert_eq!(w.connects.len(), before, "no attempt within the backoff step");
            w.advance(1);
            prop_assert_eq!(w.connects.len(), before + 1);
            prop_assert_eq!(*w.connects.last().unwrap(), failed_at + wait);
        }
    }

    /// However the history goes, close ends by its deadline, and nothing happens after it.
    #[test]
    fn close_always_ends_by_its_deadline(seed in any::<u64>(), steps in prop::collection::vec(step(), 0..80), after in 0u64..5_000) {
        let (mut w, _, _) = run(seed, &steps);
        let deadline = w.now + after;
        w.engine.close(Instant::from_millis(deadline), w.t());
        w.pump();
        w.advance(after + 1);
        let closed = w.closed_at();
        prop_assert!(closed.is_some_and(|t| t <= deadline), "closed at {:?}, deadline {}", closed, deadline);
        prop_assert!(w.engine.is_closed());
        prop_assert_eq!(w.engine.poll_timeout(), None);
        let events = w.events.len();
        w.advance(100_000);
        prop_assert_eq!(w.events.len(), events);
    }

    /// Duplicated and reordered sync messages leave the mirror with the newest value of each key.
    #[test]
    fn the_mirror_keeps_the_newest_value_of_each_key(seed in any::<u64>(), mut revs in prop::collection::vec((0u8..4, 1u64..50), 1..60)) {
        let mut w = World::new(config(seed));
        w.connack();
        w.suback();
        w.kv_from_cloud(json!({"action": "reload", "rev": 0, "numItems": 0, "items": []}));
        revs.dedup_by_key(|(_, rev)| *rev);
        let mut newest: BTreeMap<String, u64> = BTreeMap::new();
        let mut used = BTreeSet::new();
        for (key, rev) in &revs {
            if !used.insert(*rev) { continue; } // the cloud never reuses a revision
            let key = format!("k{key}");
            w.kv_from_cloud(json!({"action": "set", "rev": rev, "key": key, "value": rev}));
            w.kv_from_cloud(json!({"action": "set", "rev": rev, "key": key, "value": rev}));
            let best = newest.entry(key).or_insert(0);
            *best = (*best).max(*rev);
        }
        for (key, rev) in newest {
            prop_assert_eq!(w.engine.mirror().get(&key), Some(&json!(rev)));
        }
    }
}
