//! REST requests to the MODE API with the device's key: one function that sends, checks the
//! status and turns MODE error bodies into [`ClientError::Rest`]. Every caller (the HTTP link,
//! `device_info`, claim mode, provisioning) goes through it, so each gets the same body limit
//! and the same retry of an idempotent request on a kept connection the server just closed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::config::{ApiKey, ClientConfig, ConfigError};
use super::error::ClientError;
use super::error::{describe_tls, error_chain, find_rustls_error};
use super::tls;
use mode_core::proto::{ErrorBody, rest};

/// Requests to one REST host over HTTP/1.1, one connection kept open between them.
#[derive(Debug)]
pub(crate) struct Rest {
    /// The REST base URL, or why there is none (only a non-HTTP server was given).
    base: Result<String, ConfigError>,
    key: Option<ApiKey>,
    request_timeout: Duration,
    connect_timeout: Duration,
    max_body: usize,
    tls: Arc<rustls::ClientConfig>,
    /// The connection of the last request, for the next one: the HTTP link sends its requests
    /// one after the other, and a new TCP (and TLS) handshake for each would slow it down.
    idle: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Rest {
    pub(crate) fn new(
        config: &ClientConfig,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Self, ClientError> {
        let mut rest = Rest::build(
            config.api_url.as_deref().unwrap_or_default(),
            Some(config.api_key.clone()),
            config.request_timeout,
            config.connect_timeout,
            config.max_message_size,
            tls,
        )?;
        if config.api_url.is_none() {
            rest.base = Err(ConfigError::NoApiUrl {
                server: config.endpoint(),
            });
        }
        Ok(rest)
    }

    /// A client for `base`, sending `key` (if any) in the `Authorization` header.
    pub(crate) fn build(
        base: &str,
        key: Option<ApiKey>,
        request_timeout: Duration,
        connect_timeout: Duration,
        max_body: usize,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Self, ClientError> {
        Ok(Rest {
            base: Ok(base.trim_end_matches('/').to_owned()),
            key,
            request_timeout,
            connect_timeout,
            max_body,
            tls: tls.clone(),
            idle: Mutex::new(None),
        })
    }

    /// Sends `method path` with an optional JSON body; returns the response body of a 2xx.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        let base = self
            .base
            .as_ref()
            .map_err(|e| ClientError::Config(e.clone()))?;
        let url = format!("{base}{path}");
        let (status, bytes) =
            match tokio::time::timeout(self.request_timeout, self.exchange(&url, method, body))
                .await
            {
                Ok(answer) => answer?,
                // `Http`, not `Timeout`: the link retries a send that timed out.
                Err(_) => {
                    return Err(ClientError::Http(format!(
                        "{url}: no answer within {:?}",
                        self.request_timeout
                    )));
                }
            };
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let (reason, data) = match ErrorBody::decode(&bytes) {
            Ok(body) => (Some(body.reason), body.data),
            Err(_) => (None, serde_json::Value::Null),
        };
        Err(ClientError::Rest {
            status: status.as_u16(),
            reason,
            data,
        })
    }

    /// One request and its whole answer, read no further than `max_body` bytes.
    async fn exchange(
        &self,
        url: &str,
        method: Method,
        body: Option<Vec<u8>>,
    ) -> Result<(http::StatusCode, Bytes), ClientError> {
        let failed = |what: &str, err: &(dyn std::error::Error + 'static)| {
            ClientError::Http(match find_rustls_error(err) {
                Some(tls) => describe_tls(tls, url),
                None => format!("{url}: {what}{}", error_chain(err)),
            })
        };
        let uri: Uri = url.parse().map_err(|e| failed("", &e))?;
        // HTTP/1.1 wants the path as the target and the host in `Host` (hyper adds neither).
        let host = uri.host().unwrap_or_default();
        let host = match uri.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .header(header::HOST, host);
        if let Some(key) = &self.key {
            request = request.header(
                header::AUTHORIZATION,
                rest::authorization_value(key.expose()),
            );
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
            .map_err(|e| failed("", &e))?;
        let (connection, response) = self.round_trip(&uri, request).await.map_err(|e| match e {
            Failed::Connect(e) => failed("cannot connect: ", &e),
            Failed::ConnectTimeout => ClientError::Http(format!(
                "{url}: cannot connect within {:?}",
                self.connect_timeout
            )),
            Failed::Request(e) => failed("", &e),
        })?;
        let status = response.status();
        let too_large = |size: u64| ClientError::MessageTooLarge {
            size: usize::try_from(size).unwrap_or(usize::MAX),
            max: self.max_body,
        };
        // A declared length over the limit is refused before a byte of the body is read.
        if let Some(length) = response.body().size_hint().exact()
            && length > self.max_body as u64
        {
            return Err(too_large(length));
        }
        // Otherwise the body is read frame by frame and abandoned (with its connection) as soon
        // as it passes the limit: a broken or hostile server cannot make us hold more.
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| failed("reading the answer: ", &e))?;
            if let Some(data) = frame.data_ref() {
                if bytes.len() + data.len() > self.max_body {
                    return Err(too_large((bytes.len() + data.len()) as u64));
                }
                bytes.extend_from_slice(data);
            }
        }
        let bytes = Bytes::from(bytes);
        // Only a connection whose answer was read to the end can carry the next request.
        self.idle
            .lock()
            .expect("not poisoned")
            .get_or_insert(connection);
        Ok((status, bytes))
    }

    /// Sends `request` on the kept connection, or on a new one when there is none or it has
    /// closed (the server may close an idle connection at any time, even as our request goes
    /// out: then an idempotent request is sent once more, on a new connection).
    async fn round_trip(
        &self,
        uri: &Uri,
        request: Request<Full<Bytes>>,
    ) -> Result<(SendRequest<Full<Bytes>>, Response<Incoming>), Failed> {
        let kept = self.idle.lock().expect("not poisoned").take();
        let mut request = request;
        if let Some(mut connection) = kept
            && connection.ready().await.is_ok()
        {
            let again = request.method().is_idempotent().then(|| copy(&request));
            match connection.try_send_request(request).await {
                Ok(response) => return Ok((connection, response)),
                Err(mut err) => match (err.take_message(), again) {
                    // hyper hands the request back when it was not sent: send it anew.
                    (Some(unsent), _) => request = unsent,
                    // Sent, perhaps, but the connection ended before an answer: the server
                    // closed it as the request went out. Safe to repeat when idempotent.
                    (None, Some(again)) if closed_under_us(err.error()) => {
                        tracing::debug!(err = %err.error(), "the kept connection closed under the request; sending it again on a new one");
                        request = again;
                    }
                    (None, _) => return Err(Failed::Request(err.into_error())),
                },
            }
        }
        let stream =
            match tokio::time::timeout(self.connect_timeout, tls::connect(uri, &self.tls)).await {
                Err(_) => return Err(Failed::ConnectTimeout),
                Ok(stream) => stream.map_err(Failed::Connect)?,
            };
        let (mut connection, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(Failed::Request)?;
        // The driver reads and writes the socket; it ends when `connection` is dropped.
        let driver = crate::runtime::spawn(driver);
        match connection.send_request(request).await {
            Ok(response) => Ok((connection, response)),
            // A connection that failed under the request (under TLS 1.3 a server refuses our
            // client certificate after the handshake, with an alert) shows only "canceled"
            // here; the driver holds the cause, and has it already, or within moments.
            Err(err) => match tokio::time::timeout(Duration::from_secs(1), driver).await {
                Ok(Ok(Err(cause))) if find_rustls_error(&cause).is_some() => {
                    Err(Failed::Request(cause))
                }
                _ => Err(Failed::Request(err)),
            },
        }
    }
}

/// A copy of `request` to send again (its body is a cheap `Bytes` clone).
fn copy(request: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut again = Request::new(request.body().clone());
    *again.method_mut() = request.method().clone();
    *again.uri_mut() = request.uri().clone();
    *again.headers_mut() = request.headers().clone();
    again
}

/// True when a request failed because its connection ended before an answer (closed, reset,
/// cut mid-answer), not because of anything in the request or its answer.
fn closed_under_us(err: &hyper::Error) -> bool {
    if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        source = inner.source();
    }
    false
}

/// Why [`Rest::round_trip`] got no answer.
enum Failed {
    Connect(std::io::Error),
    ConnectTimeout,
    Request(hyper::Error),
}
