//! `mode`: the MODE command line. `mode demo` shows a device and an app against a local cloud;
//! the device commands are to MODE what mosquitto_pub/sub are to MQTT; `mode app` speaks for an
//! app with an app key; `mode sim` runs the local cloud.
//!
//! Settings come from flags, else environment variables, else a profile of the profile file
//! (`$MODE_CONFIG` or `~/.config/mode/config.toml`, which must be private: mode 600). No key
//! is ever printed: not in errors, not in `--verbose` logs.
//!
//! Exit codes (stable): 0 ok, 1 other, 2 usage or configuration, 3 authentication refused,
//! 4 connection failed, 5 timed out, 6 the cloud refused the request.

mod app;
mod demo;
mod device;
mod error;
mod json;
mod output;
mod settings;
mod sim;
mod wait;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mode_core::proto::DeviceId;

use crate::device::Follow;
use crate::error::CliError;
use crate::settings::{ConnArgs, Settings, TransportArg};

const AFTER_HELP: &str = "\
Profile file ($MODE_CONFIG or ~/.config/mode/config.toml, mode 600), one table per profile:
  [default]
  device_id = 1001
  api_key = \"v1.your-device-key\"
  host = \"127.0.0.1\"
  port = 1883
  api_url = \"http://127.0.0.1:8080\"
  plain = true
  app_key = \"v1.your-app-key\"

Exit codes:
  0  ok
  1  other failure
  2  usage or configuration error (flags, environment, profile file)
  3  authentication refused (device id and API key, or app key)
  4  connection failed (refused, unreachable, TLS)
  5  timed out (no answer, or --count not reached within --timeout)
  6  the cloud refused the request (REST error, missing key, bulk status not OK)";

/// The MODE command line: a demo, device commands, app commands and the local simulator.
#[derive(Debug, Parser)]
#[command(name = "mode", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: Cmd,
}

/// Options every command takes.
#[derive(Debug, Args)]
struct Global {
    /// Print JSON lines instead of text (for scripts).
    #[arg(long, global = true)]
    json: bool,
    /// Log what happens to stderr (never a key).
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Seconds to wait for the cloud (connecting, each answer) [default: 10]; for listen,
    /// kv watch and app events, how long to follow [default: until interrupted].
    #[arg(long, global = true, value_name = "SECS", env = "MODE_TIMEOUT")]
    timeout: Option<f64>,
    /// Reconnect backoff unit in milliseconds (tests shrink it).
    #[arg(long, global = true, hide = true, env = "MODE_BACKOFF_MS")]
    backoff_ms: Option<u64>,
}

impl Global {
    /// The `--timeout`, if given.
    fn limit(&self) -> Result<Option<Duration>, CliError> {
        self.timeout
            .map(|secs| {
                Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|t| !t.is_zero())
                    .ok_or_else(|| {
                        CliError::usage(format!(
                            "--timeout {secs} is not a positive number of seconds"
                        ))
                    })
            })
            .transpose()
    }

    fn wait(&self) -> Result<Duration, CliError> {
        Ok(self.limit()?.unwrap_or(Duration::from_secs(10)))
    }

    fn backoff(&self) -> Duration {
        Duration::from_millis(self.backoff_ms.unwrap_or(1000).max(1))
    }
}

/// How long a following command runs.
#[derive(Debug, Args)]
struct CountArg {
    /// Stop after this many records (exit 5 if --timeout comes first).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start a local MODE cloud in-process and play a scenario: a device sends events, answers
    /// an app's commands, syncs kv keys, loses its connection and recovers. No account needed.
    Demo,
    /// Send events as the device.
    #[command(subcommand)]
    Event(EventCmd),
    /// Print the device's commands and kv changes as they arrive.
    Listen(CountArg),
    /// The device's key-value store (DDP), through the device's connection.
    #[command(subcommand)]
    Kv(KvCmd),
    /// Bulk data to smart modules.
    #[command(subcommand)]
    Bulk(BulkCmd),
    /// What the cloud knows of the device (REST GET /devices/{id}).
    Info,
    /// Create a device with a project's provisioning token.
    Provision {
        /// The provisioning token.
        token: String,
        /// Save the new device's id and key (and the endpoints in force) as this profile.
        #[arg(long, value_name = "NAME")]
        save_profile: Option<String>,
        /// Print the new API key on stdout.
        #[arg(long)]
        show_key: bool,
    },
    /// The app side, with an app key: commands, a device's store, a home's events.
    #[command(subcommand)]
    App(AppCmd),
    /// Run a local MODE cloud (the mode-sim binary's flags) until interrupted.
    Sim(mode_sim::args::SimArgs),
}

#[derive(Debug, Subcommand)]
enum EventCmd {
    /// Send one event and wait for the cloud's acknowledgement.
    Send {
        /// The event type.
        event_type: String,
        /// The event data, a JSON object.
        data: Option<String>,
        /// MQTT QoS, 0 or 1.
        #[arg(long, default_value_t = 1)]
        qos: u8,
    },
}

#[derive(Debug, Subcommand)]
enum KvCmd {
    /// Print one key's value.
    Get {
        /// The key.
        key: String,
    },
    /// Set a key to a JSON value (a string needs quotes: '"red"').
    Set {
        /// The key.
        key: String,
        /// The value, JSON.
        value: String,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
    },
    /// Print every key.
    List,
    /// Print every key, then each change as it arrives.
    Watch(CountArg),
}

