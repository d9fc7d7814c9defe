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
use crate::config::TlsConfig;
use crate::mqtt::Link;
use mode_core::proto::{DeviceId, parse_device_id};

/// How long connections get to close after their listener stops, before they are aborted.
const DRAIN: Duration = Duration::from_secs(2);

/// Builds the TLS acceptor of every TLS listener from PEM files: the server's certificate
/// chain and key and, in client-certificate mode, the CAs that issue client certificates (a
/// client without a valid one is refused in the handshake, with rustls's alert saying why).
pub(crate) fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let read_certs = |path: &Path| {
        let pem = read(path)?;
        let certs = rustls_pemfile::certs(&mut &pem[..])
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("bad certificate PEM {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("no certificate in {}", path.display()));
        }
        Ok(certs)
    };
    let certs = read_certs(&tls.cert)?;
    let key_pem = read(&tls.key)?;
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| format!("bad key PEM {}: {e}", tls.key.display()))?
        .ok_or_else(|| format!("no private key in {}", tls.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("bad client CA {}: {e}", path.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("client CA {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not work together: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The device a TLS client proved to be with its certificate: the subject CN of its (verified)
/// end-entity certificate, when that is a device id in decimal **(ours)**.
pub(crate) fn certified_device(tls: &rustls::ServerConnection) -> Option<DeviceId> {
    let cert = tls.peer_certificates()?.first()?;
    parse_device_id(&subject_common_name(cert)?)
}

/// The subject's common name of a DER certificate. rustls verified the certificate already;
/// this only walks `Certificate → tbsCertificate → subject` for the CN attribute.
fn subject_common_name(der: &[u8]) -> Option<String> {
    /// One DER element: (tag, contents, what follows).
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    const SEQUENCE: u8 = 0x30;
    const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03]; // OID 2.5.4.3
    let (_, cert, _) = element(der).filter(|e| e.0 == SEQUENCE)?;
    let (_, mut tbs, _) = element(cert).filter(|e| e.0 == SEQUENCE)?;
    // [0] version (optional), serial, signature algorithm, issuer, validity, then subject.
    let mut fields = Vec::new();
    while let Some((tag, contents, rest)) = element(tbs) {
        fields.push((tag, contents));
        tbs = rest;
    }
    let skip = if fields.first()?.0 == 0xa0 { 5 } else { 4 };
    let (tag, mut subject) = *fields.get(skip)?;
    if tag != SEQUENCE {
        return None;
    }
    while let Some((_, mut set, rest)) = element(subject) {
        while let Some((_, attribute, next)) = element(set) {
            let (_, oid, value) = element(attribute)?;
            if oid == COMMON_NAME {
                let (_, text, _) = element(value)?;
                return String::from_utf8(text.to_vec()).ok();
            }
            set = next;
        }
        subject = rest;
    }
    None
}

/// What an accept loop serves.
#[derive(Clone)]
pub(crate) enum Flavor {
    Tcp,
    Tls(TlsAcceptor),
    WebSocket,
    /// MQTT over WebSocket over TLS (`wss://`).
    WebSocketTls(TlsAcceptor),
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
    use crate::mqtt::serve;
    let link = Link {
        peer,
        cloud,
        stop,
        max_packet_size,
        pending,
    };
    match flavor {
        Flavor::Tcp => serve(stream, Transport::Mqtt, None, link).await,
        Flavor::Tls(acceptor) => {
            if let Some(tls) = accept_tls(&acceptor, stream, &link).await {
                let certified = certified_device(tls.get_ref().1);
                serve(tls, Transport::MqttTls, certified, link).await
            }
        }
        Flavor::WebSocket => serve_websocket(stream, Transport::MqttWs, None, link).await,
        Flavor::WebSocketTls(acceptor) => {
            if let Some(tls) = accept_tls(&acceptor, stream, &link).await {
                let certified = certified_device(tls.get_ref().1);
                serve_websocket(tls, Transport::MqttWss, certified, link).await
            }
        }
    }
}

/// The TLS handshake of a new connection, bounded by the CONNECT timeout; `None` (logged)
/// when it fails: a refused client certificate ends here.
pub(crate) async fn accept_tls(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    link: &Link,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let peer = link.peer;
    let tls = tokio::select! {
        tls = tokio::time::timeout(crate::mqtt::CONNECT_TIMEOUT, acceptor.accept(stream)) => tls,
        _ = link.stop.cancelled() => return None,
    };
    match tls {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(err)) => {
            tracing::info!(%peer, %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            None
        }
    }
}

async fn serve_websocket<S>(
    stream: S,
    transport: Transport,
    certified: Option<DeviceId>,
    link: Link,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // A message or frame holds at most one MQTT packet's worth (its fixed header is at most 5
    // bytes), not tungstenite's default of 64 MiB.
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(link.max_packet_size + 5);
    config.max_frame_size = Some(link.max_packet_size + 5);
    let accept = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        choose_mqtt_subprotocol,
        Some(config),
    );
    let ws = tokio::select! {
        ws = tokio::time::timeout(crate::mqtt::CONNECT_TIMEOUT, accept) => ws,
        _ = link.stop.cancelled() => return,
    };
    let peer = link.peer;
    match ws {
        Ok(Ok(ws)) => {
            // tungstenite may now buffer an unfinished message we cannot see.
            let mut link = link;
            link.pending.hold();
            crate::mqtt::serve(WsBytes::new(ws), transport, certified, link).await
        }
        Ok(Err(err)) => tracing::info!(%peer, %err, "WebSocket handshake failed"),
        Err(_) => tracing::info!(%peer, "WebSocket handshake timed out"),
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
