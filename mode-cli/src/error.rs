//! The exit codes of `mode` and the one error type every command ends with: a message a user
//! can act on, and the code that tells a script what kind of failure it was.

use std::fmt;

use mode_client::ClientError;

/// How `mode` ended; the numbers are part of the interface and are never renumbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: anything not covered below.
    Other = 1,
    /// 2: the command line or the configuration (flags, environment, profile file) is wrong.
    Usage = 2,
    /// 3: the cloud refused the credentials (device id and API key, or app key).
    Auth = 3,
    /// 4: the cloud could not be reached (refused, unreachable, TLS failure, lost).
    Connection = 4,
    /// 5: no answer, or not enough of them, within the time allowed.
    Timeout = 5,
    /// 6: the cloud refused the request (a REST error other than authentication, a missing
    ///    key, a bulk-data status other than OK).
    Refused = 6,
}

/// A failed command: what went wrong, in one line, and its exit code.
#[derive(Debug, Clone)]
pub struct CliError {
    /// The exit code.
    pub exit: Exit,
    /// The reason, one line, never holding a key.
    pub message: String,
}

impl CliError {
    /// An error of kind `exit`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
        }
    }

    /// A usage or configuration error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(Exit::Usage, message)
    }

    /// Anything else (exit 1).
    pub fn other(message: impl Into<String>) -> Self {
        CliError::new(Exit::Other, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The text of a REST refusal: status, reason, and the human message in `data` if any.
pub fn rest_refusal(status: u16, reason: Option<&str>, data: &serde_json::Value) -> String {
    let mut text = format!("the cloud answered HTTP {status}");
    if let Some(reason) = reason {
        text.push_str(&format!(" {reason}"));
    }
    if let Some(message) = data.get("message").and_then(|m| m.as_str()) {
        text.push_str(&format!(": {message}"));
    }
    text
}

/// The exit code of a REST status: 401 and 403 are the credentials, the rest a refusal.
pub fn rest_exit(status: u16) -> Exit {
    match status {
        401 | 403 => Exit::Auth,
        _ => Exit::Refused,
    }
}

impl From<ClientError> for CliError {
    fn from(err: ClientError) -> Self {
        let exit = match &err {
            ClientError::Config(_)
            | ClientError::Encode(_)
            | ClientError::MessageTooLarge { .. }
            | ClientError::Unsupported(_) => Exit::Usage,
            ClientError::Rest { status, .. } => rest_exit(*status),
            ClientError::Http(_) => Exit::Connection,
            ClientError::Timeout(_) => Exit::Timeout,
            _ => Exit::Other,
        };
        let message = match &err {
            ClientError::Rest {
                status,
                reason,
                data,
            } => rest_refusal(*status, reason.as_deref(), data),
            other => other.to_string(),
        };
        CliError::new(exit, message)
    }
}

impl From<std::io::Error> for CliError {
    fn from(err: std::io::Error) -> Self {
        CliError::other(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_map_to_the_documented_exit_codes() {
        let rest = |status| ClientError::Rest {
            status,
            reason: Some("X".into()),
            data: serde_json::json!({"message": "why"}),
        };
        assert_eq!(CliError::from(rest(401)).exit, Exit::Auth);
        assert_eq!(CliError::from(rest(403)).exit, Exit::Auth);
        assert_eq!(CliError::from(rest(404)).exit, Exit::Refused);
        assert_eq!(
            CliError::from(rest(404)).message,
            "the cloud answered HTTP 404 X: why"
        );
        assert_eq!(
            CliError::from(ClientError::Http("refused".into())).exit,
            Exit::Connection
        );
        assert_eq!(
            CliError::from(ClientError::Timeout(std::time::Duration::from_secs(1))).exit,
            Exit::Timeout
        );
        assert_eq!(
            CliError::from(ClientError::Unsupported("bulk over HTTP")).exit,
            Exit::Usage
        );
        assert_eq!(CliError::from(ClientError::Closed).exit, Exit::Other);
    }
}
