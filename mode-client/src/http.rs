//! The HTTP transport's link: two WebSockets (commands, DDP sync) that receive, and REST
//! requests that send events and kv writes, one at a time so they arrive in order. The
//! connection task drives it like an MQTT connection; incoming frames are handed to the same
//! [`Session`](mode_core::session::Session) under the MQTT topic of their channel, so both
//! transports share one decoder and one mirror.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::Method;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tracing::Instrument;

use super::config::ClientConfig;
use super::error::ClientError;
use super::error::{describe_tls, error_chain, find_rustls_error};
use super::notification::DisconnectReason;
use super::rest::Rest;
use super::tls;
use mode_core::proto::{DeviceId, KvUpdate, KvValue, Topic, TopicKind, rest as paths};

/// What the link reports to the connection task.
#[derive(Debug)]
pub(crate) enum HttpEvent {
    /// Both WebSockets are open; frames follow.
    Connected,
    /// A text frame from the channel of `topic`.
    Frame { topic: String, payload: Vec<u8> },
    /// The REST request of the message in flight ended.
    Sent(Result<(), ClientError>),
    /// The link is gone.
    Lost(DisconnectReason),
}

/// One HTTP link: the sockets' task and the REST request in flight.
pub(crate) struct HttpConn {
    pub events: mpsc::Receiver<HttpEvent>,
    tx: mpsc::Sender<HttpEvent>,
    sockets: JoinHandle<()>,
    request: Option<JoinHandle<()>>,
    pub connected: bool,
    rest: Arc<Rest>,
    closing: watch::Sender<bool>,
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        self.sockets.abort();
        if let Some(request) = &self.request {
            request.abort();
        }
    }
}

type Socket = WebSocketStream<tls::Stream>;

fn ws_base(api_url: &str) -> String {
    match api_url.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}"),
        None => format!("ws://{}", api_url.trim_start_matches("http://")),
    }
}

async fn open(
    config: &ClientConfig,
    tls: &Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<Socket, DisconnectReason> {
    // The HTTP transport always has a REST URL: `build` derives one from `server` if need be.
    let url = format!(
        "{}{path}",
        ws_base(config.api_url.as_deref().unwrap_or_default())
    );
    let network = DisconnectReason::Network;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| network(format!("{url}: {e}")))?;
    let auth = paths::authorization_value(config.api_key.expose())
        .parse()
        .map_err(|_| network("the API key cannot stand in an HTTP header".to_owned()))?;
    request.headers_mut().insert("Authorization", auth);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    // A TLS alert can also arrive during the WebSocket handshake (TLS 1.3 reports a refused
    // client certificate after its own handshake), so both steps are described alike.
    let failed = |err: &(dyn std::error::Error + 'static)| match find_rustls_error(err) {
        Some(tls_err) => DisconnectReason::Tls(describe_tls(tls_err, &url)),
        None => network(format!("{url}: {}", error_chain(err))),
    };
    let connecting = async {
        let stream = tls::connect(request.uri(), tls)
            .await
            .map_err(|e| failed(&e))?;
        match tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config)).await {
            Ok((socket, _)) => Ok(socket),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
                    .into_owned();
                Err(if status == 401 || status == 403 {
                    DisconnectReason::AuthFailed(format!(
                        "the cloud refused device {} on {path} (HTTP {status}: {body})",
                        config.device_id
                    ))
                } else {
                    network(format!("{url}: HTTP {status}: {body}"))
                })
            }
            Err(err) => Err(failed(&err)),
        }
    };
    match tokio::time::timeout(config.connect_timeout, connecting).await {
        Ok(opened) => opened,
        Err(_) => Err(network(format!(
            "{url}: no answer within {:?}",
            config.connect_timeout
        ))),
    }
}

