//! The durable outbox (`outbox_dir`): accepted QoS 1 messages survive a restart and go first,
//! in order, with their ids; one client per directory; a full store follows the full-queue
//! policy; a torn or damaged store is read as far as it goes and the loss reported; and the
//! kill test: a device process streaming QoS 1 events is `SIGKILL`ed at random moments and
//! restarted on the same directory, against a simulator with `--data-dir` (which acknowledges
//! only what it stored), and every event whose send returned is at the simulator in the end.
//!
//! `MODE_OUTBOX_KILLS` (default 20) sets the kill test's size; `scripts/bench` runs 200.
//! `MODE_OUTBOX_SEED` repeats a run of the random tests.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mode_client::{
    Client, ClientConfig, ClientConfigBuilder, ClientError, ConfigError, DeliveryHook,
    FullQueuePolicy, Notification, Notifications,
};
use mode_core::proto::{Map, Qos, Value};
use mode_integration::{demo, fast_backoff, key};
use mode_sim::{Sim, SimConfig};

use mode_test_support::{KillOutcome, env_or, next_random, seed};

const DEVICE: u64 = 1001;
const WAIT: Duration = Duration::from_secs(60);

fn data(seq: u64) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("seq".into(), Value::from(seq));
    data
}

/// A port nothing listens on: a client there stays offline and keeps everything queued.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn device(port: u16, dir: &Path) -> ClientConfigBuilder {
    ClientConfig::builder(DEVICE, key(DEVICE))
        .plain()
        .mqtt_host("127.0.0.1")
        .mqtt_port(port)
        .api_url("http://127.0.0.1:9")
        .backoff(fast_backoff())
        .outbox_dir(dir)
}

/// The `seq` of every event device 1001 sent to `sim`, in the order the cloud recorded them.
fn seqs_at(sim: &Sim) -> Vec<u64> {
    sim.cloud()
        .events()
        .iter()
        .filter_map(|r| r.event.event_data.get("seq").and_then(Value::as_u64))
        .collect()
}

/// Waits until the simulator recorded `count` events.
async fn recorded(sim: &Sim, count: usize) {
    assert!(
        mode_integration::eventually(WAIT, || sim.cloud().event_count() >= count).await,
        "the simulator recorded {} of {count} events",
        sim.cloud().event_count()
    );
}

/// The outbox report sent at start, if any (it is queued before `connect` returns).
fn outbox_report(notes: &mut Notifications) -> Option<String> {
    while let Some(note) = notes.try_recv() {
        if let Notification::Error { topic, error } = note
            && topic.starts_with("outbox:")
        {
            return Some(error.to_string());
        }
    }
    None
}

