//! The device of the durable-outbox kill test (`tests/durable_outbox.rs`): streams QoS 1 events
//! through `mode-client` with `outbox_dir`, and prints the `seq` of each event whose send
//! returned `Ok` (one line each, written before the next send, so a `SIGKILL` never loses a
//! line the parent should have seen). Killed and restarted on the same directory by the test.
//!
//! `durable_device PORT DIR RUN [SENDERS]`: streams until killed, from SENDERS concurrent tasks
//! (default 8), event `seq` = RUN * 10^9 + task * 10^6 + i.
//! `durable_device PORT DIR drain`: sends nothing, waits until the outbox it restored is
//! delivered, prints `drained N` and exits.

use std::io::Write;
use std::time::Duration;

use mode_client::{Client, ClientConfig, DeliveryHook, Notification, SyncPolicy};
use mode_core::backoff::BackoffPolicy;
use mode_core::proto::{Map, Qos, Value};

const DEVICE: u64 = 1001;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, dir, run, rest @ ..] = args.as_slice() else {
        eprintln!("usage: durable_device PORT DIR (RUN [SENDERS] | drain)");
        std::process::exit(2);
    };
    let sync = match std::env::var("MODE_OUTBOX_SYNC_MS") {
        Ok(ms) => SyncPolicy::GroupCommit(Duration::from_millis(ms.parse().expect("ms"))),
        Err(_) => SyncPolicy::default(),
    };
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let config = ClientConfig::builder(DEVICE, mode_sim::config::demo_device_key(DEVICE))
        .plain()
        .mqtt_host("127.0.0.1")
        .mqtt_port(port.parse().expect("port"))
        .outbox_dir(dir)
        .outbox_sync(sync)
        .delivery_hook(DeliveryHook::new(move |id, outcome| {
            let _ = done_tx.send((id, outcome.is_ok()));
        }))
        .backoff(BackoffPolicy {
            cap: Duration::from_millis(200),
            unit: Duration::from_millis(10),
            ..BackoffPolicy::default()
        })
        .build()
        .expect("config");
    let (client, mut notes) = Client::connect(config).unwrap_or_else(|e| {
        eprintln!("durable_device: {e}");
        std::process::exit(1)
    });
    if run == "drain" {
        // Only the restored messages are in the outbox: wait for each one's outcome.
        let restored = client.stats().pending;
        for _ in 0..restored {
            let (id, delivered) = done_rx.recv().await.expect("an outcome");
            assert!(delivered, "restored message {id} was not delivered");
        }
        while let Some(Notification::Error { topic, error }) = notes.try_recv() {
            eprintln!("{topic}: {error}");
        }
        client.close(Duration::from_secs(10)).await.expect("close");
        println!("drained {restored}");
        return;
    }
    drop(done_rx);
    tokio::spawn(async move {
        while let Some(note) = notes.recv().await {
            if let Notification::Error { topic, error } = note {
                eprintln!("{topic}: {error}");
            }
        }
    });
    let run: u64 = run.parse().expect("run");
    let senders: u64 = rest.first().map_or(8, |s| s.parse().expect("senders"));
    let mut tasks = Vec::new();
    for task in 0..senders {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                let seq = run * 1_000_000_000 + task * 1_000_000 + i;
                let mut data = Map::new();
                data.insert("seq".into(), Value::from(seq));
                client
                    .send_event("kill-test", data, Qos::AtLeastOnce)
                    .await
                    .expect("send");
                // One write per line (stdout is line-buffered): in the pipe before the next send.
                let mut out = std::io::stdout().lock();
                writeln!(out, "{seq}").expect("stdout");
                out.flush().expect("stdout");
            }
        }));
    }
    for task in tasks {
        task.await.expect("sender");
    }
}