/// Reads one socket until it fails: forwards text frames, answers pings (tungstenite queues the
/// pong and sends it on the next read), pings at the keepalive, and gives up when nothing has
/// arrived for 1.5 keepalives.
async fn read_socket(
    mut socket: Socket,
    topic: String,
    keepalive: Duration,
    tx: mpsc::Sender<HttpEvent>,
    mut closing: watch::Receiver<bool>,
) -> DisconnectReason {
    let dead_after = keepalive.mul_f64(1.5);
    let mut last = Instant::now();
    let mut next_ping = Instant::now() + keepalive;
    loop {
        tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(WsMessage::Text(text))) => {
                    last = Instant::now();
                    let payload = text.as_str().as_bytes().to_vec();
                    if tx.send(HttpEvent::Frame { topic: topic.clone(), payload }).await.is_err() {
                        return DisconnectReason::Closed;
                    }
                }
                Some(Ok(WsMessage::Binary(bytes))) => {
                    last = Instant::now();
                    if tx.send(HttpEvent::Frame { topic: topic.clone(), payload: bytes.to_vec() }).await.is_err() {
                        return DisconnectReason::Closed;
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None => {
                    return DisconnectReason::Network(format!("the cloud closed the {topic} WebSocket"));
                }
                Some(Ok(_)) => last = Instant::now(),
                Some(Err(err)) => return DisconnectReason::Network(format!("{topic} WebSocket: {}", error_chain(&err))),
            },
            () = sleep_until(next_ping) => {
                next_ping = Instant::now() + keepalive;
                if let Err(err) = socket.send(WsMessage::Ping(Vec::new().into())).await {
                    return DisconnectReason::Network(format!("{topic} WebSocket: {}", error_chain(&err)));
                }
            }
            () = sleep_until(last + dead_after) => return DisconnectReason::KeepaliveTimeout(dead_after),
            _ = closing.changed() => {
                // A clean close frame, as the client is leaving on purpose.
                let _ = socket.close(None).await;
                return DisconnectReason::Closed;
            }
        }
    }
}

impl HttpConn {
    /// Opens the command and kv WebSockets in the background.
    pub(crate) fn connect(
        config: Arc<ClientConfig>,
        tls: Arc<rustls::ClientConfig>,
        rest: Arc<Rest>,
    ) -> Self {
        let (tx, events) = mpsc::channel(256);
        let events_tx = tx.clone();
        let (closing, closing_rx) = watch::channel(false);
        let sockets = crate::runtime::spawn(
            async move {
                let id = config.device_id;
                let opened = async {
                    let commands = open(&config, &tls, &paths::command_path(id)).await?;
                    let kv = open(&config, &tls, &paths::kv_path(id)).await?;
                    Ok::<_, DisconnectReason>((commands, kv))
                };
                let (commands, kv) = match opened.await {
                    Ok(sockets) => sockets,
                    Err(reason) => {
                        let _ = events_tx.send(HttpEvent::Lost(reason)).await;
                        return;
                    }
                };
                if events_tx.send(HttpEvent::Connected).await.is_err() {
                    return;
                }
                let keepalive = config.keepalive;
                let commands = Box::pin(read_socket(
                    commands,
                    Topic::command(id).to_string(),
                    keepalive,
                    events_tx.clone(),
                    closing_rx.clone(),
                ));
                let kv = Box::pin(read_socket(
                    kv,
                    Topic::kv(id).to_string(),
                    keepalive,
                    events_tx.clone(),
                    closing_rx,
                ));
                // The first socket to end ends the link; on a close, the other closes too.
                let reason = match futures_util::future::select(commands, kv).await {
                    futures_util::future::Either::Left((reason, other))
                    | futures_util::future::Either::Right((reason, other)) => {
                        if reason == DisconnectReason::Closed {
                            other.await;
                        }
                        reason
                    }
                };
                let _ = events_tx.send(HttpEvent::Lost(reason)).await;
            }
            .in_current_span(),
        );
        HttpConn {
            events,
            tx,
            sockets,
            request: None,
            connected: false,
            rest,
            closing,
        }
    }

    /// Closes both WebSockets with a close frame; the link then reports `Lost(Closed)`.
    pub(crate) fn close(&self) {
        let _ = self.closing.send(true);
    }

    /// True once [`close`](Self::close) was called.
    pub(crate) fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// The outcome of the request in flight has arrived.
    pub(crate) fn request_ended(&mut self) {
        self.request = None;
    }

    /// Sends one outgoing message (`topic`, `payload` as the session encoded it for MQTT) as the
    /// REST request that does the same.
    pub(crate) fn send(&mut self, device_id: DeviceId, topic: &str, payload: &[u8]) {
        let rest = self.rest.clone();
        let tx = self.tx.clone();
        let request = rest_request(device_id, topic, payload);
        self.request = Some(crate::runtime::spawn(
            async move {
                let result = match request {
                    Ok((method, path, body)) => rest.send(method, &path, body).await.map(drop),
                    Err(err) => Err(err),
                };
                let _ = tx.send(HttpEvent::Sent(result)).await;
            }
            .in_current_span(),
        ));
    }
}

