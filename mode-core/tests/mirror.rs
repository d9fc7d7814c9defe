//! The DDP mirror's rules, message by message: per-key revisions, tombstones, authoritative
//! reloads and their diffs.

use mode_core::ddp::{Applied, Change, IgnoreReason, Mirror};
use mode_core::proto::{KvItem, Reload, SyncMessage};
use serde_json::{Value, json};

fn set(rev: u64, key: &str, value: Value) -> SyncMessage {
    SyncMessage::Set {
        rev,
        key: key.into(),
        value,
    }
}

fn delete(rev: u64, key: &str) -> SyncMessage {
    SyncMessage::Delete {
        rev,
        key: key.into(),
    }
}

fn reload(rev: u64, items: &[(&str, Value)]) -> SyncMessage {
    SyncMessage::Reload(Reload {
        rev,
        items: items
            .iter()
            .map(|(key, value)| KvItem {
                key: (*key).into(),
                value: value.clone(),
                modification_time: Some(format!("2017-11-19T01:23:{rev:02}Z")),
            })
            .collect(),
    })
}

fn changes(applied: Applied) -> Vec<Change> {
    match applied {
        Applied::Changed { changes, .. } => changes,
        ignored => panic!("expected changes, got {ignored:?}"),
    }
}

fn ignored(applied: Applied) -> IgnoreReason {
    applied
        .ignored()
        .unwrap_or_else(|| panic!("expected to be ignored, got {applied:?}"))
}

#[test]
fn a_new_mirror_is_empty_at_revision_zero_and_not_yet_synced() {
    let mirror = Mirror::new();
    assert!(mirror.is_empty());
    assert_eq!(mirror.rev(), 0);
    assert_eq!(mirror.reloads(), 0);
    assert_eq!(mirror.snapshot(), json!({}));
}

#[test]
fn a_set_newer_than_the_key_is_applied_and_reports_the_previous_value() {
    let mut mirror = Mirror::new();
    assert_eq!(
        changes(mirror.apply(set(1, "a", json!(1)))),
        [Change::Set {
            key: "a".into(),
            value: json!(1),
            previous: None
        }]
    );
    assert_eq!(
        changes(mirror.apply(set(2, "a", json!(2)))),
        [Change::Set {
            key: "a".into(),
            value: json!(2),
            previous: Some(json!(1))
        }]
    );
    assert_eq!(mirror.get("a"), Some(&json!(2)));
    assert_eq!(mirror.rev(), 2);
    assert_eq!(mirror.key_rev("a"), Some(2));
}

#[test]
fn a_set_older_than_the_key_is_ignored_as_stale() {
    let mut mirror = Mirror::new();
    let _ = mirror.apply(set(5, "a", json!("new")));
    let applied = mirror.apply(set(4, "a", json!("old")));
    assert_eq!(
        applied,
        Applied::Ignored {
            rev: 4,
            held: 5,
            reason: IgnoreReason::Stale
        }
    );
    assert_eq!(mirror.get("a"), Some(&json!("new")));
}

#[test]
fn the_same_set_twice_is_ignored_as_a_duplicate() {
    let mut mirror = Mirror::new();
    let _ = mirror.apply(set(5, "a", json!(1)));
    assert_eq!(
        ignored(mirror.apply(set(5, "a", json!(1)))),
        IgnoreReason::Duplicate
    );
}

#[test]
fn revisions_are_per_key_so_an_older_set_of_another_key_still_applies() {
    let mut mirror = Mirror::new();
    let _ = mirror.apply(set(9, "a", json!(1)));
    assert_eq!(changes(mirror.apply(set(3, "b", json!(2)))).len(), 1);
    assert_eq!(mirror.rev(), 9, "the mirror's rev is the highest seen");
}

#[test]
fn a_delete_removes_the_key_and_leaves_a_tombstone_that_stops_a_late_set() {
    let mut mirror = Mirror::new();
    let _ = mirror.apply(set(1, "a", json!("v")));
    assert_eq!(
        changes(mirror.apply(delete(3, "a"))),
        [Change::Deleted {
            key: "a".into(),
            previous: json!("v")
        }]
    );
    assert!(!mirror.contains("a"));
    assert_eq!(mirror.tombstones(), 1);
    assert_eq!(
        ignored(mirror.apply(set(2, "a", json!("late")))),
        IgnoreReason::Stale
    );
    assert_eq!(mirror.get("a"), None);
    assert_eq!(changes(mirror.apply(set(4, "a", json!("back")))).len(), 1);
    assert_eq!(mirror.tombstones(), 0);
}

#[test]
fn a_delete_that_arrives_before_its_set_wins() {
    let mut mirror = Mirror::new();
    assert!(
        changes(mirror.apply(delete(2, "a"))).is_empty(),
        "nothing visible to delete"
    );
    assert_eq!(
        ignored(mirror.apply(set(1, "a", json!(1)))),
        IgnoreReason::Stale
    );
    assert!(mirror.is_empty());
}

#[test]
fn a_reload_replaces_everything_and_reports_the_diff() {
    let mut mirror = Mirror::new();
    let _ = mirror.apply(reload(
        10,
        &[
            ("keep", json!(1)),
            ("change", json!("a")),
            ("gone", json!(true)),
        ],
    ));
    let _ = mirror.apply(delete(11, "ghost"));
    let diff = changes(mirror.apply(reload(
        20,
        &[
            ("new", json!([1])),
            ("keep", json!(1)),
            ("change", json!("b")),
        ],
    )));
    assert_eq!(
        diff,
        [
            Change::Set {
                key: "change".into(),
                value: json!("b"),
                previous: Some(json!("a"))
            },
            Change::Deleted {
                key: "gone".into(),
                previous: json!(true)
            },
            Change::Set {
                key: "new".into(),
                value: json!([1]),
                previous: None
            },
        ],
        "in key order, unchanged keys left out"
    );
    assert_eq!(
        mirror.snapshot(),
        json!({"change": "b", "keep": 1, "new": [1]})
    );
    assert_eq!(mirror.tombstones(), 0, "a reload drops tombstones");
    assert_eq!(
        mirror.key_rev("keep"),
        Some(20),
        "every item takes the reload's rev"
    );
    assert_eq!(mirror.reloads(), 2);
}

