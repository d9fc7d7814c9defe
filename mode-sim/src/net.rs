//! Listener plumbing of the simulator: accept loops for MQTT over TCP, TLS and WebSocket, the
//! TLS acceptor from PEM files, and the adapter that turns WebSocket binary frames into bytes.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, Pending};
use crate::cloud::{Cloud, Transport};

/// How long connections get to close after their listener stops, before they are aborted.
const DRAIN: Duration = Duration::from_secs(2);

/// Builds a TLS acceptor from a PEM certificate chain and a PEM private key.
pub(crate) fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate PEM {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| format!("bad key PEM {}: {e}", key.display()))?
        .ok_or_else(|| format!("no private key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not work together: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What an accept loop serves.
#[derive(Clone)]
pub(crate) enum Flavor {
    Tcp,
    Tls(TlsAcceptor),
    WebSocket,
}

/// Accepts MQTT connections on `listener` until `stop` fires, then waits for its connections
/// to close (they see `stop` too) and drops the listener, freeing the port.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    flavor: Flavor,
    cloud: Cloud,
    stop: CancellationToken,
    max_packet_size: usize,
    admission: Arc<Admission>,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (cloud, stop, flavor) = (cloud.clone(), stop.clone(), flavor.clone());
        let pending = admission.admit();
        conns.spawn(serve_stream(
            stream,
            peer,
            flavor,
            cloud,
            stop,
            max_packet_size,
            pending,
        ));
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        conns.shutdown().await;
    }
}

async fn serve_stream(
    stream: TcpStream,
    peer: SocketAddr,
    flavor: Flavor,
    cloud: Cloud,
    stop: CancellationToken,
    max_packet_size: usize,
    pending: Pending,
) {
    use crate::mqtt::{CONNECT_TIMEOUT, serve};
    match flavor {
        Flavor::Tcp => {
            let transport = Transport::Mqtt;
            serve(
                stream,
                peer,
                transport,
                cloud,
                stop,
                max_packet_size,
                pending,
            )
            .await
        }
        Flavor::Tls(acceptor) => {
            let tls = tokio::select! {
                tls = tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(stream)) => tls,
                _ = stop.cancelled() => return,
            };
            match tls {
                Ok(Ok(tls)) => {
                    let transport = Transport::MqttTls;
                    serve(tls, peer, transport, cloud, stop, max_packet_size, pending).await
                }
                Ok(Err(err)) => tracing::info!(%peer, %err, "TLS handshake failed"),
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
            }
        }
        Flavor::WebSocket => {
            // A message or frame holds at most one MQTT packet's worth (its fixed header is at
            // most 5 bytes), not tungstenite's default of 64 MiB.
            let mut config = WebSocketConfig::default();
            config.max_message_size = Some(max_packet_size + 5);
            config.max_frame_size = Some(max_packet_size + 5);
            let accept = tokio_tungstenite::accept_hdr_async_with_config(
                stream,
                choose_mqtt_subprotocol,
                Some(config),
            );
            let ws = tokio::select! {
                ws = tokio::time::timeout(CONNECT_TIMEOUT, accept) => ws,
                _ = stop.cancelled() => return,
            };
            match ws {
                Ok(Ok(ws)) => {
                    // tungstenite may now buffer an unfinished message we cannot see.
                    let mut pending = pending;
                    pending.hold();
                    let io = WsBytes::new(ws);
                    let transport = Transport::MqttWs;
                    serve(io, peer, transport, cloud, stop, max_packet_size, pending).await
                }
                Ok(Err(err)) => tracing::info!(%peer, %err, "WebSocket handshake failed"),
                Err(_) => tracing::info!(%peer, "WebSocket handshake timed out"),
            }
        }
    }
}

/// Answers with subprotocol `mqtt` when the client offers it (MQTT 3.1.1 §6 requires the
/// client to offer it; we also accept clients that offer none).
#[allow(clippy::result_large_err)] // the signature is tungstenite's
fn choose_mqtt_subprotocol(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let offers_mqtt = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("mqtt"));
    if offers_mqtt {
        resp.headers_mut().insert(
            "sec-websocket-protocol",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static("mqtt"),
        );
    }
    Ok(resp)
}

/// A WebSocket seen as a byte stream: binary frames in, binary frames out (one per write).
/// Ping/pong are handled by tungstenite; text frames are a protocol error.
pub(crate) struct WsBytes<S> {
    ws: WebSocketStream<S>,
    read_buf: Bytes,
}

impl<S> WsBytes<S> {
    pub(crate) fn new(ws: WebSocketStream<S>) -> Self {
        WsBytes {
            ws,
            read_buf: Bytes::new(),
        }
    }
}

fn ws_err(err: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::other(err)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.read_buf.is_empty() {
                let n = self.read_buf.len().min(buf.remaining());
                buf.put_slice(&self.read_buf[..n]);
                self.read_buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(data))) => self.read_buf = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame on an MQTT WebSocket (MQTT uses binary frames)",
                    )));
                }
                Some(Ok(_)) => {} // ping, pong, raw frames
                Some(Err(err)) => return Poll::Ready(Err(ws_err(err))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(ws_err)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(data)))
            .map_err(ws_err)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(ws_err)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(ws_err)
    }
}