#[derive(Debug, Subcommand)]
enum BulkCmd {
    /// Send a file's bytes to the smart module of LABEL (MQTT transports only).
    Send {
        /// The bulk-data label.
        label: String,
        /// The file.
        file: PathBuf,
    },
    /// Send a request to the smart module of LABEL and print its response.
    Request {
        /// The bulk-data label.
        label: String,
        /// The request's payload, JSON.
        payload: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AppCmd {
    /// Send a command to a device.
    Command {
        /// The device id.
        device: DeviceId,
        /// The action.
        action: String,
        /// The parameters, a JSON object.
        parameters: Option<String>,
    },
    /// A device's key-value store over REST.
    #[command(subcommand)]
    Kv(AppKvCmd),
    /// Print a home's events as they arrive (its WebSocket).
    Events {
        /// The home id.
        home: u64,
        #[command(flatten)]
        count: CountArg,
    },
}

#[derive(Debug, Subcommand)]
enum AppKvCmd {
    /// Print one key's value.
    Get {
        /// The device id.
        device: DeviceId,
        /// The key.
        key: String,
    },
    /// Set a key to a JSON value.
    Set {
        /// The device id.
        device: DeviceId,
        /// The key.
        key: String,
        /// The value, JSON.
        value: String,
    },
    /// Delete a key.
    Delete {
        /// The device id.
        device: DeviceId,
        /// The key.
        key: String,
    },
    /// Print every key.
    List {
        /// The device id.
        device: DeviceId,
    },
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let global = &cli.global;
    let json = global.json;
    let wait = global.wait()?;
    let follow = |count: &CountArg| -> Result<Follow, CliError> {
        Ok(Follow {
            count: count.count,
            limit: global.limit()?,
        })
    };
    // The demo and the simulator need no settings (and no profile file).
    match &cli.command {
        Cmd::Demo => {
            let transport = cli.conn.transport.unwrap_or(TransportArg::Mqtt).into();
            let backoff = global.backoff().min(Duration::from_millis(200));
            return demo::run(transport, backoff, wait).await;
        }
        Cmd::Sim(args) => return sim::run(args).await,
        _ => {}
    }
    let settings = Settings::resolve(&cli.conn, wait, global.backoff())?;
    let s = &settings;
    match &cli.command {
        Cmd::Demo | Cmd::Sim(_) => unreachable!("handled above"),
        Cmd::Event(EventCmd::Send {
            event_type,
            data,
            qos,
        }) => device::event_send(s, json, event_type, data.as_deref(), *qos).await,
        Cmd::Listen(count) => device::listen(s, json, follow(count)?, true).await,
        Cmd::Kv(KvCmd::Get { key }) => device::kv_get(s, json, key).await,
        Cmd::Kv(KvCmd::Set { key, value }) => device::kv_write(s, json, key, Some(value)).await,
        Cmd::Kv(KvCmd::Delete { key }) => device::kv_write(s, json, key, None).await,
        Cmd::Kv(KvCmd::List) => device::kv_list(s, json).await,
        Cmd::Kv(KvCmd::Watch(count)) => device::listen(s, json, follow(count)?, false).await,
        Cmd::Bulk(BulkCmd::Send { label, file }) => device::bulk_send(s, json, label, file).await,
        Cmd::Bulk(BulkCmd::Request { label, payload }) => {
            device::bulk_request(s, json, label, payload.as_deref()).await
        }
        Cmd::Info => device::info(s, json).await,
        Cmd::Provision {
            token,
            save_profile,
            show_key,
        } => device::provision_device(s, json, token, save_profile.as_deref(), *show_key).await,
        Cmd::App(AppCmd::Command {
            device,
            action,
            parameters,
        }) => app::command(s, json, *device, action, parameters.as_deref()).await,
        Cmd::App(AppCmd::Kv(op)) => {
            let (device, op) = match op {
                AppKvCmd::Get { device, key } => (device, app::KvOp::Get(key)),
                AppKvCmd::Set { device, key, value } => (device, app::KvOp::Set(key, value)),
                AppKvCmd::Delete { device, key } => (device, app::KvOp::Delete(key)),
                AppKvCmd::List { device } => (device, app::KvOp::List),
            };
            app::kv(s, json, *device, op).await
        }
        Cmd::App(AppCmd::Events { home, count }) => {
            app::events(s, json, *home, follow(count)?).await
        }
    }
}

fn init_logs(verbose: bool) {
    let filter = if verbose {
        // Only our crates: HTTP and WebSocket libraries log headers at their debug levels.
        "mode=debug,mode_core=debug,mode_sim=info"
    } else {
        "mode_sim=warn,mode_core=off"
    };
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(!no_color && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(output::RedactingStderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest and tokio-tungstenite are built without a crypto provider of their own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_logs(cli.global.verbose || matches!(cli.command, Cmd::Sim(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            output::note(format!("mode: cannot start the runtime: {err}"));
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // Connection tasks may still be winding down; they hold nothing worth waiting for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            output::note(format!("mode: {err}"));
            ExitCode::from(err.exit as u8)
        }
    }
}
