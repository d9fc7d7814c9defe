//! The MQTT framing: rumqttc's packet codec with the simulator's checks on the first packet
//! (a CONNECT, of bounded size, whose protocol level is read even when rumqttc cannot parse it),
//! and the names of packets for the log.

use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::mqttbytes::v4::{Codec, Packet};
use tokio_util::codec::Framed;

use crate::admission::Pending;

/// The largest CONNECT accepted: a client id, a username and a key fit many times over. Until
/// it authenticated, a connection holds no more than this (not `max_packet_size`).
pub(crate) const CONNECT_MAX: usize = 64 * 1024;

/// The largest packet the server writes (MQTT's own limit); reloads of big stores may be large.
const MAX_OUTGOING: usize = 256 * 1024 * 1024 - 1;

pub(super) type Io<S> = Framed<S, MqttCodec>;

/// rumqttc's codec, plus checks on the first packet: it must be a CONNECT (anything else
/// closes at once instead of waiting for a body) of at most [`CONNECT_MAX`] bytes (the length
/// is refused from the fixed header, before the body is buffered); and when rumqttc cannot
/// parse a CONNECT because it is another protocol version (MQTT 5's properties, 3.1's name),
/// the protocol level is peeked so the client still gets CONNACK 1.
pub(crate) struct MqttCodec {
    inner: Codec,
    connected: bool,
    /// The limit once connected.
    max_packet_size: usize,
    /// Until the CONNECT is read: this connection's place among the unauthenticated ones.
    pending: Option<Pending>,
}

/// A framing failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// rumqttc's codec refused the bytes.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The first packet is not a CONNECT.
    #[error("the first packet has type {0}, not CONNECT (1)")]
    NotConnect(u8),
    /// A CONNECT of a protocol level other than 4.
    #[error("CONNECT with protocol level {0}, not 4 (MQTT 3.1.1)")]
    Level(u8),
}

impl From<std::io::Error> for FrameError {
    fn from(err: std::io::Error) -> Self {
        FrameError::Codec(CodecError::Io(err))
    }
}

impl MqttCodec {
    pub(super) fn new(max_packet_size: usize, pending: Pending) -> Self {
        MqttCodec {
            inner: Codec {
                max_incoming_size: max_packet_size.min(CONNECT_MAX),
                max_outgoing_size: MAX_OUTGOING,
            },
            connected: false,
            max_packet_size,
            pending: Some(pending),
        }
    }
}

/// The protocol level of a complete CONNECT frame: after the fixed header (type byte and 1-4
/// bytes of remaining length) come the protocol name (u16 length + bytes) and the level byte.
fn peek_connect_level(frame: &[u8]) -> Option<u8> {
    let mut i = 1;
    while *frame.get(i)? & 0x80 != 0 {
        i += 1;
    }
    let name_at = i + 1;
    let name_len = u16::from_be_bytes([*frame.get(name_at)?, *frame.get(name_at + 1)?]) as usize;
    frame.get(name_at + 2 + name_len).copied()
}

impl tokio_util::codec::Decoder for MqttCodec {
    type Item = Packet;
    type Error = FrameError;

    fn decode(&mut self, src: &mut bytes::BytesMut) -> Result<Option<Packet>, FrameError> {
        if self.connected {
            return Ok(self.inner.decode(src)?);
        }
        match src.first() {
            None => return Ok(None),
            Some(b) if b >> 4 != 1 => return Err(FrameError::NotConnect(b >> 4)),
            Some(_) => {}
        }
        let snapshot = src.clone();
        match self.inner.decode(src) {
            Ok(Some(packet)) => {
                self.connected = true;
                self.inner.max_incoming_size = self.max_packet_size;
                self.pending = None;
                Ok(Some(packet))
            }
            Ok(None) => {
                if let Some(pending) = &mut self.pending {
                    pending.hold();
                }
                Ok(None)
            }
            Err(err) => match peek_connect_level(&snapshot) {
                Some(level) if level != 4 => Err(FrameError::Level(level)),
                _ => Err(err.into()),
            },
        }
    }
}

impl tokio_util::codec::Encoder<Packet> for MqttCodec {
    type Error = FrameError;

    fn encode(&mut self, packet: Packet, dst: &mut bytes::BytesMut) -> Result<(), FrameError> {
        Ok(self.inner.encode(packet, dst)?)
    }
}

/// The name of a packet's type, as the MQTT specification writes it.
pub(super) fn packet_name(p: &Packet) -> &'static str {
    match p {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}
