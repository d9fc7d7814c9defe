//! The simulator's MQTT 3.1.1 server with the MODE broker's semantics and restrictions, on
//! rumqttc's packet codec. One connection handler serves TCP, TLS and WebSocket streams alike.
//!
//! Refusals (as MODE's broker): a protocol level other than 4 gets CONNACK 1 (unacceptable
//! protocol version); `cleanSession = false` gets CONNACK 2 (identifier rejected: MQTT 3.1.1
//! requires it for the empty client id MODE uses); a will gets CONNACK 5 (not authorized, as
//! 3.1.1 has no better code); a wrong username or key gets CONNACK 4; the connection limit gets
//! CONNACK 3. Each closes the connection. After CONNECT: a retained or QoS 2 publish, a publish
//! to another device's or an unknown topic, a second CONNECT, and any packet a server never
//! receives close the connection; subscriptions to topics that are not the device's own
//! `command`, `kv` or `bulkData/{label}/response` get SUBACK 0x80; every other one is granted
//! QoS 0.

mod codec;
mod connection;
mod handshake;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::SinkExt;
use mode_core::proto::DeviceId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::codec::MqttCodec;
use self::connection::Connection;
use self::handshake::handshake;
use crate::admission::Pending;
use crate::cloud::Cloud;
use crate::cloud::Transport;

/// How long a new connection may take to send its CONNECT.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a closing connection may take to flush what is left (a client that stopped reading
/// would otherwise hold the task forever).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What every MQTT connection is served with, whatever its transport.
pub(crate) struct Link {
    pub(crate) peer: SocketAddr,
    pub(crate) cloud: Cloud,
    pub(crate) stop: CancellationToken,
    pub(crate) max_packet_size: usize,
    pub(crate) pending: Pending,
}

/// Serves one MQTT connection until it closes, the client breaks a rule, the cloud drops it, or
/// `stop` fires. `certified` is the device a verified client certificate names (TLS in
/// client-certificate mode). Never panics on any input.
pub(crate) async fn serve<S>(io: S, transport: Transport, certified: Option<DeviceId>, link: Link)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Link {
        peer,
        cloud,
        stop,
        max_packet_size,
        pending,
    } = link;
    let evicted = pending.eviction();
    let mut framed = Framed::new(io, MqttCodec::new(max_packet_size, pending));
    let span = tracing::info_span!("mqtt", %peer, %transport, device_id = tracing::field::Empty);
    async move {
        let handshake = handshake(&mut framed, transport, certified, &cloud, &stop);
        let accepted = tokio::select! {
            accepted = handshake => accepted,
            _ = evicted.cancelled() => {
                tracing::info!("closing before CONNECT: pushed out by newer connections holding unfinished CONNECTs (max_unauthenticated)");
                return;
            }
        };
        let Some((guard, keep_alive)) = accepted else {
            return;
        };
        tracing::Span::current().record("device_id", guard.device_id());
        let mut conn = Connection::new(framed, cloud, guard, keep_alive, stop);
        let reason = conn.run().await;
        tracing::info!(%reason, "mqtt connection closed");
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.framed.close()).await;
    }
    .instrument(span)
    .await
}
