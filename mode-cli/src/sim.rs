//! `mode sim`: the local MODE cloud with the `mode-sim` binary's flags, and a banner that shows
//! the environment to export so the other `mode` commands talk to it.

use mode_sim::Sim;
use mode_sim::args::SimArgs;

use crate::error::CliError;
use crate::output;

/// Runs the simulator until Ctrl-C or SIGTERM.
pub async fn run(args: &SimArgs) -> Result<(), CliError> {
    let config = args
        .config()
        .map_err(|e| CliError::usage(format!("simulator configuration: {e}")))?;
    mode_sim::fd_limit::raise_for(config.max_connections);
    let sim = Sim::start(config)
        .await
        .map_err(|e| CliError::other(format!("cannot start the simulator: {e}")))?;
    banner(&sim);
    mode_sim::args::shutdown_signal().await;
    output::note("mode sim: shutting down");
    sim.shutdown().await;
    Ok(())
}

/// Where it listens, its devices and keys (test keys of a local simulator, meant to be
/// shown), and the `mode` environment that reaches it.
fn banner(sim: &Sim) {
    let config = sim.config();
    let mqtt = sim.mqtt_addr();
    output::line("mode sim: a local MODE cloud");
    output::line(format!("  MQTT           {mqtt}"));
    output::line(format!("  MQTT/WebSocket ws://{}/mqtt", sim.mqtt_ws_addr()));
    if let Some(tls) = sim.mqtt_tls_addr() {
        output::line(format!("  MQTT/TLS       {tls}"));
    }
    let api_url = sim.http_addr().map(|a| format!("http://{a}"));
    if let Some(url) = &api_url {
        output::line(format!("  HTTP           {url}"));
    }
    let mut device = None;
    let mut app_key = None;
    for project in &config.projects {
        output::line(format!("project {}", project.id));
        for d in &project.devices {
            let home = d.home_id.map_or("no home".into(), |h| format!("home {h}"));
            output::line(format!("  device {}  key {}  ({home})", d.id, d.api_key));
            device.get_or_insert((d.id, d.api_key.clone()));
        }
        for app in &project.app_keys {
            output::line(format!("  app key {}", app.key));
            app_key.get_or_insert(app.key.clone());
        }
    }
    if let Some((id, key)) = device {
        let mut env = format!(
            "export MODE_PLAIN=1 MODE_HOST={} MODE_PORT={} MODE_MQTT_WS_URL=ws://{}/mqtt \
             MODE_DEVICE_ID={id} MODE_API_KEY='{key}'",
            mqtt.ip(),
            mqtt.port(),
            sim.mqtt_ws_addr()
        );
        if let Some(url) = &api_url {
            env.push_str(&format!(" MODE_API_URL={url}"));
        }
        if let Some(app) = &app_key {
            env.push_str(&format!(" MODE_APP_KEY='{app}'"));
        }
        output::line("try, in another shell:");
        output::line(format!("  {env}"));
        output::line("  mode listen");
        output::line(format!("  mode app command {id} light '{{\"on\":true}}'"));
        output::line("  mode event send temperature '{\"celsius\":21}'");
        output::line("  mode kv set color '\"red\"'");
    }
}
