//! Clients that never authenticate cannot make the simulator hold much memory: a huge
//! unfinished CONNECT, many connections each holding an unfinished CONNECT, an unfinished
//! fragmented WebSocket message, HTTP headers trickled one byte at a time. Each attack runs over
//! real sockets against the `mode-sim` binary; its peak resident memory (`VmHWM`) may grow by
//! less than 64 MiB, and a real device still connects and sends meanwhile.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::process::SimProcess;
use futures_util::{SinkExt, StreamExt};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Codec, ConnectReturnCode, Packet, Publish};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_util::codec::Framed;

const MIB: usize = 1024 * 1024;
/// The most the simulator's peak resident memory may grow during one attack.
const GROWTH_MAX_KIB: u64 = 64 * 1024;
/// Bounds every wait, so a simulator that never closes an attacker fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(20);

/// An MQTT fixed header: CONNECT and the remaining length `len`.
fn connect_header(len: usize) -> Vec<u8> {
    let mut out = vec![0x10];
    let mut len = len;
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            return out;
        }
    }
}

/// Sends `header` then `body_len` bytes of a CONNECT body that never completes, then waits
/// until the simulator closes the connection. Write errors (the server closed first) are the
/// expected outcome, not failures.
async fn unfinished_connect(addr: SocketAddr, header: Vec<u8>, body_len: usize) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    let mut result = tcp.write_all(&header).await;
    while result.is_ok() && sent < body_len {
        let n = chunk.len().min(body_len - sent);
        result = tcp.write_all(&chunk[..n]).await;
        sent += n;
    }
    let mut sink = [0u8; 256];
    while let Ok(n) = tcp.read(&mut sink).await
        && n > 0
    {}
}

