//! The WebSockets: a device's command and kv sync channels, and an app's stream of its home's
//! events. One loop serves all three: text frames out, pings on an interval, pause and drop.

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use mode_core::proto::{Command, DeviceId, HomeEvent, SyncMessage, parse_device_id};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;

use super::auth::Callers;
use super::error::ApiError;
use super::{AppState, Call, SocketTicket, rest};
use crate::cloud::{
    Cloud, CloudError, ConnectionGuard, KvSubscription, RawChannel, RawPublish, Subscription,
    Transport,
};

type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;

fn upgrade_or_refuse(upgrade: Upgrade, max_body: usize) -> Result<WebSocketUpgrade, ApiError> {
    match upgrade {
        Ok(upgrade) => Ok(upgrade.max_message_size(max_body).max_frame_size(max_body)),
        Err(rejection) => Err(ApiError::new(
            rejection.status(),
            "WEBSOCKET_REQUIRED",
            format_args!("this endpoint is a WebSocket: {}", rejection.body_text()),
        )),
    }
}

/// True when the request asks for a WebSocket (`Upgrade: websocket`).
fn wants_websocket(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Checks a device WebSocket request and registers the connection with the cloud (which
/// counts the attempt, accepted or refused, like an MQTT CONNECT).
fn connect(call: &Call, upgrade: Upgrade) -> Result<(WebSocketUpgrade, ConnectionGuard), ApiError> {
    let (app, raw_id) = (&call.app, call.segment(1));
    let upgrade = upgrade_or_refuse(upgrade, app.options.max_body)?;
    let device_id = match call.device(Callers::Device) {
        Ok(id) => id,
        Err(err) => {
            if let Some(id) = parse_device_id(raw_id)
                && app.cloud.device_info(id).is_ok()
            {
                app.cloud.count_refused_connect(id);
            }
            return Err(err);
        }
    };
    let key = call.key.connection_key()?;
    let guard = app
        .cloud
        .connect_device_with(device_id, key, Transport::WebSocket)?;
    Ok((upgrade, guard))
}

/// `GET /devices/{id}/command` (WebSocket).
pub(crate) async fn command_socket(call: Call, upgrade: Upgrade) -> Result<Response, ApiError> {
    device_socket(&call, upgrade, RawChannel::Command, |cloud, guard| {
        Ok((Feed::Commands(cloud.subscribe_commands(guard)?), None))
    })
}

/// `GET /devices/{id}/kv`: the sync WebSocket, or without an upgrade the list of keys.
pub(crate) async fn kv_socket_or_list(
    call: Call,
    headers: HeaderMap,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    if !wants_websocket(&headers) {
        return rest::kv_list(&call);
    }
    device_socket(&call, upgrade, RawChannel::Kv, |cloud, guard| {
        let (reload, changes) = cloud.subscribe_kv(guard)?;
        Ok((
            Feed::Kv(changes),
            Some(SyncMessage::Reload(reload).encode()),
        ))
    })
}

/// A device's socket of `channel`: connects it, and subscribes it with `subscribe` (which
/// gives the feed and the first message, if any) and to the raw publishes of the channel.
fn device_socket(
    call: &Call,
    upgrade: Upgrade,
    channel: RawChannel,
    subscribe: impl FnOnce(&Cloud, &ConnectionGuard) -> Result<(Feed, Option<Vec<u8>>), CloudError>,
) -> Result<Response, ApiError> {
    let (upgrade, guard) = connect(call, upgrade)?;
    let cloud = &call.app.cloud;
    // Subscribed before the 101 goes out: a message sent once the client sees it arrives.
    let (feed, first) = subscribe(cloud, &guard)?;
    let raw = cloud.subscribe_raw(&guard)?;
    let raw = Some((channel, raw));
    Ok(spawn_socket(
        &call.app,
        upgrade,
        Some(guard),
        feed,
        raw,
        first,
    ))
}

/// `GET /homes/{home}/events` (WebSocket) **(ours)**: an app's stream of a home's events.
pub(crate) async fn home_events_socket(call: Call, upgrade: Upgrade) -> Result<Response, ApiError> {
    let (home, _) = call.home()?;
    let app = &call.app;
    let upgrade = upgrade_or_refuse(upgrade, app.options.max_body)?;
    let events = app.cloud.subscribe_home(home)?;
    tracing::info!(home, "app subscribed to home events over WebSocket");
    Ok(spawn_socket(
        app,
        upgrade,
        None,
        Feed::Home(events),
        None,
        None,
    ))
}

/// What a socket streams.
enum Feed {
    Commands(Subscription<Command>),
    Kv(KvSubscription),
    Home(Subscription<HomeEvent>),
}

impl Feed {
    async fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            Feed::Commands(s) => s.recv().await.map(|c| c.encode()),
            Feed::Kv(s) => s.recv().await.map(|m| m.encode()),
            Feed::Home(s) => s.recv().await.map(|e| e.encode()),
        }
    }

    /// Moves the feed into its own task and hands back a channel of its frames. The socket
    /// loop selects over several things at once and would drop a message that a fault-delayed
    /// `KvSubscription::recv` had already taken; a channel's `recv` loses nothing.
    /// The raw publishes of `raw`'s channel (a test control) join the same channel from a task
    /// of their own.
    fn into_channel(
        self,
        raw: Option<(RawChannel, Subscription<RawPublish>)>,
    ) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(1);
        if let Some((channel, raw)) = raw {
            let published =
                stream::unfold(
                    raw,
                    |mut raw| async move { raw.recv().await.map(|p| (p, raw)) },
                );
            let ours = published.filter_map(move |p| {
                std::future::ready((p.channel == channel).then(|| p.payload.to_vec()))
            });
            tokio::spawn(forward(ours, tx.clone()));
        }
        let frames = stream::unfold(self, |mut feed| async move {
            feed.next().await.map(|frame| (frame, feed))
        });
        tokio::spawn(forward(frames, tx));
        rx
    }
}

