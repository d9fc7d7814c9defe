//! `mode demo`: a device on libmode and an app on the REST API, both against a local MODE cloud
//! (mode-sim in-process on free loopback ports), playing a short scenario and printing a
//! timeline and a summary. Fails (non-zero) when any step did not happen.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mode_client::{Client, ClientConfig, Notification, Notifications, Transport};
use mode_core::backoff::BackoffPolicy;
use mode_core::ddp::Change;
use mode_core::proto::{Command, Map, Qos, Value};
use mode_sim::config::{DEMO_APP_KEY, DEMO_HOME};
use mode_sim::{Sim, SimConfig};
use serde_json::json;

use crate::app::AppClient;
use crate::error::CliError;
use crate::output::{self, Paint, Style, describe, retry_text};
use crate::wait;

const DEVICE: u64 = 1001;

/// Prints one line of the timeline: time since start, who, what.
#[derive(Clone, Copy)]
struct Timeline {
    start: Instant,
    style: Style,
}

impl Timeline {
    fn say(&self, who: &str, what: impl AsRef<str>) {
        let paint = match who {
            "cloud" => Paint::Yellow,
            "device" => Paint::Cyan,
            _ => Paint::Magenta,
        };
        output::line(format!(
            "{}  {} {}",
            self.style.paint(
                Paint::Dim,
                format!("{:>7.3}s", self.start.elapsed().as_secs_f64())
            ),
            self.style.paint(paint, format!("{who:<6}")),
            what.as_ref()
        ));
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The transport's name as on the command line.
fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Mqtt => "mqtt",
        Transport::MqttWebSocket => "mqtt-websocket",
        Transport::Http => "http",
    }
}

/// What the device saw, for the summary.
#[derive(Default)]
struct Seen {
    commands: u64,
    kv_changes: u64,
    reloads: u64,
    disconnects: u64,
    events_sent: u64,
    events_acked: u64,
}

/// The device side: the client, its notifications, and what it saw.
struct Device {
    client: Client,
    notes: Notifications,
    seen: Seen,
    line: Timeline,
    wait: Duration,
    /// The deliveries of the events answering commands, awaited before the summary.
    answers: Vec<mode_client::Delivery>,
}

impl Device {
    /// Handles notifications until `done` says the awaited one arrived.
    async fn until(
        &mut self,
        what: &str,
        mut done: impl FnMut(&Notification) -> bool,
    ) -> Result<(), CliError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let note = wait::next_note(&mut self.notes, deadline, self.wait, what).await?;
            self.handle(&note)?;
            if done(&note) {
                return Ok(());
            }
        }
    }

    /// Waits for one message's acknowledgement, so the timeline shows each step done.
    async fn settle(&mut self, delivery: mode_client::Delivery) -> Result<(), CliError> {
        let wait = self.wait;
        wait::within(wait, delivery, || {
            format!("no acknowledgement within {wait:?}")
        })
        .await??;
        Ok(())
    }

    fn handle(&mut self, note: &Notification) -> Result<(), CliError> {
        let line = self.line;
        match note {
            Notification::Connected => line.say("device", "connected and subscribed"),
            Notification::Disconnected { reason, retry_in } => {
                self.seen.disconnects += 1;
                line.say(
                    "device",
                    format!("disconnected ({reason}){}", retry_text(*retry_in)),
                );
            }
            Notification::Command(command) => {
                self.seen.commands += 1;
                line.say(
                    "device",
                    format!(
                        "command {} {}, answers with event command-done",
                        command.action,
                        Value::Object(command.parameters.clone())
                    ),
                );
                // Answering from the handler is safe: try_ calls never wait.
                let delivery = self.client.try_send_event(
                    "command-done",
                    object(json!({"action": command.action})),
                    Qos::AtLeastOnce,
                )?;
                self.seen.events_sent += 1;
                self.answers.push(delivery);
            }
            Notification::KvReloaded { rev, diff } => {
                self.seen.reloads += 1;
                self.seen.kv_changes += diff.len() as u64;
                let changes: Vec<String> = diff.iter().map(describe).collect();
                line.say(
                    "device",
                    format!("kv reload at rev {rev}: [{}]", changes.join(", ")),
                );
            }
            Notification::KvChanged { rev, change } => {
                self.seen.kv_changes += 1;
                line.say("device", format!("kv rev {rev}: {}", describe(change)));
            }
            other => line.say("device", format!("{other:?}")),
        }
        Ok(())
    }
}