/// A real device: connects over MQTT, publishes one QoS 1 event, gets its PUBACK.
async fn device_connects_and_sends(mqtt: SocketAddr) {
    let sent = async {
        let tcp = TcpStream::connect(mqtt).await.unwrap();
        let codec = Codec {
            max_incoming_size: MIB,
            max_outgoing_size: MIB,
        };
        let mut conn = Framed::new(tcp, codec);
        let mut connect = rumqttc::mqttbytes::v4::Connect::new("");
        connect.keep_alive = 30;
        connect.set_login("1001", mode_sim::config::demo_device_key(1001));
        conn.send(Packet::Connect(connect)).await.unwrap();
        match conn.next().await {
            Some(Ok(Packet::ConnAck(ack))) => assert_eq!(ack.code, ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        let mut publish = Publish::new(
            "/devices/1001/event",
            QoS::AtLeastOnce,
            &br#"{"eventType":"still-here","eventData":{}}"#[..],
        );
        publish.pkid = 1;
        conn.send(Packet::Publish(publish)).await.unwrap();
        match conn.next().await {
            Some(Ok(Packet::PubAck(ack))) => assert_eq!(ack.pkid, 1),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), sent)
        .await
        .expect("the device connected and got its PUBACK within 5 s during the attack");
}

/// The simulator started with `args`, once a device has used it, and its resident memory then:
/// the baseline of [`assert_bounded`].
async fn started(args: &[&std::ffi::OsStr]) -> (SimProcess, u64) {
    let sim = SimProcess::start(args).await;
    device_connects_and_sends(sim.mqtt).await;
    let baseline = sim.memory_kib("VmRSS");
    (sim, baseline)
}

/// Asserts the simulator's peak memory grew less than [`GROWTH_MAX_KIB`] since `baseline_kib`.
fn assert_bounded(sim: &SimProcess, baseline_kib: u64, attack: &str) {
    let peak = sim.memory_kib("VmHWM");
    let growth = peak.saturating_sub(baseline_kib);
    println!(
        "{attack}: peak RSS {} KiB, {} KiB over the {} KiB before the attack",
        peak, growth, baseline_kib
    );
    assert!(
        growth < GROWTH_MAX_KIB,
        "{attack}: the simulator's peak RSS grew by {} MiB (limit {} MiB)",
        growth / 1024,
        GROWTH_MAX_KIB / 1024
    );
}

async fn join_all(mut set: JoinSet<()>, what: &str) {
    tokio::time::timeout(DEADLINE, async {
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: the simulator left attackers open for {DEADLINE:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_connects_are_bounded_in_size_and_number() {
    let (sim, baseline) = started(&[]).await;

    // 600 connections announce a CONNECT of 1 MiB - 1 and send all but its last byte: refused
    // at the fixed header (a CONNECT is at most 64 KiB), before the body is buffered.
    let mut attackers = JoinSet::new();
    for _ in 0..600 {
        attackers.spawn(unfinished_connect(
            sim.mqtt,
            connect_header(MIB - 1),
            MIB - 2,
        ));
    }
    device_connects_and_sends(sim.mqtt).await;
    join_all(attackers, "600 x 1 MiB CONNECT").await;

    // 300 connections each hold a 60 KiB CONNECT (under the limit) unfinished: only the
    // newest 128 (max_unauthenticated) are kept; older ones are closed as newer ones come,
    // long before the 10 s CONNECT timeout.
    let mut attackers = JoinSet::new();
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..300 {
        let closed_tx = closed_tx.clone();
        let addr = sim.mqtt;
        attackers.spawn(async move {
            unfinished_connect(addr, connect_header(60 * 1024), 60 * 1024 - 1).await;
            let _ = closed_tx.send(());
        });
    }
    let evicted = tokio::time::timeout(Duration::from_secs(5), async {
        for _ in 0..(300 - 128) {
            closed.recv().await.unwrap();
        }
    })
    .await;
    assert!(
        evicted.is_ok(),
        "connections over max_unauthenticated (128) were not closed within 5 s"
    );
    device_connects_and_sends(sim.mqtt).await;
    assert_bounded(&sim, baseline, "unfinished CONNECTs");
    drop(sim); // closes the 127 still waiting
    join_all(attackers, "300 x 60 KiB CONNECT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_fragmented_websocket_message_is_bounded_by_the_mqtt_packet_limit() {
    let (sim, baseline) = started(&[]).await;

    let mut attackers = JoinSet::new();
    for _ in 0..8 {
        let addr = sim.mqtt_ws;
        attackers.spawn(async move {
            let mut request = format!("ws://{addr}/mqtt").into_client_request().unwrap();
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
            // 45 frames of 1 MiB, none final: one 45 MiB message that never ends.
            let chunk = bytes::Bytes::from(vec![0u8; MIB]);
            for i in 0..45 {
                let opcode = OpCode::Data(if i == 0 { Data::Binary } else { Data::Continue });
                let frame = Frame::message(chunk.clone(), opcode, false);
                if ws.send(Message::Frame(frame)).await.is_err() {
                    break;
                }
            }
            while let Some(Ok(_)) = ws.next().await {}
        });
    }
    device_connects_and_sends(sim.mqtt).await;
    join_all(attackers, "8 x 45 MiB WebSocket message").await;
    assert_bounded(&sim, baseline, "unfinished WebSocket messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_headers_trickled_a_byte_at_a_time_are_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sim.toml");
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo.toml"))
        .unwrap();
    std::fs::write(&config, format!("http_header_timeout_ms = 1000\n{demo}")).unwrap();
    let (sim, baseline) = started(&["--config".as_ref(), config.as_os_str()]).await;

    let request = b"GET /auth HTTP/1.1\r\nHost: sim\r\nX-Slow: ".to_vec();
    let (open_tx, mut open) = tokio::sync::mpsc::unbounded_channel();
    let mut attackers = JoinSet::new();
    for _ in 0..300 {
        let (addr, request, open_tx) = (sim.http, request.clone(), open_tx.clone());
        attackers.spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(&request[..1]).await.unwrap();
            let _ = open_tx.send(());
            let mut sink = [0u8; 256];
            // One more header byte every 200 ms (the attack's pace, not a wait for anything)
            // until the server closes the connection.
            for byte in request[1..].iter().chain(std::iter::repeat(&b'x')) {
                tokio::select! {
                    read = tcp.read(&mut sink) => match read {
                        Ok(n) if n > 0 => continue,
                        _ => return,
                    },
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if tcp.write_all(std::slice::from_ref(byte)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    for _ in 0..300 {
        open.recv().await.unwrap();
    }
    // While the 300 trickle, a device still sends over HTTP and over MQTT.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let status = reqwest::Client::new()
        .put(format!("http://{}/devices/1001/event", sim.http))
        .header("Authorization", "ModeCloud v1.demo-device-1001")
        .body(r#"{"eventType":"still-here","eventData":{}}"#)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 204);
    device_connects_and_sends(sim.mqtt).await;
    join_all(attackers, "300 trickled HTTP headers").await;
    assert_bounded(&sim, baseline, "trickled HTTP headers");
}
