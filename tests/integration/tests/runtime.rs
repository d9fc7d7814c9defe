//! Many devices on one shared `Runtime` against the simulator: each connects, gets its own
//! reload and only its own commands, and the runtime's IO threads stay as few as asked.

use mode_client::{Client, Notification, Runtime};
use mode_core::proto::{Command, Map, Qos};
use mode_integration::{WAIT, config, init_tracing, next, next_command, numbered};
use mode_sim::config::{DEMO_HOME, DeviceConfig, demo_device_key};
use mode_sim::{Sim, SimConfig};
use serde_json::json;

const DEVICES: u64 = 100;
const FIRST: u64 = 5000;

/// The demo cloud with `DEVICES` more devices in the demo home.
async fn fleet_sim() -> Sim {
    init_tracing();
    let mut cloud = SimConfig::demo();
    cloud.projects[0]
        .devices
        .extend((FIRST..FIRST + DEVICES).map(|id| DeviceConfig {
            id,
            api_key: demo_device_key(id),
            name: format!("fleet {id}"),
            tag: "fleet".into(),
            device_class: "sensor".into(),
            home_id: Some(DEMO_HOME),
        }));
    Sim::start(cloud).await.expect("simulator starts")
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("Linux /proc")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_devices_share_one_io_thread_and_each_gets_only_its_own_commands() {
    let sim = fleet_sim().await;
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fleet-io")
        .enable_all()
        .build()
        .expect("runtime starts");
    let runtime = Runtime::from_tokio(io);
    let before = threads_named("");
    let mut devices = Vec::new();
    for id in FIRST..FIRST + DEVICES {
        let built = config(&sim, id).build().expect("valid config");
        devices.push((id, Client::connect_in(&runtime, built).expect("starts")));
    }
    for (_, (_, notifications)) in &mut devices {
        next(notifications, |n| {
            matches!(n, Notification::KvReloaded { .. })
        })
        .await;
    }
    assert_eq!(
        threads_named("fleet-io"),
        1,
        "one IO thread for {DEVICES} devices"
    );
    // The other test of this file may start a runtime meanwhile; a thread per device would be 100.
    let grown = threads_named("").saturating_sub(before);
    assert!(grown <= 4, "{grown} threads more for {DEVICES} devices");

    // Every device gets a command naming it; none gets another's.
    for (id, _) in &devices {
        let mut params = Map::new();
        params.insert("for".into(), json!(id));
        sim.cloud()
            .send_command(*id, Command::new("whoami", params))
            .expect("the device is connected");
    }
    for (id, (client, notifications)) in &mut devices {
        let command = next_command(notifications).await;
        assert_eq!(command.parameters["for"], json!(id), "routed to {id}");
        client
            .send_event("answer", command.parameters, Qos::AtLeastOnce)
            .await
            .expect("acknowledged");
    }
    let answered = |cloud: &mode_sim::Cloud| {
        devices
            .iter()
            .all(|(id, _)| cloud.events_from(*id).len() == 1)
    };
    assert!(
        sim.cloud().wait_for(WAIT, answered).await,
        "every device's answer is in the cloud, once"
    );
    for (_, (client, _)) in &devices {
        client
            .close(std::time::Duration::from_secs(5))
            .await
            .expect("closes");
    }
}

#[tokio::test]
async fn a_device_whose_notifications_nobody_reads_does_not_hold_up_the_others() {
    let sim = fleet_sim().await;
    let runtime = Runtime::new(1).expect("runtime starts");
    let start = |id| {
        let built = config(&sim, id).build().expect("valid config");
        Client::connect_in(&runtime, built).expect("starts")
    };
    // Nobody reads this device's notifications while commands pour in for it.
    let (_ignored, _unread) = start(FIRST);
    let (client, mut notifications) = start(FIRST + 1);
    next(&mut notifications, |n| {
        matches!(n, Notification::KvReloaded { .. })
    })
    .await;
    for i in 0..2_000u64 {
        let params = numbered(i);
        let _ = sim
            .cloud()
            .send_command(FIRST, Command::new("flood", params));
    }
    sim.cloud()
        .send_command(FIRST + 1, Command::new("still-here", Map::new()))
        .expect("connected");
    next_command(&mut notifications).await;
    client
        .send_event("alive", Map::new(), Qos::AtLeastOnce)
        .await
        .expect("acknowledged while the other device's notifications pile up");
}
