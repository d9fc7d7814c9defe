//! What a call on the [`Client`](super::Client) can fail with. Misuse (an empty key, a message
//! too large) and conditions (queue full, closed, the cloud said no) are separate variants.

use std::time::Duration;

use serde_json::Value;

use super::config::ConfigError;
use mode_core::proto::{DecodeError, EncodeError};

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
