//! The main job: a device on libmode talks to a local MODE cloud (mode-sim, started in-process
//! on free loopback ports), with no account and no network. The device sends events, answers
//! the app's commands, writes and follows its DDP keys, loses its connection once and recovers
//! with a fresh reload, and calls a smart module. Exits non-zero if anything did not happen.
//!
//! Run: `cargo run --release -p mode-integration --example device [-- --transport http]`

use std::error::Error;
use std::time::{Duration, Instant};

use mode_core::backoff::BackoffPolicy;
use mode_core::client::{Client, ClientConfig, Notification, Notifications, Transport};
use mode_core::ddp::Change;
use mode_core::proto::{Command, Map, Qos, Value};
use mode_sim::cloud::KvSource;
use mode_sim::{Sim, SimConfig};
use serde_json::json;

const DEVICE: u64 = 1001;
const WAIT: Duration = Duration::from_secs(10);

/// Prints one line of the timeline, with the time since start.
struct Timeline(Instant);

impl Timeline {
    fn say(&self, who: &str, what: impl AsRef<str>) {
        println!(
            "{:>7.3}s  {who:<6} {}",
            self.0.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn describe(change: &Change) -> String {
    match change {
        Change::Set {
            key,
            value,
            previous: None,
        } => format!("{key} = {value} (new)"),
        Change::Set {
            key,
            value,
            previous: Some(previous),
        } => format!("{key} = {value} (was {previous})"),
        Change::Deleted { key, previous } => format!("{key} deleted (was {previous})"),
    }
}

/// What the device saw, counted for the summary.
#[derive(Default)]
struct Seen {
    commands: u32,
    kv_changes: u32,
    reloads: u32,
    disconnects: u32,
}

/// Handles notifications until `done` says the awaited one arrived (or the wait runs out).
async fn until(
    notifications: &mut Notifications,
    client: &Client,
    seen: &mut Seen,
    line: &Timeline,
    mut done: impl FnMut(&Notification) -> bool,
) -> Result<(), Box<dyn Error>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let note = tokio::time::timeout_at(deadline, notifications.recv())
            .await
            .map_err(|_| "timed out waiting for the cloud")?
            .ok_or("the client stopped")?;
        match &note {
            Notification::Connected => line.say("device", "connected and subscribed"),
            Notification::Disconnected { reason, retry_in } => {
                seen.disconnects += 1;
                line.say(
                    "device",
                    format!("disconnected ({reason}); retry in {retry_in:?}"),
                );
            }
            Notification::Command(command) => {
                seen.commands += 1;
                line.say(
                    "device",
                    format!(
                        "command {} {}",
                        command.action,
                        Value::Object(command.parameters.clone())
                    ),
                );
                // Answering from the handler is safe: try_ calls never wait.
                client.try_send_event(
                    "command-done",
                    object(json!({"action": command.action})),
                    Qos::AtLeastOnce,
                )?;
            }
            Notification::KvReloaded { rev, diff } => {
                seen.reloads += 1;
                let changes: Vec<String> = diff.iter().map(describe).collect();
                line.say(
                    "device",
                    format!("kv reload at rev {rev}: [{}]", changes.join(", ")),
                );
                seen.kv_changes += diff.len() as u32;
            }
            Notification::KvSet {
                rev,
                key,
                value,
                previous,
            } => {
                seen.kv_changes += 1;
                let change = Change::Set {
                    key: key.clone(),
                    value: value.clone(),
                    previous: previous.clone(),
                };
                line.say("device", format!("kv rev {rev}: {}", describe(&change)));
            }
            Notification::KvDeleted { rev, key, previous } => {
                seen.kv_changes += 1;
                let change = Change::Deleted {
                    key: key.clone(),
                    previous: previous.clone(),
                };
                line.say("device", format!("kv rev {rev}: {}", describe(&change)));
            }
            other => line.say("device", format!("{other:?}")),
        }
        if done(&note) {
            return Ok(());
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let transport = match std::env::args()
        .skip_while(|a| a != "--transport")
        .nth(1)
        .as_deref()
    {
        None | Some("mqtt") => Transport::Mqtt,
        Some("http") => Transport::Http,
        Some(other) => return Err(format!("unknown transport {other:?}: use mqtt or http").into()),
    };
    let line = Timeline(Instant::now());
    let sim = Sim::start(SimConfig::demo()).await?;
    let http = sim
        .http_addr()
        .ok_or("the simulator has no HTTP listener")?;
    line.say(
        "cloud",
        format!("mode-sim up: MQTT {}, HTTP http://{http}", sim.mqtt_addr()),
    );
    let cloud = sim.cloud().clone();
    cloud.kv_set(DEVICE, "interval", json!(5), KvSource::Rest)?;

    let config = ClientConfig::builder(DEVICE, mode_sim::config::demo_device_key(DEVICE))
        .transport(transport)
        .plain_tcp()
        .mqtt_host(sim.mqtt_addr().ip().to_string())
        .mqtt_port(sim.mqtt_addr().port())
        .api_url(format!("http://{http}"))
        .backoff(BackoffPolicy {
            unit: Duration::from_millis(200),
            ..BackoffPolicy::default()
        })
        .build()?;
    let (client, mut notes) = Client::connect(config)?;
    let mut seen = Seen::default();
    line.say(
        "device",
        format!("connecting as device {DEVICE} over {transport:?}"),
    );
    until(&mut notes, &client, &mut seen, &line, |n| {
        matches!(n, Notification::KvReloaded { .. })
    })
    .await?;

    for i in 0..5 {
        client
            .send_event(
                "temperature",
                object(json!({"celsius": 20 + i})),
                Qos::AtLeastOnce,
            )
            .await?
            .wait()
            .await?;
    }
    line.say("device", "sent 5 temperature events, all acknowledged");

    for (action, parameters) in [
        ("light", json!({"on": true})),
        ("light", json!({"on": false})),
        ("reboot", json!({"delay": 18446744073709551615u64})),
    ] {
        cloud.send_command(DEVICE, Command::new(action, object(parameters.clone())))?;
        line.say("app", format!("sends command {action} {parameters}"));
        until(&mut notes, &client, &mut seen, &line, |n| {
            matches!(n, Notification::Command(_))
        })
        .await?;
    }

    client.kv_set("status", json!("ok")).await?;
    line.say("device", "writes kv status = \"ok\"");
    until(
        &mut notes,
        &client,
        &mut seen,
        &line,
        |n| matches!(n, Notification::KvSet { key, .. } if key == "status"),
    )
    .await?;

    line.say(
        "cloud",
        format!(
            "drops the device's connection ({} dropped)",
            cloud.drop_connections(DEVICE)
        ),
    );
    cloud.kv_set(DEVICE, "interval", json!(10), KvSource::Rest)?;
    line.say("app", "sets kv interval = 10 while the device is away");
    until(&mut notes, &client, &mut seen, &line, |n| {
        matches!(n, Notification::KvReloaded { .. })
    })
    .await?;

    if transport == Transport::Mqtt {
        let response = client
            .bulk_request("echo", json!({"question": 42}), WAIT)
            .await?;
        line.say(
            "device",
            format!(
                "bulk request to echo: {} {}",
                response.status.as_str(),
                response.payload
            ),
        );
    }

    client.close(WAIT).await?;
    // Wait for the ack events the handler sent to be recorded before counting.
    cloud
        .wait_for(WAIT, |c| c.events_from(DEVICE).len() >= 8)
        .await;
    let stats = client.stats();
    let events = cloud.events_from(DEVICE);
    println!();
    println!("summary ({transport:?}):");
    println!(
        "  messages sent {} / acknowledged {} (events, kv writes, bulk); events received by the cloud {}",
        stats.messages_queued,
        stats.messages_acked,
        events.len()
    );
    println!("  commands handled {}", seen.commands);
    println!(
        "  kv changes seen {} (reloads {})",
        seen.kv_changes, seen.reloads
    );
    println!(
        "  reconnects {} (disconnects seen {})",
        stats.reconnects, seen.disconnects
    );
    println!("  device mirror {}", client.kv_snapshot());
    sim.shutdown().await;

    let mirror_ok = client.kv_get("interval") == Some(json!(10))
        && client.kv_get("status") == Some(json!("ok"));
    if seen.commands != 3
        || events.len() != 8
        || stats.reconnects != 1
        || seen.reloads != 2
        || !mirror_ok
    {
        return Err("the scenario did not complete as expected (see the summary)".into());
    }
    println!("ok");
    Ok(())
}
