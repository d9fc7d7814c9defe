//! The fleet benchmark (issue 15): N devices of one process on one tokio runtime with 2 IO
//! threads, against a `mode-sim` process holding them; prints one table line per run.
//!
//! ```sh
//! cargo build --release -p mode-sim && cargo run --release -p mode-integration --example fleet -- 10000
//! ```
//!
//! It starts `mode-sim --devices N --devices-csv FILE` (next to this example in the target
//! directory, or `MODE_SIM_BIN`), or uses a running one: `MODE_FLEET_MQTT=host:port`,
//! `MODE_FLEET_CSV=FILE` and, for its memory, `MODE_FLEET_SIM_PID=PID`. It connects every device
//! of the CSV (plain TCP), waits until each is connected and subscribed
//! ([`Notification::Connected`]), and measures the connect ramp, this process's resident and
//! heap bytes, threads and file descriptors per idle device, and the simulator's resident bytes
//! per connection; then min(N, 1000) devices send QoS 1 events for `MODE_FLEET_SECS` (3) seconds
//! and it counts the acknowledged ones. `--no-header` leaves out the table's header.
//!
//! The devices share one [`mode_client::Runtime`] (`Client::connect_in`). `--ambient` starts
//! them with `Client::connect` on the same runtime instead, each with a rustls configuration
//! of its own, as before the runtime existed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::{FuturesUnordered, select_all};
use mode_client::{Client, ClientConfig, ClientError, Notification, Notifications, Runtime};
use mode_core::proto::{Map, Qos, Value};

/// The heap this process holds, counted by every allocation (a counter beside the system
/// allocator: what RSS cannot tell apart from the allocator's own slack).
struct Counting;

static HEAP: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is kept beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most devices that send events at once, as issue 15's "aggregate events/s across 1,000
/// devices".
const SENDERS: usize = 1000;
/// QoS 1 events a sender keeps unacknowledged: the client's default in-flight window.
const WINDOW: usize = 100;
/// Notifications that may wait per device: an idle device gets a handful (Connected, the
/// reload), and a small channel is what a fleet would configure.
const NOTIFICATIONS: usize = 8;
/// How long to wait for all devices to connect.
const CONNECT_DEADLINE: Duration = Duration::from_secs(120);

/// A field of `/proc/{pid}/status` (`VmRSS` in KiB, `Threads`).
fn status(pid: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The simulator the devices connect to: started here, or named by the environment.
struct Simulator {
    mqtt: SocketAddr,
    csv: std::path::PathBuf,
    pid: Option<u32>,
    /// Ours to stop, with the read end of its stdout (kept open: it may still print).
    child: Option<(Child, std::io::BufReader<std::process::ChildStdout>)>,
    _dir: Option<tempfile::TempDir>,
}

impl Simulator {
    fn start(devices: usize) -> Simulator {
        if let Ok(mqtt) = std::env::var("MODE_FLEET_MQTT") {
            let csv = std::env::var("MODE_FLEET_CSV")
                .expect("MODE_FLEET_MQTT needs MODE_FLEET_CSV (the file of --devices-csv)");
            return Simulator {
                mqtt: mqtt
                    .parse()
                    .expect("MODE_FLEET_MQTT is host:port, e.g. 127.0.0.1:1883"),
                csv: csv.into(),
                pid: std::env::var("MODE_FLEET_SIM_PID")
                    .ok()
                    .and_then(|p| p.parse().ok()),
                child: None,
                _dir: None,
            };
        }
        let bin = std::env::var_os("MODE_SIM_BIN").map_or_else(
            || {
                let exe = std::env::current_exe().expect("own path");
                exe.parent()
                    .and_then(|examples| examples.parent())
                    .expect("target dir")
                    .join("mode-sim")
            },
            Into::into,
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let csv = dir.path().join("devices.csv");
        let mut child = Command::new(&bin)
            .args(["--mqtt-port", "0", "--ws-port", "0", "--http-port", "0", "--devices"])
            .arg(devices.to_string())
            .arg("--devices-csv")
            .arg(&csv)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (build it with `cargo build --release -p mode-sim`, or set MODE_SIM_BIN)",
                    bin.display()
                )
            });
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mqtt = loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("{} exited without printing its MQTT address", bin.display());
            }
            if let Some(addr) = line.trim().strip_prefix("MQTT ") {
                break addr.trim().parse().expect("MQTT address");
            }
        };
        Simulator {
            mqtt,
            csv,
            pid: Some(child.id()),
            child: Some((child, stdout)),
            _dir: Some(dir),
        }
    }

    fn rss_kib(&self) -> Option<u64> {
        self.pid.map(|pid| status(&pid.to_string(), "VmRSS"))
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some((child, _)) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts one device on `runtime`: with the runtime's shared TLS configuration, or with
/// `ambient` as `Client::connect` does it on any tokio runtime (a configuration of its own).
fn connect(
    runtime: &Runtime,
    config: ClientConfig,
    ambient: bool,
) -> Result<(Client, Notifications), ClientError> {
    if ambient {
        let _in_runtime = runtime.handle().enter();
        Client::connect(config)
    } else {
        Client::connect_in(runtime, config)
    }
}

fn read_csv(path: &std::path::Path, devices: usize) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let rows: Vec<(u64, String)> = text
        .lines()
        .skip(1)
        .map(|line| {
            let mut fields = line.split(',');
            let id = fields.next().and_then(|f| f.parse().ok());
            let key = fields.next();
            match (id, key) {
                (Some(id), Some(key)) => (id, key.to_owned()),
                _ => panic!(
                    "{}: not a device_id,api_key,... line: {line:?}",
                    path.display()
                ),
            }
        })
        .take(devices)
        .collect();
    assert_eq!(
        rows.len(),
        devices,
        "{} lists fewer devices than asked for",
        path.display()
    );
    rows
}

