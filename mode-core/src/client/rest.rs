//! REST requests to the MODE API with the device's key: one function that sends, checks the
//! status and turns MODE error bodies into [`ClientError::Rest`].

use std::time::Duration;

use super::config::{ApiKey, ClientConfig};
use super::error::ClientError;
use crate::proto::{ErrorBody, rest};

#[derive(Debug)]
pub(crate) struct Rest {
    http: reqwest::Client,
    base: String,
    key: Option<ApiKey>,
    max_body: usize,
}

impl Rest {
    pub(crate) fn new(
        config: &ClientConfig,
        tls: &rustls::ClientConfig,
    ) -> Result<Self, ClientError> {
        Rest::build(
            &config.api_url,
            Some(config.api_key.clone()),
            config.request_timeout,
            config.connect_timeout,
            config.max_message_size,
            tls,
        )
    }

    /// A client for `base`, sending `key` (if any) in the `Authorization` header.
    pub(crate) fn build(
        base: &str,
        key: Option<ApiKey>,
        request_timeout: Duration,
        connect_timeout: Duration,
        max_body: usize,
        tls: &rustls::ClientConfig,
    ) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(connect_timeout)
            .use_preconfigured_tls(tls.clone())
            .build()
            .map_err(|e| ClientError::Http(format!("cannot build the HTTP client: {e}")))?;
        Ok(Rest {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
            max_body,
        })
    }

    /// Sends `method path` with an optional JSON body; returns the response body of a 2xx.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(key) = &self.key {
            request = request.header("Authorization", rest::authorization_value(key.expose()));
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Http(format!("{url}: {}", error_chain(&e))))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            ClientError::Http(format!("{url}: reading the answer: {}", error_chain(&e)))
        })?;
        if bytes.len() > self.max_body {
            return Err(ClientError::MessageTooLarge {
                size: bytes.len(),
                max: self.max_body,
            });
        }
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
}

/// An error and its sources on one line, so "connection refused" is not hidden behind
/// "error sending request".
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}
