//! The simulator's HTTP/1.1 server: MODE's REST API and its WebSockets for devices and apps,
//! plus the admin API that drives the test controls over HTTP. Every body is mode-core's type.
//!
//! # Authentication
//! `Authorization: ModeCloud <key>` on every route, or `?authToken=<key>` in the query (meant
//! for WebSocket clients that cannot set headers, accepted everywhere). A device key acts only
//! on its own device; an app key only on devices and homes its configuration lets it see.
//!
//! # Routes
//! Device side (device key):
//! - `PUT /devices/{id}/event`: an [`Event`](mode_core::proto::Event) body; `204`.
//! - `GET /devices/{id}`: [`DeviceInfo`](mode_core::proto::DeviceInfo) (apps may read it too).
//! - `GET /devices/{id}/command` upgraded to a WebSocket: each command is one text frame
//!   holding a [`Command`](mode_core::proto::Command).
//! - `GET /devices/{id}/kv` upgraded to a WebSocket: a `reload`
//!   [`SyncMessage`](mode_core::proto::SyncMessage) first, then every `set`/`delete`, one text
//!   frame each (through the device's sync faults, see the admin API).
//! - `POST /deviceRegistration`: turns claim mode on. Body as MODE documents it, form
//!   (`deviceId=1001&claimable=1&duration=300`) or the same fields in JSON, or empty; `deviceId`,
//!   when given, must be the key's device; `duration` is ignored **(ours: claim mode always
//!   lasts [`CLAIM_DURATION`](crate::cloud::CLAIM_DURATION))**. `200`
//!   `{"claimExpirationTime": "<RFC 3339>"}`. With `claimable` `0` or `false` (what MODE's Go
//!   SDK's `DisableClaimMode` sends) it turns claim mode off: `204`.
//!
//! Both WebSockets send a ping frame every [`HttpOptions::ping_interval`] and never drop a client
//! that does not answer with a pong. Each registers as a device connection, so the test
//! controls can drop it (the socket is then closed without a close frame, like a lost link) or
//! pause it (nothing is read or sent, pings included, until resumed). When the listeners stop,
//! the socket gets a close frame with code 1001. Data frames from the client are ignored.
//!
//! Device or app (an app key that sees the device's home):
//! - `GET /devices/{id}/kv`: every key, as mode-core's list form (`encode_kv_list`): an array
//!   of `{"key", "value", "modificationTime"}`.
//! - `GET /devices/{id}/kv/{key}`: one [`KvItem`](mode_core::proto::KvItem); `404` when absent.
//! - `PUT /devices/{id}/kv/{key}`: body `{"value": <any JSON>}`
//!   ([`KvValue`](mode_core::proto::KvValue)); `204`.
//! - `DELETE /devices/{id}/kv/{key}`: `204`; `404` when absent.
//!
//! The key is one percent-encoded path segment and must follow the key rule of docs/protocol.md
//! (`400 INVALID_KEY` otherwise). Every change is broadcast to the device's sync channels and
//! emits `_deviceKVSaved_` / `_deviceKVDeleted_` to its home.
//!
//! App side (app key):
//! - `PUT /devices/{id}/command`: a [`Command`](mode_core::proto::Command) body; `204` whether
//!   or not the device is online.
//! - `GET /homes/{homeId}/events` upgraded to a WebSocket **(ours)**: every event delivered to
//!   the home from then on, device events and system events alike, one text frame each holding
//!   a [`HomeEvent`](mode_core::proto::HomeEvent) (`homeId`, `timestamp`, `eventType`,
//!   `eventData`, `originDeviceId` for device events). Pings as above.
//! - `POST /homes/{homeId}/devices` **(ours)**: claims a device that is in claim mode into the
//!   home. Body `{"deviceId": 1003}`; `200` with the device's `DeviceInfo`; `409
//!   DEVICE_NOT_CLAIMABLE` when it is not in claim mode.
//!
//! No key needed:
//! - `POST /devices` **(ours)**: provisions a new device with a project's provisioning token.
//!   Body `{"token": "<provisioning token>"}`; `201` with the new device's `DeviceInfo` plus
//!   its key: `{"id", "projectId", "name", "tag", "deviceClass", "apiKey"}`; `401
//!   INVALID_TOKEN` for an unknown token.
//! - `GET /auth`: who the key is, as MODE answers it: `{"type": "device", "deviceId",
//!   "projectId"}`, **(ours)** `{"type": "app", "projectId"}`, or `{"type": "nobody"}`.
//!
//! Admin API: see [`admin`] (its own key, `admin_key` in the configuration).
//!
//! # Errors
//! Every refusal is JSON [`ErrorBody`](mode_core::proto::ErrorBody)
//! `{"reason": "...", "data": {"message": "...", ...}}`: `401 AUTH_FAILED` (missing or unknown
//! key), `403 FORBIDDEN` (a device key on another device, an app outside its homes, a caller
//! the endpoint does not serve), `404 DEVICE_NOT_FOUND` / `KEY_NOT_FOUND` / `NOT_FOUND`, `400
//! INVALID_BODY` (what was wrong, from mode-core's `DecodeError`) / `INVALID_KEY`, `413
//! PAYLOAD_TOO_LARGE` (over [`HttpOptions::max_body`]), `405 METHOD_NOT_ALLOWED`, `400
//! WEBSOCKET_REQUIRED` (a WebSocket endpoint asked without an upgrade), `409
//! DEVICE_NOT_CLAIMABLE`, `503 SERVICE_UNAVAILABLE` (over `max_connections`).

