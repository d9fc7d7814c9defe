//! Helpers shared by the MQTT integration tests: a demo simulator, rumqttc clients, and a raw
//! codec-level client for packets rumqttc will not send.
#![allow(dead_code)] // each test binary uses a different subset

pub mod http;
pub mod process;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mode_core::proto::SyncMessage;
use mode_sim::{Sim, SimConfig};
use rumqttc::mqttbytes::v4::{Codec, ConnAck, Connect, Packet, Publish};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, QoS};
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

/// A simulator with the demo cloud and `edit` applied to its configuration.
pub async fn demo_with(edit: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut config = SimConfig::demo();
    edit(&mut config);
    Sim::start(config).await.expect("simulator starts")
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

/// Publishes `payload` to `topic` at QoS 1; the PUBACK is [`puback`]'s.
pub async fn publish1(client: &AsyncClient, topic: impl Into<String>, payload: impl Into<Vec<u8>>) {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
}

/// Drives `eventloop` until the next PUBACK arrives.
pub async fn puback(eventloop: &mut EventLoop) {
    next_incoming(eventloop, |p| {
        matches!(p, rumqttc::Packet::PubAck(_)).then_some(())
    })
    .await
}

/// Subscribes to the device's kv topic; the message that answers it (the reload).
pub async fn kv_reload(client: &AsyncClient, eventloop: &mut EventLoop) -> SyncMessage {
    client
        .subscribe("/devices/1001/kv", QoS::AtMostOnce)
        .await
        .unwrap();
    next_sync(eventloop).await
}

/// The next PUBLISH, read as a DDP sync message.
pub async fn next_sync(eventloop: &mut EventLoop) -> SyncMessage {
    SyncMessage::decode(&next_publish(eventloop).await.payload).unwrap()
}

/// A rustls client configuration that trusts the certificate `root`, before its choice of
/// client authentication.
pub fn tls_trusting(
    root: rustls::pki_types::CertificateDer<'static>,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
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

    /// Opens a connection and CONNECTs as D1 with `edit` applied to the packet; asserts the
    /// server then closes the connection, and returns the CONNACK's code (`None`: no CONNACK).
    pub async fn refusal(sim: &Sim, edit: impl FnOnce(&mut Connect)) -> Option<ConnectReturnCode> {
        let mut raw = Raw::open(sim).await;
        let mut connect = Raw::connect_packet(D1, 30);
        edit(&mut connect);
        let code = raw.connect(connect).await.map(|a| a.code);
        raw.expect_closed().await;
        code
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

    /// Sends PINGREQ and asserts the next packet is its PINGRESP: the connection still serves.
    pub async fn ping(&mut self) {
        self.send(Packet::PingReq).await;
        assert_eq!(self.recv().await, Some(Packet::PingResp));
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
