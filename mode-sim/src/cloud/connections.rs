//! Device connections: the connect check (key, connection limit, attempt counters) and the
//! [`ConnectionGuard`] a server holds while the socket lives, through which the cloud cancels
//! or pauses it.

use std::fmt;
use std::sync::atomic::Ordering;

use mode_core::proto::DeviceId;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::{Cloud, CloudError};

/// How a device connection reaches the simulator (for logs and stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// MQTT over TCP.
    Mqtt,
    /// MQTT over TLS.
    MqttTls,
    /// MQTT over WebSocket.
    MqttWs,
    /// MQTT over WebSocket over TLS (`wss://`).
    MqttWss,
    /// The HTTP server's device WebSockets.
    WebSocket,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Mqtt => "mqtt",
            Transport::MqttTls => "mqtt+tls",
            Transport::MqttWs => "mqtt+ws",
            Transport::MqttWss => "mqtt+wss",
            Transport::WebSocket => "websocket",
        })
    }
}

/// CONNECT attempts of one device, accepted and refused (client tests check for reconnect
/// storms with it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectStats {
    /// Attempts whose credentials were accepted.
    pub accepted: u64,
    /// Attempts refused (bad key, or the connection limit).
    pub refused: u64,
}

impl ConnectStats {
    /// Every attempt.
    pub fn total(&self) -> u64 {
        self.accepted + self.refused
    }
}

/// One live device connection, registered with the cloud. Dropping it unregisters it.
pub struct ConnectionGuard {
    cloud: Cloud,
    pub(super) device_id: DeviceId,
    conn_id: u64,
    transport: Transport,
    cancel: CancellationToken,
    paused: watch::Receiver<bool>,
}

impl ConnectionGuard {
    /// The device.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The transport it was registered with.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Resolves when the cloud wants this connection closed (a test dropped it, the simulator
    /// stops, or one of its subscriptions fell behind).
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// True once the connection should close.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// A token that fires with [`ConnectionGuard::cancelled`], for tasks of the connection.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// True while a test has paused the device's connections: read nothing from the socket.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Resolves when a test pauses the connection (at once if it is paused now). Select on it
    /// next to the socket read, then stop reading and await [`ConnectionGuard::wait_unpaused`].
    pub async fn paused(&self) {
        let mut paused = self.paused.clone();
        if paused.wait_for(|paused| *paused).await.is_err() {
            // The cloud forgot the connection; it will never be paused again.
            std::future::pending::<()>().await;
        }
    }

    /// Waits until the connection is no longer paused (or is cancelled).
    pub async fn wait_unpaused(&mut self) {
        tokio::select! {
            _ = self.paused.wait_for(|paused| !*paused) => {}
            _ = self.cancel.cancelled() => {}
        }
    }
}

impl fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionGuard")
            .field("device_id", &self.device_id)
            .field("conn_id", &self.conn_id)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut state = self.cloud.state();
        if let Some(conns) = state.connections.get_mut(&self.device_id) {
            conns.retain(|c| c.id != self.conn_id);
        }
        state.live_total = state.live_total.saturating_sub(1);
        drop(state);
        self.cloud.notify();
    }
}

pub(super) struct ConnEntry {
    pub(super) id: u64,
    pub(super) cancel: CancellationToken,
    pub(super) pause: watch::Sender<bool>,
}

impl Cloud {
    /// A device connection attempt: checks the key, counts the attempt (accepted or refused),
    /// and registers the connection. Keep the guard while the connection lives.
    pub fn connect_device(
        &self,
        device_id: DeviceId,
        api_key: &str,
        transport: Transport,
    ) -> Result<ConnectionGuard, CloudError> {
        self.connect_device_with(device_id, Some(api_key), transport)
    }

    /// [`connect_device`](Self::connect_device), with `api_key` `None` when the device proved
    /// who it is otherwise (a verified client certificate naming it): no key is checked then.
    pub fn connect_device_with(
        &self,
        device_id: DeviceId,
        api_key: Option<&str>,
        transport: Transport,
    ) -> Result<ConnectionGuard, CloudError> {
        let result = self.connect_locked(device_id, api_key, transport);
        match &result {
            Ok(_) => tracing::info!(device_id, %transport, "device connected"),
            Err(err) => tracing::info!(device_id, %transport, %err, "device connection refused"),
        }
        self.notify();
        result
    }

    fn connect_locked(
        &self,
        device_id: DeviceId,
        api_key: Option<&str>,
        transport: Transport,
    ) -> Result<ConnectionGuard, CloudError> {
        let mut state = self.state();
        let verdict = match state.devices.get(&device_id) {
            None => Err(CloudError::UnknownDevice(device_id)),
            Some(d) if api_key.is_some_and(|k| k != d.api_key) => {
                Err(CloudError::WrongDeviceKey(device_id))
            }
            Some(_) if state.live_total >= self.inner.max_connections => {
                Err(CloudError::TooManyConnections(self.inner.max_connections))
            }
            Some(_) => Ok(()),
        };
        let stats = state.connect_stats.entry(device_id).or_default();
        if let Err(err) = verdict {
            stats.refused += 1;
            return Err(err);
        }
        stats.accepted += 1;
        state.live_total += 1;
        let conn_id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        let (pause, paused) = watch::channel(false);
        state
            .connections
            .entry(device_id)
            .or_default()
            .push(ConnEntry {
                id: conn_id,
                cancel: cancel.clone(),
                pause,
            });
        Ok(ConnectionGuard {
            cloud: self.clone(),
            device_id,
            conn_id,
            transport,
            cancel,
            paused,
        })
    }

    /// Counts a refused CONNECT whose credentials never reached [`Cloud::connect_device`]
    /// (e.g. a refused protocol level), when the username named a device.
    pub fn count_refused_connect(&self, device_id: DeviceId) {
        self.state()
            .connect_stats
            .entry(device_id)
            .or_default()
            .refused += 1;
        self.notify();
    }
}
