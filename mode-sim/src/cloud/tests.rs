//! Tests of the cloud as its servers use it: connections, fan-out, kv sync and its faults,
//! bulk data, provisioning.

use std::time::{Duration, UNIX_EPOCH};

use mode_core::proto::{
    BulkDataRequest, BulkStatus, Command, KV_DELETED_EVENT, KV_SAVED_EVENT, Map, SyncMessage, Value,
};

use super::*;

fn demo() -> Cloud {
    Cloud::new(&SimConfig::demo())
}

fn key(s: &str) -> Result<(), CloudError> {
    validate_kv_key(s)
}

#[test]
fn formats_timestamps_as_rfc3339_utc_with_nanoseconds() {
    let t = UNIX_EPOCH + Duration::new(1_511_054_602, 5);
    assert_eq!(rfc3339_nanos(t), "2017-11-19T01:23:22.000000005Z");
    assert_eq!(
        rfc3339_nanos(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00.000000000Z"
    );
}

#[test]
fn enforces_the_kv_key_rule() {
    assert!(key("a").is_ok());
    assert!(key("temp_1-x").is_ok());
    assert!(key(&"k".repeat(255)).is_ok());
    assert!(key("").is_err());
    assert!(key(&"k".repeat(256)).is_err());
    assert!(key("_a").is_err());
    assert!(key("a-").is_err());
    assert!(key("a b").is_err());
    assert!(key("é").is_err());
    let err = key("a/b").unwrap_err();
    assert_eq!(err.http_status(), 400);
    assert!(err.to_string().contains("letters, digits"), "{err}");
}

#[test]
fn counts_accepted_and_refused_connects() {
    let cloud = demo();
    let guard = cloud
        .connect_device(1001, "v1.demo-device-1001", Transport::Mqtt)
        .unwrap();
    assert_eq!(
        cloud
            .connect_device(1001, "nope", Transport::Mqtt)
            .unwrap_err(),
        CloudError::WrongDeviceKey(1001)
    );
    assert_eq!(
        cloud.connect_attempts(1001),
        ConnectStats {
            accepted: 1,
            refused: 1
        }
    );
    assert_eq!(cloud.live_connections(1001), 1);
    drop(guard);
    assert_eq!(cloud.live_connections(1001), 0);
}

#[tokio::test]
async fn kv_subscription_sees_every_change_after_its_snapshot_exactly_once() {
    let cloud = demo();
    cloud
        .kv_set(1001, "a", Value::from(1), KvSource::Rest)
        .unwrap();
    let guard = cloud
        .connect_device(1001, "v1.demo-device-1001", Transport::Mqtt)
        .unwrap();
    let (reload, mut sub) = cloud.subscribe_kv(&guard).unwrap();
    assert_eq!(reload.rev, 1);
    assert_eq!(reload.items.len(), 1);
    cloud
        .kv_set(1001, "b", Value::from(2), KvSource::Rest)
        .unwrap();
    cloud.kv_delete(1001, "a", KvSource::Rest).unwrap();
    assert_eq!(sub.recv().await.unwrap().rev(), 2);
    assert_eq!(
        sub.recv().await.unwrap(),
        SyncMessage::Delete {
            rev: 3,
            key: "a".into()
        }
    );
    assert!(sub.inner.try_recv().is_none());
    let types: Vec<_> = cloud
        .events()
        .into_iter()
        .map(|r| r.event.event_type)
        .collect();
    assert_eq!(types, [KV_SAVED_EVENT, KV_SAVED_EVENT, KV_DELETED_EVENT]);
}

#[test]
fn deleting_a_missing_key_changes_nothing() {
    let cloud = demo();
    assert!(matches!(
        cloud.kv_delete(1001, "x", KvSource::Rest),
        Err(CloudError::KeyNotFound { .. })
    ));
    assert_eq!(cloud.kv_snapshot(1001).unwrap().rev, 0);
    assert!(cloud.events().is_empty());
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_cut_off_without_blocking_others() {
    let config = SimConfig {
        subscriber_queue: 2,
        ..SimConfig::demo()
    };
    let cloud = Cloud::new(&config);
    let slow = cloud
        .connect_device(1001, "v1.demo-device-1001", Transport::Mqtt)
        .unwrap();
    let fast = cloud
        .connect_device(1001, "v1.demo-device-1001", Transport::WebSocket)
        .unwrap();
    let mut slow_sub = cloud.subscribe_commands(&slow).unwrap();
    let mut fast_sub = cloud.subscribe_commands(&fast).unwrap();
    for i in 0..3 {
        let delivered = cloud
            .send_command(1001, Command::new(format!("c{i}"), Map::new()))
            .unwrap();
        assert_eq!(fast_sub.recv().await.unwrap().action, format!("c{i}"));
        assert_eq!(delivered, if i < 2 { 2 } else { 1 });
    }
    assert!(slow.is_cancelled());
    assert!(!fast.is_cancelled());
    assert!(slow_sub.overflowed());
    assert_eq!(slow_sub.recv().await.unwrap().action, "c0");
}

#[tokio::test]
async fn sync_faults_duplicate_and_reorder_deterministically() {
    let run = || async {
        let cloud = demo();
        let guard = cloud
            .connect_device(1001, "v1.demo-device-1001", Transport::Mqtt)
            .unwrap();
        cloud
            .set_sync_faults(
                1001,
                SyncFaults {
                    duplicate_percent: 30,
                    reorder_percent: 30,
                    seed: 7,
                    ..Default::default()
                },
            )
            .unwrap();
        let (_, mut sub) = cloud.subscribe_kv(&guard).unwrap();
        for i in 0..20 {
            cloud
                .kv_set(1001, "k", Value::from(i), KvSource::Rest)
                .unwrap();
        }
        let mut revs = Vec::new();
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(100), sub.recv()).await
        {
            revs.push(msg.rev());
        }
        revs
    };
    let first = run().await;
    assert_eq!(first, run().await);
    assert!(first.len() > 20, "no duplicates in {first:?}");
    assert!(
        first.windows(2).any(|w| w[0] > w[1]),
        "no reordering in {first:?}"
    );
    let mut unique = first.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique, (1..=20).collect::<Vec<_>>());
}

