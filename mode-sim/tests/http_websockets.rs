//! The simulator's WebSockets over loopback with tokio-tungstenite (or a raw socket, where a
//! client must misbehave): a device's command and kv sockets, the app's home event socket, who
//! may open them, and the server's pings.

mod common;

use std::time::Duration;

use common::http::*;
use common::{D1, WAIT};
use mode_core::proto::{KV_DELETED_EVENT, KV_SAVED_EVENT, SyncMessage, Value};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_app_command_reaches_the_devices_command_websocket_in_order() {
    let sim = sim().await;
    let mut socket = ws(&sim, "/devices/1001/command", Some(D1_KEY)).await;
    for n in 0..5 {
        put_command(&sim, "light", n).await;
    }
    for n in 0..5u64 {
        let command = next_command(&mut socket).await;
        assert_eq!(command.action, "light");
        assert_eq!(command.parameters["n"], n);
    }
    assert_eq!(sim.cloud().commands()[0].delivered, 1);
}

#[tokio::test]
async fn the_command_websocket_takes_the_key_from_the_auth_token_query() {
    let sim = sim().await;
    let path = format!("/devices/1001/command?authToken={D1_KEY}");
    let mut socket = ws(&sim, &path, None).await;
    put_command(&sim, "hello", 1).await;
    assert_eq!(next_command(&mut socket).await.action, "hello");
    assert_eq!(sim.cloud().connect_attempts(D1).accepted, 1);
}

#[tokio::test]
async fn a_command_websocket_with_a_bad_key_is_refused_and_counted() {
    let sim = sim().await;
    for (key, status) in [(Some("v1.nope"), 401), (None, 401), (Some(APP), 403)] {
        let got = ws_refused(&sim, "/devices/1001/command", key).await;
        assert_eq!(got, status, "{key:?}");
    }
    assert_eq!(sim.cloud().connect_attempts(D1).refused, 3);
    assert_eq!(sim.cloud().live_connections(D1), 0);
    // Without an upgrade the endpoint says it is a WebSocket.
    let plain = get("/devices/1001/command").key(D1_KEY);
    plain.refused(&sim, 400, "WEBSOCKET_REQUIRED").await;
}

#[tokio::test]
async fn websockets_ping_and_keep_a_client_that_never_answers_pong() {
    let sim = sim().await;
    // A raw client: it completes the handshake and then never writes a byte (no pongs).
    let mut tcp = TcpStream::connect(sim.http_addr().unwrap()).await.unwrap();
    let handshake = format!(
        "GET /devices/1001/command HTTP/1.1\r\nHost: sim\r\nAuthorization: ModeCloud {D1_KEY}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(handshake.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // 40 ms pings: after 400 ms of silence from the client there are several.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(400);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
        assert!(n > 0, "the server closed the connection");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    let head_end = text.find("\r\n\r\n").unwrap() + 4;
    let frames = &seen[head_end..];
    // Unmasked, empty ping frames: 0x89 0x00.
    let pings = frames.chunks(2).filter(|f| f == &[0x89, 0x00]).count();
    assert!(pings >= 3, "only {pings} pings in {frames:?}");
    assert!(frames.chunks(2).all(|f| f == [0x89, 0x00]), "{frames:?}");
    // Still connected and served.
    assert_eq!(sim.cloud().live_connections(D1), 1);
    put_command(&sim, "still-there", 1).await;
    let mut frame = Vec::new();
    while !frame.windows(11).any(|w| w == b"still-there") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the server closed the connection");
        frame.extend_from_slice(&buf[..n]);
    }
}

// ---------------------------------------------------------------------------------------------
// Key-value store
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_kv_websocket_sends_a_reload_then_every_change() {
    let sim = sim().await;
    let hello = put("/devices/1001/kv/a")
        .key(APP)
        .body(r#"{"value":"hello"}"#);
    hello.expect(&sim, 204).await;
    let mut socket = ws(&sim, "/devices/1001/kv", Some(D1_KEY)).await;
    let SyncMessage::Reload(reload) = next_sync(&mut socket).await else {
        panic!("the first message is not a reload");
    };
    assert_eq!(reload.rev, 1);
    assert_eq!(reload.items.len(), 1);
    assert_eq!(reload.items[0].value, "hello");

    let set = put("/devices/1001/kv/b")
        .key(APP)
        .body(r#"{"value":[1,2]}"#);
    set.expect(&sim, 204).await;
    delete("/devices/1001/kv/a")
        .key(D1_KEY)
        .expect(&sim, 204)
        .await;
    let set = SyncMessage::Set {
        rev: 2,
        key: "b".into(),
        value: json!([1, 2]),
    };
    assert_eq!(next_sync(&mut socket).await, set);
    let delete = SyncMessage::Delete {
        rev: 3,
        key: "a".into(),
    };
    assert_eq!(next_sync(&mut socket).await, delete);
}

#[tokio::test]
async fn kv_list_and_kv_websocket_share_a_path_and_the_key_may_come_in_the_query() {
    let sim = sim().await;
    let path = format!("/devices/1001/kv?authToken={D1_KEY}");
    let mut socket = ws(&sim, &path, None).await;
    assert_eq!(next_sync(&mut socket).await.rev(), 0);
    assert_eq!(get(path).expect(&sim, 200).await, b"[]");
}

// ---------------------------------------------------------------------------------------------
// The app's event stream
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn device_events_and_kv_system_events_reach_the_apps_home_event_websocket() {
    let sim = sim().await;
    let mut events = ws(&sim, "/homes/10/events", Some(APP)).await;
    let door = r#"{"eventType":"door","eventData":{"open":true}}"#;
    let requests = [
        put("/devices/1001/event").key(D1_KEY).body(door),
        put("/devices/1001/kv/mode")
            .key(APP)
            .body(r#"{"value":"eco"}"#),
        delete("/devices/1001/kv/mode").key(APP),
    ];
    for req in requests {
        req.expect(&sim, 204).await;
    }
    let door = next_home_event(&mut events).await;
    assert_eq!(
        (
            door.home_id,
            door.event_type.as_str(),
            door.origin_device_id
        ),
        (10, "door", Some(D1))
    );
    assert_eq!(door.event_data["open"], true);
    assert!(door.timestamp.ends_with('Z'), "{}", door.timestamp);
    let saved = next_home_event(&mut events).await;
    assert_eq!(saved.event_type, KV_SAVED_EVENT);
    assert_eq!(
        Value::Object(saved.event_data),
        json!({"deviceId": 1001, "key": "mode", "value": "eco"})
    );
    let deleted = next_home_event(&mut events).await;
    assert_eq!(deleted.event_type, KV_DELETED_EVENT);
    assert_eq!(
        Value::Object(deleted.event_data),
        json!({"deviceId": 1001, "key": "mode"})
    );
}

#[tokio::test]
async fn the_home_event_websocket_is_for_apps_that_see_the_home() {
    let sim = sim().await;
    let cases = [
        ("/homes/10/events", Some(OTHER_APP), 403),
        ("/homes/10/events", Some(D1_KEY), 403),
        ("/homes/99/events", Some(APP), 404),
        ("/homes/10/events", None, 401),
    ];
    for (path, key, status) in cases {
        assert_eq!(ws_refused(&sim, path, key).await, status, "{path} {key:?}");
    }
    let mut other = ws(&sim, "/homes/11/events", Some(OTHER_APP)).await;
    let event = put("/devices/1001/event").key(D1_KEY);
    event.body(r#"{"eventType":"x"}"#).expect(&sim, 204).await;
    assert!(silent_for(&mut other, Duration::from_millis(150)).await);
}
