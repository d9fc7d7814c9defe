//! Helpers of the HTTP REST + WebSocket tests: a demo simulator with an admin key and a second
//! app, one way to make a REST request and judge its answer ([`Req`]), and WebSocket clients.

use std::time::Duration;

use futures_util::StreamExt;
use mode_core::proto::{Command, ErrorBody, HomeEvent, SyncMessage, Value};
use mode_sim::config::{AppKeyConfig, HomeConfig};
use mode_sim::{Sim, SimConfig};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::WAIT;

pub const D1_KEY: &str = "v1.demo-device-1001";
pub const D2_KEY: &str = "v1.demo-device-1002";
pub const APP: &str = "v1.demo-app";
pub const ADMIN: &str = "admin-secret";
/// An app key that sees only home 11, where no demo device lives.
pub const OTHER_APP: &str = "v1.other-home-app";

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The demo cloud with an admin key, 40 ms WebSocket pings, and home 11 seen by [`OTHER_APP`].
pub fn config() -> SimConfig {
    let mut config = SimConfig::demo();
    config.admin_key = Some(ADMIN.into());
    config.ws_ping_interval_ms = 40;
    let project = &mut config.projects[0];
    project.homes.push(HomeConfig {
        id: 11,
        name: "empty home".into(),
    });
    project.app_keys.push(AppKeyConfig {
        key: OTHER_APP.into(),
        homes: Some(vec![11]),
    });
    config
}

pub async fn start(config: SimConfig) -> Sim {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Sim::start(config).await.unwrap()
}

pub async fn sim() -> Sim {
    start(config()).await
}

pub fn url(sim: &Sim, path: &str) -> String {
    format!("http://{}{path}", sim.http_addr().unwrap())
}

/// One REST request: `get`, `put`, `post` or `delete` a path, then `.key(..)` for the
/// `Authorization` header and `.body(..)` for a JSON body (each a new request, so one may serve
/// as the base of several); `send`, `expect`, `json` or `refused` sends it.
#[derive(Clone)]
pub struct Req {
    method: Method,
    path: String,
    key: Option<String>,
    body: Option<String>,
}

pub fn get(path: impl Into<String>) -> Req {
    Req::new(Method::GET, path)
}

pub fn put(path: impl Into<String>) -> Req {
    Req::new(Method::PUT, path)
}

pub fn post(path: impl Into<String>) -> Req {
    Req::new(Method::POST, path)
}

pub fn delete(path: impl Into<String>) -> Req {
    Req::new(Method::DELETE, path)
}

impl Req {
    fn new(method: Method, path: impl Into<String>) -> Req {
        Req {
            method,
            path: path.into(),
            key: None,
            body: None,
        }
    }

    pub fn key(&self, key: &str) -> Req {
        self.key_opt(Some(key))
    }

    /// The key when there is one: `None` sends no `Authorization` header.
    pub fn key_opt(&self, key: Option<&str>) -> Req {
        Req {
            key: key.map(str::to_owned),
            ..self.clone()
        }
    }

    pub fn body(&self, body: &str) -> Req {
        Req {
            body: Some(body.to_owned()),
            ..self.clone()
        }
    }

    /// Sends the request; the status and the body.
    pub async fn send(&self, sim: &Sim) -> (StatusCode, Vec<u8>) {
        let mut req = reqwest::Client::new().request(self.method.clone(), url(sim, &self.path));
        if let Some(key) = &self.key {
            req = req.header("Authorization", format!("ModeCloud {key}"));
        }
        if let Some(body) = &self.body {
            req = req
                .header("Content-Type", "application/json")
                .body(body.clone());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.bytes().await.unwrap().to_vec())
    }

    /// Sends the request and asserts the answer's `status`; returns the body.
    pub async fn expect(&self, sim: &Sim, status: u16) -> Vec<u8> {
        let (got, body) = self.send(sim).await;
        assert_eq!(
            got.as_u16(),
            status,
            "{} {}: {}",
            self.method,
            self.path,
            String::from_utf8_lossy(&body)
        );
        body
    }

    /// Sends the request and asserts a 200 with a JSON body; returns it.
    pub async fn json(&self, sim: &Sim) -> Value {
        serde_json::from_slice(&self.expect(sim, 200).await).unwrap()
    }

    /// Sends the request and asserts a refusal: its status and the `reason` of its JSON error
    /// body. Returns the body.
    pub async fn refused(&self, sim: &Sim, status: u16, reason: &str) -> ErrorBody {
        let body = self.expect(sim, status).await;
        let text = String::from_utf8_lossy(&body).into_owned();
        let what = format!("{} {}: {text}", self.method, self.path);
        let body = ErrorBody::decode(&body).unwrap_or_else(|e| panic!("{e}: {what}"));
        assert_eq!(body.reason, reason, "{what}");
        body
    }
}

pub fn message(body: &ErrorBody) -> String {
    body.data["message"].as_str().unwrap_or_default().to_owned()
}

pub fn ws_request(sim: &Sim, path: &str, key: Option<&str>) -> Request {
    let mut req = format!("ws://{}{path}", sim.http_addr().unwrap())
        .into_client_request()
        .unwrap();
    if let Some(key) = key {
        req.headers_mut()
            .insert("Authorization", format!("ModeCloud {key}").parse().unwrap());
    }
    req
}

pub async fn ws(sim: &Sim, path: &str, key: Option<&str>) -> Ws {
    let req = ws_request(sim, path, key);
    let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// The status a refused WebSocket handshake got.
pub async fn ws_refused(sim: &Sim, path: &str, key: Option<&str>) -> u16 {
    match tokio_tungstenite::connect_async(ws_request(sim, path, key)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        other => panic!("expected a refused handshake, got {other:?}"),
    }
}

/// The next text frame, skipping control frames.
pub async fn next_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no message in time")
            .expect("the socket ended")
            .expect("the socket failed");
        match msg {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next command on a command WebSocket.
pub async fn next_command(ws: &mut Ws) -> Command {
    Command::decode(next_text(ws).await.as_bytes()).unwrap()
}

/// The next message on a kv WebSocket.
pub async fn next_sync(ws: &mut Ws) -> SyncMessage {
    SyncMessage::decode(next_text(ws).await.as_bytes()).unwrap()
}

/// The next event on an app's home event WebSocket.
pub async fn next_home_event(ws: &mut Ws) -> HomeEvent {
    HomeEvent::decode(next_text(ws).await.as_bytes()).unwrap()
}

/// True when no text frame arrives for `quiet`.
pub async fn silent_for(ws: &mut Ws, quiet: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return true,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(_) => return false,
        }
    }
}

/// Waits for the socket to end; returns the close frame's code if the server sent one.
pub async fn closed(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the socket stayed open")
        {
            None | Some(Err(_)) => return None,
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
        }
    }
}

/// An app's command `action` with parameters `{"n": n}` to device 1001; asserts the 204.
pub async fn put_command(sim: &Sim, action: &str, n: u64) {
    let body = json!({"action": action, "parameters": {"n": n}}).to_string();
    put("/devices/1001/command")
        .key(APP)
        .body(&body)
        .expect(sim, 204)
        .await;
}

pub async fn wait_live(sim: &Sim, device: u64, n: usize) {
    assert!(
        sim.cloud()
            .wait_for(WAIT, |c| c.live_connections(device) == n)
            .await,
        "device {device} never had {n} live connections"
    );
}
