//! `--devices N --devices-csv FILE` on the `mode-sim` binary: every device the CSV lists
//! authenticates over MQTT, all of them connected at once (more than the default connection
//! limit of 1024, which the flag must raise), and one of them sends an acknowledged event.

mod common;

use std::net::SocketAddr;

use common::process::SimProcess;
use futures_util::{SinkExt, StreamExt};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Codec, ConnectReturnCode, Packet, PubAck, Publish};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Above the default `max_connections` (1024).
const DEVICES: usize = 1100;

type Conn = Framed<TcpStream, Codec>;

/// CONNECTs as `device` with `key`; the CONNACK's code (`None` when closed without one).
async fn connect(addr: SocketAddr, device: u64, key: &str) -> (Conn, Option<ConnectReturnCode>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let codec = Codec {
        max_incoming_size: 1024 * 1024,
        max_outgoing_size: 1024 * 1024,
    };
    let mut conn = Framed::new(stream, codec);
    let mut packet = rumqttc::mqttbytes::v4::Connect::new("");
    packet.keep_alive = 60;
    packet.set_login(device.to_string(), key);
    conn.send(Packet::Connect(packet)).await.unwrap();
    let code = match tokio::time::timeout(common::WAIT, conn.next()).await {
        Ok(Some(Ok(Packet::ConnAck(ack)))) => Some(ack.code),
        Ok(_) => None,
        Err(_) => panic!("device {device}: no CONNACK within {:?}", common::WAIT),
    };
    (conn, code)
}

/// The CSV's rows as (device id, key), after checking its header and the other columns.
fn read_csv(text: &str) -> Vec<(u64, String)> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("device_id,api_key,project_id,home_id"));
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 4, "{line:?}");
            let project_home = (fields[2], fields[3]);
            assert_eq!(
                project_home,
                ("1", "10"),
                "the demo project and home: {line:?}"
            );
            (fields[0].parse().unwrap(), fields[1].to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_of_the_csv_connects_at_once_and_sends_an_acknowledged_event() {
    // This process holds DEVICES sockets too.
    mode_sim::fd_limit::raise_to_hard().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("devices.csv");
    let count = DEVICES.to_string();
    let sim = SimProcess::start(&[
        "--devices".as_ref(),
        count.as_ref(),
        "--devices-csv".as_ref(),
        csv.as_os_str(),
    ])
    .await;
    let rows = read_csv(&std::fs::read_to_string(&csv).unwrap());
    assert_eq!(rows.len(), DEVICES);
    assert_eq!(rows[0].0, mode_sim::fleet::FLEET_FIRST_ID);

    let mut conns = Vec::new();
    for chunk in rows.chunks(100) {
        let attempts = chunk.iter().map(|(id, key)| connect(sim.mqtt, *id, key));
        for ((conn, code), (id, _)) in futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .zip(chunk)
        {
            assert_eq!(code, Some(ConnectReturnCode::Success), "device {id}");
            conns.push(conn);
        }
    }

    let (id, _) = rows.last().unwrap();
    let conn = conns.last_mut().unwrap();
    let mut event = Publish::new(
        format!("/devices/{id}/event"),
        QoS::AtLeastOnce,
        r#"{"eventType":"fleet","eventData":{}}"#,
    );
    event.pkid = 1;
    conn.send(Packet::Publish(event)).await.unwrap();
    let ack = tokio::time::timeout(common::WAIT, conn.next()).await;
    assert!(
        matches!(ack, Ok(Some(Ok(Packet::PubAck(PubAck { pkid: 1 }))))),
        "{ack:?}"
    );

    // The key is the device's own, not any fleet key.
    let (_, code) = connect(sim.mqtt, rows[0].0, &rows[1].1).await;
    assert_eq!(code, Some(ConnectReturnCode::BadUserNamePassword));
}
