//! The byte streams the MQTT link runs on: TCP or TLS (from [`tls::connect_to`]), and MQTT over
//! WebSocket (binary frames on such a stream, MQTT 3.1.1 §6). Reads and writes are poll functions
//! that keep their progress in the caller's buffers, so the connection task can stop polling them
//! at any point (it selects on them beside its other work) and lose nothing.

use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::config::{ClientConfig, Transport};
use super::tls;

/// tungstenite reads in chunks of this size (its default, 128 KiB, would be most of an idle
/// device's memory); larger messages still arrive whole.
const WS_READ_CHUNK: usize = 4 * 1024;

pub(crate) enum Socket {
    Stream(tls::Stream),
    WebSocket(Box<WebSocketStream<tls::Stream>>),
}

/// Why a socket could not be opened, with its cause chain (a TLS failure holds the rustls error).
pub(crate) type OpenError = Box<dyn std::error::Error + Send + Sync>;

impl Socket {
    /// Connects to the MQTT endpoint of `config`: its host and port (TLS as configured), or its
    /// MQTT-over-WebSocket URL (`wss://` with TLS), asking for the `mqtt` subprotocol.
    pub(crate) async fn open(
        config: &ClientConfig,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Socket, OpenError> {
        if config.transport != Transport::MqttWebSocket {
            let stream = tls::connect_to(
                &config.mqtt_host,
                config.mqtt_port(),
                config.tls.enabled,
                tls,
            )
            .await?;
            return Ok(Socket::Stream(stream));
        }
        let mut request = config.mqtt_ws_url().into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        let stream = tls::connect(request.uri(), tls).await?;
        // A frame may carry several packets: room for one packet of the largest size and more.
        let limit = config.max_message_size.saturating_mul(2).max(64 * 1024);
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_CHUNK)
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit));
        let (socket, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config)).await?;
        Ok(Socket::WebSocket(Box::new(socket)))
    }

    /// Reads what has arrived onto the end of `buf` (growing it only if it is full); `Ok(0)` at
    /// the end of the stream.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        match self {
            // tokio's `read_buf` fills the spare capacity without initialising it first; the
            // future holds no progress of its own, so polling a fresh one each time loses nothing.
            Socket::Stream(stream) => pin!(stream.read_buf(buf)).poll(cx),
            Socket::WebSocket(ws) => loop {
                let message = ready!(Pin::new(&mut **ws).poll_next(cx));
                match message {
                    Some(Ok(Message::Binary(data))) => {
                        if !data.is_empty() {
                            buf.extend_from_slice(&data);
                            return Poll::Ready(Ok(data.len()));
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(0)),
                    Some(Ok(Message::Text(_))) => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a text frame on MQTT over WebSocket (MQTT travels in binary frames)",
                        )));
                    }
                    // Pings are answered by tungstenite.
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Poll::Ready(Err(ws_error(err))),
                }
            },
        }
    }

    /// Writes all of `buf` (advancing it past what is written) and flushes. Ready once every byte
    /// handed in so far has left, including bytes appended between polls.
    pub(crate) fn poll_write_all(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<()>> {
        match self {
            Socket::Stream(stream) => {
                while !buf.is_empty() {
                    let n = ready!(Pin::new(&mut *stream).poll_write(cx, buf))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    buf.advance(n);
                }
                Pin::new(stream).poll_flush(cx)
            }
            Socket::WebSocket(ws) => {
                if !buf.is_empty() {
                    ready!(Pin::new(&mut **ws).poll_ready(cx)).map_err(ws_error)?;
                    // One frame for the whole batch; tungstenite copies it into its own buffer.
                    let frame = Message::Binary(buf.split().freeze());
                    Pin::new(&mut **ws).start_send(frame).map_err(ws_error)?;
                }
                Pin::new(&mut **ws).poll_flush(cx).map_err(ws_error)
            }
        }
    }
}

/// tungstenite's error as an I/O error, its cause chain kept (a TLS alert stays findable).
fn ws_error(err: tungstenite::Error) -> io::Error {
    match err {
        tungstenite::Error::Io(err) => err,
        other => io::Error::other(other),
    }
}
