//! The simulator's REST API as a device and an app use it, over loopback with reqwest: events
//! and device info, who may call what (401, 403, 404), malformed requests, and the key-value
//! store over REST. The WebSockets are in `http_websockets.rs`, provisioning and the admin API
//! in `http_admin.rs`.

mod common;

use common::D1;
use common::http::*;
use mode_core::proto::{DeviceInfo, ErrorBody, KvItem, decode_kv_item, decode_kv_list};
use reqwest::Client;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Events and device info
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_device_event_is_answered_with_204_and_recorded() {
    let sim = sim().await;
    let body = r#"{"eventType":"temperature","eventData":{"big":18446744073709551616}}"#;
    let event = put("/devices/1001/event").key(D1_KEY).body(body);
    assert!(event.expect(&sim, 204).await.is_empty());
    let events = sim.cloud().events_from(D1);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "temperature");
    assert_eq!(
        events[0].event_data["big"].to_string(),
        "18446744073709551616"
    );
}

#[tokio::test]
async fn the_api_key_may_come_in_the_auth_token_query() {
    let sim = sim().await;
    let body = r#"{"eventType":"q","eventData":{}}"#;
    let path = format!("/devices/1001/event?authToken={D1_KEY}");
    put(path).body(body).expect(&sim, 204).await;
    assert_eq!(sim.cloud().events_from(D1).len(), 1);
}

#[tokio::test]
async fn device_info_is_served_to_the_device_and_to_an_app_of_its_home() {
    let sim = sim().await;
    for key in [D1_KEY, APP] {
        let body = get("/devices/1001").key(key).expect(&sim, 200).await;
        let info = DeviceInfo::decode(&body).unwrap();
        assert_eq!(
            (
                info.id,
                info.project_id,
                info.home_id,
                info.device_class.as_str()
            ),
            (1001, Some(1), Some(10), "sensor"),
            "{key}"
        );
    }
    let other = get("/devices/1001").key(OTHER_APP);
    other.refused(&sim, 403, "FORBIDDEN").await;
}

