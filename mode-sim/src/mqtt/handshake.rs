//! The CONNECT handshake: reads the first packet, refuses what MODE's broker refuses (with the
//! CONNACK code it uses), authenticates the device with the cloud and sends CONNACK.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mode_core::proto::{DeviceId, parse_device_id};
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet};
use rumqttc::mqttbytes::{Error as CodecError, Protocol};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::codec::{FrameError, Io, packet_name};
use super::{CLOSE_TIMEOUT, CONNECT_TIMEOUT};
use crate::cloud::{Cloud, CloudError, ConnectionGuard, Transport};
use crate::untrusted::untrusted;

/// Reads the CONNECT and answers it. `Some` when the device is connected.
pub(super) async fn handshake<S>(
    framed: &mut Io<S>,
    transport: Transport,
    certified: Option<DeviceId>,
    cloud: &Cloud,
    stop: &CancellationToken,
) -> Option<(ConnectionGuard, Option<Duration>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = tokio::select! {
        first = tokio::time::timeout(CONNECT_TIMEOUT, framed.next()) => first,
        _ = stop.cancelled() => return None,
    };
    let connect = match first {
        Err(_) => {
            tracing::info!("no CONNECT within {CONNECT_TIMEOUT:?}; closing");
            return None;
        }
        Ok(None) => return None,
        Ok(Some(Ok(Packet::Connect(connect)))) => connect,
        Ok(Some(Err(
            FrameError::Level(level) | FrameError::Codec(CodecError::InvalidProtocolLevel(level)),
        ))) => {
            tracing::info!(
                level,
                "refusing CONNECT: only MQTT 3.1.1 (level 4) is supported"
            );
            refuse(framed, ConnectReturnCode::RefusedProtocolVersion).await;
            return None;
        }
        Ok(Some(Err(FrameError::Codec(CodecError::InvalidProtocol)))) => {
            tracing::info!("refusing CONNECT: protocol name is not MQTT");
            refuse(framed, ConnectReturnCode::RefusedProtocolVersion).await;
            return None;
        }
        Ok(Some(Err(err))) => {
            tracing::info!(err = %untrusted(&err), "malformed first packet; closing");
            return None;
        }
        Ok(Some(Ok(other))) => {
            tracing::info!(packet = ?packet_name(&other), "first packet is not CONNECT; closing");
            return None;
        }
    };
    let device_id = connect
        .login
        .as_ref()
        .and_then(|l| parse_device_id(&l.username));
    let refusal = if connect.protocol != Protocol::V4 {
        Some((
            ConnectReturnCode::RefusedProtocolVersion,
            "only MQTT 3.1.1 is supported",
        ))
    } else if !connect.clean_session {
        Some((
            ConnectReturnCode::BadClientId,
            "persistent sessions are not supported (cleanSession must be true)",
        ))
    } else if connect.last_will.is_some() {
        Some((
            ConnectReturnCode::NotAuthorized,
            "will messages are not supported",
        ))
    } else if device_id.is_none() {
        Some((
            ConnectReturnCode::BadUserNamePassword,
            "username must be the device id in decimal",
        ))
    } else if certified.is_some_and(|c| Some(c) != device_id) {
        Some((
            ConnectReturnCode::NotAuthorized,
            "the client certificate names another device than the username",
        ))
    } else {
        None
    };
    if let Some((code, why)) = refusal {
        tracing::info!(?device_id, code = ?code, "refusing CONNECT: {why}");
        if let Some(id) = device_id {
            cloud.count_refused_connect(id);
        }
        refuse(framed, code).await;
        return None;
    }
    let (device_id, password) = match (device_id, connect.login) {
        (Some(id), Some(login)) => (id, login.password),
        _ => return None, // ruled out above
    };
    // With a client certificate for this device, an empty password is enough (ours).
    let key = (certified != Some(device_id) || !password.is_empty()).then_some(&*password);
    let guard = match cloud.connect_device_with(device_id, key, transport) {
        Ok(guard) => guard,
        Err(err) => {
            let code = match err {
                CloudError::TooManyConnections(_) => ConnectReturnCode::ServiceUnavailable,
                _ => ConnectReturnCode::BadUserNamePassword,
            };
            refuse(framed, code).await;
            return None;
        }
    };
    let ack = Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false));
    if let Err(err) = tokio::time::timeout(CONNECT_TIMEOUT, framed.send(ack))
        .await
        .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
    {
        tracing::info!(device_id, %err, "could not send CONNACK");
        return None;
    }
    // MQTT 3.1.1 §3.1.2.10: the server closes after one and a half keepalive periods of silence.
    let keep_alive = (connect.keep_alive > 0)
        .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    Some((guard, keep_alive))
}

async fn refuse<S>(framed: &mut Io<S>, code: ConnectReturnCode)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ack = Packet::ConnAck(ConnAck::new(code, false));
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        framed.send(ack).await?;
        framed.close().await
    })
    .await;
}
