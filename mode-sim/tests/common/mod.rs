//! Helpers shared by the MQTT integration tests: a demo simulator, rumqttc clients, and a raw
//! codec-level client for packets rumqttc will not send.
#![allow(dead_code)] // each test binary uses a different subset

pub mod process;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mode_sim::{Sim, SimConfig};
use rumqttc::mqttbytes::v4::{Codec, ConnAck, Connect, Packet, Publish};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

pub const D1: u64 = 1001;
pub const D2: u64 = 1002;
pub const WAIT: Duration = Duration::from_secs(5);

pub fn key(device: u64) -> String {
    mode_sim::config::demo_device_key(device)
}

pub async fn demo() -> Sim {
    Sim::start(SimConfig::demo())
        .await
        .expect("simulator starts")
}

pub fn options(sim: &Sim, device: u64) -> MqttOptions {
    let addr = sim.mqtt_addr();
    let mut opts = MqttOptions::new("", addr.ip().to_string(), addr.port());
    opts.set_credentials(device.to_string(), key(device));
    opts.set_keep_alive(Duration::from_secs(5));
    opts
}

/// A rumqttc client of `device`, connected (CONNACK received).
pub async fn client(sim: &Sim, device: u64) -> (AsyncClient, EventLoop) {
    connect_with(options(sim, device)).await
}

pub async fn connect_with(opts: MqttOptions) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    match tokio::time::timeout(WAIT, eventloop.poll()).await {
        Ok(Ok(Event::Incoming(rumqttc::Packet::ConnAck(ack)))) => {
            assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    (client, eventloop)
}

/// Polls `eventloop` until an incoming packet matches `pick`.
pub async fn next_incoming<T>(
    eventloop: &mut EventLoop,
    mut pick: impl FnMut(&rumqttc::Packet) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(packet)) => {
                    if let Some(found) = pick(&packet) {
                        return found;
                    }
                }
                Ok(Event::Outgoing(_)) => {}
                Err(err) => panic!("connection failed while waiting: {err}"),
            }
        }
    })
    .await;
    found.expect("timed out waiting for a packet")
}

/// The next PUBLISH that arrives.
pub async fn next_publish(eventloop: &mut EventLoop) -> Publish {
    next_incoming(eventloop, |p| match p {
        rumqttc::Packet::Publish(p) => Some(p.clone()),
        _ => None,
    })
    .await
}

/// Drives `eventloop` (answering nothing new) until the SUBACK arrives; returns its codes.
pub async fn suback(eventloop: &mut EventLoop) -> Vec<rumqttc::SubscribeReasonCode> {
    next_incoming(eventloop, |p| match p {
        rumqttc::Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    })
    .await
}

/// Polls until the connection fails; returns the error.
pub async fn until_error(eventloop: &mut EventLoop) -> rumqttc::ConnectionError {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Err(err) = eventloop.poll().await {
                return err;
            }
        }
    })
    .await
    .expect("the connection stayed up")
}

/// The next packet of a raw connection, for tests that time it themselves.
pub trait NextPacket {
    fn next_packet(&mut self) -> impl std::future::Future<Output = Option<Packet>>;
}

impl NextPacket for Framed<TcpStream, Codec> {
    async fn next_packet(&mut self) -> Option<Packet> {
        self.next().await.and_then(Result::ok)
    }
}

/// A client at the packet level, for what rumqttc refuses to send.
pub struct Raw {
    pub framed: Framed<TcpStream, Codec>,
}

impl Raw {
    pub async fn open(sim: &Sim) -> Raw {
        let stream = TcpStream::connect(sim.mqtt_addr()).await.unwrap();
        let codec = Codec {
            max_incoming_size: 10 * 1024 * 1024,
            max_outgoing_size: 10 * 1024 * 1024,
        };
        Raw {
            framed: Framed::new(stream, codec),
        }
    }

    pub fn connect_packet(device: u64, keep_alive: u16) -> Connect {
        let mut connect = Connect::new("");
        connect.keep_alive = keep_alive;
        connect.set_login(device.to_string(), key(device));
        connect
    }

    /// Opens a connection and CONNECTs as `device`; panics unless accepted.
    pub async fn connected(sim: &Sim, device: u64, keep_alive: u16) -> Raw {
        let mut raw = Raw::open(sim).await;
        let ack = raw.connect(Raw::connect_packet(device, keep_alive)).await;
        assert_eq!(
            ack.map(|a| a.code),
            Some(rumqttc::ConnectReturnCode::Success)
        );
        raw
    }

    /// Sends `connect`; the CONNACK, or `None` if the server closed without one.
    pub async fn connect(&mut self, connect: Connect) -> Option<ConnAck> {
        self.send(Packet::Connect(connect)).await;
        match self.recv().await {
            Some(Packet::ConnAck(ack)) => Some(ack),
            None => None,
            Some(other) => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, packet: Packet) {
        self.framed.send(packet).await.unwrap();
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.framed.get_mut().write_all(bytes).await.unwrap();
    }

    /// The next packet, or `None` once the server closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        match tokio::time::timeout(WAIT, self.framed.next()).await {
            Ok(Some(Ok(packet))) => Some(packet),
            Ok(Some(Err(_))) | Ok(None) => None,
            Err(_) => panic!("the server neither answered nor closed within {WAIT:?}"),
        }
    }

    /// Asserts the server closes the connection (skipping packets it sends first).
    pub async fn expect_closed(&mut self) {
        while let Some(packet) = self.recv().await {
            assert!(
                !matches!(packet, Packet::ConnAck(_)),
                "got {packet:?} while expecting the connection to close"
            );
        }
    }
}