/// Runs the demo over `transport`; `backoff` is the reconnect unit.
pub async fn run(transport: Transport, backoff: Duration, wait: Duration) -> Result<(), CliError> {
    let style = Style::detect();
    let line = Timeline {
        start: Instant::now(),
        style,
    };
    let sim = Sim::start(SimConfig::demo())
        .await
        .map_err(|e| CliError::other(format!("cannot start the simulator: {e}")))?;
    let http = sim
        .http_addr()
        .ok_or_else(|| CliError::other("the simulator has no HTTP listener"))?;
    let api_url = format!("http://{http}");
    line.say(
        "cloud",
        format!("mode-sim up: MQTT {}, HTTP {api_url}", sim.mqtt_addr()),
    );
    let cloud = sim.cloud().clone();
    let app = AppClient::new(&api_url, DEMO_APP_KEY, wait, None)?;
    app.kv_set(DEVICE, "interval", json!(5)).await?;
    line.say(
        "app",
        format!("sets kv interval = 5 on device {DEVICE} (REST)"),
    );

    // The app follows the home's events over its WebSocket for the whole scenario.
    let mut events = app.home_events(DEMO_HOME).await?;
    let app_saw = Arc::new(AtomicU64::new(0));
    let follower = {
        let app_saw = app_saw.clone();
        tokio::spawn(async move {
            while let Ok(Some(event)) = events.next().await {
                app_saw.fetch_add(1, Ordering::Relaxed);
                line.say(
                    "app",
                    format!(
                        "home {} event {} {}",
                        event.home_id,
                        event.event_type,
                        Value::Object(event.event_data)
                    ),
                );
            }
        })
    };
    line.say(
        "app",
        format!("follows the events of home {DEMO_HOME} (WebSocket)"),
    );

    let config = ClientConfig::builder(DEVICE, mode_sim::config::demo_device_key(DEVICE))
        .transport(transport)
        .plain()
        .mqtt_host(sim.mqtt_addr().ip().to_string())
        .mqtt_port(sim.mqtt_addr().port())
        .mqtt_ws_url(format!("ws://{}/mqtt", sim.mqtt_ws_addr()))
        .api_url(api_url.clone())
        .backoff(BackoffPolicy {
            unit: backoff,
            ..BackoffPolicy::default()
        })
        .build()
        .map_err(|e| CliError::other(e.to_string()))?;
    let (client, notes) = Client::connect(config)?;
    let mut device = Device {
        client: client.clone(),
        notes,
        seen: Seen::default(),
        line,
        wait,
        answers: Vec::new(),
    };
    line.say(
        "device",
        format!(
            "connecting as device {DEVICE} over {}",
            transport_name(transport)
        ),
    );
    device
        .until("the first kv reload", |n| {
            matches!(n, Notification::KvReloaded { .. })
        })
        .await?;

    for i in 0..5 {
        let delivery = client
            .send_event(
                "temperature",
                object(json!({"celsius": 20 + i})),
                Qos::AtLeastOnce,
            )
            .await?;
        device.seen.events_sent += 1;
        device.settle(delivery).await?;
        device.seen.events_acked += 1;
    }
    line.say("device", "sent 5 temperature events, all acknowledged");

    for (action, parameters) in [
        ("light", json!({"on": true})),
        ("light", json!({"on": false})),
        ("reboot", json!({"delay": 18446744073709551615u64})),
    ] {
        app.send_command(DEVICE, &Command::new(action, object(parameters.clone())))
            .await?;
        line.say("app", format!("sends command {action} {parameters} (REST)"));
        device
            .until(&format!("command {action}"), |n| {
                matches!(n, Notification::Command(_))
            })
            .await?;
        for answer in std::mem::take(&mut device.answers) {
            device.settle(answer).await?;
            device.seen.events_acked += 1;
        }
    }

    let delivery = client.kv_set("status", json!("ok")).await?;
    device.settle(delivery).await?;
    line.say("device", "writes kv status = \"ok\"");
    device
        .until(
            "the cloud's echo of kv status",
            |n| matches!(n, Notification::KvChanged { change: Change::Set { key, .. }, .. } if key == "status"),
        )
        .await?;

    line.say(
        "cloud",
        format!(
            "drops the device's connection ({} dropped)",
            cloud.drop_connections(DEVICE)
        ),
    );
    app.kv_set(DEVICE, "interval", json!(10)).await?;
    line.say(
        "app",
        "sets kv interval = 10 while the device is away (REST)",
    );
    device
        .until("the reload after reconnecting", |n| {
            matches!(n, Notification::KvReloaded { .. })
        })
        .await?;

    let mut bulk_ok = true;
    if transport != Transport::Http {
        let response = client
            .bulk_request("echo", json!({"question": 42}), wait)
            .await?;
        bulk_ok = response.status.as_str() == "OK";
        line.say(
            "device",
            format!(
                "bulk request to smart module echo: {} {}",
                response.status.as_str(),
                response.payload
            ),
        );
    }

    let items = app.kv_list(DEVICE).await?;
    let listed: Vec<String> = items
        .iter()
        .map(|item| format!("{} = {}", item.key, item.value))
        .collect();
    line.say(
        "app",
        format!("reads the device's store: {}", listed.join(", ")),
    );

    let closed = client.close(wait).await;
    // The answers the handler sent are recorded once acknowledged; wait for them to count.
    cloud
        .wait_for(wait, |c| c.count_events_from(DEVICE) >= 8)
        .await;
    // Home events reach the app a moment after the cloud records them.
    let deadline = Instant::now() + wait;
    while app_saw.load(Ordering::Relaxed) < 8 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    follower.abort();
    let stats = client.stats();
    let events = cloud.count_events_from(DEVICE);
    let seen = &device.seen;
    let bold = |s: &str| style.paint(Paint::Bold, s);
    output::line("");
    output::line(bold(&format!("summary ({})", transport_name(transport))));
    output::line(format!(
        "  events sent {} / acknowledged {} / recorded by the cloud {}",
        seen.events_sent, seen.events_acked, events
    ));
    output::line(format!(
        "  messages (events, kv writes, bulk) sent {} / acknowledged {}",
        stats.messages_queued, stats.messages_acked
    ));
    output::line(format!(
        "  home events seen by the app {}",
        app_saw.load(Ordering::Relaxed)
    ));
    output::line(format!("  commands handled {}", seen.commands));
    output::line(format!(
        "  kv changes seen {} (reloads {})",
        seen.kv_changes, seen.reloads
    ));
    output::line(format!(
        "  reconnects {} (disconnects seen {})",
        stats.reconnects, seen.disconnects
    ));
    output::line(format!("  device mirror {}", client.kv_snapshot()));
    sim.shutdown().await;

    let mut missing = Vec::new();
    if seen.commands != 3 {
        missing.push(format!("3 commands handled (saw {})", seen.commands));
    }
    if events != 8 || seen.events_acked != 8 {
        missing.push(format!(
            "8 events acknowledged and recorded by the cloud (saw {} and {events})",
            seen.events_acked
        ));
    }
    if stats.reconnects != 1 {
        missing.push(format!("1 reconnect (saw {})", stats.reconnects));
    }
    if seen.reloads != 2 {
        missing.push(format!("2 kv reloads (saw {})", seen.reloads));
    }
    if client.kv_get("interval") != Some(json!(10)) || client.kv_get("status") != Some(json!("ok"))
    {
        missing.push("the mirror holding interval = 10 and status = \"ok\"".into());
    }
    if !bulk_ok {
        missing.push("an OK bulk-data response".into());
    }
    if let Err(err) = closed {
        missing.push(format!("a clean close ({err})"));
    }
    if !missing.is_empty() {
        output::line(style.paint(Paint::Red, "FAILED"));
        return Err(CliError::other(format!(
            "the demo scenario did not complete: expected {}",
            missing.join("; ")
        )));
    }
    output::line(style.paint(Paint::Green, "ok: the scenario completed"));
    Ok(())
}