#[tokio::test]
async fn auth_says_who_a_key_belongs_to() {
    let sim = sim().await;
    let cases = [
        (
            Some(D1_KEY),
            json!({"type": "device", "deviceId": 1001, "projectId": 1}),
        ),
        (Some(APP), json!({"type": "app", "projectId": 1})),
        (Some("v1.nope"), json!({"type": "nobody"})),
        (None, json!({"type": "nobody"})),
    ];
    for (key, who) in cases {
        let got = get("/auth").key_opt(key).json(&sim).await;
        assert_eq!(got, who, "{key:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Who may call what, and malformed requests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_request_without_a_key_or_with_an_unknown_key_is_refused_with_401() {
    let sim = sim().await;
    let body = r#"{"eventType":"x"}"#;
    let none = put("/devices/1001/event").body(body);
    let none = none.refused(&sim, 401, "AUTH_FAILED").await;
    assert!(message(&none).contains("authToken"), "{none:?}");
    for unknown in [
        put("/devices/1001/event").key("v1.nope").body(body),
        get("/devices/1001/kv?authToken=v1.nope"),
    ] {
        unknown.refused(&sim, 401, "AUTH_FAILED").await;
    }
    assert!(sim.cloud().events().is_empty());
}

#[tokio::test]
async fn a_device_key_on_another_device_is_refused_with_403() {
    let sim = sim().await;
    let body = r#"{"eventType":"x"}"#;
    for other in [
        put("/devices/1001/event").key(D2_KEY).body(body),
        get("/devices/1001/kv").key(D2_KEY),
    ] {
        other.refused(&sim, 403, "FORBIDDEN").await;
    }
    let ws = ws_refused(&sim, "/devices/1001/command", Some(D2_KEY)).await;
    assert_eq!(ws, 403);
    assert!(sim.cloud().events().is_empty());
}

#[tokio::test]
async fn an_unknown_device_is_404_for_an_app_and_odd_ids_never_panic() {
    let sim = sim().await;
    let cmd = r#"{"action":"x","parameters":{}}"#;
    let command = put("/devices/4242/command").key(APP).body(cmd);
    command.refused(&sim, 404, "DEVICE_NOT_FOUND").await;
    for id in ["01001", "abc", "99999999999999999999999", "-1", "%31001"] {
        let info = get(format!("/devices/{id}")).key(APP);
        info.refused(&sim, 404, "DEVICE_NOT_FOUND").await;
    }
}

#[tokio::test]
async fn a_malformed_event_body_is_400_saying_what_was_wrong() {
    let sim = sim().await;
    let event = |body: &str| put("/devices/1001/event").key(D1_KEY).body(body);
    let wrong_type = event(r#"{"eventType": 5}"#);
    let wrong_type = wrong_type.refused(&sim, 400, "INVALID_BODY").await;
    assert!(
        message(&wrong_type).starts_with("invalid event"),
        "{wrong_type:?}"
    );
    assert_eq!(wrong_type.data["path"], "eventType");
    let missing = event(r#"{"eventData": {}}"#);
    let missing = missing.refused(&sim, 400, "INVALID_BODY").await;
    assert!(message(&missing).contains("eventType"), "{missing:?}");
    for body in ["{not json", r#"{"eventType": ""}"#] {
        event(body).refused(&sim, 400, "INVALID_BODY").await;
    }
    assert!(sim.cloud().events().is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let mut config = config();
    config.http_max_body = 1024;
    let sim = start(config).await;
    let big = format!(
        r#"{{"eventType":"big","eventData":{{"x":"{}"}}}}"#,
        "a".repeat(2000)
    );
    let event = |body: &str| put("/devices/1001/event").key(D1_KEY).body(body);
    let body = event(&big).refused(&sim, 413, "PAYLOAD_TOO_LARGE").await;
    assert_eq!(body.data["limit"], 1024);
    event(r#"{"eventType":"small"}"#).expect(&sim, 204).await;
    assert_eq!(sim.cloud().events_from(D1).len(), 1);
}

#[tokio::test]
async fn a_wrong_method_is_405_and_an_unknown_path_404_both_with_error_bodies() {
    let sim = sim().await;
    let cases = [
        (
            post("/devices/1001/event").body("{}"),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (delete("/devices/1001/kv"), 405, "METHOD_NOT_ALLOWED"),
        (get("/nothing/here"), 404, "NOT_FOUND"),
    ];
    for (req, status, reason) in cases {
        req.key(D1_KEY).refused(&sim, status, reason).await;
    }
}

#[tokio::test]
async fn odd_bodies_and_paths_get_json_errors_and_the_server_keeps_serving() {
    let sim = sim().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies: [&[u8]; 8] = [
        b"",
        b"null",
        b"[]",
        b"\"text\"",
        b"{\"eventType\": \"x\", \"eventData\": [1]}",
        b"\xff\xfe\x00",
        b"{\"eventType\": \"x\"} trailing",
        deep.as_bytes(),
    ];
    for body in bodies {
        for path in ["/devices/1001/event", "/devices/1001/kv/k"] {
            let resp = Client::new()
                .put(url(&sim, path))
                .header("Authorization", format!("ModeCloud {D1_KEY}"))
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.bytes().await.unwrap();
            // `null` is a valid kv value body only inside {"value": ...}; everything here is bad.
            assert_eq!(status, 400, "{path} {body:?}");
            ErrorBody::decode(&text).unwrap();
        }
    }
    for path in [
        "/devices/1001/kv/%00",
        "/devices/1001/kv/%",
        "/devices/%FF/kv/k",
        "/devices//kv",
        "/devices/1001/kv/a/b",
    ] {
        let (status, body) = get(path).key(D1_KEY).send(&sim).await;
        assert!(status.is_client_error(), "{path}: {status}");
        ErrorBody::decode(&body).unwrap();
    }
    let weird_header = Client::new()
        .get(url(&sim, "/devices/1001"))
        .header("Authorization", &b"ModeCloud \xff\xfe"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(weird_header.status().as_u16(), 401);
    get("/devices/1001").key(D1_KEY).expect(&sim, 200).await;
    assert!(sim.cloud().events().is_empty());
    assert!(sim.cloud().kv_list(D1).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn only_apps_send_commands_and_only_well_formed_ones() {
    let sim = sim().await;
    let cmd = r#"{"action":"x","parameters":{}}"#;
    let command = |key: &str| put("/devices/1001/command").key(key);
    for not_its_app in [D1_KEY, OTHER_APP] {
        let req = command(not_its_app).body(cmd);
        req.refused(&sim, 403, "FORBIDDEN").await;
    }
    let bad = command(APP).body(r#"{"parameters":{}}"#);
    let bad = bad.refused(&sim, 400, "INVALID_BODY").await;
    assert!(message(&bad).contains("invalid command"), "{bad:?}");
    assert!(sim.cloud().commands().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Key-value store
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn kv_keys_are_set_read_listed_and_deleted_over_rest() {
    let sim = sim().await;
    let path = "/devices/1001/kv/color";
    let color = put(path).key(APP).body(r#"{"value":{"r":255}}"#);
    color.expect(&sim, 204).await;
    let big = r#"{"value":18446744073709551616}"#;
    let n = put("/devices/1001/kv/n").key(D1_KEY).body(big);
    n.expect(&sim, 204).await;

    let body = get(path).key(D1_KEY).expect(&sim, 200).await;
    let item: KvItem = decode_kv_item(&body).unwrap();
    assert_eq!(
        (item.key.as_str(), &item.value),
        ("color", &json!({"r": 255}))
    );
    assert!(item.modification_time.is_some());

    let body = get("/devices/1001/kv").key(APP).expect(&sim, 200).await;
    let list = decode_kv_list(&body).unwrap();
    let keys: Vec<_> = list.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["color", "n"]);
    assert_eq!(list[1].value.to_string(), "18446744073709551616");

    delete(path).key(APP).expect(&sim, 204).await;
    for gone in [get(path), delete(path)] {
        gone.key(APP).refused(&sim, 404, "KEY_NOT_FOUND").await;
    }
    assert_eq!(sim.cloud().kv_snapshot(D1).unwrap().rev, 3);
}

#[tokio::test]
async fn a_kv_key_is_percent_decoded_once_and_checked_against_the_key_rule() {
    let sim = sim().await;
    let value = r#"{"value": 1}"#;
    let set = put("/devices/1001/kv/temp%2D1").key(APP).body(value);
    set.expect(&sim, 204).await;
    assert!(sim.cloud().kv_get(D1, "temp-1").is_ok());
    let long = "k".repeat(256);
    for bad in ["a%2Fb", "_x", "a%20b", "%FF", "%252D", &long] {
        let path = format!("/devices/1001/kv/{bad}");
        for req in [put(&path).body(value), get(&path)] {
            req.key(APP).refused(&sim, 400, "INVALID_KEY").await;
        }
    }
    assert_eq!(sim.cloud().kv_list(D1).unwrap().len(), 1);
}

#[tokio::test]
async fn a_kv_put_without_a_value_is_400() {
    let sim = sim().await;
    let set = |body: &str| put("/devices/1001/kv/k").key(APP).body(body);
    let body = set(r#"{"val": 1}"#)
        .refused(&sim, 400, "INVALID_BODY")
        .await;
    assert!(message(&body).contains("value"), "{body:?}");
    // null is a value.
    set(r#"{"value": null}"#).expect(&sim, 204).await;
}
