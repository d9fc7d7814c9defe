//! The sans-IO session, driven the way a device with its own MQTT stack drives it.

use mode_core::ddp::{Applied, Change, IgnoreReason};
use mode_core::proto::*;
use mode_core::session::{Incoming, Session};
use serde_json::json;

#[test]
fn a_session_subscribes_to_commands_kv_and_watched_bulk_responses() {
    let mut session = Session::new(1234, 0);
    assert_eq!(
        session.subscriptions(),
        ["/devices/1234/command", "/devices/1234/kv"]
    );
    assert_eq!(
        session.watch_bulk_responses("ml").unwrap(),
        "/devices/1234/bulkData/ml/response"
    );
    assert_eq!(
        session.subscriptions(),
        [
            "/devices/1234/command",
            "/devices/1234/kv",
            "/devices/1234/bulkData/ml/response"
        ]
    );
    assert!(session.watch_bulk_responses("a/b").is_err());
}

#[test]
fn an_incoming_command_is_typed() {
    let mut session = Session::new(5, 0);
    let incoming = session.handle(
        "/devices/5/command",
        br#"{"action":"light","parameters":{"on":true}}"#,
    );
    assert_eq!(
        incoming,
        Incoming::Command(Command::new(
            "light",
            json!({"on": true}).as_object().unwrap().clone()
        ))
    );
}

#[test]
fn kv_sync_is_applied_to_the_sessions_mirror() {
    let mut session = Session::new(5, 0);
    session.on_subscribed();
    let reload = br#"{"action":"reload","rev":3,"numItems":1,"items":[{"key":"a","value":1}]}"#;
    let Incoming::Kv(Applied::Changed {
        reload: true,
        changes,
        ..
    }) = session.handle("/devices/5/kv", reload)
    else {
        panic!("reload not applied")
    };
    assert_eq!(changes.len(), 1);
    let set = br#"{"action":"set","rev":4,"key":"a","value":2}"#;
    assert!(matches!(
        session.handle("/devices/5/kv", set),
        Incoming::Kv(Applied::Changed { .. })
    ));
    assert_eq!(
        session.handle("/devices/5/kv", set),
        Incoming::Kv(Applied::Ignored {
            rev: 4,
            held: 4,
            reason: IgnoreReason::Duplicate
        })
    );
    assert_eq!(session.mirror().get("a"), Some(&json!(2)));
}

/// A session of device 5 whose mirror holds `{"a": 1}` at `rev`, from a reload.
fn holding_a(rev: u64) -> Session {
    let mut session = Session::new(5, 0);
    let reload = json!({"action": "reload", "rev": rev, "items": [{"key": "a", "value": 1}]});
    let incoming = session.handle("/devices/5/kv", reload.to_string().as_bytes());
    assert!(matches!(incoming, Incoming::Kv(_)), "{incoming:?}");
    session
}

#[test]
fn a_fresh_subscription_accepts_a_reload_with_a_lower_rev() {
    let mut session = holding_a(90);
    session.on_subscribed();
    let incoming = session.handle(
        "/devices/5/kv",
        br#"{"action":"reload","rev":1,"items":[]}"#,
    );
    let Incoming::Kv(applied) = incoming else {
        panic!()
    };
    assert_eq!(
        applied.changes(),
        [Change::Deleted {
            key: "a".into(),
            previous: json!(1)
        }]
    );
}

