//! The app commands against a simulator started in-process: commands reach the device, the
//! device's store is read and written over REST, and a home's events stream over WebSocket.

mod common;

use common::{Env, Run};
use mode_core::proto::{Event, Map};
use mode_sim::cloud::KvSource;
use serde_json::json;

#[tokio::test]
async fn app_command_reaches_the_device() {
    let env = Env::start().await;
    let params = r#"{"on":true,"big":18446744073709551615}"#;
    let run = env.ok(&["app", "command", "1001", "light", params]).await;
    assert!(run.stdout.contains("sent command light"), "{run:?}");
    let run = env
        .ok(&["--json", "app", "command", "1001", "reboot"])
        .await;
    assert_eq!(run.json_lines()[0]["action"], "reboot");
    let commands = env.cloud().commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert_eq!(commands[0].command.action, "light");
    assert_eq!(
        commands[0].command.parameters["big"].to_string(),
        "18446744073709551615"
    );
}

#[tokio::test]
async fn app_kv_set_get_list_and_delete_work_over_rest() {
    let env = Env::start().await;
    env.ok(&["app", "kv", "set", "1001", "color", r#""red""#])
        .await;
    let run = env.mode(&["app", "kv", "get", "1001", "color"]).await;
    assert_eq!((run.code, run.stdout.trim()), (0, "\"red\""), "{run:?}");
    let run = env
        .mode(&["--json", "app", "kv", "get", "1001", "color"])
        .await;
    assert_eq!(run.json_lines()[0]["value"], "red");
    let run = env.mode(&["--json", "app", "kv", "list", "1001"]).await;
    let lines = run.json_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (&lines[0]["key"], &lines[0]["value"]),
        (&json!("color"), &json!("red"))
    );
    env.ok(&["app", "kv", "delete", "1001", "color"]).await;
    assert!(env.cloud().kv_list(1001).unwrap().is_empty());
}

#[tokio::test]
async fn app_refusals_exit_6_with_the_cloud_reason() {
    let env = Env::start().await;
    let run = env.mode(&["app", "kv", "get", "1001", "absent"]).await;
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("404 KEY_NOT_FOUND"), "{run:?}");
    assert_eq!(run.stderr.trim().lines().count(), 1, "{run:?}");
    let run = env
        .mode(&["app", "kv", "set", "1001", "bad key!", "1"])
        .await;
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("INVALID_KEY"), "{run:?}");
}

#[tokio::test]
async fn a_wrong_app_key_exits_3() {
    let env = Env::start().await;
    let vars = env.with("MODE_APP_KEY", Some("v1.wrong-key"));
    let run = env.mode_with(&["app", "command", "1001", "x"], &vars).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("401 AUTH_FAILED"), "{run:?}");
    let run = env.mode_with(&["app", "events", "10"], &vars).await;
    assert_eq!(run.code, 3, "{run:?}");
    let run = env
        .mode_with(
            &["app", "kv", "list", "1001"],
            &env.with("MODE_APP_KEY", None),
        )
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--app-key"), "{run:?}");
}

/// Runs `mode args` (an `app events` of home 10), and once it follows the home (its WebSocket is
/// open and the simulator has subscribed it) calls `produce`; what the run printed.
async fn follow(env: &Env, args: &[&str], produce: impl FnOnce(&mode_sim::Cloud)) -> Run {
    let mut child = env.spawn(args);
    common::stderr_until(&mut child, "following the events of home 10").await;
    produce(env.cloud());
    common::finish(child).await
}

#[tokio::test]
async fn app_events_streams_a_homes_events_until_the_count() {
    let env = Env::start().await;
    let args = ["--json", "app", "events", "10", "--count", "2"];
    let run = follow(&env, &args, |cloud| {
        for i in 0..2 {
            let data = Map::from_iter([("i".into(), json!(i))]);
            cloud.record_event(1001, Event::new("tick", data)).unwrap();
        }
    })
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines = run.json_lines();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert_eq!(lines[0]["eventType"], "tick");
    assert_eq!(lines[0]["homeId"], 10);
    assert_eq!(lines[0]["originDeviceId"], 1001);
    assert_eq!(lines[1]["eventData"]["i"], 1);
    // System events come too.
    let args = ["app", "events", "10", "--count", "1"];
    let run = follow(&env, &args, |cloud| {
        cloud.kv_set(1001, "n", json!(1), KvSource::Rest).unwrap();
    })
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("_deviceKVSaved_"), "{run:?}");
}
