//! The app side of the MODE API, with an app key: commands to devices, a device's key-value
//! store over REST, and a home's event stream over its WebSocket. Bodies are mode-core's types.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use mode_core::proto::rest as paths;
use mode_core::proto::{
    Command, DeviceId, ErrorBody, HomeEvent, KvItem, KvValue, Value, decode_kv_item, decode_kv_list,
};
use serde_json::json;
use tokio_tungstenite::tungstenite;

use crate::device::Follow;
use crate::error::{CliError, Exit, rest_exit, rest_refusal};
use crate::json::{parse_json, parse_object};
use crate::output;
use crate::settings::Settings;

/// A REST client for one base URL and one key (an app key, or a device key for device routes).
#[derive(Debug, Clone)]
pub struct AppClient {
    http: reqwest::Client,
    base: String,
    key: String,
    /// TLS for `wss://` WebSockets: the webpki roots plus the extra CA, if one was given.
    ws_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl AppClient {
    /// A client of `api_url` sending `key`; `ca_file` adds a trusted CA (PEM).
    pub fn new(
        api_url: &str,
        key: &str,
        timeout: Duration,
        ca_file: Option<&Path>,
    ) -> Result<AppClient, CliError> {
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(CliError::usage(format!(
                "invalid API URL {api_url:?}: it must start with http:// or https://"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout);
        let mut ws_tls = None;
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                CliError::usage(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                CliError::usage(format!("CA file {} is not PEM: {e}", path.display()))
            })?;
            builder = builder.add_root_certificate(cert);
            ws_tls = Some(std::sync::Arc::new(ws_tls_config(path, &pem)?));
        }
        let http = builder
            .build()
            .map_err(|e| CliError::other(format!("cannot build the HTTP client: {e}")))?;
        Ok(AppClient {
            http,
            base: api_url.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            ws_tls,
        })
    }

    fn authorization(&self) -> reqwest::header::HeaderValue {
        let mut value =
            reqwest::header::HeaderValue::from_str(&paths::authorization_value(&self.key))
                .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("ModeCloud -"));
        value.set_sensitive(true);
        value
    }

    /// Sends `method path` with an optional JSON body; the body of a 2xx answer.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .header(reqwest::header::AUTHORIZATION, self.authorization());
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let what = format!("{method} {url}");
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&what, &e))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(&what, &e))?;
        if (200..300).contains(&status) {
            return Ok(bytes.to_vec());
        }
        Err(refused(&what, status, &bytes))
    }

    /// `PUT /devices/{id}/command`.
    pub async fn send_command(&self, device: DeviceId, command: &Command) -> Result<(), CliError> {
        self.request(
            reqwest::Method::PUT,
            &paths::command_path(device),
            Some(command.encode()),
        )
        .await
        .map(drop)
    }

    /// `GET /devices/{id}/kv/{key}`.
    pub async fn kv_get(&self, device: DeviceId, key: &str) -> Result<KvItem, CliError> {
        let body = self
            .request(reqwest::Method::GET, &key_path(device, key)?, None)
            .await?;
        decode_kv_item(&body).map_err(|e| CliError::other(e.to_string()))
    }

    /// `PUT /devices/{id}/kv/{key}`.
    pub async fn kv_set(&self, device: DeviceId, key: &str, value: Value) -> Result<(), CliError> {
        self.request(
            reqwest::Method::PUT,
            &key_path(device, key)?,
            Some(KvValue { value }.encode()),
        )
        .await
        .map(drop)
    }

    /// `DELETE /devices/{id}/kv/{key}`.
    pub async fn kv_delete(&self, device: DeviceId, key: &str) -> Result<(), CliError> {
        self.request(reqwest::Method::DELETE, &key_path(device, key)?, None)
            .await
            .map(drop)
    }

    /// `GET /devices/{id}/kv`: every key.
    pub async fn kv_list(&self, device: DeviceId) -> Result<Vec<KvItem>, CliError> {
        let body = self
            .request(reqwest::Method::GET, &paths::kv_path(device), None)
            .await?;
        decode_kv_list(&body).map_err(|e| CliError::other(e.to_string()))
    }

    /// Opens `GET /homes/{homeId}/events` as a WebSocket.
    pub async fn home_events(&self, home: u64) -> Result<HomeEvents, CliError> {
        let url = format!(
            "{}/homes/{home}/events",
            self.base
                .replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1)
        );
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(&url)
            .map_err(|e| CliError::usage(format!("invalid WebSocket URL {url}: {e}")))?;
        request
            .headers_mut()
            .insert(reqwest::header::AUTHORIZATION, self.authorization());
        let connector = self
            .ws_tls
            .clone()
            .map(tokio_tungstenite::Connector::Rustls);
        let (socket, _) =
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector)
                .await
                .map_err(|e| match e {
                    tungstenite::Error::Http(response) => refused(
                        &url,
                        response.status().as_u16(),
                        response.body().as_deref().unwrap_or_default(),
                    ),
                    other => CliError::new(Exit::Connection, format!("{url}: {other}")),
                })?;
        Ok(HomeEvents { socket, url })
    }
}

/// A rustls configuration trusting the webpki roots and the certificates of `pem` (read from
/// `path`), as the REST client and mode-core's client do.
fn ws_tls_config(path: &Path, pem: &[u8]) -> Result<rustls::ClientConfig, CliError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |detail: String| {
        CliError::usage(format!(
            "CA file {} cannot be used: {detail}",
            path.display()
        ))
    };
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("it holds no certificate".into()));
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn key_path(device: DeviceId, key: &str) -> Result<String, CliError> {
    paths::kv_key_path(device, key).map_err(|e| CliError::usage(e.to_string()))
}