pub mod admin;
mod auth;
mod error;
mod rest;
mod ws;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use bytes::Bytes;
use mode_core::proto::DeviceId;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::cloud::{AppAccess, Cloud, HomeId};
use crate::config::SimConfig;
use crate::untrusted::untrusted;
use auth::{ApiKey, Callers, authorize_device, authorize_home};
use error::{ApiError, read_body};

/// How long connections get to close after the listener stops, before they are left behind.
const DRAIN: Duration = Duration::from_secs(2);

/// Settings of the HTTP server.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// How often the WebSockets send a ping frame.
    pub ping_interval: Duration,
    /// Largest request body (and incoming WebSocket message) accepted, in bytes; larger ones
    /// get `413`.
    pub max_body: usize,
    /// The key of the admin API; no admin API without one.
    pub admin_key: Option<String>,
    /// How long a client may take to send a request's headers before its connection is
    /// closed (a client trickling one byte at a time would otherwise hold it forever).
    pub header_timeout: Duration,
}

impl Default for HttpOptions {
    /// Pings every 30 s, 1 MiB bodies, no admin API, 10 s for the headers.
    fn default() -> Self {
        HttpOptions {
            ping_interval: Duration::from_secs(30),
            max_body: 1024 * 1024,
            admin_key: None,
            header_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("ping_interval", &self.ping_interval)
            .field("max_body", &self.max_body)
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<set>"))
            .field("header_timeout", &self.header_timeout)
            .finish()
    }
}

impl HttpOptions {
    /// The HTTP settings of a simulator configuration.
    pub fn from_config(config: &SimConfig) -> Self {
        HttpOptions {
            ping_interval: Duration::from_millis(config.ws_ping_interval_ms.max(1)),
            max_body: config.http_max_body,
            admin_key: config.admin_key.clone().filter(|k| !k.is_empty()),
            header_timeout: Duration::from_millis(config.http_header_timeout_ms.max(1)),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) cloud: Cloud,
    pub(crate) options: Arc<HttpOptions>,
    /// Fires when the listener stops; open WebSockets close on it.
    pub(crate) stop: CancellationToken,
    pub(crate) sockets: Arc<Sockets>,
}

/// A request body as the handlers take it: read by axum within `DefaultBodyLimit`, or why not.
pub(crate) type Body = Result<Bytes, BytesRejection>;

/// One call of the API as a handler sees it: the server's state, the caller's key and the
/// path, with the checks every endpoint makes of them.
pub(crate) struct Call {
    pub(crate) app: AppState,
    pub(crate) key: ApiKey,
    pub(crate) uri: Uri,
}

impl FromRequestParts<AppState> for Call {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Infallible> {
        let Ok(key) = ApiKey::from_request_parts(parts, app).await;
        Ok(Call {
            app: app.clone(),
            key,
            uri: parts.uri.clone(),
        })
    }
}

impl Call {
    /// Segment `index` of the path, as sent (see [`raw_segment`]).
    pub(crate) fn segment(&self, index: usize) -> &str {
        raw_segment(&self.uri, index)
    }

    /// The device of a `/devices/{id}/...` path, once the key may use this endpoint of it
    /// (see [`authorize_device`]).
    pub(crate) fn device(&self, callers: Callers) -> Result<DeviceId, ApiError> {
        authorize_device(&self.app.cloud, &self.key, self.segment(1), callers).map(|(id, _)| id)
    }

    /// The home of a `/homes/{home}/...` path and the app's access, once the key is an app
    /// key that sees it.
    pub(crate) fn home(&self) -> Result<(HomeId, AppAccess), ApiError> {
        authorize_home(&self.app.cloud, &self.key, self.segment(1))
    }

    /// The request body, or the error for one over the size limit or unreadable.
    pub(crate) fn body(&self, body: Body) -> Result<Bytes, ApiError> {
        read_body(body, self.app.options.max_body)
    }
}

/// Counts the open WebSockets (they outlive their HTTP connection), so `serve` can wait for
/// them to close before it returns.
#[derive(Default)]
pub(crate) struct Sockets {
    open: AtomicUsize,
    closed: Notify,
}

/// One open WebSocket; dropping it counts it closed.
pub(crate) struct SocketTicket(Arc<Sockets>);

impl Sockets {
    pub(crate) fn open(self: &Arc<Self>) -> SocketTicket {
        self.open.fetch_add(1, Ordering::SeqCst);
        SocketTicket(self.clone())
    }

