//! The status a client error maps to (every `ClientError` kind to its documented
//! ::mode_status_t), and the test that holds the mapping to that for every kind.

use mode_client::ClientError;
use mode_core::proto::EncodeError;

use crate::ModeStatus;

/// The status a client error maps to; its text goes to the thread's last error.
pub(super) fn status_of(err: &ClientError) -> ModeStatus {
    match err {
        ClientError::Config(_) => ModeStatus::ModeErrConfig,
        ClientError::Encode(EncodeError::EventData(_)) => ModeStatus::ModeErrInvalidJson,
        ClientError::Encode(_) => ModeStatus::ModeErrInvalidArgument,
        ClientError::MessageTooLarge { .. } => ModeStatus::ModeErrTooLarge,
        ClientError::QueueFull { .. } | ClientError::Dropped => ModeStatus::ModeErrQueueFull,
        ClientError::Closed => ModeStatus::ModeErrClosed,
        ClientError::CloseIncomplete { .. } | ClientError::Timeout(_) => ModeStatus::ModeErrTimeout,
        ClientError::Rest {
            status: 401 | 403, ..
        } => ModeStatus::ModeErrAuth,
        ClientError::Rest { .. } => ModeStatus::ModeErrRest,
        ClientError::Http(_) => ModeStatus::ModeErrConnection,
        ClientError::Decode(_) => ModeStatus::ModeErrDecode,
        ClientError::Unsupported(_) => ModeStatus::ModeErrUnsupported,
        ClientError::NoRuntime => ModeStatus::ModeErrPanic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    use serde_json::Value;

    /// One error of every kind (and both sides of every distinction the mapping makes) with the
    /// status it must map to.
    fn one_of_each_kind() -> Vec<(ClientError, ModeStatus)> {
        use mode_core::proto::{DecodeError, DecodeFault, MessageKind};
        let rest = |status| ClientError::Rest {
            status,
            reason: None,
            data: Value::Null,
        };
        let all = vec![
            (
                ClientError::Config(mode_client::ConfigError::EmptyApiKey(1)),
                ModeStatus::ModeErrConfig,
            ),
            (
                ClientError::Encode(EncodeError::EmptyKey),
                ModeStatus::ModeErrInvalidArgument,
            ),
            (
                ClientError::Encode(EncodeError::EventData("not an object".into())),
                ModeStatus::ModeErrInvalidJson,
            ),
            (
                ClientError::MessageTooLarge { size: 2, max: 1 },
                ModeStatus::ModeErrTooLarge,
            ),
            (
                ClientError::QueueFull { capacity: 1 },
                ModeStatus::ModeErrQueueFull,
            ),
            (ClientError::Dropped, ModeStatus::ModeErrQueueFull),
            (ClientError::Closed, ModeStatus::ModeErrClosed),
            (
                ClientError::CloseIncomplete { unsent: 1 },
                ModeStatus::ModeErrTimeout,
            ),
            (
                ClientError::Timeout(Duration::ZERO),
                ModeStatus::ModeErrTimeout,
            ),
            (rest(401), ModeStatus::ModeErrAuth),
            (rest(403), ModeStatus::ModeErrAuth),
            (rest(404), ModeStatus::ModeErrRest),
            (
                ClientError::Http("refused".into()),
                ModeStatus::ModeErrConnection,
            ),
            (
                ClientError::Decode(DecodeError {
                    kind: MessageKind::Event,
                    fault: DecodeFault::Truncated,
                    path: String::new(),
                    detail: "cut".into(),
                    line_column: None,
                }),
                ModeStatus::ModeErrDecode,
            ),
            (
                ClientError::Unsupported("bulk data over HTTP"),
                ModeStatus::ModeErrUnsupported,
            ),
            (ClientError::NoRuntime, ModeStatus::ModeErrPanic),
        ];
        // Which kind each error is: the match names every kind, so it fails to compile when
        // `ClientError` gains one, and every kind must appear in `all` at least once.
        let kinds: BTreeSet<usize> = all
            .iter()
            .map(|(err, _)| match err {
                ClientError::Config(_) => 0,
                ClientError::Encode(_) => 1,
                ClientError::MessageTooLarge { .. } => 2,
                ClientError::QueueFull { .. } => 3,
                ClientError::Dropped => 4,
                ClientError::Closed => 5,
                ClientError::CloseIncomplete { .. } => 6,
                ClientError::Timeout(_) => 7,
                ClientError::Rest { .. } => 8,
                ClientError::Http(_) => 9,
                ClientError::Decode(_) => 10,
                ClientError::Unsupported(_) => 11,
                ClientError::NoRuntime => 12,
            })
            .collect();
        assert_eq!(
            kinds,
            (0..=12).collect(),
            "a ClientError kind has no case in the table"
        );
        all
    }

    #[test]
    fn every_kind_of_client_error_maps_to_its_documented_status() {
        for (err, status) in one_of_each_kind() {
            assert_eq!(status_of(&err), status, "{err}");
        }
    }
}
