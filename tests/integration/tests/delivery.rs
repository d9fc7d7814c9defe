//! Per-message outcomes: every message a send accepted has an id, and the delivery hook is
//! called exactly once with it: delivered across a reconnect, or given up at close.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mode_client::{ClientError, DeliveryHook};
use mode_core::proto::{Map, Qos};
use mode_integration::*;

type Outcomes = Arc<Mutex<Vec<(u64, Result<(), ClientError>)>>>;

fn recording_hook() -> (DeliveryHook, Outcomes) {
    let outcomes: Outcomes = Arc::default();
    let sink = outcomes.clone();
    let hook = DeliveryHook::new(move |id, result| sink.lock().unwrap().push((id, result.clone())));
    (hook, outcomes)
}

#[tokio::test]
async fn the_delivery_hook_names_every_message_once_across_a_reconnect_and_at_close() {
    let sim = demo().await;
    let (hook, outcomes) = recording_hook();
    let (client, mut notifications) = start(config(&sim, D1).delivery_hook(hook)).await;
    let mut ids = Vec::new();
    for i in 0..50u64 {
        let qos = if i % 2 == 0 {
            Qos::AtLeastOnce
        } else {
            Qos::AtMostOnce
        };
        let delivery = client.try_send_event("online", Map::new(), qos).unwrap();
        ids.push(delivery.id());
    }
    cloud_gone(&sim, &mut notifications).await;
    let mut offline = Vec::new();
    for _ in 0..50 {
        offline.push(
            client
                .try_send_event("offline", Map::new(), Qos::AtLeastOnce)
                .unwrap(),
        );
    }
    ids.extend(offline.iter().map(|d| d.id()));
    sim.restart_listeners().await.unwrap();
    for delivery in offline {
        tokio::time::timeout(WAIT, delivery.wait())
            .await
            .unwrap()
            .unwrap();
    }
    // Offline again: these are given up when close reaches its deadline.
    cloud_gone(&sim, &mut notifications).await;
    let mut unsent = Vec::new();
    for _ in 0..5 {
        unsent.push(client.try_kv_set("k", 1.into()).unwrap().id());
    }
    let closed = client.close(Duration::from_millis(200)).await;
    assert!(
        matches!(closed, Err(ClientError::CloseIncomplete { unsent: 5 })),
        "{closed:?}"
    );

    let outcomes = outcomes.lock().unwrap().clone();
    let mut by_id: BTreeMap<u64, Vec<bool>> = BTreeMap::new();
    for (id, result) in &outcomes {
        by_id.entry(*id).or_default().push(result.is_ok());
    }
    let all: Vec<u64> = ids.iter().chain(&unsent).copied().collect();
    assert_eq!(
        by_id.keys().copied().collect::<Vec<_>>(),
        all,
        "one outcome per accepted id"
    );
    assert!(
        by_id.values().all(|calls| calls.len() == 1),
        "exactly once: {by_id:?}"
    );
    assert!(ids.iter().all(|id| by_id[id] == [true]));
    assert!(unsent.iter().all(|id| by_id[id] == [false]));
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "ids increase in send order"
    );
}
