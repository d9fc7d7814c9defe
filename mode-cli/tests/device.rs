//! The device commands against a simulator started in-process: each does its one thing, says
//! so in text or JSON lines, and fails with the documented exit code.

mod common;

use std::time::Duration;

use common::Env;
use mode_core::proto::{Command, Map};
use serde_json::json;

#[tokio::test]
async fn event_send_is_acknowledged_and_recorded_by_the_cloud() {
    let env = Env::start().await;
    let run = env
        .ok(&["event", "send", "temperature", r#"{"celsius":21}"#])
        .await;
    assert!(run.stdout.contains("sent event temperature"), "{run:?}");
    let run = env
        .ok(&["--json", "event", "send", "boot", "--qos", "0"])
        .await;
    assert_eq!(run.json_lines()[0]["eventType"], "boot");
    assert_eq!(run.json_lines()[0]["acknowledged"], false);
    assert!(
        env.cloud()
            .wait_for(Duration::from_secs(5), |c| c.count_events_from(1001) == 2)
            .await
    );
    let events = env.cloud().events_from(1001);
    assert_eq!(events[0].event_data["celsius"], json!(21));
}

#[tokio::test]
async fn event_send_works_over_http_and_mqtt_on_websocket() {
    let env = Env::start().await;
    // `ws`: the older spelling of `mqtt-websocket` (the demo test uses the new one), still accepted.
    for transport in ["http", "ws"] {
        let run = env
            .mode(&["--transport", transport, "event", "send", "hello", "{}"])
            .await;
        assert_eq!(run.code, 0, "{transport}: {run:?}");
    }
    assert_eq!(env.cloud().count_events_from(1001), 2);
}

async fn listen_prints_commands_and_kv_changes(transport: &str, connections: usize) {
    let env = Env::start().await;
    let mut child = env.spawn(&["--transport", transport, "--json", "listen", "--count", "2"]);
    // Subscribed once it says so (after the reload, which follows the subscriptions).
    common::stderr_until(&mut child, "listening as device 1001").await;
    let cloud = env.cloud();
    assert_eq!(cloud.live_connections(1001), connections);
    cloud
        .send_command(
            1001,
            Command::new("light", Map::from_iter([("on".into(), json!(true))])),
        )
        .unwrap();
    cloud
        .kv_set(1001, "color", json!("red"), mode_sim::cloud::KvSource::Rest)
        .unwrap();
    let run = common::finish(child).await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines = run.json_lines();
    assert_eq!(lines[0]["type"], "command");
    assert_eq!(lines[0]["action"], "light");
    assert_eq!(lines[0]["parameters"]["on"], true);
    assert_eq!(lines[1]["type"], "kvSet");
    assert_eq!(lines[1]["key"], "color");
    assert_eq!(lines[1]["value"], "red");
}

#[tokio::test]
async fn listen_prints_commands_and_kv_changes_then_stops_at_count_over_mqtt() {
    listen_prints_commands_and_kv_changes("mqtt", 1).await;
}

#[tokio::test]
async fn listen_prints_commands_and_kv_changes_then_stops_at_count_over_http() {
    // Two WebSockets: commands and kv sync.
    listen_prints_commands_and_kv_changes("http", 2).await;
}

#[tokio::test]
async fn listen_with_a_count_not_reached_before_the_timeout_exits_5() {
    let env = Env::start().await;
    let run = env
        .mode(&["listen", "--count", "1", "--timeout", "0.5"])
        .await;
    assert_eq!(run.code, 5, "{run:?}");
    // Without a count the timeout is the normal end.
    env.ok(&["listen", "--timeout", "0.5"]).await;
}

#[tokio::test]
async fn kv_set_get_list_and_delete_go_through_the_device_connection() {
    let env = Env::start().await;
    let run = env.ok(&["kv", "set", "color", r#""red""#]).await;
    assert!(
        run.stdout.contains("set color = \"red\" (rev 1)"),
        "{run:?}"
    );
    let run = env.mode(&["--json", "kv", "set", "size", "3"]).await;
    assert_eq!(
        run.json_lines()[0],
        json!({"set": "size", "value": 3, "rev": 2})
    );

    let run = env.mode(&["kv", "get", "color"]).await;
    assert_eq!((run.code, run.stdout.trim()), (0, "\"red\""), "{run:?}");
    let run = env.mode(&["--json", "kv", "list"]).await;
    assert_eq!(
        run.json_lines(),
        vec![
            json!({"key": "color", "value": "red"}),
            json!({"key": "size", "value": 3})
        ]
    );

    env.ok(&["kv", "delete", "color"]).await;
    let run = env.mode(&["kv", "get", "color"]).await;
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("no key \"color\""), "{run:?}");
    let run = env.mode(&["kv", "delete", "color"]).await;
    assert_eq!(run.code, 6, "{run:?}");
}

#[tokio::test]
async fn kv_set_over_http_reports_the_cloud_rev() {
    let env = Env::start().await;
    let http = ["--transport", "http", "--json"];
    let run = env
        .ok(&[&http[..], &["kv", "set", "mode", r#"{"a":1}"#]].concat())
        .await;
    assert_eq!(run.json_lines()[0]["rev"], 1);
}

#[tokio::test]
async fn kv_watch_prints_the_store_then_each_change() {
    let env = Env::start().await;
    let cloud = env.cloud();
    cloud
        .kv_set(1001, "interval", json!(5), mode_sim::cloud::KvSource::Rest)
        .unwrap();
    let mut child = env.spawn(&["kv", "watch", "--count", "1"]);
    common::stderr_until(&mut child, "listening as device 1001").await;
    let first = common::read_until(&mut child, "interval = 5").await;
    assert_eq!(first, vec!["interval = 5"]);
    cloud
        .kv_delete(1001, "interval", mode_sim::cloud::KvSource::Rest)
        .unwrap();
    let run = common::finish(child).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("interval deleted (was 5)"), "{run:?}");
}

#[tokio::test]
async fn bulk_send_delivers_the_file_bytes_to_the_module() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob.bin");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let run = env
        .ok(&["--json", "bulk", "send", "echo", file.to_str().unwrap()])
        .await;
    assert_eq!(run.json_lines()[0]["bytes"], 200_000);
    let records = env.cloud().bulk_data();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].data, bytes);
}

#[tokio::test]
async fn bulk_request_prints_the_module_response_and_an_unknown_label_exits_6() {
    let env = Env::start().await;
    let run = env
        .ok(&["--json", "bulk", "request", "echo", r#"{"q":42}"#])
        .await;
    let line = &run.json_lines()[0];
    assert_eq!(line["status"], "OK");
    assert_eq!(line["payload"], json!({"q": 42}));
    let run = env.mode(&["bulk", "request", "nobody-here", "{}"]).await;
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stdout.contains("INVALID_BULK_DATA_LABEL"), "{run:?}");
    // MODE requires the request's payload to be an object: refused before anything is sent.
    let run = env.mode(&["bulk", "request", "echo", "[1,2]"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("must be a JSON object"), "{run:?}");
}

#[tokio::test]
async fn info_prints_what_the_cloud_knows_of_the_device() {
    let env = Env::start().await;
    let run = env.ok(&["--json", "info"]).await;
    let info = &run.json_lines()[0];
    assert_eq!(info["id"], 1001);
    assert_eq!(info["homeId"], 10);
    let run = env.mode(&["info"]).await;
    assert!(run.stdout.starts_with("device 1001"), "{run:?}");
}

#[tokio::test]
async fn provision_saves_a_private_profile_that_the_next_command_uses() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mode").join("config.toml");
    let mut vars = env.with("MODE_CONFIG", Some(config.to_str().unwrap()));
    vars.retain(|(k, _)| k != "MODE_DEVICE_ID" && k != "MODE_API_KEY");
    let token = mode_sim::config::DEMO_PROVISIONING_TOKEN;

    // Without a place for the new key, nothing is provisioned.
    let run = env.mode_with(&["provision", token], &vars).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--save-profile"), "{run:?}");

    let run = env
        .mode_with(
            &["--json", "provision", token, "--save-profile", "new"],
            &vars,
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let id = run.json_lines()[0]["id"].as_u64().unwrap();
    assert!(run.json_lines()[0].get("apiKey").is_none(), "{run:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let run = env
        .mode_with(&["--profile", "new", "--json", "info"], &vars)
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json_lines()[0]["id"].as_u64(), Some(id));
    let run = env
        .mode_with(&["--profile", "new", "event", "send", "hello"], &vars)
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(env.cloud().count_events_from(id), 1);
}

#[tokio::test]
async fn a_wrong_api_key_exits_3_with_a_one_line_reason_on_every_transport() {
    let env = Env::start().await;
    let vars = env.with("MODE_API_KEY", Some("v1.wrong-key"));
    for transport in ["mqtt", "ws", "http"] {
        let run = env
            .mode_with(&["--transport", transport, "event", "send", "x"], &vars)
            .await;
        assert_eq!(run.code, 3, "{transport}: {run:?}");
        assert_eq!(run.stderr.trim().lines().count(), 1, "{run:?}");
        assert!(run.stderr.contains("authentication failed"), "{run:?}");
    }
    let run = env.mode_with(&["info"], &vars).await;
    assert_eq!(run.code, 3, "{run:?}");
    // --verbose logs do not show the key either (checked by the helper).
    let run = env.mode_with(&["--verbose", "kv", "list"], &vars).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(!run.stderr.contains("wrong-key"), "{run:?}");
}

#[tokio::test]
async fn an_unreachable_port_exits_4() {
    let env = Env::start().await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let vars = env.with("MODE_PORT", Some(&port.to_string()));
    let run = env.mode_with(&["event", "send", "x"], &vars).await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains(&format!("127.0.0.1:{port}")), "{run:?}");
    let vars = env.with("MODE_API_URL", Some(&format!("http://127.0.0.1:{port}")));
    let run = env
        .mode_with(&["--transport", "http", "listen"], &vars)
        .await;
    assert_eq!(run.code, 4, "{run:?}");
    let run = env.mode_with(&["app", "kv", "list", "1001"], &vars).await;
    assert_eq!(run.code, 4, "{run:?}");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let env = Env::start().await;
    for args in [
        &["event"][..],
        &["event", "send"],
        &["event", "send", "x", "not json"],
        &["event", "send", "x", "[1,2]"],
        &["event", "send", "x", "--qos", "2"],
        &["kv", "set", "color", "red"],
        &["listen", "--timeout", "-1"],
        &["--transport", "pigeon", "info"],
        &["no-such-command"],
    ] {
        let run = env.mode(args).await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
    }
    let run = env
        .mode_with(&["event", "send", "x"], &env.with("MODE_DEVICE_ID", None))
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--device-id"), "{run:?}");
}

#[tokio::test]
async fn a_profile_file_readable_by_others_is_refused_like_ssh_does() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let mqtt = env.sim.mqtt_addr();
    std::fs::write(
        &config,
        format!(
            "[default]\ndevice_id = 1001\napi_key = \"v1.demo-device-1001\"\nhost = \"{}\"\nport = {}\nplain = true\n",
            mqtt.ip(),
            mqtt.port()
        ),
    )
    .unwrap();
    let vars: Vec<(String, String)> = vec![
        ("MODE_CONFIG".into(), config.to_str().unwrap().into()),
        ("MODE_BACKOFF_MS".into(), "50".into()),
    ];
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let run = env.mode_with(&["event", "send", "x"], &vars).await;
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains("chmod 600"), "{run:?}");
        assert!(run.stderr.contains("0644"), "{run:?}");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let run = env.mode_with(&["event", "send", "x"], &vars).await;
    assert_eq!(run.code, 0, "{run:?}");
    // A flag or the environment beats the profile.
    let mut wrong = vars.clone();
    wrong.push(("MODE_API_KEY".into(), "v1.wrong-key".into()));
    let run = env.mode_with(&["event", "send", "x"], &wrong).await;
    assert_eq!(run.code, 3, "{run:?}");
    let run = env
        .mode_with(&["--profile", "missing", "info"], &vars)
        .await;
    assert_eq!(run.code, 2, "{run:?}");
}

#[tokio::test]
async fn help_lists_the_exit_codes_and_never_shows_a_key_from_the_environment() {
    let env = Env::start().await;
    for args in [
        &["--help"][..],
        &["event", "send", "--help"],
        &["app", "--help"],
    ] {
        let run = env.mode(args).await; // the helper fails on any key in the output
        assert_eq!(run.code, 0, "{run:?}");
    }
    let run = env.mode(&["--help"]).await;
    assert!(run.stdout.contains("3  authentication refused"), "{run:?}");
    assert!(run.stdout.contains("[env: MODE_API_KEY]"), "{run:?}");
}

#[tokio::test]
async fn listen_survives_a_dropped_connection_and_reports_the_reload_diff() {
    let env = Env::start().await;
    let mut child = env.spawn(&["--json", "listen", "--count", "1"]);
    common::stderr_until(&mut child, "listening as device 1001").await;
    let cloud = env.cloud();
    // Half-open first, so the change reaches the device only through the reload.
    cloud.pause_connections(1001);
    cloud
        .kv_set(1001, "mode", json!("eco"), mode_sim::cloud::KvSource::Rest)
        .unwrap();
    cloud.drop_connections(1001);
    let run = common::finish(child).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.json_lines()[0],
        json!({"type": "kvReload", "rev": 1, "changes": [{"key": "mode", "value": "eco", "previous": null}]})
    );
    assert!(run.stderr.contains("mode: disconnected"), "{run:?}");
}
