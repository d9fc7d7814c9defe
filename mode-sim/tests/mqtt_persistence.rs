//! `--data-dir`: the DDP stores and the event log survive a restart of the simulator.

mod common;

use common::*;
use mode_core::proto::SyncMessage;
use mode_sim::cloud::KvSource;
use mode_sim::{Sim, SimConfig};
use serde_json::json;

fn config(dir: &std::path::Path) -> SimConfig {
    SimConfig {
        data_dir: Some(dir.to_owned()),
        ..SimConfig::demo()
    }
}

#[tokio::test]
async fn stores_and_events_survive_a_restart_with_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(config(dir.path())).await.unwrap();
    let (client, mut eventloop) = client(&sim, D1).await;
    let writes = [
        ("event", r#"{"eventType":"before","eventData":{"n":1}}"#),
        ("kv", r#"{"action":"set","key":"a","value":[1,2]}"#),
        ("kv", r#"{"action":"set","key":"b","value":"x"}"#),
        ("kv", r#"{"action":"delete","key":"b"}"#),
    ];
    for (topic, payload) in writes {
        publish1(&client, format!("/devices/1001/{topic}"), payload).await;
        puback(&mut eventloop).await;
    }
    let before = sim.cloud().kv_snapshot(D1).unwrap();
    let events_before = sim.cloud().events();
    assert_eq!(events_before.len(), 4, "one event and three system events");
    drop((client, eventloop));
    sim.shutdown().await;

    let sim = Sim::start(config(dir.path())).await.unwrap();
    let after = sim.cloud().kv_snapshot(D1).unwrap();
    assert_eq!(after, before);
    assert_eq!(after.rev, 3);
    assert_eq!(after.items.len(), 1);
    assert_eq!(
        (after.items[0].key.as_str(), &after.items[0].value),
        ("a", &json!([1, 2]))
    );
    assert_eq!(sim.cloud().events(), events_before);

    // Revisions go on from where they were, and the device's reload says so.
    assert_eq!(
        sim.cloud()
            .kv_set(D1, "c", json!(true), KvSource::Rest)
            .unwrap(),
        4
    );
    let (client, mut eventloop) = common::client(&sim, D1).await;
    let SyncMessage::Reload(reload) = kv_reload(&client, &mut eventloop).await else {
        panic!("expected a reload")
    };
    assert_eq!((reload.rev, reload.items.len()), (4, 2));
    sim.shutdown().await;
}

#[tokio::test]
async fn without_a_data_dir_a_new_simulator_starts_empty() {
    // The control for the test above.
    let sim = demo().await;
    sim.cloud()
        .kv_set(D1, "a", json!(1), KvSource::Rest)
        .unwrap();
    sim.shutdown().await;
    let sim = demo().await;
    assert_eq!(sim.cloud().kv_snapshot(D1).unwrap().rev, 0);
}

#[tokio::test]
async fn an_unusable_data_dir_is_an_error_at_start() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = Sim::start(config(file.path())).await.unwrap_err();
    assert!(err.to_string().contains("persistence"), "{err}");
}