/// Why bulk data and data for routing cannot go over the HTTP transport.
pub(crate) const NO_REST_FORM: &str =
    "bulk data and data for routing have no REST form: use an MQTT transport";

/// The REST request for a message the session encoded for MQTT: an event is `PUT` as is, a kv
/// update becomes `PUT` or `DELETE` of the key.
pub(crate) fn rest_request(
    device_id: DeviceId,
    topic: &str,
    payload: &[u8],
) -> Result<(Method, String, Option<Vec<u8>>), ClientError> {
    let parsed =
        Topic::parse(topic).map_err(|_| ClientError::Unsupported("this message over HTTP"))?;
    match parsed.kind {
        TopicKind::Event => Ok((
            Method::PUT,
            paths::event_path(device_id),
            Some(payload.to_vec()),
        )),
        TopicKind::Kv => match KvUpdate::decode(payload)? {
            KvUpdate::Set { key, value } => Ok((
                Method::PUT,
                paths::kv_key_path(device_id, &key)?,
                Some(KvValue { value }.encode()),
            )),
            KvUpdate::Delete { key } => {
                Ok((Method::DELETE, paths::kv_key_path(device_id, &key)?, None))
            }
        },
        _ => Err(ClientError::Unsupported(NO_REST_FORM)),
    }
}

/// What a failed REST send means: the link is lost (network or server trouble: retry on a new
/// link; credentials refused: the engine waits longer), or `None`: the cloud refused this one
/// message, and only it fails.
pub(crate) fn classify_send_error(err: &ClientError) -> Option<DisconnectReason> {
    match err {
        ClientError::Rest {
            status: 401 | 403, ..
        } => Some(DisconnectReason::AuthFailed(format!(
            "REST send refused: {err}"
        ))),
        ClientError::Rest {
            status: 408 | 429 | 500..,
            ..
        }
        | ClientError::Http(_) => Some(DisconnectReason::Network(format!(
            "REST send failed: {err}"
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mode_core::session::Session;
    use serde_json::json;

    #[test]
    fn messages_encoded_for_mqtt_map_to_the_rest_request_that_does_the_same() {
        let session = Session::new(7, 1);
        let event = session
            .event(
                &mode_core::proto::Event::new("t", serde_json::Map::new()),
                mode_core::proto::Qos::AtLeastOnce,
            )
            .unwrap();
        let (method, path, body) = rest_request(7, &event.topic, &event.payload).unwrap();
        assert_eq!((method, path.as_str()), (Method::PUT, "/devices/7/event"));
        assert_eq!(body.unwrap(), event.payload);

        let set = session.kv_set("a b", json!(1)).unwrap();
        let (method, path, body) = rest_request(7, &set.topic, &set.payload).unwrap();
        assert_eq!(
            (method, path.as_str()),
            (Method::PUT, "/devices/7/kv/a%20b")
        );
        assert_eq!(body.unwrap(), br#"{"value":1}"#);

        let delete = session.kv_delete("k").unwrap();
        let (method, path, body) = rest_request(7, &delete.topic, &delete.payload).unwrap();
        assert_eq!(
            (method, path.as_str(), body),
            (Method::DELETE, "/devices/7/kv/k", None)
        );

        let bulk = session
            .bulk_data("echo", b"x", mode_core::proto::Qos::AtMostOnce)
            .unwrap();
        assert!(matches!(
            rest_request(7, &bulk.topic, &bulk.payload),
            Err(ClientError::Unsupported(_))
        ));
    }

    #[test]
    fn send_failures_retry_wait_longer_or_fail_the_message_alone() {
        let rest = |status| ClientError::Rest {
            status,
            reason: None,
            data: serde_json::Value::Null,
        };
        assert!(matches!(
            classify_send_error(&rest(401)),
            Some(DisconnectReason::AuthFailed(_))
        ));
        assert!(matches!(
            classify_send_error(&rest(503)),
            Some(DisconnectReason::Network(_))
        ));
        assert!(matches!(
            classify_send_error(&ClientError::Http("refused".into())),
            Some(DisconnectReason::Network(_))
        ));
        assert!(classify_send_error(&rest(400)).is_none());
        assert!(classify_send_error(&rest(413)).is_none());
    }

    #[test]
    fn the_websocket_base_follows_the_rest_scheme() {
        assert_eq!(
            ws_base("https://api.tinkermode.com"),
            "wss://api.tinkermode.com"
        );
        assert_eq!(ws_base("http://127.0.0.1:8080"), "ws://127.0.0.1:8080");
    }
}
