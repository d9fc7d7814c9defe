//! The simulator's REST API for what is not a device's daily traffic: provisioning a device by
//! token and claim mode, and the admin API (its key, dropping and pausing connections, sync
//! faults, bulk data modules, records, counters, and stopping and restarting the listeners).

mod common;

use std::time::Duration;

use common::http::*;
use common::{D1, WAIT};
use mode_core::proto::{BulkDataRequest, BulkStatus, DeviceInfo, KV_SAVED_EVENT, Value};
use reqwest::Client;
use serde_json::json;
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Provisioning and claim mode
// ---------------------------------------------------------------------------------------------

/// A claim-mode request with MODE's documented form body, as `key`.
fn form(
    sim: &mode_sim::Sim,
    key: &str,
    body: &'static str,
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> {
    Client::new()
        .post(url(sim, "/deviceRegistration"))
        .header("Authorization", format!("ModeCloud {key}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
}

#[tokio::test]
async fn a_device_provisioned_by_token_can_enter_claim_mode_and_be_claimed_by_an_app() {
    let sim = sim().await;
    let token = post("/devices").body(r#"{"token":"demo-provisioning-token"}"#);
    let body = token.expect(&sim, 201).await;
    let info = DeviceInfo::decode(&body).unwrap();
    assert_eq!(
        (info.id, info.project_id, info.home_id),
        (1003, Some(1), None)
    );
    let key = info.raw["apiKey"].as_str().unwrap().to_owned();

    let claim = post("/homes/10/devices")
        .key(APP)
        .body(r#"{"deviceId": 1003}"#);
    claim.refused(&sim, 409, "DEVICE_NOT_CLAIMABLE").await;
    let claimable = form(&sim, &key, "deviceId=1003&claimable=1&duration=300");
    let resp = claimable.await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(
        body["claimExpirationTime"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );

    let wrong = post("/homes/11/devices").key(APP).body("{\"device\": 1}");
    wrong.refused(&sim, 400, "INVALID_BODY").await;
    let body = claim.expect(&sim, 200).await;
    assert_eq!(DeviceInfo::decode(&body).unwrap().home_id, Some(10));
    let event = put("/devices/1003/event").key(&key);
    event
        .body(r#"{"eventType":"hello"}"#)
        .expect(&sim, 204)
        .await;
    assert_eq!(sim.cloud().events_from(1003)[0].home_id, 10);
}

#[tokio::test]
async fn provisioning_and_claim_mode_refuse_the_wrong_caller() {
    let sim = sim().await;
    let registration = || post("/deviceRegistration");
    let cases = [
        (
            post("/devices").body(r#"{"token":"nope"}"#),
            401,
            "INVALID_TOKEN",
        ),
        (post("/devices").body("{}"), 400, "INVALID_BODY"),
        (registration().key(APP), 403, "FORBIDDEN"),
        (
            registration().key(D1_KEY).body(r#"{"deviceId": 1002}"#),
            403,
            "FORBIDDEN",
        ),
        (registration(), 401, "AUTH_FAILED"),
    ];
    for (req, status, reason) in cases {
        req.refused(&sim, status, reason).await;
    }
    // A JSON body without a content type is still read as JSON.
    let untyped = Client::new()
        .post(url(&sim, "/deviceRegistration"))
        .header("Authorization", format!("ModeCloud {D1_KEY}"))
        .body(r#"{"deviceId": 1002, "claimable": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(untyped.status().as_u16(), 403);
    registration().key(D1_KEY).expect(&sim, 200).await;
    let claim = r#"{"deviceId": 1001, "claimable": true}"#;
    registration()
        .key(D1_KEY)
        .body(claim)
        .expect(&sim, 200)
        .await;
}

/// MODE's Go SDK v4 `DisableClaimMode` posts `{"deviceId": N, "claimable": false}`; the
/// documented form body says `claimable=0`. Both turn claim mode off: an app can no longer claim.
#[tokio::test]
async fn claim_mode_turned_off_by_claimable_false_or_0_refuses_a_claim() {
    let sim = sim().await;
    let registration = post("/deviceRegistration").key(D1_KEY);
    let on = r#"{"deviceId": 1001, "claimable": true, "duration": 300}"#;
    let claim = post("/homes/10/devices")
        .key(APP)
        .body(r#"{"deviceId": 1001}"#);
    for off in ["json", "form"] {
        registration.body(on).expect(&sim, 200).await;
        let status = if off == "json" {
            let json_off = r#"{"deviceId": 1001, "claimable": false}"#;
            let (status, body) = registration.body(json_off).send(&sim).await;
            assert!(status.is_success(), "{}", String::from_utf8_lossy(&body));
            status
        } else {
            let resp = form(&sim, D1_KEY, "deviceId=1001&claimable=0").await;
            resp.unwrap().status()
        };
        assert!(status.is_success(), "claim mode off by {off}: {status}");
        claim.refused(&sim, 409, "DEVICE_NOT_CLAIMABLE").await;
    }
    let not_a_bool = registration.body(r#"{"claimable": "maybe"}"#);
    not_a_bool.refused(&sim, 400, "INVALID_BODY").await;
}

// ---------------------------------------------------------------------------------------------
// Admin API and listener control
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_admin_api_refuses_a_wrong_or_missing_admin_key_and_is_off_without_one() {
    let sim = sim().await;
    let drop_d1 = post("/admin/devices/1001/drop");
    for key in [None, Some("wrong"), Some(APP), Some(D1_KEY)] {
        let req = drop_d1.key_opt(key);
        req.refused(&sim, 401, "AUTH_FAILED").await;
    }
    drop_d1.key(ADMIN).expect(&sim, 200).await;

    let mut no_admin = config();
    no_admin.admin_key = None;
    let sim = start(no_admin).await;
    let records = get("/admin/records/events").key(ADMIN);
    records.refused(&sim, 404, "NOT_FOUND").await;
}

/// A drop is a lost link: each socket ends without a close frame.
#[tokio::test]
async fn admin_drops_close_a_devices_websockets_or_every_devices() {
    let one_device = [
        ("/devices/1001/command", D1_KEY),
        ("/devices/1001/kv", D1_KEY),
    ];
    let two_devices = [
        ("/devices/1001/command", D1_KEY),
        ("/devices/1002/kv", D2_KEY),
    ];
    let live = |c: &mode_sim::Cloud| c.live_connections(D1) + c.live_connections(1002);
    for (drop, sockets) in [
        ("/admin/devices/1001/drop", one_device),
        ("/admin/drop", two_devices),
    ] {
        let sim = sim().await;
        let mut open = Vec::new();
        for (path, key) in sockets {
            let mut socket = ws(&sim, path, Some(key)).await;
            if path.ends_with("/kv") {
                next_text(&mut socket).await; // the reload
            }
            open.push(socket);
        }
        assert!(sim.cloud().wait_for(WAIT, |c| live(c) == 2).await, "{drop}");
        let dropped = post(drop).key(ADMIN).json(&sim).await;
        assert_eq!(dropped, json!({"dropped": 2}), "{drop}");
        for socket in &mut open {
            assert_eq!(closed(socket).await, None, "{drop}: a close frame");
        }
        assert!(sim.cloud().wait_for(WAIT, |c| live(c) == 0).await, "{drop}");
    }
}

#[tokio::test]
async fn a_paused_websocket_delivers_nothing_until_resumed() {
    let sim = sim().await;
    let mut socket = ws(&sim, "/devices/1001/command", Some(D1_KEY)).await;
    wait_live(&sim, D1, 1).await;
    let pause = post("/admin/devices/1001/pause").key(ADMIN);
    assert_eq!(pause.json(&sim).await, json!({"paused": 1}));
    put_command(&sim, "held", 1).await;
    assert!(silent_for(&mut socket, Duration::from_millis(200)).await);
    let resume = post("/admin/devices/1001/resume").key(ADMIN);
    assert_eq!(resume.json(&sim).await, json!({"resumed": 1}));
    assert_eq!(next_command(&mut socket).await.action, "held");
}

#[tokio::test]
async fn admin_sync_faults_duplicate_the_kv_websockets_changes() {
    let sim = sim().await;
    let faults = put("/admin/devices/1001/syncFaults").key(ADMIN);
    let duplicate = r#"{"duplicatePercent": 100, "seed": 3}"#;
    faults.body(duplicate).expect(&sim, 204).await;
    for bad in [r#"{"reorderPercent": 101}"#, r#"{"delay": 1}"#] {
        let req = faults.body(bad);
        req.refused(&sim, 400, "INVALID_BODY").await;
    }
    let mut socket = ws(&sim, "/devices/1001/kv", Some(D1_KEY)).await;
    next_text(&mut socket).await; // the reload
    let set = |body: &str| put("/devices/1001/kv/k").key(APP).body(body);
    set(r#"{"value": 1}"#).expect(&sim, 204).await;
    let first = next_text(&mut socket).await;
    assert_eq!(first, next_text(&mut socket).await);
    let clear = delete("/admin/devices/1001/syncFaults").key(ADMIN);
    clear.expect(&sim, 204).await;
    set(r#"{"value": 2}"#).expect(&sim, 204).await;
    assert_eq!(next_sync(&mut socket).await.rev(), 2);
    assert!(silent_for(&mut socket, Duration::from_millis(100)).await);
}

#[tokio::test]
async fn admin_can_take_a_bulk_data_module_down_and_up() {
    let sim = sim().await;
    let status = || {
        let request = BulkDataRequest {
            bulk_data_label: "echo".into(),
            request_id: "r".into(),
            payload: json!({}),
        };
        sim.cloud()
            .bulk_request(D1, "echo", request)
            .unwrap()
            .status
    };
    let echo = put("/admin/projects/1/bulkData/echo").key(ADMIN);
    echo.body(r#"{"available": false}"#).expect(&sim, 204).await;
    assert_eq!(status(), BulkStatus::ServiceUnavailable);
    echo.body(r#"{"available": true}"#).expect(&sim, 204).await;
    assert_eq!(status(), BulkStatus::Ok);
    let nope = put("/admin/projects/1/bulkData/nope").key(ADMIN);
    let nope = nope.body(r#"{"available": true}"#);
    nope.refused(&sim, 404, "INVALID_BULK_DATA_LABEL").await;
}

#[tokio::test]
async fn admin_records_show_what_the_cloud_received() {
    let sim = sim().await;
    let records = |what: &str| get(format!("/admin/records/{what}")).key(ADMIN);
    let event = r#"{"eventType":"e","eventData":{"n":1}}"#;
    let event = put("/devices/1001/event").key(D1_KEY).body(event);
    event.expect(&sim, 204).await;
    put_command(&sim, "c", 7).await;
    let set = put("/devices/1001/kv/k")
        .key(D1_KEY)
        .body(r#"{"value": "v"}"#);
    set.expect(&sim, 204).await;
    sim.cloud()
        .record_bulk_data(D1, "blob", &[0, 1, 0xfe, 0xff])
        .unwrap();
    let request = BulkDataRequest {
        bulk_data_label: "echo".into(),
        request_id: "r1".into(),
        payload: json!({"x": 1}),
    };
    sim.cloud().bulk_request(D1, "echo", request).unwrap();

    let events = records("events").json(&sim).await;
    assert_eq!(events[0]["projectId"], 1);
    assert_eq!(events[0]["event"]["eventType"], "e");
    assert_eq!(events[0]["event"]["originDeviceId"], 1001);
    assert_eq!(events[1]["event"]["eventType"], KV_SAVED_EVENT);
    let cases = [
        (
            "commands",
            json!([{"deviceId": 1001, "delivered": 0, "command": {"action": "c", "parameters": {"n": 7}}}]),
        ),
        (
            "kvOps",
            json!([{"deviceId": 1001, "rev": 1, "source": "rest", "update": {"action": "set", "key": "k", "value": "v"}}]),
        ),
        (
            "bulkData",
            json!([{"deviceId": 1001, "label": "blob", "encoding": "base64", "data": "AAH+/w=="}]),
        ),
    ];
    for (what, want) in cases {
        assert_eq!(records(what).json(&sim).await, want, "{what}");
    }
    let bulk_hex = records("bulkData?encoding=hex").json(&sim).await;
    assert_eq!(bulk_hex[0]["data"], "0001feff");
    let rot13 = records("bulkData?encoding=rot13");
    rot13.refused(&sim, 400, "INVALID_ENCODING").await;
    let requests = records("bulkRequests").json(&sim).await;
    assert_eq!(requests[0]["request"]["requestId"], "r1");
    assert_eq!(requests[0]["response"]["status"], "OK");
    assert_eq!(requests[0]["response"]["payload"], json!({"x": 1}));

    delete("/admin/records").key(ADMIN).expect(&sim, 204).await;
    assert_eq!(records("events").json(&sim).await, json!([]));
}

#[tokio::test]
async fn admin_connection_counters_count_websocket_attempts() {
    let sim = sim().await;
    let _socket = ws(&sim, "/devices/1001/command", Some(D1_KEY)).await;
    ws_refused(&sim, "/devices/1001/kv", Some("v1.nope")).await;
    wait_live(&sim, D1, 1).await;
    let counters = get("/admin/devices/1001/connections").key(ADMIN);
    assert_eq!(
        counters.json(&sim).await,
        json!({"deviceId": 1001, "accepted": 1, "refused": 1, "live": 1})
    );
    let unknown = get("/admin/devices/4242/connections").key(ADMIN);
    unknown.refused(&sim, 404, "DEVICE_NOT_FOUND").await;
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
    assert_eq!(next_command(&mut socket).await.action, "back");
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
