//! What can fail, and how failures are put in words: [`ConfigError`] (settings that cannot
//! work), [`ClientError`] (what a call on the [`Client`](super::Client) can fail with; misuse and
//! conditions such as queue full, closed or the cloud said no are separate variants), and the
//! one description of an error chain and of a TLS failure that every transport reports with.

use std::time::Duration;

use serde_json::Value;

use mode_core::engine::SendError;
use mode_core::proto::{DecodeError, DeviceId, EncodeError};

/// A configuration that cannot work; nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The API key is empty.
    #[error("the API key is empty: pass the key the cloud issued to device {0}")]
    EmptyApiKey(DeviceId),
    /// The keepalive is below one second (MQTT counts it in whole seconds).
    #[error("keepalive {0:?} is too short: use at least 1 s (MQTT counts keepalive in seconds)")]
    KeepaliveTooShort(Duration),
    /// A size limit is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A URL does not parse or has the wrong scheme.
    #[error("invalid URL {url:?}: {detail}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A REST request (device info, claim mode) was made, but only the server of a non-HTTP
    /// transport was given ([`ClientConfigBuilder::server`](super::ClientConfigBuilder::server)), which says nothing of where the
    /// REST API is.
    #[error(
        "no REST API URL: {server} is where the device connects, not the REST API; \
         set api_url to the REST base URL (e.g. http://127.0.0.1:8080 for the simulator)"
    )]
    NoApiUrl {
        /// Where the device connects, in words (e.g. `MQTT 127.0.0.1:1883`).
        server: String,
    },
    /// Another process (or another client of this one) has the durable outbox directory open.
    #[error(
        "the outbox directory {dir} is in use by another client (its lock is held); one client per directory"
    )]
    OutboxLocked {
        /// The directory.
        dir: String,
    },
    /// The durable outbox directory cannot be used (or could not be written).
    #[error("durable outbox in {dir}: {detail}")]
    Outbox {
        /// The directory.
        dir: String,
        /// What went wrong.
        detail: String,
    },
    /// `outbox_dir` was set, but this build has no durable outbox.
    #[error("outbox_dir needs the durable-outbox feature of mode-client, which this build lacks")]
    OutboxUnavailable,
    /// A TLS file could not be read or holds nothing usable.
    #[error("TLS setting {what} ({path}): {detail}")]
    Tls {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
}

/// Why a client call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The message cannot be expressed (empty event type, empty key, bad bulk-data label).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The message is larger than the configured maximum.
    #[error(
        "message of {size} bytes is larger than the limit of {max} bytes (raise max_message_size)"
    )]
    MessageTooLarge {
        /// The size of the message as it would go on the wire.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The outgoing queue is full and the policy (or a `try_` call) does not wait.
    #[error(
        "the outgoing queue is full ({capacity} messages await delivery); retry later or raise queue_size"
    )]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The message was dropped from a full queue to make room for a newer one
    /// ([`FullQueuePolicy::DropOldest`](super::FullQueuePolicy::DropOldest)).
    #[error("the message was dropped from the full outgoing queue to make room for a newer one")]
    Dropped,
    /// The client is closed (or closing); nothing more is sent.
    #[error("the client is closed")]
    Closed,
    /// `close` ran out of time with messages still undelivered.
    #[error("close timed out with {unsent} messages not delivered")]
    CloseIncomplete {
        /// How many messages were not delivered.
        unsent: usize,
    },
    /// No answer came in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The cloud answered a REST request with an error status.
    #[error("the cloud answered {status}{}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Rest {
        /// HTTP status.
        status: u16,
        /// The body's `reason`, when the body was a MODE error body.
        reason: Option<String>,
        /// The body's `data` (or `null`).
        data: Value,
    },
    /// A REST request failed before an answer (connection, TLS, timeout).
    #[error("REST request failed: {0}")]
    Http(String),
    /// The cloud's answer could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The operation is not available with this transport or in this version.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// `Client::connect` was called outside a tokio runtime.
    #[error("Client::connect must be called from within a tokio runtime")]
    NoRuntime,
}

impl From<SendError> for ClientError {
    fn from(err: SendError) -> Self {
        match err {
            SendError::Closed => ClientError::Closed,
            SendError::QueueFull { capacity } => ClientError::QueueFull { capacity },
            SendError::TooLarge { size, max } => ClientError::MessageTooLarge { size, max },
            SendError::Encode(err) => ClientError::Encode(err),
        }
    }
}

/// An error and its sources on one line, so "connection refused" is not hidden behind
/// "error sending request". Public for the front ends that report errors of their own
/// transports the same way (the CLI's app commands).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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

/// The rustls error somewhere in `err`'s chain, if the failure was TLS's.
pub(crate) fn find_rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // io::Error hides its payload from `source()`; look inside.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = find_rustls_error(inner)
        {
            return Some(tls);
        }
        current = e.source();
    }
    None
}

/// A TLS failure in words that say which side's certificate failed, why, and what to change.
/// A refused client certificate reaches us as the server's alert (with TLS 1.3 often after our
/// side of the handshake has finished), so alerts are named here too.
pub(crate) fn describe_tls(err: &rustls::Error, host: &str) -> String {
    use rustls::AlertDescription as Alert;
    use rustls::CertificateError;
    match err {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the server's certificate for {host} is not signed by a trusted CA ({err}); add the CA with ca_file (C mode_config_set_ca_file, mode --ca-file)"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the server's certificate is not valid for the host name {host} ({err}); connect with the name the certificate was issued for"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!(
            "the server's certificate for {host} has expired ({err}); the server must renew it"
        ),
        rustls::Error::AlertReceived(Alert::CertificateRequired) => format!(
            "the server {host} requires a client certificate and none was sent ({err}); set client_cert (certificate and key, PEM)"
        ),
        rustls::Error::AlertReceived(Alert::CertificateExpired) => format!(
            "the server {host} refused our client certificate: it has expired ({err}); use a renewed certificate"
        ),
        rustls::Error::AlertReceived(Alert::UnknownCA) => format!(
            "the server {host} refused our client certificate: it is not issued by a CA the server trusts ({err}); use a certificate from the server's client CA"
        ),
        rustls::Error::AlertReceived(
            Alert::BadCertificate | Alert::UnsupportedCertificate | Alert::CertificateRevoked,
        ) => format!("the server {host} refused our client certificate ({err}); check client_cert"),
        other => format!("{other} (server {host})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_certificate_failure_says_which_certificate_and_why() {
        use rustls::AlertDescription as Alert;
        let text = |err| describe_tls(&err, "localhost");
        for (err, says) in [
            (
                rustls::Error::AlertReceived(Alert::CertificateRequired),
                "requires a client certificate and none was sent",
            ),
            (
                rustls::Error::AlertReceived(Alert::CertificateExpired),
                "refused our client certificate: it has expired",
            ),
            (
                rustls::Error::AlertReceived(Alert::UnknownCA),
                "refused our client certificate: it is not issued by a CA the server trusts",
            ),
            (
                rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
                "the server's certificate for localhost has expired",
            ),
        ] {
            assert!(text(err.clone()).contains(says), "{}", text(err));
        }
    }
}