#[test]
fn bulk_requests_are_answered_by_the_labels_module() {
    let cloud = demo();
    let req = |label: &str| BulkDataRequest {
        bulk_data_label: label.into(),
        request_id: "r1".into(),
        payload: serde_json::json!({"x": 1}),
    };
    let ok = cloud.bulk_request(1001, "echo", req("echo")).unwrap();
    assert_eq!(
        (ok.status, ok.payload),
        (BulkStatus::Ok, serde_json::json!({"x": 1}))
    );
    assert_eq!(
        cloud
            .bulk_request(1001, "nope", req("nope"))
            .unwrap()
            .status,
        BulkStatus::InvalidBulkDataLabel
    );
    cloud.set_bulk_module_available(1, "echo", false).unwrap();
    assert_eq!(
        cloud
            .bulk_request(1001, "echo", req("echo"))
            .unwrap()
            .status,
        BulkStatus::ServiceUnavailable
    );
    assert_eq!(cloud.bulk_requests().len(), 3);
}

#[test]
fn provisions_a_device_that_can_connect_and_be_claimed() {
    let cloud = demo();
    assert_eq!(
        cloud.provision("wrong").unwrap_err(),
        CloudError::UnknownToken
    );
    let new = cloud
        .provision(crate::config::DEMO_PROVISIONING_TOKEN)
        .unwrap();
    assert_eq!(new.device_id, 1003);
    assert!(
        cloud
            .connect_device(new.device_id, &new.api_key, Transport::Mqtt)
            .is_ok()
    );
    assert_eq!(
        cloud.claim(new.device_id, 10).unwrap_err(),
        CloudError::NotClaimable(1003)
    );
    cloud.register_claim(new.device_id).unwrap();
    cloud.claim(new.device_id, 10).unwrap();
    assert_eq!(cloud.device_info(1003).unwrap().home_id, Some(10));
}