/// Queues `seqs` on an offline client with a durable outbox in `dir`, then closes it: every
/// message stays in the store. Returns the message ids, in order.
async fn queue_offline(dir: &Path, seqs: impl Iterator<Item = u64>) -> Vec<u64> {
    let (client, _notes) = Client::connect(device(dead_port(), dir).build().unwrap()).unwrap();
    let mut ids = Vec::new();
    for seq in seqs {
        let delivery = client
            .send_event("queued", data(seq), Qos::AtLeastOnce)
            .await
            .unwrap();
        ids.push(delivery.id());
        // QoS 0 is never stored: it must not come back.
        client
            .send_event("not-kept", data(seq), Qos::AtMostOnce)
            .await
            .unwrap();
    }
    let closed = client.close(Duration::ZERO).await;
    assert!(
        matches!(closed, Err(ClientError::CloseIncomplete { .. })),
        "{closed:?}"
    );
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_accepted_offline_survive_a_restart_and_go_first_in_order_with_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let ids = queue_offline(dir.path(), 0..50).await;

    let sim = demo().await;
    let (hook_tx, hook_rx) = mpsc::channel();
    let config = mode_integration::config(&sim, DEVICE)
        .outbox_dir(dir.path())
        .delivery_hook(DeliveryHook::new(move |id, outcome| {
            let _ = hook_tx.send((id, outcome.is_ok()));
        }))
        .build()
        .unwrap();
    let (client, mut notes) = Client::connect(config).unwrap();
    assert_eq!(outbox_report(&mut notes), None);
    assert_eq!(client.stats().messages_queued, 50);
    let new = client
        .send_event("new", data(50), Qos::AtLeastOnce)
        .await
        .unwrap();
    let new_id = new.id();
    assert!(new_id > *ids.last().unwrap(), "ids continue: {new_id}");
    new.wait().await.unwrap();
    recorded(&sim, 51).await;
    assert_eq!(seqs_at(&sim), (0..=50).collect::<Vec<_>>());
    let expected: Vec<(u64, bool)> = ids.iter().chain([&new_id]).map(|&id| (id, true)).collect();
    // The hook runs after the sender heard: wait for each outcome.
    let delivered: Vec<(u64, bool)> = (0..expected.len())
        .map(|_| hook_rx.recv_timeout(WAIT).expect("an outcome"))
        .collect();
    assert_eq!(delivered, expected, "the restored messages keep their ids");
    client.close(Duration::from_secs(5)).await.unwrap();

    // Everything was delivered and removed; ids still continue from the last one.
    let (client, _notes) =
        Client::connect(device(dead_port(), dir.path()).build().unwrap()).unwrap();
    assert_eq!(client.stats().pending, 0);
    let next = client
        .try_send_event("after", data(51), Qos::AtLeastOnce)
        .unwrap();
    assert!(next.id() > new_id, "{} after {new_id}", next.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_on_the_same_outbox_directory_is_refused_with_a_lock_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = dead_port();
    let (first, _notes) = Client::connect(device(port, dir.path()).build().unwrap()).unwrap();
    first
        .send_event("kept", data(1), Qos::AtLeastOnce)
        .await
        .unwrap();
    match Client::connect(device(port, dir.path()).build().unwrap()) {
        Err(ClientError::Config(ConfigError::OutboxLocked { dir: locked })) => {
            assert_eq!(locked, dir.path().display().to_string())
        }
        other => panic!("expected OutboxLocked, got {other:?}"),
    }
    // Another process: the device binary fails at connect, naming the lock.
    let out = Command::new(env!("CARGO_BIN_EXE_durable_device"))
        .args([&port.to_string(), dir.path().to_str().unwrap(), "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another client"), "{stderr}");
    // Closed, the directory is free again, and holds the message.
    let _ = first.close(Duration::ZERO).await;
    let (second, _notes) = Client::connect(device(port, dir.path()).build().unwrap()).unwrap();
    assert_eq!(second.stats().pending, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_durable_outbox_follows_the_full_queue_policy() {
    // A stored event here is about 80 bytes (every seq has three digits): room for about 10.
    let bound = 800;
    let dir = tempfile::tempdir().unwrap();
    let port = dead_port();
    let builder = |policy| {
        device(port, dir.path())
            .outbox_max_bytes(bound)
            .full_queue_policy(policy)
            .build()
            .unwrap()
    };

    let (client, _notes) = Client::connect(builder(FullQueuePolicy::Error)).unwrap();
    let mut accepted = 0;
    let refused = loop {
        match client.try_send_event("e", data(100 + accepted), Qos::AtLeastOnce) {
            Ok(_) => accepted += 1,
            Err(err) => break err,
        }
        assert!(accepted < 1000, "never full");
    };
    assert!(
        matches!(refused, ClientError::QueueFull { .. }),
        "{refused}"
    );
    assert!((5..=15).contains(&accepted), "{accepted} accepted");
    let room = accepted;
    // Block: the send waits for room (none comes while offline).
    let blocked = tokio::time::timeout(
        Duration::from_millis(100),
        client.send_event("e", data(99), Qos::AtLeastOnce),
    )
    .await;
    assert!(blocked.is_err() || matches!(blocked, Ok(Err(ClientError::QueueFull { .. }))));
    let _ = client.close(Duration::ZERO).await;

    // DropOldest: sends go on, the oldest queued messages make room, each drop reported.
    let (client, mut notes) = Client::connect(builder(FullQueuePolicy::DropOldest)).unwrap();
    for seq in 200..230 {
        client
            .try_send_event("e", data(seq), Qos::AtLeastOnce)
            .unwrap();
    }
    let mut dropped = 0;
    while dropped < 30 - room {
        match tokio::time::timeout(WAIT, notes.recv()).await.unwrap() {
            Some(Notification::MessageDropped { .. }) => dropped += 1,
            Some(_) => {}
            None => panic!("the stream ended"),
        }
    }
    assert_eq!(client.stats().pending, room);
    let _ = client.close(Duration::ZERO).await;

    // What is left is the newest, in order.
    let sim = demo().await;
    let config = mode_integration::config(&sim, DEVICE)
        .outbox_dir(dir.path())
        .build()
        .unwrap();
    let (client, _notes) = Client::connect(config).unwrap();
    recorded(&sim, room as usize).await;
    assert_eq!(seqs_at(&sim), (230 - room..230).collect::<Vec<_>>());
    client.close(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_or_damaged_store_is_read_as_far_as_it_goes_and_the_loss_is_reported() {
    const STORED: u64 = 200;
    let seed = seed("MODE_OUTBOX_SEED");
    let mut random = seed;
    let pristine_dir = tempfile::tempdir().unwrap();
    queue_offline(pristine_dir.path(), 0..STORED).await;
    let file = pristine_dir.path().join("outbox.queue");
    let pristine = std::fs::read(&file).unwrap();
    let sim = demo().await;
    let mut tally = BTreeMap::<&str, (u64, u64, u64)>::new();
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = pristine.clone();
        let how = if round % 2 == 0 {
            // A torn last write: the file cut anywhere in its second half.
            let half = bytes.len() / 2;
            bytes.truncate(half + (next_random(&mut random) as usize % half));
            "truncated"
        } else {
            for _ in 0..1 + next_random(&mut random) % 8 {
                let at = next_random(&mut random) as usize % bytes.len();
                bytes[at] ^= 1 << (next_random(&mut random) % 8);
            }
            "bytes flipped"
        };
        std::fs::write(dir.path().join("outbox.queue"), &bytes).unwrap();
        let before = sim.cloud().event_count();
        let config = mode_integration::config(&sim, DEVICE)
            .outbox_dir(dir.path())
            .build()
            .unwrap();
        let (client, mut notes) = Client::connect(config)
            .unwrap_or_else(|e| panic!("round {round} ({how}, seed {seed}): {e}"));
        let report = outbox_report(&mut notes);
        let stats = client.stats();
        let restored = stats.messages_queued;
        assert!(restored <= STORED);
        if restored < STORED {
            assert!(
                report.is_some() && stats.outbox_unrecovered + u64::from(report.is_some()) > 0,
                "round {round} ({how}, seed {seed}): {restored} of {STORED} restored and nothing reported"
            );
        }
        // What was kept is intact: each restored event arrives once, in order.
        recorded(&sim, before + restored as usize).await;
        let got: Vec<u64> = seqs_at(&sim)[before..].to_vec();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(got, sorted, "round {round} ({how}, seed {seed})");
        assert!(got.iter().all(|&seq| seq < STORED));
        client.close(Duration::from_secs(5)).await.unwrap();
        let entry = tally.entry(how).or_default();
        entry.0 += 1;
        entry.1 += u64::from(restored < STORED);
        entry.2 += STORED - restored;
    }
    for (how, (rounds, lossy, lost)) in tally {
        println!(
            "damaged store ({how}): {rounds} rounds, {lossy} lost messages ({lost} in all, each reported), seed {seed}"
        );
    }
}

/// One run of the device binary.
struct DeviceProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl DeviceProcess {
    fn start(port: u16, dir: &Path, run: &str) -> DeviceProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_durable_device"))
            .args([&port.to_string(), dir.to_str().unwrap(), run])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the device binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        DeviceProcess { child, lines }
    }

    /// The next line it printed; `None` once it exited (or after [`WAIT`]).
    fn line(&self) -> Option<String> {
        self.lines.recv_timeout(WAIT).ok()
    }
}

/// Runs the device `kills` times, each killed after a random number (1..=max_between) of
/// successful sends, then drains what is left; returns what the simulator holds.
async fn kill_run(kills: u64, max_between: u64, seed: u64) -> KillOutcome {
    let started = Instant::now();
    let data_dir = tempfile::tempdir().unwrap();
    let outbox = tempfile::tempdir().unwrap();
    let config = SimConfig {
        data_dir: Some(data_dir.path().to_owned()),
        ..SimConfig::demo()
    };
    let sim = Sim::start(config).await.expect("simulator starts");
    let port = sim.mqtt_addr().port();
    let mut random = seed;
    let mut accepted = HashSet::new();
    for run in 1..=kills {
        let mut device = DeviceProcess::start(port, outbox.path(), &run.to_string());
        let wanted = 1 + next_random(&mut random) % max_between;
        for _ in 0..wanted {
            let line = device.line().expect("the device streams");
            accepted.insert(line.parse::<u64>().unwrap());
        }
        device.child.kill().unwrap(); // SIGKILL
        device.child.wait().unwrap();
        // Lines written before the kill are still in the pipe.
        while let Some(line) = device.line() {
            accepted.insert(line.parse::<u64>().unwrap());
        }
        assert!(started.elapsed() < Duration::from_secs(1200), "too slow");
    }
    let drain = DeviceProcess::start(port, outbox.path(), "drain");
    let line = drain.line().expect("the drain run ends");
    assert!(line.starts_with("drained"), "{line}");
    let mut drain = drain;
    assert!(drain.child.wait().unwrap().success());

    let mut copies = BTreeMap::<u64, usize>::new();
    for seq in seqs_at(&sim) {
        *copies.entry(seq).or_default() += 1;
    }
    let mut missing: Vec<u64> = accepted
        .iter()
        .copied()
        .filter(|seq| !copies.contains_key(seq))
        .collect();
    missing.sort_unstable();
    KillOutcome {
        kills,
        confirmed: accepted.len(),
        missing,
        duplicates: copies.values().map(|&c| c - 1).sum(),
        elapsed: started.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_whose_send_returned_reaches_the_simulator_across_sigkills_of_the_device() {
    let kills = env_or("MODE_OUTBOX_KILLS", 20);
    let seed = seed("MODE_OUTBOX_SEED");
    kill_run(kills, 400, seed).await.check(
        "durable outbox kill test",
        "MODE_OUTBOX_SEED",
        seed,
        [
            "device SIGKILLs + restarts",
            "sends returned Ok",
            "missing at the simulator",
            "duplicates",
            "seconds",
        ],
    );
}