/// Sends each of `frames` into `tx` until the frames end or the receiver is gone.
async fn forward(frames: impl Stream<Item = Vec<u8>>, tx: mpsc::Sender<Vec<u8>>) {
    let mut frames = std::pin::pin!(frames);
    loop {
        let next = tokio::select! {
            next = frames.next() => next,
            _ = tx.closed() => return,
        };
        let Some(frame) = next else { return };
        if tx.send(frame).await.is_err() {
            return;
        }
    }
}

fn spawn_socket(
    app: &AppState,
    upgrade: WebSocketUpgrade,
    guard: Option<ConnectionGuard>,
    feed: Feed,
    raw: Option<(RawChannel, Subscription<RawPublish>)>,
    first: Option<Vec<u8>>,
) -> Response {
    let link = Link {
        device_id: guard.as_ref().map(ConnectionGuard::device_id),
        guard,
        stop: app.stop.clone(),
        ping_every: app.options.ping_interval,
        _ticket: app.sockets.open(),
    };
    let frames = feed.into_channel(raw);
    upgrade.on_upgrade(move |socket| link.run(socket, frames, first))
}

/// One open socket's state.
struct Link {
    guard: Option<ConnectionGuard>,
    device_id: Option<DeviceId>,
    stop: CancellationToken,
    ping_every: Duration,
    _ticket: SocketTicket,
}

/// What the socket loop woke up for.
enum Wake {
    Stop,
    Dropped,
    Paused,
    Ping,
    Frame(Option<Vec<u8>>),
    Inbound(Option<Result<Message, axum::Error>>),
}

fn text(frame: Vec<u8>) -> Message {
    // mode-core's encoders write JSON, which is UTF-8; the lossy path is never taken.
    let text = String::from_utf8(frame)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Message::Text(Utf8Bytes::from(text))
}

impl Link {
    async fn dropped(&self) {
        match &self.guard {
            Some(guard) => guard.cancelled().await,
            None => std::future::pending().await,
        }
    }

    async fn paused(&self) {
        match &self.guard {
            Some(guard) => guard.paused().await,
            None => std::future::pending().await,
        }
    }

    /// Sends `msg`; false when the socket failed or the connection must end meanwhile (a client
    /// that stops reading must not hold a stop or a drop up).
    async fn send(&self, socket: &mut WebSocket, msg: Message) -> bool {
        tokio::select! {
            sent = socket.send(msg) => sent.is_ok(),
            _ = self.stop.cancelled() => false,
            _ = self.dropped() => false,
        }
    }

    /// Waits out a pause of the connection (or until it must close).
    async fn hold(&mut self) {
        tracing::info!(
            device_id = self.device_id,
            "WebSocket paused by a test control"
        );
        if let Some(guard) = self.guard.as_mut() {
            tokio::select! {
                _ = guard.wait_unpaused() => {}
                _ = self.stop.cancelled() => {}
            }
        }
    }

    async fn run(
        mut self,
        mut socket: WebSocket,
        mut frames: mpsc::Receiver<Vec<u8>>,
        first: Option<Vec<u8>>,
    ) {
        let reason = self.serve(&mut socket, &mut frames, first).await;
        tracing::info!(device_id = self.device_id, reason, "WebSocket closed");
    }

    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        frames: &mut mpsc::Receiver<Vec<u8>>,
        first: Option<Vec<u8>>,
    ) -> &'static str {
        if let Some(first) = first
            && !self.send(socket, text(first)).await
        {
            return "sending the first message failed";
        }
        let mut ping = interval_at(Instant::now() + self.ping_every, self.ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let wake = tokio::select! {
                biased;
                _ = self.stop.cancelled() => Wake::Stop,
                _ = self.dropped() => Wake::Dropped,
                _ = self.paused() => Wake::Paused,
                _ = ping.tick() => Wake::Ping,
                frame = frames.recv() => Wake::Frame(frame),
                inbound = socket.recv() => Wake::Inbound(inbound),
            };
            match wake {
                Wake::Stop => {
                    let close = CloseFrame {
                        code: close_code::AWAY,
                        reason: Utf8Bytes::from_static("the simulator stopped its listeners"),
                    };
                    let _ = tokio::time::timeout(
                        Duration::from_millis(200),
                        socket.send(Message::Close(Some(close))),
                    )
                    .await;
                    return "the simulator stopped its listeners";
                }
                // Like a lost link: no close frame.
                Wake::Dropped => return "the cloud dropped the connection",
                Wake::Paused => {
                    self.hold().await;
                    ping.reset();
                }
                Wake::Ping => {
                    if !self.send(socket, Message::Ping(Bytes::new())).await {
                        return "sending a ping failed";
                    }
                }
                Wake::Frame(Some(frame)) => {
                    if !self.send(socket, text(frame)).await {
                        return "sending a message failed";
                    }
                }
                Wake::Frame(None) => {
                    let close = CloseFrame {
                        code: close_code::AGAIN,
                        reason: Utf8Bytes::from_static("the client fell behind; reconnect"),
                    };
                    let _ = self.send(socket, Message::Close(Some(close))).await;
                    return "the stream ended (the subscriber fell behind)";
                }
                Wake::Inbound(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                    return "the client closed the connection";
                }
                Wake::Inbound(Some(Ok(Message::Text(_) | Message::Binary(_)))) => {
                    tracing::debug!(
                        device_id = self.device_id,
                        "ignoring a data frame from the client (these sockets only send)"
                    );
                }
                Wake::Inbound(Some(Ok(_))) => {} // pings are answered by the library; pongs
            }
        }
    }
}