/// The error of a non-2xx answer to `what`: its status and what its MODE error body says.
fn refused(what: &str, status: u16, body: &[u8]) -> CliError {
    let (reason, data) = match ErrorBody::decode(body) {
        Ok(body) => (Some(body.reason), body.data),
        Err(_) => (None, Value::Null),
    };
    CliError::new(
        rest_exit(status),
        format!("{what}: {}", rest_refusal(status, reason.as_deref(), &data)),
    )
}

/// A connection or timeout failure of one request, with its cause chain on one line.
fn transport_error(what: &str, err: &reqwest::Error) -> CliError {
    let exit = if err.is_timeout() {
        Exit::Timeout
    } else {
        Exit::Connection
    };
    CliError::new(exit, format!("{what}: {}", mode_client::error_chain(err)))
}

/// A home's event stream.
pub struct HomeEvents {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    url: String,
}

impl HomeEvents {
    /// The next event; `Ok(None)` when the cloud closed the stream.
    pub async fn next(&mut self) -> Result<Option<HomeEvent>, CliError> {
        loop {
            let message = match self.socket.next().await {
                None => return Ok(None),
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    return Err(CliError::new(
                        Exit::Connection,
                        format!("{}: {e}", self.url),
                    ));
                }
            };
            match message {
                tungstenite::Message::Text(text) => {
                    return HomeEvent::decode(text.as_bytes())
                        .map(Some)
                        .map_err(|e| CliError::other(e.to_string()));
                }
                tungstenite::Message::Close(_) => return Ok(None),
                _ => continue,
            }
        }
    }
}

/// The app client of the settings in force (`--app-key` / `MODE_APP_KEY` / profile).
fn app_client(settings: &Settings) -> Result<AppClient, CliError> {
    AppClient::new(
        &settings.api_url(),
        settings.app_key()?,
        settings.wait,
        settings.ca_file(),
    )
}

/// `mode app command DEVICE ACTION [JSON]`.
pub async fn command(
    settings: &Settings,
    json: bool,
    device: DeviceId,
    action: &str,
    parameters: Option<&str>,
) -> Result<(), CliError> {
    let parameters = parse_object("the parameters", parameters)?;
    let command = Command::new(action, parameters);
    app_client(settings)?.send_command(device, &command).await?;
    if json {
        output::json_line(&json!({
            "sent": "command", "deviceId": device, "action": action,
            "parameters": command.parameters,
        }));
    } else {
        output::line(format!(
            "sent command {action} {} to device {device}",
            Value::Object(command.parameters)
        ));
    }
    Ok(())
}

/// What `mode app kv` does.
#[derive(Debug)]
pub enum KvOp<'a> {
    /// Read one key.
    Get(&'a str),
    /// Write one key (JSON text).
    Set(&'a str, &'a str),
    /// Delete one key.
    Delete(&'a str),
    /// Every key.
    List,
}

/// `mode app kv get|set|delete|list DEVICE ...`.
pub async fn kv(
    settings: &Settings,
    json: bool,
    device: DeviceId,
    op: KvOp<'_>,
) -> Result<(), CliError> {
    let app = app_client(settings)?;
    match op {
        KvOp::Get(key) => {
            let item = app.kv_get(device, key).await?;
            if json {
                output::json_line(&item_json(&item));
            } else {
                output::line(item.value.to_string());
            }
        }
        KvOp::Set(key, text) => {
            let value = parse_json("the value", text)?;
            app.kv_set(device, key, value.clone()).await?;
            if json {
                output::json_line(&json!({"deviceId": device, "set": key, "value": value}));
            } else {
                output::line(format!("set {key} = {value} on device {device}"));
            }
        }
        KvOp::Delete(key) => {
            app.kv_delete(device, key).await?;
            if json {
                output::json_line(&json!({"deviceId": device, "deleted": key}));
            } else {
                output::line(format!("deleted {key} on device {device}"));
            }
        }
        KvOp::List => {
            for item in app.kv_list(device).await? {
                if json {
                    output::json_line(&item_json(&item));
                } else {
                    output::line(format!("{} = {}", item.key, item.value));
                }
            }
        }
    }
    Ok(())
}

fn item_json(item: &KvItem) -> Value {
    serde_json::to_value(item).expect("a kv item serializes")
}

/// `mode app events HOME`: the home's events as they arrive.
pub async fn events(
    settings: &Settings,
    json: bool,
    home: u64,
    follow: Follow,
) -> Result<(), CliError> {
    let mut stream = app_client(settings)?.home_events(home).await?;
    output::note(format!("mode: following the events of home {home}"));
    follow
        .run(async || match stream.next().await? {
            None => Err(CliError::new(
                Exit::Connection,
                "the cloud closed the event stream",
            )),
            Some(event) => {
                if json {
                    output::json_line(&serde_json::to_value(&event).expect("serializes"));
                } else {
                    let from = event
                        .origin_device_id
                        .map(|d| format!(" from device {d}"))
                        .unwrap_or_default();
                    output::line(format!(
                        "{} {} {}{from}",
                        event.timestamp,
                        event.event_type,
                        Value::Object(event.event_data)
                    ));
                }
                Ok(Some(1))
            }
        })
        .await
}
