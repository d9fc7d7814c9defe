//! The HTTP REST + WebSocket API of the simulator over loopback: reqwest as the app or device,
//! tokio-tungstenite (or a raw socket, where a client must misbehave) for the WebSockets.

use std::time::Duration;

use futures_util::StreamExt;
use mode_core::proto::{
    Command, DeviceInfo, ErrorBody, HomeEvent, KV_DELETED_EVENT, KV_SAVED_EVENT, KvItem,
    SyncMessage, Value, decode_kv_item, decode_kv_list,
};
use mode_sim::config::{AppKeyConfig, HomeConfig};
use mode_sim::{Sim, SimConfig};
use reqwest::{Client, Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const D1: u64 = 1001;
const D1_KEY: &str = "v1.demo-device-1001";
const D2_KEY: &str = "v1.demo-device-1002";
const APP: &str = "v1.demo-app";
const ADMIN: &str = "admin-secret";
/// An app key that sees only home 11, where no demo device lives.
const OTHER_APP: &str = "v1.other-home-app";
const WAIT: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn config() -> SimConfig {
    let mut config = SimConfig::demo();
    config.admin_key = Some(ADMIN.into());
    config.ws_ping_interval_ms = 40;
    let project = &mut config.projects[0];
    project.homes.push(HomeConfig {
        id: 11,
        name: "empty home".into(),
    });
    project.app_keys.push(AppKeyConfig {
        key: OTHER_APP.into(),
        homes: Some(vec![11]),
    });
    config
}

async fn start(config: SimConfig) -> Sim {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Sim::start(config).await.unwrap()
}

async fn sim() -> Sim {
    start(config()).await
}

fn url(sim: &Sim, path: &str) -> String {
    format!("http://{}{path}", sim.http_addr().unwrap())
}

/// One request; `key` goes in the `Authorization` header. Returns the status and the body.
async fn call(
    sim: &Sim,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let mut req = Client::new().request(method, url(sim, path));
    if let Some(key) = key {
        req = req.header("Authorization", format!("ModeCloud {key}"));
    }
    if let Some(body) = body {
        req = req
            .header("Content-Type", "application/json")
            .body(body.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.bytes().await.unwrap().to_vec())
}

/// Asserts a refusal: its status and the `reason` of its JSON error body. Returns the body.
fn refused(got: (StatusCode, Vec<u8>), status: u16, reason: &str) -> ErrorBody {
    let (got_status, body) = got;
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(got_status.as_u16(), status, "{text}");
    let body = ErrorBody::decode(&body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(body.reason, reason, "{text}");
    body
}

fn message(body: &ErrorBody) -> String {
    body.data["message"].as_str().unwrap_or_default().to_owned()
}

fn ws_request(sim: &Sim, path: &str, key: Option<&str>) -> Request {
    let mut req = format!("ws://{}{path}", sim.http_addr().unwrap())
        .into_client_request()
        .unwrap();
    if let Some(key) = key {
        req.headers_mut()
            .insert("Authorization", format!("ModeCloud {key}").parse().unwrap());
    }
    req
}

async fn ws(sim: &Sim, path: &str, key: Option<&str>) -> Ws {
    let req = ws_request(sim, path, key);
    let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// The status a refused WebSocket handshake got.
async fn ws_refused(sim: &Sim, path: &str, key: Option<&str>) -> u16 {
    match tokio_tungstenite::connect_async(ws_request(sim, path, key)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        other => panic!("expected a refused handshake, got {other:?}"),
    }
}

/// The next text frame, skipping control frames.
async fn next_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no message in time")
            .expect("the socket ended")
            .expect("the socket failed");
        match msg {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// True when no text frame arrives for `quiet`.
async fn silent_for(ws: &mut Ws, quiet: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return true,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(_) => return false,
        }
    }
}

/// Waits for the socket to end; returns the close frame's code if the server sent one.
async fn closed(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the socket stayed open")
        {
            None | Some(Err(_)) => return None,
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
        }
    }
}

async fn put_command(sim: &Sim, action: &str, n: u64) {
    let body = json!({"action": action, "parameters": {"n": n}}).to_string();
    let got = call(
        sim,
        Method::PUT,
        "/devices/1001/command",
        Some(APP),
        Some(&body),
    )
    .await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{:?}", got.1);
}

async fn wait_live(sim: &Sim, device: u64, n: usize) {
    assert!(
        sim.cloud()
            .wait_for(WAIT, |c| c.live_connections(device) == n)
            .await,
        "device {device} never had {n} live connections"
    );
}

// ---------------------------------------------------------------------------------------------
// Events and device info
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_device_event_is_answered_with_204_and_recorded() {
    let sim = sim().await;
    let body = r#"{"eventType":"temperature","eventData":{"big":18446744073709551616}}"#;
    let (status, resp) = call(
        &sim,
        Method::PUT,
        "/devices/1001/event",
        Some(D1_KEY),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(resp.is_empty());
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
    let (status, _) = call(&sim, Method::PUT, &path, None, Some(body)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sim.cloud().events_from(D1).len(), 1);
}

#[tokio::test]
async fn device_info_is_served_to_the_device_and_to_an_app_of_its_home() {
    let sim = sim().await;
    for key in [D1_KEY, APP] {
        let (status, body) = call(&sim, Method::GET, "/devices/1001", Some(key), None).await;
        assert_eq!(status, StatusCode::OK);
        let info = DeviceInfo::decode(&body).unwrap();
        assert_eq!(
            (
                info.id,
                info.project_id,
                info.home_id,
                info.device_class.as_str()
            ),
            (1001, Some(1), Some(10), "sensor")
        );
    }
    refused(
        call(&sim, Method::GET, "/devices/1001", Some(OTHER_APP), None).await,
        403,
        "FORBIDDEN",
    );
}

#[tokio::test]
async fn a_request_without_a_key_or_with_an_unknown_key_is_refused_with_401() {
    let sim = sim().await;
    let body = r#"{"eventType":"x"}"#;
    let none = refused(
        call(&sim, Method::PUT, "/devices/1001/event", None, Some(body)).await,
        401,
        "AUTH_FAILED",
    );
    assert!(message(&none).contains("authToken"), "{none:?}");
    refused(
        call(
            &sim,
            Method::PUT,
            "/devices/1001/event",
            Some("v1.nope"),
            Some(body),
        )
        .await,
        401,
        "AUTH_FAILED",
    );
    refused(
        call(
            &sim,
            Method::GET,
            "/devices/1001/kv?authToken=v1.nope",
            None,
            None,
        )
        .await,
        401,
        "AUTH_FAILED",
    );
    assert!(sim.cloud().events().is_empty());
}

#[tokio::test]
async fn a_device_key_on_another_device_is_refused_with_403() {
    let sim = sim().await;
    let body = r#"{"eventType":"x"}"#;
    refused(
        call(
            &sim,
            Method::PUT,
            "/devices/1001/event",
            Some(D2_KEY),
            Some(body),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    refused(
        call(&sim, Method::GET, "/devices/1001/kv", Some(D2_KEY), None).await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        ws_refused(&sim, "/devices/1001/command", Some(D2_KEY)).await,
        403
    );
    assert!(sim.cloud().events().is_empty());
}

#[tokio::test]
async fn an_unknown_device_is_404_for_an_app_and_odd_ids_never_panic() {
    let sim = sim().await;
    let cmd = r#"{"action":"x","parameters":{}}"#;
    refused(
        call(
            &sim,
            Method::PUT,
            "/devices/4242/command",
            Some(APP),
            Some(cmd),
        )
        .await,
        404,
        "DEVICE_NOT_FOUND",
    );
    for id in ["01001", "abc", "99999999999999999999999", "-1", "%31001"] {
        let path = format!("/devices/{id}");
        refused(
            call(&sim, Method::GET, &path, Some(APP), None).await,
            404,
            "DEVICE_NOT_FOUND",
        );
    }
}

#[tokio::test]
async fn a_malformed_event_body_is_400_saying_what_was_wrong() {
    let sim = sim().await;
    let put = |body: &'static str| {
        call(
            &sim,
            Method::PUT,
            "/devices/1001/event",
            Some(D1_KEY),
            Some(body),
        )
    };
    let wrong_type = refused(put(r#"{"eventType": 5}"#).await, 400, "INVALID_BODY");
    assert!(
        message(&wrong_type).starts_with("invalid event"),
        "{wrong_type:?}"
    );
    assert_eq!(wrong_type.data["path"], "eventType");
    let missing = refused(put(r#"{"eventData": {}}"#).await, 400, "INVALID_BODY");
    assert!(message(&missing).contains("eventType"), "{missing:?}");
    refused(put("{not json").await, 400, "INVALID_BODY");
    refused(put(r#"{"eventType": ""}"#).await, 400, "INVALID_BODY");
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
    let body = refused(
        call(
            &sim,
            Method::PUT,
            "/devices/1001/event",
            Some(D1_KEY),
            Some(&big),
        )
        .await,
        413,
        "PAYLOAD_TOO_LARGE",
    );
    assert_eq!(body.data["limit"], 1024);
    let small = r#"{"eventType":"small"}"#;
    let (status, _) = call(
        &sim,
        Method::PUT,
        "/devices/1001/event",
        Some(D1_KEY),
        Some(small),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sim.cloud().events_from(D1).len(), 1);
}

#[tokio::test]
async fn a_wrong_method_is_405_and_an_unknown_path_404_both_with_error_bodies() {
    let sim = sim().await;
    refused(
        call(
            &sim,
            Method::POST,
            "/devices/1001/event",
            Some(D1_KEY),
            Some("{}"),
        )
        .await,
        405,
        "METHOD_NOT_ALLOWED",
    );
    refused(
        call(&sim, Method::DELETE, "/devices/1001/kv", Some(D1_KEY), None).await,
        405,
        "METHOD_NOT_ALLOWED",
    );
    refused(
        call(&sim, Method::GET, "/nothing/here", Some(D1_KEY), None).await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn auth_says_who_a_key_belongs_to() {
    let sim = &sim().await;
    let who = |key| async move {
        let (status, body) = call(sim, Method::GET, "/auth", key, None).await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    assert_eq!(
        who(Some(D1_KEY)).await,
        json!({"type": "device", "deviceId": 1001, "projectId": 1})
    );
    assert_eq!(who(Some(APP)).await, json!({"type": "app", "projectId": 1}));
    assert_eq!(who(Some("v1.nope")).await, json!({"type": "nobody"}));
    assert_eq!(who(None).await, json!({"type": "nobody"}));
}

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
        let command = Command::decode(next_text(&mut socket).await.as_bytes()).unwrap();
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
    let command = Command::decode(next_text(&mut socket).await.as_bytes()).unwrap();
    assert_eq!(command.action, "hello");
    assert_eq!(sim.cloud().connect_attempts(D1).accepted, 1);
}

#[tokio::test]
async fn a_command_websocket_with_a_bad_key_is_refused_and_counted() {
    let sim = sim().await;
    assert_eq!(
        ws_refused(&sim, "/devices/1001/command", Some("v1.nope")).await,
        401
    );
    assert_eq!(ws_refused(&sim, "/devices/1001/command", None).await, 401);
    assert_eq!(
        ws_refused(&sim, "/devices/1001/command", Some(APP)).await,
        403
    );
    assert_eq!(sim.cloud().connect_attempts(D1).refused, 3);
    assert_eq!(sim.cloud().live_connections(D1), 0);
    // Without an upgrade the endpoint says it is a WebSocket.
    refused(
        call(
            &sim,
            Method::GET,
            "/devices/1001/command",
            Some(D1_KEY),
            None,
        )
        .await,
        400,
        "WEBSOCKET_REQUIRED",
    );
}

#[tokio::test]
async fn only_apps_send_commands_and_only_well_formed_ones() {
    let sim = sim().await;
    let cmd = r#"{"action":"x","parameters":{}}"#;
    refused(
        call(
            &sim,
            Method::PUT,
            "/devices/1001/command",
            Some(D1_KEY),
            Some(cmd),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    refused(
        call(
            &sim,
            Method::PUT,
            "/devices/1001/command",
            Some(OTHER_APP),
            Some(cmd),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    let bad = refused(
        call(
            &sim,
            Method::PUT,
            "/devices/1001/command",
            Some(APP),
            Some(r#"{"parameters":{}}"#),
        )
        .await,
        400,
        "INVALID_BODY",
    );
    assert!(message(&bad).contains("invalid command"), "{bad:?}");
    assert!(sim.cloud().commands().is_empty());
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
async fn kv_keys_are_set_read_listed_and_deleted_over_rest() {
    let sim = sim().await;
    let path = "/devices/1001/kv/color";
    let (status, _) = call(
        &sim,
        Method::PUT,
        path,
        Some(APP),
        Some(r#"{"value":{"r":255}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        &sim,
        Method::PUT,
        "/devices/1001/kv/n",
        Some(D1_KEY),
        Some(r#"{"value":18446744073709551616}"#),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, body) = call(&sim, Method::GET, path, Some(D1_KEY), None).await;
    assert_eq!(status, StatusCode::OK);
    let item: KvItem = decode_kv_item(&body).unwrap();
    assert_eq!(
        (item.key.as_str(), &item.value),
        ("color", &json!({"r": 255}))
    );
    assert!(item.modification_time.is_some());

    let (status, body) = call(&sim, Method::GET, "/devices/1001/kv", Some(APP), None).await;
    assert_eq!(status, StatusCode::OK);
    let list = decode_kv_list(&body).unwrap();
    let keys: Vec<_> = list.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["color", "n"]);
    assert_eq!(list[1].value.to_string(), "18446744073709551616");

    let (status, _) = call(&sim, Method::DELETE, path, Some(APP), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    refused(
        call(&sim, Method::GET, path, Some(APP), None).await,
        404,
        "KEY_NOT_FOUND",
    );
    refused(
        call(&sim, Method::DELETE, path, Some(APP), None).await,
        404,
        "KEY_NOT_FOUND",
    );
    assert_eq!(sim.cloud().kv_snapshot(D1).unwrap().rev, 3);
}

#[tokio::test]
async fn a_kv_key_is_percent_decoded_once_and_checked_against_the_key_rule() {
    let sim = sim().await;
    let value = Some(r#"{"value": 1}"#);
    let (status, _) = call(
        &sim,
        Method::PUT,
        "/devices/1001/kv/temp%2D1",
        Some(APP),
        value,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(sim.cloud().kv_get(D1, "temp-1").is_ok());
    for bad in ["a%2Fb", "_x", "a%20b", "%FF", "%252D"] {
        let path = format!("/devices/1001/kv/{bad}");
        refused(
            call(&sim, Method::PUT, &path, Some(APP), value).await,
            400,
            "INVALID_KEY",
        );
        refused(
            call(&sim, Method::GET, &path, Some(APP), None).await,
            400,
            "INVALID_KEY",
        );
    }
    let long = format!("/devices/1001/kv/{}", "k".repeat(256));
    refused(
        call(&sim, Method::PUT, &long, Some(APP), value).await,
        400,
        "INVALID_KEY",
    );
    assert_eq!(sim.cloud().kv_list(D1).unwrap().len(), 1);
}

#[tokio::test]
async fn a_kv_put_without_a_value_is_400() {
    let sim = sim().await;
    let body = refused(
        call(
            &sim,
            Method::PUT,
            "/devices/1001/kv/k",
            Some(APP),
            Some(r#"{"val": 1}"#),
        )
        .await,
        400,
        "INVALID_BODY",
    );
    assert!(message(&body).contains("value"), "{body:?}");
    let (status, _) = call(
        &sim,
        Method::PUT,
        "/devices/1001/kv/k",
        Some(APP),
        Some(r#"{"value": null}"#),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "null is a value");
}

#[tokio::test]
async fn the_kv_websocket_sends_a_reload_then_every_change() {
    let sim = sim().await;
    call(
        &sim,
        Method::PUT,
        "/devices/1001/kv/a",
        Some(APP),
        Some(r#"{"value":"hello"}"#),
    )
    .await;
    let mut socket = ws(&sim, "/devices/1001/kv", Some(D1_KEY)).await;
    let SyncMessage::Reload(reload) =
        SyncMessage::decode(next_text(&mut socket).await.as_bytes()).unwrap()
    else {
        panic!("the first message is not a reload");
    };
    assert_eq!(reload.rev, 1);
    assert_eq!(reload.items.len(), 1);
    assert_eq!(reload.items[0].value, "hello");

    call(
        &sim,
        Method::PUT,
        "/devices/1001/kv/b",
        Some(APP),
        Some(r#"{"value":[1,2]}"#),
    )
    .await;
    call(
        &sim,
        Method::DELETE,
        "/devices/1001/kv/a",
        Some(D1_KEY),
        None,
    )
    .await;
    let set = SyncMessage::decode(next_text(&mut socket).await.as_bytes()).unwrap();
    assert_eq!(
        set,
        SyncMessage::Set {
            rev: 2,
            key: "b".into(),
            value: json!([1, 2])
        }
    );
    let delete = SyncMessage::decode(next_text(&mut socket).await.as_bytes()).unwrap();
    assert_eq!(
        delete,
        SyncMessage::Delete {
            rev: 3,
            key: "a".into()
        }
    );
}

#[tokio::test]
async fn kv_list_and_kv_websocket_share_a_path_and_the_key_may_come_in_the_query() {
    let sim = sim().await;
    let path = format!("/devices/1001/kv?authToken={D1_KEY}");
    let mut socket = ws(&sim, &path, None).await;
    let first = SyncMessage::decode(next_text(&mut socket).await.as_bytes()).unwrap();
    assert_eq!(first.rev(), 0);
    let (status, body) = call(&sim, Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"[]");
}

// ---------------------------------------------------------------------------------------------
// The app's event stream
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn device_events_and_kv_system_events_reach_the_apps_home_event_websocket() {
    let sim = sim().await;
    let mut events = ws(&sim, "/homes/10/events", Some(APP)).await;
    call(
        &sim,
        Method::PUT,
        "/devices/1001/event",
        Some(D1_KEY),
        Some(r#"{"eventType":"door","eventData":{"open":true}}"#),
    )
    .await;
    call(
        &sim,
        Method::PUT,
        "/devices/1001/kv/mode",
        Some(APP),
        Some(r#"{"value":"eco"}"#),
    )
    .await;
    call(
        &sim,
        Method::DELETE,
        "/devices/1001/kv/mode",
        Some(APP),
        None,
    )
    .await;

    let door = HomeEvent::decode(next_text(&mut events).await.as_bytes()).unwrap();
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
    let saved = HomeEvent::decode(next_text(&mut events).await.as_bytes()).unwrap();
    assert_eq!(saved.event_type, KV_SAVED_EVENT);
    assert_eq!(
        Value::Object(saved.event_data),
        json!({"deviceId": 1001, "key": "mode", "value": "eco"})
    );
    let deleted = HomeEvent::decode(next_text(&mut events).await.as_bytes()).unwrap();
    assert_eq!(deleted.event_type, KV_DELETED_EVENT);
    assert_eq!(
        Value::Object(deleted.event_data),
        json!({"deviceId": 1001, "key": "mode"})
    );
}

#[tokio::test]
async fn the_home_event_websocket_is_for_apps_that_see_the_home() {
    let sim = sim().await;
    assert_eq!(
        ws_refused(&sim, "/homes/10/events", Some(OTHER_APP)).await,
        403
    );
    assert_eq!(
        ws_refused(&sim, "/homes/10/events", Some(D1_KEY)).await,
        403
    );
    assert_eq!(ws_refused(&sim, "/homes/99/events", Some(APP)).await, 404);
    assert_eq!(ws_refused(&sim, "/homes/10/events", None).await, 401);
    let mut other = ws(&sim, "/homes/11/events", Some(OTHER_APP)).await;
    call(
        &sim,
        Method::PUT,
        "/devices/1001/event",
        Some(D1_KEY),
        Some(r#"{"eventType":"x"}"#),
    )
    .await;
    assert!(silent_for(&mut other, Duration::from_millis(150)).await);
}

// ---------------------------------------------------------------------------------------------
// Provisioning and claim mode
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_device_provisioned_by_token_can_enter_claim_mode_and_be_claimed_by_an_app() {
    let sim = sim().await;
    let (status, body) = call(
        &sim,
        Method::POST,
        "/devices",
        None,
        Some(r#"{"token":"demo-provisioning-token"}"#),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let info = DeviceInfo::decode(&body).unwrap();
    assert_eq!(
        (info.id, info.project_id, info.home_id),
        (1003, Some(1), None)
    );
    let key = info.raw["apiKey"].as_str().unwrap().to_owned();

    let claim = r#"{"deviceId": 1003}"#;
    refused(
        call(
            &sim,
            Method::POST,
            "/homes/10/devices",
            Some(APP),
            Some(claim),
        )
        .await,
        409,
        "DEVICE_NOT_CLAIMABLE",
    );
    // MODE's documented form body.
    let resp = Client::new()
        .post(url(&sim, "/deviceRegistration"))
        .header("Authorization", format!("ModeCloud {key}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("deviceId=1003&claimable=1&duration=300")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(
        body["claimExpirationTime"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );

    refused(
        call(
            &sim,
            Method::POST,
            "/homes/11/devices",
            Some(APP),
            Some("{\"device\": 1}"),
        )
        .await,
        400,
        "INVALID_BODY",
    );
    let (status, body) = call(
        &sim,
        Method::POST,
        "/homes/10/devices",
        Some(APP),
        Some(claim),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(DeviceInfo::decode(&body).unwrap().home_id, Some(10));
    let event = r#"{"eventType":"hello"}"#;
    let (status, _) = call(
        &sim,
        Method::PUT,
        "/devices/1003/event",
        Some(&key),
        Some(event),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sim.cloud().events_from(1003)[0].home_id, 10);
}

#[tokio::test]
async fn provisioning_and_claim_mode_refuse_the_wrong_caller() {
    let sim = sim().await;
    refused(
        call(
            &sim,
            Method::POST,
            "/devices",
            None,
            Some(r#"{"token":"nope"}"#),
        )
        .await,
        401,
        "INVALID_TOKEN",
    );
    refused(
        call(&sim, Method::POST, "/devices", None, Some("{}")).await,
        400,
        "INVALID_BODY",
    );
    refused(
        call(&sim, Method::POST, "/deviceRegistration", Some(APP), None).await,
        403,
        "FORBIDDEN",
    );
    refused(
        call(
            &sim,
            Method::POST,
            "/deviceRegistration",
            Some(D1_KEY),
            Some(r#"{"deviceId": 1002}"#),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    refused(
        call(&sim, Method::POST, "/deviceRegistration", None, None).await,
        401,
        "AUTH_FAILED",
    );
    // A JSON body without a content type is still read as JSON.
    let untyped = Client::new()
        .post(url(&sim, "/deviceRegistration"))
        .header("Authorization", format!("ModeCloud {D1_KEY}"))
        .body(r#"{"deviceId": 1002, "claimable": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(untyped.status().as_u16(), 403);
    let (status, _) = call(
        &sim,
        Method::POST,
        "/deviceRegistration",
        Some(D1_KEY),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let claim = r#"{"deviceId": 1001, "claimable": true}"#;
    let (status, _) = call(
        &sim,
        Method::POST,
        "/deviceRegistration",
        Some(D1_KEY),
        Some(claim),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// MODE's Go SDK v4 `DisableClaimMode` posts `{"deviceId": N, "claimable": false}`; the
/// documented form body says `claimable=0`. Both turn claim mode off: an app can no longer claim.
#[tokio::test]
async fn claim_mode_turned_off_by_claimable_false_or_0_refuses_a_claim() {
    let sim = sim().await;
    let claim = r#"{"deviceId": 1001}"#;
    let form = |body: &'static str| {
        Client::new()
            .post(url(&sim, "/deviceRegistration"))
            .header("Authorization", format!("ModeCloud {D1_KEY}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    for off in ["json", "form"] {
        let on = call(
            &sim,
            Method::POST,
            "/deviceRegistration",
            Some(D1_KEY),
            Some(r#"{"deviceId": 1001, "claimable": true, "duration": 300}"#),
        )
        .await;
        assert_eq!(on.0, StatusCode::OK);
        let status = if off == "json" {
            let (status, body) = call(
                &sim,
                Method::POST,
                "/deviceRegistration",
                Some(D1_KEY),
                Some(r#"{"deviceId": 1001, "claimable": false}"#),
            )
            .await;
            assert!(status.is_success(), "{}", String::from_utf8_lossy(&body));
            status
        } else {
            form("deviceId=1001&claimable=0").await.unwrap().status()
        };
        assert!(status.is_success(), "claim mode off by {off}: {status}");
        refused(
            call(
                &sim,
                Method::POST,
                "/homes/10/devices",
                Some(APP),
                Some(claim),
            )
            .await,
            409,
            "DEVICE_NOT_CLAIMABLE",
        );
    }
    refused(
        call(
            &sim,
            Method::POST,
            "/deviceRegistration",
            Some(D1_KEY),
            Some(r#"{"claimable": "maybe"}"#),
        )
        .await,
        400,
        "INVALID_BODY",
    );
}

// ---------------------------------------------------------------------------------------------
// Admin API and listener control
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_admin_api_refuses_a_wrong_or_missing_admin_key_and_is_off_without_one() {
    let sim = sim().await;
    for key in [None, Some("wrong"), Some(APP), Some(D1_KEY)] {
        refused(
            call(&sim, Method::POST, "/admin/devices/1001/drop", key, None).await,
            401,
            "AUTH_FAILED",
        );
    }
    let (status, _) = call(
        &sim,
        Method::POST,
        "/admin/devices/1001/drop",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let mut no_admin = config();
    no_admin.admin_key = None;
    let sim = start(no_admin).await;
    refused(
        call(
            &sim,
            Method::GET,
            "/admin/records/events",
            Some(ADMIN),
            None,
        )
        .await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn dropping_a_devices_connections_closes_its_websockets() {
    let sim = sim().await;
    let mut commands = ws(&sim, "/devices/1001/command", Some(D1_KEY)).await;
    let mut kv = ws(&sim, "/devices/1001/kv", Some(D1_KEY)).await;
    next_text(&mut kv).await; // the reload
    wait_live(&sim, D1, 2).await;
    let (status, body) = call(
        &sim,
        Method::POST,
        "/admin/devices/1001/drop",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"dropped": 2})
    );
    assert_eq!(
        closed(&mut commands).await,
        None,
        "a drop is a lost link: no close frame"
    );
    assert_eq!(closed(&mut kv).await, None);
    wait_live(&sim, D1, 0).await;
}

#[tokio::test]
async fn a_paused_websocket_delivers_nothing_until_resumed() {
    let sim = sim().await;
    let mut socket = ws(&sim, "/devices/1001/command", Some(D1_KEY)).await;
    wait_live(&sim, D1, 1).await;
    let (_, body) = call(
        &sim,
        Method::POST,
        "/admin/devices/1001/pause",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"paused": 1})
    );
    put_command(&sim, "held", 1).await;
    assert!(silent_for(&mut socket, Duration::from_millis(200)).await);
    let (_, body) = call(
        &sim,
        Method::POST,
        "/admin/devices/1001/resume",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"resumed": 1})
    );
    let command = Command::decode(next_text(&mut socket).await.as_bytes()).unwrap();
    assert_eq!(command.action, "held");
}

#[tokio::test]
async fn admin_sync_faults_duplicate_the_kv_websockets_changes() {
    let sim = sim().await;
    let faults = r#"{"duplicatePercent": 100, "seed": 3}"#;
    let (status, _) = call(
        &sim,
        Method::PUT,
        "/admin/devices/1001/syncFaults",
        Some(ADMIN),
        Some(faults),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    refused(
        call(
            &sim,
            Method::PUT,
            "/admin/devices/1001/syncFaults",
            Some(ADMIN),
            Some(r#"{"reorderPercent": 101}"#),
        )
        .await,
        400,
        "INVALID_BODY",
    );
    refused(
        call(
            &sim,
            Method::PUT,
            "/admin/devices/1001/syncFaults",
            Some(ADMIN),
            Some(r#"{"delay": 1}"#),
        )
        .await,
        400,
        "INVALID_BODY",
    );
    let mut socket = ws(&sim, "/devices/1001/kv", Some(D1_KEY)).await;
    next_text(&mut socket).await; // the reload
    call(
        &sim,
        Method::PUT,
        "/devices/1001/kv/k",
        Some(APP),
        Some(r#"{"value": 1}"#),
    )
    .await;
    let first = next_text(&mut socket).await;
    assert_eq!(first, next_text(&mut socket).await);
    let (status, _) = call(
        &sim,
        Method::DELETE,
        "/admin/devices/1001/syncFaults",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    call(
        &sim,
        Method::PUT,
        "/devices/1001/kv/k",
        Some(APP),
        Some(r#"{"value": 2}"#),
    )
    .await;
    assert_eq!(
        SyncMessage::decode(next_text(&mut socket).await.as_bytes())
            .unwrap()
            .rev(),
        2
    );
    assert!(silent_for(&mut socket, Duration::from_millis(100)).await);
}

#[tokio::test]
async fn admin_can_take_a_bulk_data_module_down_and_up() {
    let sim = sim().await;
    let request = || mode_core::proto::BulkDataRequest {
        bulk_data_label: "echo".into(),
        request_id: "r".into(),
        payload: json!({}),
    };
    let path = "/admin/projects/1/bulkData/echo";
    let (status, _) = call(
        &sim,
        Method::PUT,
        path,
        Some(ADMIN),
        Some(r#"{"available": false}"#),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let status = sim
        .cloud()
        .bulk_request(D1, "echo", request())
        .unwrap()
        .status;
    assert_eq!(status, mode_core::proto::BulkStatus::ServiceUnavailable);
    call(
        &sim,
        Method::PUT,
        path,
        Some(ADMIN),
        Some(r#"{"available": true}"#),
    )
    .await;
    let status = sim
        .cloud()
        .bulk_request(D1, "echo", request())
        .unwrap()
        .status;
    assert_eq!(status, mode_core::proto::BulkStatus::Ok);
    refused(
        call(
            &sim,
            Method::PUT,
            "/admin/projects/1/bulkData/nope",
            Some(ADMIN),
            Some(r#"{"available": true}"#),
        )
        .await,
        404,
        "INVALID_BULK_DATA_LABEL",
    );
}

#[tokio::test]
async fn admin_records_show_what_the_cloud_received() {
    let sim = &sim().await;
    let get = |path: &'static str| async move {
        let (status, body) = call(sim, Method::GET, path, Some(ADMIN), None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    call(
        sim,
        Method::PUT,
        "/devices/1001/event",
        Some(D1_KEY),
        Some(r#"{"eventType":"e","eventData":{"n":1}}"#),
    )
    .await;
    put_command(sim, "c", 7).await;
    call(
        sim,
        Method::PUT,
        "/devices/1001/kv/k",
        Some(D1_KEY),
        Some(r#"{"value": "v"}"#),
    )
    .await;
    sim.cloud()
        .record_bulk_data(D1, "blob", &[0, 1, 0xfe, 0xff])
        .unwrap();
    sim.cloud()
        .bulk_request(
            D1,
            "echo",
            mode_core::proto::BulkDataRequest {
                bulk_data_label: "echo".into(),
                request_id: "r1".into(),
                payload: json!({"x": 1}),
            },
        )
        .unwrap();

    let events = get("/admin/records/events").await;
    assert_eq!(events[0]["projectId"], 1);
    assert_eq!(events[0]["event"]["eventType"], "e");
    assert_eq!(events[0]["event"]["originDeviceId"], 1001);
    assert_eq!(events[1]["event"]["eventType"], KV_SAVED_EVENT);
    let commands = get("/admin/records/commands").await;
    assert_eq!(
        commands,
        json!([{"deviceId": 1001, "delivered": 0, "command": {"action": "c", "parameters": {"n": 7}}}])
    );
    let kv = get("/admin/records/kvOps").await;
    assert_eq!(
        kv,
        json!([{"deviceId": 1001, "rev": 1, "source": "rest", "update": {"action": "set", "key": "k", "value": "v"}}])
    );
    let bulk = get("/admin/records/bulkData").await;
    assert_eq!(
        bulk,
        json!([{"deviceId": 1001, "label": "blob", "encoding": "base64", "data": "AAH+/w=="}])
    );
    let bulk_hex = get("/admin/records/bulkData?encoding=hex").await;
    assert_eq!(bulk_hex[0]["data"], "0001feff");
    refused(
        call(
            sim,
            Method::GET,
            "/admin/records/bulkData?encoding=rot13",
            Some(ADMIN),
            None,
        )
        .await,
        400,
        "INVALID_ENCODING",
    );
    let requests = get("/admin/records/bulkRequests").await;
    assert_eq!(requests[0]["request"]["requestId"], "r1");
    assert_eq!(requests[0]["response"]["status"], "OK");
    assert_eq!(requests[0]["response"]["payload"], json!({"x": 1}));

    let (status, _) = call(sim, Method::DELETE, "/admin/records", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(get("/admin/records/events").await, json!([]));
}

#[tokio::test]
async fn admin_connection_counters_count_websocket_attempts() {
    let sim = sim().await;
    let _socket = ws(&sim, "/devices/1001/command", Some(D1_KEY)).await;
    ws_refused(&sim, "/devices/1001/kv", Some("v1.nope")).await;
    wait_live(&sim, D1, 1).await;
    let (status, body) = call(
        &sim,
        Method::GET,
        "/admin/devices/1001/connections",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"deviceId": 1001, "accepted": 1, "refused": 1, "live": 1})
    );
    refused(
        call(
            &sim,
            Method::GET,
            "/admin/devices/4242/connections",
            Some(ADMIN),
            None,
        )
        .await,
        404,
        "DEVICE_NOT_FOUND",
    );
}

#[tokio::test]
async fn stopping_the_listeners_closes_websockets_and_restarting_serves_the_same_port() {
    let sim = sim().await;
    let addr = sim.http_addr().unwrap();
    let mut socket = ws(&sim, "/devices/1001/command", Some(D1_KEY)).await;
    sim.stop_listeners().await;
    assert_eq!(closed(&mut socket).await, Some(1001));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port still listens"
    );
    sim.restart_listeners().await.unwrap();
    assert_eq!(sim.http_addr(), Some(addr));
    let mut socket = ws(&sim, "/devices/1001/command", Some(D1_KEY)).await;
    put_command(&sim, "back", 1).await;
    assert_eq!(
        Command::decode(next_text(&mut socket).await.as_bytes())
            .unwrap()
            .action,
        "back"
    );
}

#[tokio::test]
async fn admin_drop_closes_every_devices_websockets() {
    let sim = sim().await;
    let mut one = ws(&sim, "/devices/1001/command", Some(D1_KEY)).await;
    let mut two = ws(&sim, "/devices/1002/kv", Some(D2_KEY)).await;
    next_text(&mut two).await; // the reload
    wait_live(&sim, 1002, 1).await;
    let (status, body) = call(&sim, Method::POST, "/admin/drop", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"dropped": 2})
    );
    assert_eq!(closed(&mut one).await, None);
    assert_eq!(closed(&mut two).await, None);
}

#[tokio::test]
async fn a_websocket_over_the_connection_limit_is_refused_with_503() {
    let mut config = config();
    config.max_connections = 1;
    let sim = start(config).await;
    let _first = ws(&sim, "/devices/1001/command", Some(D1_KEY)).await;
    assert_eq!(
        ws_refused(&sim, "/devices/1002/command", Some(D2_KEY)).await,
        503
    );
    assert_eq!(sim.cloud().connect_attempts(1002).refused, 1);
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
        let (status, body) = call(&sim, Method::GET, path, Some(D1_KEY), None).await;
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
    let (status, _) = call(&sim, Method::GET, "/devices/1001", Some(D1_KEY), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(sim.cloud().events().is_empty());
    assert!(sim.cloud().kv_list(D1).unwrap().is_empty());
}
