//! The `mode-sim` binary: a local MODE cloud for firmware development without an account.
//! Starts the demo project (or a TOML config), prints how to connect, and takes console commands
//! on stdin (send a command, set a key, drop a device's connections, list events).

use std::io::Write;

use clap::Parser;
use mode_core::proto::{Command, Value};
use mode_sim::Sim;
use mode_sim::args::SimArgs;
use mode_sim::cloud::KvSource;
use tokio::io::AsyncBufReadExt;

/// A local MODE cloud: MQTT 3.1.1 (TCP, TLS, WebSocket) and, when built in, the REST API.
#[derive(Debug, Parser)]
#[command(name = "mode-sim", version)]
struct Args {
    #[command(flatten)]
    flags: SimArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let sim = match args.flags.config() {
        Ok(config) => {
            mode_sim::fd_limit::raise_for(config.max_connections);
            Sim::start(config).await
        }
        Err(err) => {
            eprintln!("mode-sim: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let sim = match sim {
        Ok(sim) => sim,
        Err(err) => {
            eprintln!("mode-sim: {err}");
            return std::process::ExitCode::from(1);
        }
    };
    print_banner(&sim);
    let console = tokio::spawn(console(sim.cloud().clone()));
    mode_sim::args::shutdown_signal().await;
    console.abort();
    eprintln!("mode-sim: shutting down");
    sim.shutdown().await;
    let _ = std::io::stdout().flush();
    // Not a return: the runtime would wait for the console's blocking read of stdin forever.
    std::process::exit(0)
}

/// The most devices the banner lists per project: a fleet of thousands (`--devices`) would
/// bury the addresses and the examples.
const BANNER_DEVICES: usize = 10;

/// Prints where the simulator listens, its devices and keys, and command lines that work
/// against it as configured.
fn print_banner(sim: &Sim) {
    let config = sim.config();
    let mqtt = sim.mqtt_addr();
    let host = mqtt.ip();
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line("mode-sim: a local MODE cloud".into());
    line(format!("  MQTT           {mqtt}"));
    line(format!(
        "  MQTT/WebSocket ws://{}/mqtt (subprotocol mqtt)",
        sim.mqtt_ws_addr()
    ));
    if let Some(tls) = sim.mqtt_tls_addr() {
        line(format!("  MQTT/TLS       {tls}"));
    }
    if let Some(wss) = sim.mqtt_wss_addr() {
        line(format!(
            "  MQTT/wss       wss://{wss}/mqtt (subprotocol mqtt)"
        ));
    }
    match sim.http_addr() {
        Some(http) => line(format!("  HTTP           http://{http}")),
        None => line("  HTTP           (not in this build)".into()),
    }
    if let Some(https) = sim.https_addr() {
        line(format!(
            "  HTTPS          https://{https} (REST, wss:// WebSockets)"
        ));
    }
    if let Some(ca) = config.tls.as_ref().and_then(|t| t.client_ca.as_ref()) {
        line(format!(
            "  client certs   required on TLS, issued by {} (CN = device id: no key needed)",
            ca.display()
        ));
    }
    match &config.data_dir {
        Some(dir) => line(format!(
            "  data dir       {} (stores and event log persist)",
            dir.display()
        )),
        None => line("  data dir       none (in memory; --data-dir DIR to persist)".into()),
    }
    let mut example = None;
    for project in &config.projects {
        line(format!("project {}", project.id));
        for device in project.devices.iter().take(BANNER_DEVICES) {
            let home = device
                .home_id
                .map_or("no home".to_string(), |h| format!("home {h}"));
            line(format!(
                "  device {}  key {}  ({home})",
                device.id, device.api_key
            ));
            example.get_or_insert((device.id, device.api_key.clone()));
        }
        if let Some(more) = project.devices.len().checked_sub(BANNER_DEVICES)
            && more > 0
        {
            line(format!(
                "  ... and {more} more devices (--devices-csv FILE lists generated ones)"
            ));
        }
        for app in &project.app_keys {
            line(format!("  app key {}", app.key));
        }
    }
    if let Some((id, key)) = example {
        let port = mqtt.port();
        line("try:".into());
        line(format!(
            "  mosquitto_sub -V mqttv311 -h {host} -p {port} -u {id} -P '{key}' -t /devices/{id}/command -v"
        ));
        line(format!(
            "  mosquitto_pub -V mqttv311 -h {host} -p {port} -u {id} -P '{key}' -q 1 -t /devices/{id}/event -m '{{\"eventType\":\"test\",\"eventData\":{{\"x\":123}}}}'"
        ));
        let app_key = config.projects.iter().flat_map(|p| &p.app_keys).next();
        if let (Some(http), Some(app)) = (sim.http_addr(), app_key) {
            line(format!(
                "  curl -X PUT -H 'Authorization: ModeCloud {}' -H 'Content-Type: application/json' -d '{{\"action\":\"light\",\"parameters\":{{\"on\":true}}}}' http://{http}/devices/{id}/command",
                app.key
            ));
            line(format!(
                "  curl -H 'Authorization: ModeCloud {key}' http://{http}/devices/{id}"
            ));
        }
        line(format!(
            "console (type on stdin): command {id} {{\"action\":\"light\",\"parameters\":{{\"on\":true}}}} | kv {id} KEY JSON | drop {id} | events | help"
        ));
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

const CONSOLE_HELP: &str = "commands:
  command DEVICE JSON    send a command, e.g. command 1001 {\"action\":\"light\",\"parameters\":{}}
  kv DEVICE KEY JSON     set a key of the device's store
  kv-delete DEVICE KEY   delete a key
  drop DEVICE            drop every connection of the device
  events                 print every event the cloud received, one JSON object a line
  help                   this text";

/// Reads console commands from stdin until it closes (the simulator keeps running).
async fn console(cloud: mode_sim::Cloud) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = run_console_line(&cloud, line.trim());
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{reply}");
        let _ = stdout.flush();
    }
}

fn run_console_line(cloud: &mode_sim::Cloud, line: &str) -> String {
    let mut words = line.splitn(2, ' ');
    let verb = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim();
    let device =
        |s: &str| mode_core::proto::parse_device_id(s).ok_or(format!("not a device id: {s:?}"));
    let result: Result<String, String> = (|| match verb {
        "" => Ok(String::new()),
        "help" => Ok(CONSOLE_HELP.into()),
        "command" => {
            let (id, json) = rest.split_once(' ').ok_or("usage: command DEVICE JSON")?;
            let command = Command::decode(json.as_bytes()).map_err(|e| e.to_string())?;
            let delivered = cloud
                .send_command(device(id)?, command)
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "ok: command delivered to {delivered} subscriber(s)"
            ))
        }
        "kv" => {
            let mut parts = rest.splitn(3, ' ');
            let (id, key, json) = match (parts.next(), parts.next(), parts.next()) {
                (Some(id), Some(key), Some(json)) => (id, key, json),
                _ => return Err("usage: kv DEVICE KEY JSON".into()),
            };
            let value: Value = serde_json::from_str(json).map_err(|e| format!("bad JSON: {e}"))?;
            let rev = cloud
                .kv_set(device(id)?, key, value, KvSource::Rest)
                .map_err(|e| e.to_string())?;
            Ok(format!("ok: rev {rev}"))
        }
        "kv-delete" => {
            let (id, key) = rest.split_once(' ').ok_or("usage: kv-delete DEVICE KEY")?;
            let rev = cloud
                .kv_delete(device(id)?, key.trim(), KvSource::Rest)
                .map_err(|e| e.to_string())?;
            Ok(format!("ok: rev {rev}"))
        }
        "drop" => Ok(format!(
            "ok: dropped {} connection(s)",
            cloud.drop_connections(device(rest)?)
        )),
        "events" => {
            let events = cloud.events();
            let lines: Vec<String> = events
                .iter()
                .map(|r| String::from_utf8_lossy(&r.event.encode()).into_owned())
                .collect();
            Ok(format!(
                "{}ok: {} event(s)",
                lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
                events.len()
            ))
        }
        other => Err(format!("unknown console command {other:?}; type help")),
    })();
    result.unwrap_or_else(|err| format!("error: {err}"))
}