#[test]
fn a_malformed_payload_is_invalid_and_changes_nothing() {
    let mut session = holding_a(1);
    let Incoming::Invalid { topic, error } =
        session.handle("/devices/5/kv", br#"{"action":"set","rev":"x"}"#)
    else {
        panic!("not invalid")
    };
    assert_eq!(topic, "/devices/5/kv");
    assert_eq!(error.path, "rev");
    assert_eq!(session.mirror().snapshot(), json!({"a": 1}));
    assert!(matches!(
        session.handle("/devices/5/command", b"not json"),
        Incoming::Invalid { .. }
    ));
}

#[test]
fn publishes_for_other_devices_or_outbound_topics_are_unrelated() {
    let mut session = Session::new(5, 0);
    for topic in [
        "/devices/6/command",
        "/devices/5/event",
        "/devices/5/bulkData/x",
        "weather/today",
    ] {
        let incoming = session.handle(topic, b"{}");
        assert!(
            matches!(incoming, Incoming::Unrelated { .. }),
            "{topic}: {incoming:?}"
        );
    }
}

#[test]
fn a_bulk_response_carries_its_label() {
    let mut session = Session::new(5, 0);
    let incoming = session.handle(
        "/devices/5/bulkData/ml/response",
        br#"{"requestId":"r","status":"OK","payload":{"y":2}}"#,
    );
    let Incoming::BulkResponse { label, response } = incoming else {
        panic!()
    };
    assert_eq!(label, "ml");
    assert_eq!(response.status, BulkStatus::Ok);
    assert_eq!(response.payload, json!({"y": 2}));
}

#[test]
fn outgoing_intents_become_topic_payload_and_qos() {
    let mut session = Session::new(5, 0xabc);
    let event = session
        .event(&Event::new("t", Map::new()), Qos::AtMostOnce)
        .unwrap();
    assert_eq!(
        (event.topic.as_str(), event.qos),
        ("/devices/5/event", Qos::AtMostOnce)
    );
    assert_eq!(Event::decode(&event.payload).unwrap().event_type, "t");

    let set = session.kv_set("k", json!([1])).unwrap();
    assert_eq!(
        (set.topic.as_str(), set.qos),
        ("/devices/5/kv", Qos::AtLeastOnce)
    );
    assert_eq!(
        KvUpdate::decode(&set.payload).unwrap(),
        KvUpdate::Set {
            key: "k".into(),
            value: json!([1])
        }
    );
    let delete = session.kv_delete("k").unwrap();
    assert_eq!(
        KvUpdate::decode(&delete.payload).unwrap(),
        KvUpdate::Delete { key: "k".into() }
    );

    let bulk = session
        .bulk_data("ml", &[0, 159, 146, 150], Qos::AtLeastOnce)
        .unwrap();
    assert_eq!(
        (bulk.topic.as_str(), bulk.payload.as_slice()),
        ("/devices/5/bulkData/ml", &[0, 159, 146, 150][..])
    );
    assert_eq!(session.data(b"x", Qos::AtMostOnce).topic, "/devices/5/data");

    let (first, request) = session
        .bulk_request("ml", json!({"q": 1}), Qos::AtLeastOnce)
        .unwrap();
    let (second, _) = session
        .bulk_request("ml", json!({}), Qos::AtLeastOnce)
        .unwrap();
    assert_eq!(request.topic, "/devices/5/bulkData/ml/request");
    let decoded = BulkDataRequest::decode(&request.payload).unwrap();
    assert_eq!(
        (
            decoded.request_id.as_str(),
            decoded.bulk_data_label.as_str()
        ),
        (first.as_str(), "ml")
    );
    assert_ne!(first, second);
    assert!(first.starts_with("5-0000000000000abc-"), "{first}");
}

#[test]
fn intents_the_protocol_cannot_carry_are_refused_before_anything_is_sent() {
    let mut session = Session::new(5, 0);
    assert_eq!(
        session.event(&Event::new("", Map::new()), Qos::AtMostOnce),
        Err(EncodeError::EmptyEventType)
    );
    assert_eq!(session.kv_set("", json!(1)), Err(EncodeError::EmptyKey));
    assert_eq!(session.kv_delete(""), Err(EncodeError::EmptyKey));
    assert!(matches!(
        session.bulk_data("#", b"", Qos::AtMostOnce),
        Err(EncodeError::BadLabel(_))
    ));
    assert!(
        session
            .bulk_request("", json!({}), Qos::AtMostOnce)
            .is_err()
    );
    // MODE's bulk request payload is an object ("payload | object | Required").
    for (payload, kind) in [
        (json!([1, 2]), "an array"),
        (json!("x"), "a string"),
        (json!(7), "a number"),
        (json!(null), "null"),
        (json!(true), "a boolean"),
    ] {
        assert_eq!(
            session.bulk_request("echo", payload, Qos::AtLeastOnce),
            Err(EncodeError::BulkPayloadNotObject(kind))
        );
    }
}
