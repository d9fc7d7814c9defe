//! The wire types against the exact JSON shapes of `docs/protocol.md` and MODE's own
//! documentation.

use mode_core::proto::*;
use serde_json::json;

fn value(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn the_seed_event_example_decodes() {
    let event = Event::decode(br#"{ "eventType": "test", "eventData": { "x": 123 } }"#).unwrap();
    assert_eq!(event.event_type, "test");
    assert_eq!(event.event_data["x"], json!(123));
}

#[test]
fn an_event_encodes_with_camel_case_fields() {
    let event = Event::new("foo", json!({"a": 1}).as_object().unwrap().clone());
    let encoded: serde_json::Value = serde_json::from_slice(&event.encode()).unwrap();
    assert_eq!(encoded, json!({"eventType": "foo", "eventData": {"a": 1}}));
}

#[test]
fn an_event_from_json_text_is_byte_for_byte_the_event_from_its_map() {
    let data = json!({"celsius": 21.5, "big": u64::MAX, "nested": {"a": [1, "\u{00e9}"]}});
    let serde_json::Value::Object(map) = data.clone() else {
        unreachable!()
    };
    let text = serde_json::to_string(&data).unwrap();
    for event_type in ["temperature", "quote\"d\\", "\u{1F600}"] {
        assert_eq!(
            encode_event_json(event_type, &text).unwrap(),
            Event::new(event_type, map.clone()).encode()
        );
    }
    // Whitespace around and inside is kept as the caller wrote it, and decodes the same.
    let spaced = encode_event_json("t", " { \"a\" : 1 }\n").unwrap();
    assert_eq!(Event::decode(&spaced).unwrap().event_data["a"], json!(1));
}

#[test]
fn event_json_text_that_is_not_one_object_is_refused_with_what_is_wrong() {
    for (text, says) in [
        ("[1,2]", "must be a JSON object"),
        ("42", "must be a JSON object"),
        ("", "must be a JSON object"),
        ("{\"a\":", "not valid JSON"),
        ("{} {}", "not valid JSON"),
        ("{\"a\":1}x", "not valid JSON"),
    ] {
        let err = encode_event_json("t", text).unwrap_err();
        assert!(err.to_string().contains(says), "{text:?}: {err}");
    }
}

#[test]
fn an_event_with_null_or_missing_data_has_an_empty_object() {
    for bytes in [
        &br#"{"eventType":"foo","eventData":null}"#[..],
        br#"{"eventType":"foo"}"#,
    ] {
        assert!(Event::decode(bytes).unwrap().event_data.is_empty());
    }
}

#[test]
fn an_event_with_an_empty_event_type_is_refused_with_the_field_named() {
    for bytes in [
        &br#"{"eventType":"","eventData":{}}"#[..],
        br#"{"eventType":""}"#,
    ] {
        let err = Event::decode(bytes).unwrap_err();
        assert_eq!(err.kind, MessageKind::Event);
        assert_eq!(err.fault, DecodeFault::Shape);
        assert_eq!(err.path, "eventType", "{err}");
    }
}

#[test]
fn the_seed_home_event_example_decodes() {
    let event = HomeEvent::decode(
        br#"{"homeId": 10, "timestamp": "2015-08-25T18:53:42.365519896Z", "eventType": "foo",
             "eventData": {}, "originDeviceId": 8}"#,
    )
    .unwrap();
    assert_eq!(event.home_id, 10);
    assert_eq!(event.origin_device_id, Some(8));
    assert_eq!(event.timestamp, "2015-08-25T18:53:42.365519896Z");
}

#[test]
fn system_event_types_start_and_end_with_an_underscore() {
    assert!(is_system_event_type(KV_SAVED_EVENT));
    assert!(is_system_event_type(KV_DELETED_EVENT));
    assert!(!is_system_event_type("_"));
    assert!(!is_system_event_type("_half"));
    assert!(!Event::new("temperature", Map::new()).is_system());
}

#[test]
fn the_seed_command_example_decodes() {
    let command = Command::decode(br#"{"action": "light", "parameters": {"on": true}}"#).unwrap();
    assert_eq!(command.action, "light");
    assert_eq!(command.parameters["on"], json!(true));
}

#[test]
fn command_integers_keep_every_digit() {
    let big = "123456789012345678901234567890";
    let bytes =
        format!(r#"{{"action":"set","parameters":{{"big":{big},"small":9007199254740993}}}}"#);
    let command = Command::decode(bytes.as_bytes()).unwrap();
    assert_eq!(command.parameters["big"].to_string(), big);
    assert_eq!(
        command.parameters["small"].as_u64(),
        Some(9_007_199_254_740_993)
    );
    let round_trip = String::from_utf8(command.encode()).unwrap();
    assert!(round_trip.contains(big), "{round_trip}");
}

#[test]
fn the_seed_reload_example_decodes() {
    let message = SyncMessage::decode(
        br#"{"action": "reload", "rev": 82, "numItems": 2, "items": [
              {"key": "xyz", "value": "hello world", "modificationTime": "2017-11-19T01:23:22Z"},
              {"key": "foo", "value": 22399, "modificationTime": "2017-11-21T11:09:18Z"}]}"#,
    )
    .unwrap();
    let SyncMessage::Reload(reload) = message else {
        panic!("not a reload: {message:?}")
    };
    assert_eq!(reload.rev, 82);
    assert_eq!(reload.items.len(), 2);
    assert_eq!(reload.items[0].key, "xyz");
    assert_eq!(reload.items[0].value, json!("hello world"));
    assert_eq!(
        reload.items[1].modification_time.as_deref(),
        Some("2017-11-21T11:09:18Z")
    );
}

#[test]
fn the_seed_set_and_delete_examples_decode() {
    let set = SyncMessage::decode(
        br#"{"action": "set", "rev": 83, "key": "xyz", "value": "I have changed"}"#,
    );
    assert_eq!(
        set.unwrap(),
        SyncMessage::Set {
            rev: 83,
            key: "xyz".into(),
            value: json!("I have changed")
        }
    );
    let delete = SyncMessage::decode(br#"{"action": "delete", "rev": 85, "key": "xyz"}"#);
    assert_eq!(
        delete.unwrap(),
        SyncMessage::Delete {
            rev: 85,
            key: "xyz".into()
        }
    );
}

#[test]
fn sync_messages_round_trip_through_their_encoding() {
    let messages = [
        SyncMessage::Reload(Reload {
            rev: 7,
            items: vec![KvItem {
                key: "a".into(),
                value: json!({"deep": [1, 2.5, "x", null, true]}),
                modification_time: Some("2017-11-19T01:23:22Z".into()),
            }],
        }),
        SyncMessage::Set {
            rev: 8,
            key: "b".into(),
            value: json!([1, 2]),
        },
        SyncMessage::Delete {
            rev: 9,
            key: "a".into(),
        },
    ];
    for message in messages {
        assert_eq!(SyncMessage::decode(&message.encode()).unwrap(), message);
    }
}

#[test]
fn a_reload_encodes_num_items() {
    let reload = SyncMessage::Reload(Reload {
        rev: 3,
        items: vec![],
    });
    let encoded: serde_json::Value = serde_json::from_slice(&reload.encode()).unwrap();
    assert_eq!(
        encoded,
        json!({"action": "reload", "rev": 3, "numItems": 0, "items": []})
    );
}

#[test]
fn a_set_may_store_null_but_must_carry_a_value() {
    let set = SyncMessage::decode(br#"{"action":"set","rev":1,"key":"k","value":null}"#).unwrap();
    assert_eq!(
        set,
        SyncMessage::Set {
            rev: 1,
            key: "k".into(),
            value: serde_json::Value::Null
        }
    );
    let err = SyncMessage::decode(br#"{"action":"set","rev":1,"key":"k"}"#).unwrap_err();
    assert_eq!(err.path, "value");
    assert!(err.to_string().contains("missing field `value`"), "{err}");
}

#[test]
fn a_wrongly_typed_rev_names_the_field_and_the_expected_type() {
    let err =
        SyncMessage::decode(br#"{"action":"set","rev":"83","key":"k","value":1}"#).unwrap_err();
    assert_eq!(err.kind, MessageKind::KvSync);
    assert_eq!(err.fault, DecodeFault::Shape);
    assert_eq!(err.path, "rev");
    assert!(err.detail.contains("expected u64"), "{err}");
    assert!(err.line_column.is_some());
}

#[test]
fn an_error_inside_a_reload_item_names_its_index() {
    let err = SyncMessage::decode(
        br#"{"action":"reload","rev":1,"items":[{"key":"a","value":1},{"key":2,"value":1}]}"#,
    )
    .unwrap_err();
    assert_eq!(err.path, "items[1].key");
    assert!(
        err.to_string()
            .starts_with("invalid kv sync message: at `items[1].key`: invalid type"),
        "{err}"
    );
}

#[test]
fn a_reload_whose_num_items_disagrees_with_its_items_is_refused() {
    let err = SyncMessage::decode(
        br#"{"action":"reload","rev":1,"numItems":3,"items":[{"key":"a","value":1}]}"#,
    )
    .unwrap_err();
    assert_eq!(err.path, "numItems");
    assert!(
        err.detail.contains("numItems is 3 but items holds 1"),
        "{err}"
    );
}

#[test]
fn a_reload_listing_a_key_twice_is_refused() {
    let err = SyncMessage::decode(
        br#"{"action":"reload","rev":1,"items":[{"key":"a","value":1},{"key":"a","value":2}]}"#,
    )
    .unwrap_err();
    assert_eq!(err.path, "items[1].key");
}

#[test]
fn an_unknown_sync_action_is_refused_with_the_actions_that_exist() {
    let err = SyncMessage::decode(br#"{"action":"frobnicate","rev":1}"#).unwrap_err();
    assert_eq!(err.path, "action");
    assert!(err.detail.contains("\"frobnicate\""), "{err}");
    assert!(
        err.detail.contains("\"reload\", \"set\" or \"delete\""),
        "{err}"
    );
}

#[test]
fn malformed_json_is_a_syntax_error_and_cut_json_is_truncated() {
    let sync = |bytes: &[u8]| SyncMessage::decode(bytes).map(|_| ());
    let command = |bytes: &[u8]| Command::decode(bytes).map(|_| ());
    let cases = [
        ("{nope", sync(b"{nope"), DecodeFault::Syntax),
        ("cut", sync(br#"{"action":"set""#), DecodeFault::Truncated),
        ("not UTF-8", command(b"\xff\xfe"), DecodeFault::Syntax),
        (
            "trailing",
            command(br#"{"action":"a"} trailing"#),
            DecodeFault::Syntax,
        ),
    ];
    for (what, decoded, fault) in cases {
        assert_eq!(decoded.unwrap_err().fault, fault, "{what}");
    }
}

#[test]
fn unknown_extra_fields_are_tolerated_everywhere() {
    assert!(
        SyncMessage::decode(br#"{"action":"delete","rev":2,"key":"k","extra":{"x":[1]}}"#).is_ok()
    );
    assert!(Command::decode(br#"{"action":"a","parameters":{},"sender":"app"}"#).is_ok());
    assert!(Event::decode(br#"{"eventType":"a","eventData":{},"homeId":1}"#).is_ok());
    assert!(
        BulkDataResponse::decode(br#"{"requestId":"r","status":"OK","payload":{},"t":1}"#).is_ok()
    );
}

#[test]
fn device_updates_have_no_rev_and_decode_back() {
    let set = KvUpdate::Set {
        key: "xyz".into(),
        value: json!("this is changed"),
    };
    let encoded: serde_json::Value = serde_json::from_slice(&set.encode()).unwrap();
    assert_eq!(
        encoded,
        json!({"action": "set", "key": "xyz", "value": "this is changed"})
    );
    assert_eq!(KvUpdate::decode(&set.encode()).unwrap(), set);
    let delete = KvUpdate::Delete { key: "xyz".into() };
    let encoded: serde_json::Value = serde_json::from_slice(&delete.encode()).unwrap();
    assert_eq!(encoded, json!({"action": "delete", "key": "xyz"}));
}

#[test]
fn a_device_update_cannot_be_a_reload_or_name_an_empty_key() {
    assert_eq!(
        KvUpdate::decode(br#"{"action":"reload","rev":1}"#)
            .unwrap_err()
            .path,
        "action"
    );
    assert_eq!(
        KvUpdate::decode(br#"{"action":"delete","key":""}"#)
            .unwrap_err()
            .path,
        "key"
    );
}

#[test]
fn the_rest_value_body_round_trips_and_requires_value() {
    let body = KvValue {
        value: json!("hello world"),
    };
    assert_eq!(body.encode(), br#"{"value":"hello world"}"#);
    assert_eq!(KvValue::decode(&body.encode()).unwrap(), body);
    assert_eq!(
        KvValue::decode(br#"{"value":null}"#).unwrap().value,
        serde_json::Value::Null
    );
    assert_eq!(
        KvValue::decode(br#"{"other":1}"#).unwrap_err().path,
        "value"
    );
}

#[test]
fn the_kv_list_form_is_an_array_of_items() {
    let items = vec![KvItem {
        key: "a".into(),
        value: json!(1),
        modification_time: None,
    }];
    assert_eq!(encode_kv_list(&items), br#"[{"key":"a","value":1}]"#);
    assert_eq!(decode_kv_list(&encode_kv_list(&items)).unwrap(), items);
    assert_eq!(
        decode_kv_item(&encode_kv_item(&items[0])).unwrap(),
        items[0]
    );
}

#[test]
fn the_seed_bulk_request_shape_round_trips() {
    let bytes = value(json!({"bulkDataLabel": "ml", "requestId": "r-1", "payload": {"q": 1}}));
    let request = BulkDataRequest::decode(&bytes).unwrap();
    assert_eq!(request.bulk_data_label, "ml");
    assert_eq!(request.request_id, "r-1");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&request.encode()).unwrap(),
        json!({"bulkDataLabel": "ml", "requestId": "r-1", "payload": {"q": 1}})
    );
    assert_eq!(
        BulkDataRequest::decode(br#"{"bulkDataLabel":"ml","requestId":"r"}"#)
            .unwrap_err()
            .path,
        "payload"
    );
}

#[test]
fn bulk_statuses_decode_with_a_fallback_for_unknown_ones() {
    let cases = [
        ("OK", BulkStatus::Ok),
        ("INVALID_BULK_DATA_LABEL", BulkStatus::InvalidBulkDataLabel),
        ("SERVICE_UNAVAILABLE", BulkStatus::ServiceUnavailable),
        ("RATE_LIMITED", BulkStatus::Unknown("RATE_LIMITED".into())),
    ];
    for (wire, status) in cases {
        let bytes = value(json!({"requestId": "r", "status": wire, "payload": {"a": 1}}));
        let response = BulkDataResponse::decode(&bytes).unwrap();
        assert_eq!(response.status, status);
        assert_eq!(response.status.as_str(), wire);
        assert_eq!(
            BulkDataResponse::decode(&response.encode()).unwrap(),
            response
        );
    }
}

#[test]
fn device_info_keeps_fields_it_does_not_know() {
    let bytes = value(
        json!({"id": 1234, "projectId": 5, "name": "lamp", "tag": "t",
        "deviceClass": "bulb", "homeId": 10, "firmwareVersion": "1.2.3"}),
    );
    let info = DeviceInfo::decode(&bytes).unwrap();
    assert_eq!(
        (info.id, info.project_id, info.home_id),
        (1234, Some(5), Some(10))
    );
    assert_eq!(
        (info.name.as_str(), info.device_class.as_str()),
        ("lamp", "bulb")
    );
    assert_eq!(info.raw["firmwareVersion"], json!("1.2.3"));
    assert_eq!(DeviceInfo::decode(&info.encode()).unwrap(), info);
    assert_eq!(
        DeviceInfo::decode(br#"{"name":"x"}"#).unwrap_err().path,
        "id"
    );
}

#[test]
fn error_bodies_carry_reason_and_data() {
    let body = ErrorBody::decode(br#"{"reason":"INVALID_KEY","data":{"key":"a b"}}"#).unwrap();
    assert_eq!(body.reason, "INVALID_KEY");
    assert_eq!(body.data, json!({"key": "a b"}));
    assert_eq!(
        ErrorBody::decode(br#"{"reason":"AUTH_FAILED"}"#)
            .unwrap()
            .data,
        serde_json::Value::Null
    );
}

#[test]
fn topics_build_as_the_protocol_names_them() {
    assert_eq!(Topic::event(42).to_string(), "/devices/42/event");
    assert_eq!(Topic::command(42).to_string(), "/devices/42/command");
    assert_eq!(Topic::kv(42).to_string(), "/devices/42/kv");
    assert_eq!(Topic::data(42).to_string(), "/devices/42/data");
    assert_eq!(
        Topic::bulk_data(42, "ml").unwrap().to_string(),
        "/devices/42/bulkData/ml"
    );
    assert_eq!(
        Topic::bulk_request(42, "ml").unwrap().to_string(),
        "/devices/42/bulkData/ml/request"
    );
    assert_eq!(
        Topic::bulk_response(42, "ml").unwrap().to_string(),
        "/devices/42/bulkData/ml/response"
    );
}

#[test]
fn every_topic_parses_back_to_itself() {
    let topics = [
        Topic::event(1),
        Topic::command(2),
        Topic::kv(3),
        Topic::data(4),
        Topic::bulk_data(5, "a").unwrap(),
        Topic::bulk_request(6, "request").unwrap(),
        Topic::bulk_response(u64::MAX, "b-c").unwrap(),
    ];
    for topic in topics {
        assert_eq!(Topic::parse(&topic.to_string()).unwrap(), topic);
    }
}

#[test]
fn topics_that_are_not_modes_are_refused() {
    for bad in [
        "devices/1/event",
        "/devices//event",
        "/devices/01/event",
        "/devices/+1/event",
        "/devices/1/events",
        "/devices/1",
        "/devices/1/bulkData/",
        "/devices/1/bulkData/a/other",
        "/devices/1/bulkData/a/request/x",
        "/devices/18446744073709551616/event",
    ] {
        assert!(Topic::parse(bad).is_err(), "{bad} parsed");
    }
}

#[test]
fn bulk_labels_that_cannot_be_one_topic_level_are_refused() {
    for bad in ["", "a/b", "+", "#", "a\0"] {
        assert_eq!(
            Topic::bulk_data(1, bad).unwrap_err(),
            EncodeError::BadLabel(bad.into())
        );
    }
}

#[test]
fn the_authorization_header_uses_the_mode_cloud_scheme() {
    assert_eq!(rest::authorization_value("v1.abc"), "ModeCloud v1.abc");
    assert_eq!(
        rest::parse_authorization("ModeCloud v1.abc"),
        Some("v1.abc")
    );
    assert_eq!(rest::parse_authorization("Bearer v1.abc"), None);
    assert_eq!(rest::parse_authorization("ModeCloud "), None);
}

#[test]
fn keys_are_percent_encoded_in_rest_paths() {
    assert_eq!(rest::kv_key_path(7, "xyz").unwrap(), "/devices/7/kv/xyz");
    assert_eq!(
        rest::kv_key_path(7, "a b/c?d%").unwrap(),
        "/devices/7/kv/a%20b%2Fc%3Fd%25"
    );
    assert_eq!(rest::kv_key_path(7, "é").unwrap(), "/devices/7/kv/%C3%A9");
    assert_eq!(rest::kv_key_path(7, ""), Err(EncodeError::EmptyKey));
    assert_eq!(
        rest::decode_path_segment("a%20b%2Fc%3Fd%25").as_deref(),
        Some("a b/c?d%")
    );
    assert_eq!(rest::decode_path_segment("%ff"), None);
}

#[test]
fn rest_paths_are_the_protocols() {
    assert_eq!(rest::device_path(9), "/devices/9");
    assert_eq!(rest::event_path(9), "/devices/9/event");
    assert_eq!(rest::command_path(9), "/devices/9/command");
    assert_eq!(rest::kv_path(9), "/devices/9/kv");
}
