//! REST errors as the MODE API writes them: a status and an [`ErrorBody`]
//! `{"reason": "...", "data": {"message": "...", ...}}`, built from [`CloudError`]s, bad bodies
//! and refused requests alike, so every refusal of the server has the same shape.

use std::fmt;

use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use mode_core::proto::{DecodeError, ErrorBody, Map, Value};

use crate::cloud::CloudError;
use crate::untrusted::untrusted;

/// A refused request: the status and the JSON error body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: ErrorBody,
}

impl ApiError {
    /// An error with `reason` and `data: {"message": message}`.
    pub(crate) fn new(status: StatusCode, reason: &str, message: impl fmt::Display) -> Self {
        let mut data = Map::new();
        data.insert("message".into(), message.to_string().into());
        ApiError {
            status,
            body: ErrorBody::new(reason, Value::Object(data)),
        }
    }

    /// Adds `name: value` to the body's `data`.
    pub(crate) fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        if let Value::Object(data) = &mut self.body.data {
            data.insert(name.into(), value.into());
        }
        self
    }

    /// 401: no usable API key.
    pub(crate) fn unauthenticated(message: impl fmt::Display) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "AUTH_FAILED", message)
    }

    /// 403: the key is valid but may not do this.
    pub(crate) fn forbidden(message: impl fmt::Display) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// 404 for a path segment that names no device (not even a well-formed id).
    pub(crate) fn no_such_device(raw: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "DEVICE_NOT_FOUND",
            format_args!(
                "{:?} is not the id of a device in this simulator",
                untrusted(raw)
            ),
        )
    }

    /// 400: a request body that does not decode, with mode-core's description of the fault.
    pub(crate) fn bad_body(err: &DecodeError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_BODY", untrusted(err))
            .with("path", untrusted(&err.path).to_string())
    }

    /// 400: a body of one of the simulator's own (ours) shapes that does not decode.
    pub(crate) fn bad_json(what: &str, err: &serde_json::Error) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
            format_args!("invalid {what}: {}", untrusted(err)),
        )
    }
}

impl From<CloudError> for ApiError {
    fn from(err: CloudError) -> Self {
        ApiError {
            status: StatusCode::from_u16(err.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: err.error_body(),
        }
    }
}

impl From<crate::persist::NotDurable> for ApiError {
    fn from(err: crate::persist::NotDurable) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, self.body.encode())
    }
}

/// A response with a JSON body already encoded by mode-core.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The request body, or the JSON error for a body that could not be read: 413 when it is over
/// the configured maximum (`DefaultBodyLimit`), else the status axum chose.
pub(crate) fn read_body(
    body: Result<Bytes, BytesRejection>,
    max_body: usize,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "PAYLOAD_TOO_LARGE",
                format_args!("the request body is over the limit of {max_body} bytes"),
            )
            .with("limit", max_body)
        } else {
            ApiError::new(status, "INVALID_BODY", untrusted(&rejection.body_text()))
        }
    })
}
