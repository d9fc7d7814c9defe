//! Rust errors as the exceptions of `mode._errors` (defined in Python so they can also derive
//! from the matching builtins: `mode.TimeoutError` is a `TimeoutError`, and so on).

use mode_client::ClientError;
use mode_core::proto::DecodeError;
use pyo3::prelude::*;

use crate::json;

/// An instance of `mode._errors.<name>` built with `args`, as a `PyErr`.
pub fn raise<'py>(py: Python<'py>, name: &str, args: impl pyo3::call::PyCallArgs<'py>) -> PyErr {
    let made = py
        .import("mode._errors")
        .and_then(|module| module.getattr(name))
        .and_then(|class| class.call1(args));
    match made {
        Ok(instance) => PyErr::from_value(instance),
        Err(err) => err,
    }
}

/// The exception for a client error.
pub fn client_error(py: Python<'_>, err: ClientError) -> PyErr {
    let message = err.to_string();
    match err {
        ClientError::Config(_) => raise(py, "ConfigError", (message,)),
        ClientError::Encode(_) | ClientError::MessageTooLarge { .. } => {
            raise(py, "InvalidArgumentError", (message,))
        }
        ClientError::QueueFull { .. } | ClientError::Dropped => {
            raise(py, "QueueFullError", (message,))
        }
        ClientError::Closed => raise(py, "ClosedError", (message,)),
        ClientError::CloseIncomplete { .. } | ClientError::Timeout(_) => {
            raise(py, "TimeoutError", (message,))
        }
        ClientError::Rest {
            status,
            reason,
            data,
        } => {
            let name = if matches!(status, 401 | 403) {
                "AuthError"
            } else {
                "RestError"
            };
            match json::to_py(py, &data) {
                Ok(data) => raise(py, name, (message, status, reason, data)),
                Err(err) => err,
            }
        }
        ClientError::Http(_) => raise(py, "ConnectionError", (message,)),
        ClientError::Decode(_) => raise(py, "ProtocolError", (message,)),
        ClientError::Unsupported(_) => raise(py, "UnsupportedError", (message,)),
        ClientError::NoRuntime => raise(py, "ModeError", (message,)),
    }
}

/// The exception for a configuration that cannot work.
pub fn config_error(py: Python<'_>, why: impl std::fmt::Display) -> PyErr {
    raise(py, "ConfigError", (why.to_string(),))
}

/// The value named `name` among `choices` (an option's `Literal` in `_options.py` and the
/// stub), or a `ConfigError` listing them: `what "x" is unknown: use "a", "b" or "c"`.
pub fn choose<T: Copy>(
    py: Python<'_>,
    what: &str,
    name: &str,
    choices: &[(&str, T)],
) -> PyResult<T> {
    if let Some(&(_, value)) = choices.iter().find(|(known, _)| *known == name) {
        return Ok(value);
    }
    let quoted: Vec<String> = choices
        .iter()
        .map(|(known, _)| format!("{known:?}"))
        .collect();
    let (last, rest) = quoted
        .split_last()
        .map_or(("", &[][..]), |(l, r)| (l.as_str(), r));
    let listed = if rest.is_empty() {
        last.to_owned()
    } else {
        format!("{} or {last}", rest.join(", "))
    };
    Err(config_error(
        py,
        format!("{what} {name:?} is unknown: use {listed}"),
    ))
}

/// The exception for bytes from the cloud that do not decode.
pub fn decode_error(py: Python<'_>, err: DecodeError) -> PyErr {
    raise(py, "ProtocolError", (err.to_string(),))
}