    async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            closed.await;
        }
    }
}

impl Drop for SocketTicket {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.closed.notify_waiters();
    }
}

/// Serves the REST + WebSocket API of `cloud` on `listener` until `shutdown` fires; then stops
/// accepting, closes every connection and WebSocket (waiting up to two seconds for them), and
/// returns, which frees the port.
pub async fn serve(
    listener: TcpListener,
    cloud: Cloud,
    options: HttpOptions,
    shutdown: CancellationToken,
) {
    serve_on(listener, None, cloud, options, shutdown).await
}

/// [`serve`] over TLS (HTTPS and `wss://`). With client certificates required by `tls`, a
/// request without an API key acts as the device its certificate names (subject CN = device
/// id) **(ours)**.
pub async fn serve_tls(
    listener: TcpListener,
    tls: TlsAcceptor,
    cloud: Cloud,
    options: HttpOptions,
    shutdown: CancellationToken,
) {
    serve_on(listener, Some(tls), cloud, options, shutdown).await
}

async fn serve_on(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    cloud: Cloud,
    mut options: HttpOptions,
    shutdown: CancellationToken,
) {
    // A zero period would make the ping timer panic.
    options.ping_interval = options.ping_interval.max(Duration::from_millis(1));
    let header_timeout = options.header_timeout;
    let sockets = Arc::new(Sockets::default());
    let state = AppState {
        cloud,
        options: Arc::new(options),
        stop: shutdown.clone(),
        sockets: sockets.clone(),
    };
    let app = router(state);
    let mut conns = JoinSet::new();
    loop {
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%err, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let _ = tcp.set_nodelay(true);
        let (app, stop) = (app.clone(), shutdown.clone());
        match &tls {
            None => {
                conns.spawn(serve_connection(tcp, app, header_timeout, stop));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    // The handshake counts against the header timeout: a client that never
                    // finishes it holds nothing for longer.
                    let tls = tokio::select! {
                        tls = tokio::time::timeout(header_timeout, acceptor.accept(tcp)) => tls,
                        _ = stop.cancelled() => return,
                    };
                    let tls = match tls {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(err)) => return tracing::info!(%err, "HTTPS: TLS handshake failed"),
                        Err(_) => return tracing::info!("HTTPS: TLS handshake timed out"),
                    };
                    let certified = crate::net::certified_device(tls.get_ref().1);
                    let app = app.layer(axum::Extension(auth::Certified(certified)));
                    serve_connection(tls, app, header_timeout, stop).await
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections did not close in time; closing them");
        conns.shutdown().await;
    }
    if tokio::time::timeout(DRAIN, sockets.all_closed())
        .await
        .is_err()
    {
        tracing::warn!("WebSockets did not close in time; leaving them");
    }
}

/// Serves one HTTP/1.1 connection (WebSocket upgrades included) with hyper, which closes it
/// when a request's headers take longer than `header_timeout`. When `stop` fires, the request
/// in progress finishes and the connection closes.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(err = %untrusted(&err), "HTTP connection ended");
    }
}

/// The whole route table.
pub(crate) fn router(state: AppState) -> Router {
    let max_body = state.options.max_body;
    Router::new()
        .route("/auth", get(rest::whoami))
        .route("/devices", post(rest::provision))
        .route("/deviceRegistration", post(rest::register_claim))
        .route("/devices/{id}", get(rest::device_info))
        .route("/devices/{id}/event", put(rest::put_event))
        .route(
            "/devices/{id}/command",
            get(ws::command_socket).put(rest::put_command),
        )
        .route("/devices/{id}/kv", get(ws::kv_socket_or_list))
        .route(
            "/devices/{id}/kv/{key}",
            get(rest::kv_get).put(rest::kv_put).delete(rest::kv_delete),
        )
        .route("/homes/{home}/events", get(ws::home_events_socket))
        .route("/homes/{home}/devices", post(rest::claim_device))
        .merge(admin::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// One debug line per request: method, path, status, time. The query is left out: it may hold
/// an `authToken`.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = tokio::time::Instant::now();
    let response = next.run(req).await;
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "http request"
    );
    response
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format_args!("no such endpoint: {}", untrusted(req.uri().path())),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format_args!(
            "{} is not allowed on {}",
            untrusted(req.method()),
            untrusted(req.uri().path())
        ),
    )
}

/// The raw (still percent-encoded) segments of a request path: `/devices/7/kv/a%2Fb` gives
/// `["devices", "7", "kv", "a%2Fb"]`. Handlers read their parameters here rather than from
/// axum's decoded `Path`, so a key is percent-decoded exactly once, by mode-core.
pub(crate) fn raw_segment(uri: &axum::http::Uri, index: usize) -> &str {
    uri.path()
        .trim_start_matches('/')
        .split('/')
        .nth(index)
        .unwrap_or("")
}