fn event_data() -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("celsius".into(), 21.into());
    data
}

/// Sends QoS 1 events from `client` until `until`, keeping [`WINDOW`] unacknowledged; returns
/// how many were acknowledged.
async fn send_until(client: Client, until: Instant) -> u64 {
    let mut waiting = FuturesUnordered::new();
    let mut acked = 0;
    while Instant::now() < until {
        if waiting.len() >= WINDOW {
            if let Some(Ok(())) = waiting.next().await {
                acked += 1;
            }
            continue;
        }
        match client
            .send_event("fleet", event_data(), Qos::AtLeastOnce)
            .await
        {
            Ok(delivery) => waiting.push(delivery),
            Err(err) => panic!("device {}: send failed: {err}", client.device_id()),
        }
    }
    while let Some(outcome) = waiting.next().await {
        acked += u64::from(outcome.is_ok());
    }
    acked
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let devices: usize = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or(1000, |n| {
            n.parse().expect("usage: fleet [DEVICES] [--no-header]")
        });
    let header = !args.iter().any(|a| a == "--no-header");
    let ambient = args.iter().any(|a| a == "--ambient");
    let secs: u64 = std::env::var("MODE_FLEET_SECS")
        .map_or(3, |s| s.parse().expect("MODE_FLEET_SECS: seconds"));
    // One socket per device, and the soft limit is often 1024.
    mode_sim::fd_limit::raise_to_hard().expect("raise the open-file limit");

    let sim = Simulator::start(devices);
    let rows = read_csv(&sim.csv, devices);
    let runtime = Runtime::new(2).expect("runtime with 2 IO threads");
    let sim_before = sim.rss_kib();
    let (rss_before, heap_before, fds_before) = (
        status("self", "VmRSS"),
        HEAP.load(Ordering::Relaxed),
        open_fds(),
    );

    let start = Instant::now();
    let mut clients = Vec::with_capacity(devices);
    let mut streams = Vec::with_capacity(devices);
    for (id, key) in &rows {
        let config = ClientConfig::builder(*id, key.as_str())
            .plain()
            .mqtt_host(sim.mqtt.ip().to_string())
            .mqtt_port(sim.mqtt.port())
            .notification_capacity(NOTIFICATIONS)
            .build()
            .expect("client config");
        let (client, notifications) = connect(&runtime, config, ambient).expect("client starts");
        clients.push(client);
        streams.push(notifications);
    }
    // One task reads every device's notifications: an idle device costs no task of ours.
    let mut all = select_all(streams);
    let (connected, failures) = runtime.handle().block_on(async {
        let (mut connected, mut failures) = (0, 0);
        let deadline = tokio::time::sleep(CONNECT_DEADLINE);
        tokio::pin!(deadline);
        while connected < devices {
            tokio::select! {
                n = all.next() => match n {
                    Some(Notification::Connected) => connected += 1,
                    Some(Notification::Disconnected { .. }) => failures += 1,
                    Some(_) => {}
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        (connected, failures)
    });
    let ramp = start.elapsed();
    assert_eq!(
        connected, devices,
        "only {connected} of {devices} devices connected within {CONNECT_DEADLINE:?} ({failures} failed attempts)"
    );
    // Let the reloads and the simulator's answers settle before measuring the idle fleet.
    std::thread::sleep(Duration::from_millis(500));
    let per_device =
        |before: u64, after: u64| (after.saturating_sub(before)) as f64 / devices as f64;
    let rss = per_device(rss_before, status("self", "VmRSS"));
    let heap = (HEAP.load(Ordering::Relaxed) - heap_before) as f64 / 1024.0 / devices as f64;
    let threads = status("self", "Threads");
    let fds = open_fds();
    let sim_rss = match (sim_before, sim.rss_kib()) {
        (Some(before), Some(after)) => format!("{:.1}", per_device(before, after)),
        _ => "-".into(),
    };

    if std::env::var_os("MODE_FLEET_IDLE").is_some() {
        // For a heap profiler: the idle fleet, without the event phase.
        eprintln!(
            "fleet: {devices} devices idle, rss {rss:.1} KiB/device heap {heap:.2} KiB/device"
        );
        drop(sim);
        std::process::exit(0);
    }

    let senders = devices.min(SENDERS);
    let until = Instant::now() + Duration::from_secs(secs);
    let sending = Instant::now();
    let acked: u64 = runtime.handle().block_on(async {
        let tasks: Vec<_> = clients[..senders]
            .iter()
            .map(|c| tokio::spawn(send_until(c.clone(), until)))
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.expect("sender");
        }
        total
    });
    let events_per_s = acked as f64 / sending.elapsed().as_secs_f64();

    if header {
        println!(
            "| devices | connect ramp (devices/s) | RSS per idle device (KiB) | heap per idle device (KiB) | threads | fds (per device) | QoS 1 events/s, acknowledged ({SENDERS} devices or all) | mode-sim RSS per connection (KiB) |"
        );
        println!("|---|---|---|---|---|---|---|---|");
    }
    println!(
        "| {devices} | {:.0} | {rss:.1} | {heap:.2} | {threads} | {fds} ({:.2}) | {events_per_s:.0} ({senders} devices) | {sim_rss} |",
        devices as f64 / ramp.as_secs_f64(),
        (fds - fds_before) as f64 / devices as f64,
    );
    // Closing 10,000 clients one by one measures nothing: the simulator is stopped and the
    // process ends.
    drop(sim);
    std::process::exit(0);
}
