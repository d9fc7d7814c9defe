//! `--data-dir` keeps every event it acknowledged: a QoS 1 stream against the `mode-sim` binary,
//! which is killed with SIGKILL and restarted at random points (each time right after a PUBACK
//! arrived, so writes are in flight), then killed once more at the end. The store is then read
//! and every event the simulator PUBACKed must be in it; duplicates (events re-sent because
//! their PUBACK was lost with the process) are counted, not refused.
//!
//! `MODE_SIM_KILLS` (default 30) and `MODE_SIM_KILL_EVENTS` (default 3000) set the size;
//! `scripts/bench` runs a larger one. `MODE_SIM_KILL_SEED` repeats a run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

mod common;

use common::process::SimProcess;
use futures_util::{SinkExt, StreamExt};
use mode_sim::{Cloud, SimConfig};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Codec, Connect, Packet, Publish};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use mode_test_support::{KillOutcome, env_or, next_random, seed};

const DEVICE: u64 = 1001;
/// QoS 1 publishes in flight at once, as a client with an inflight window sends them.
const WINDOW: usize = 64;
/// A bound on the whole run, so a hang fails instead of stalling the test command.
const DEADLINE: Duration = Duration::from_secs(600);

fn event(n: usize) -> Vec<u8> {
    format!(r#"{{"eventType":"kill-test","eventData":{{"n":{n}}}}}"#).into_bytes()
}

async fn run(kills: u64, events: usize, seed: u64) -> KillOutcome {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut random = seed;
    // Kill after these many PUBACKs (cumulative), spread over the stream.
    let mut kill_at: Vec<usize> = (0..kills)
        .map(|_| (next_random(&mut random) % events as u64) as usize)
        .collect();
    kill_at.sort_unstable();
    kill_at.reverse(); // pop() gives the next one

    let mut acked = vec![false; events];
    let mut acked_count = 0;
    let mut killed = 0;
    while acked_count < events {
        let sim = SimProcess::with_data_dir(dir.path()).await;
        let stream = TcpStream::connect(sim.mqtt).await.unwrap();
        let codec = Codec {
            max_incoming_size: 1 << 20,
            max_outgoing_size: 1 << 20,
        };
        let mut conn = Framed::new(stream, codec);
        let mut connect = Connect::new("");
        connect.keep_alive = 30;
        connect.set_login(
            DEVICE.to_string(),
            mode_sim::config::demo_device_key(DEVICE),
        );
        conn.send(Packet::Connect(connect)).await.unwrap();
        match conn.next().await {
            Some(Ok(Packet::ConnAck(ack))) => {
                assert_eq!(ack.code, rumqttc::mqttbytes::v4::ConnectReturnCode::Success)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
        // Everything not acknowledged yet is (re)sent: what was in flight when the last
        // process died may or may not have been kept.
        let mut todo = (0..events)
            .filter(|&n| !acked[n])
            .collect::<Vec<_>>()
            .into_iter();
        let mut in_flight: HashMap<u16, usize> = HashMap::new();
        let mut next_pkid: u16 = 1;
        let mut kill_now = false;
        loop {
            while in_flight.len() < WINDOW {
                let Some(n) = todo.next() else { break };
                let mut publish = Publish::new("/devices/1001/event", QoS::AtLeastOnce, event(n));
                publish.pkid = next_pkid;
                in_flight.insert(next_pkid, n);
                next_pkid = next_pkid % u16::MAX + 1;
                conn.feed(Packet::Publish(publish)).await.unwrap();
            }
            conn.flush().await.unwrap();
            if in_flight.is_empty() || kill_now {
                break;
            }
            match conn.next().await {
                Some(Ok(Packet::PubAck(ack))) => {
                    let n = in_flight
                        .remove(&ack.pkid)
                        .expect("a PUBACK for a sent packet id");
                    if !acked[n] {
                        acked[n] = true;
                        acked_count += 1;
                    }
                }
                other => panic!("expected PUBACK, got {other:?}"),
            }
            if kill_at.last().is_some_and(|&at| acked_count >= at) {
                kill_at.pop();
                kill_now = true;
            }
        }
        // Killed right after a PUBACK, with the next publishes already on their way; or, at
        // the end, once everything was acknowledged.
        sim.kill();
        killed += 1;
        assert!(
            started.elapsed() < DEADLINE,
            "the run took over {DEADLINE:?}"
        );
    }

    let config = SimConfig {
        data_dir: Some(dir.path().to_owned()),
        ..SimConfig::demo()
    };
    let cloud = Cloud::open(&config).expect("the data dir opens after the kills");
    let mut copies = vec![0usize; events];
    for record in cloud.events() {
        let n = record.event.event_data["n"].as_u64().unwrap() as usize;
        copies[n] += 1;
    }
    drop(cloud);
    KillOutcome {
        kills: killed,
        confirmed: acked_count,
        missing: (0..events)
            .filter(|&n| acked[n] && copies[n] == 0)
            .map(|n| n as u64)
            .collect(),
        duplicates: copies.iter().map(|&c| c.saturating_sub(1)).sum(),
        elapsed: started.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_acknowledged_before_a_kill_9_is_in_the_store_after_restart() {
    let kills = env_or("MODE_SIM_KILLS", 30);
    let events = env_or("MODE_SIM_KILL_EVENTS", 3000) as usize;
    let seed = seed("MODE_SIM_KILL_SEED");
    let out = run(kills, events, seed).await;
    assert!(out.kills >= kills, "{out:?}");
    out.check(
        "kill test",
        "MODE_SIM_KILL_SEED",
        seed,
        [
            "kills (SIGKILL + restart)",
            "events acknowledged",
            "acknowledged but missing",
            "duplicates kept",
            "seconds",
        ],
    );
}