#[test]
fn a_late_set_of_a_key_deleted_before_the_reload_is_ignored() {
    let mut mirror = Mirror::new();
    let _ = mirror.apply(reload(10, &[]));
    // The key was set at 7 and deleted at 9 in the cloud; the set arrives only now.
    assert_eq!(
        ignored(mirror.apply(set(7, "a", json!(1)))),
        IgnoreReason::Stale
    );
    assert!(mirror.is_empty());
    assert_eq!(changes(mirror.apply(set(11, "a", json!(2)))).len(), 1);
}

#[test]
fn a_reload_older_than_the_mirror_is_stale() {
    let mut mirror = Mirror::new();
    let _ = mirror.apply(reload(10, &[("a", json!(1))]));
    let _ = mirror.apply(set(12, "a", json!(2)));
    assert_eq!(
        mirror.apply(reload(11, &[("a", json!(1))])),
        Applied::Ignored {
            rev: 11,
            held: 12,
            reason: IgnoreReason::Stale
        }
    );
    assert_eq!(mirror.get("a"), Some(&json!(2)));
}

#[test]
fn the_first_reload_after_resubscribing_is_the_truth_even_if_revisions_went_backwards() {
    let mut mirror = Mirror::new();
    let _ = mirror.apply(reload(50, &[("a", json!(1))]));
    // The cloud's store was reset: the new subscription's snapshot starts again at rev 2.
    mirror.expect_reload();
    let diff = changes(mirror.apply(reload(2, &[("b", json!(2))])));
    assert_eq!(diff.len(), 2);
    assert_eq!(mirror.rev(), 2);
    assert_eq!(mirror.snapshot(), json!({"b": 2}));
    assert_eq!(changes(mirror.apply(set(3, "c", json!(3)))).len(), 1);
}

#[test]
fn an_identical_reload_changes_nothing() {
    let mut mirror = Mirror::new();
    let _ = mirror.apply(reload(5, &[("a", json!({"x": 1}))]));
    assert!(changes(mirror.apply(reload(5, &[("a", json!({"x": 1}))]))).is_empty());
}

#[test]
fn modification_times_come_from_reloads_and_are_forgotten_by_a_set() {
    let mut mirror = Mirror::new();
    let _ = mirror.apply(reload(5, &[("a", json!(1)), ("b", json!(2))]));
    assert_eq!(mirror.modification_time("a"), Some("2017-11-19T01:23:05Z"));
    let _ = mirror.apply(set(6, "a", json!(3)));
    assert_eq!(mirror.modification_time("a"), None);
    assert_eq!(mirror.modification_time("b"), Some("2017-11-19T01:23:05Z"));
    assert_eq!(mirror.modification_time("missing"), None);
}

#[test]
fn iteration_is_in_key_order_and_skips_tombstones() {
    let mut mirror = Mirror::new();
    for (rev, key) in [(1, "c"), (2, "a"), (3, "b")] {
        let _ = mirror.apply(set(rev, key, json!(rev)));
    }
    let _ = mirror.apply(delete(4, "b"));
    assert_eq!(mirror.keys().collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(
        mirror.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        [json!(2), json!(1)]
    );
    assert_eq!(mirror.len(), 2);
}

#[test]
fn compacting_drops_settled_tombstones_and_keeps_their_protection() {
    let mut mirror = Mirror::new();
    let _ = mirror.apply(reload(1, &[]));
    let _ = mirror.apply(set(2, "a", json!(1)));
    let _ = mirror.apply(delete(3, "a"));
    let _ = mirror.apply(delete(5, "b"));
    assert_eq!(mirror.tombstones(), 2);
    assert_eq!(
        mirror.compact_tombstones(4),
        1,
        "only the tombstone at rev 3 is settled"
    );
    assert_eq!(mirror.tombstones(), 1);
    assert_eq!(
        ignored(mirror.apply(set(2, "a", json!("late")))),
        IgnoreReason::Stale
    );
    assert_eq!(
        ignored(mirror.apply(set(4, "b", json!("late")))),
        IgnoreReason::Stale
    );
    assert!(mirror.is_empty());
}

#[test]
fn compacting_never_raises_the_floor_past_what_was_seen() {
    let mut mirror = Mirror::new();
    let _ = mirror.apply(delete(3, "a"));
    assert_eq!(mirror.compact_tombstones(1_000), 1);
    assert_eq!(changes(mirror.apply(set(4, "b", json!(1)))).len(), 1);
}

#[test]
fn a_raw_payload_is_decoded_and_applied_and_a_bad_one_changes_nothing() {
    let mut mirror = Mirror::new();
    let applied = mirror
        .apply_json(br#"{"action":"set","rev":1,"key":"a","value":1}"#)
        .unwrap();
    assert_eq!(applied.changes().len(), 1);
    let err = mirror
        .apply_json(br#"{"action":"set","rev":2,"key":"a"}"#)
        .unwrap_err();
    assert_eq!(err.path, "value");
    assert_eq!(mirror.snapshot(), json!({"a": 1}));
    assert_eq!(mirror.rev(), 1);
}
