//! A device's notifications as the `(kind, payload)` calls the `mode` package's dispatcher
//! receives (`_DeviceBase._on_notification`): "connected", "disconnected" (why, text, retry in
//! s), "command", "kv" (rev, reload, changes), "bulk_response" and "warning" (text).

use mode_client::{DisconnectReason, Notification};
use pyo3::prelude::*;

use crate::types::{BulkResponse, Command, KvChange};

fn disconnect_kind(reason: &DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::AuthFailed(_) => "auth",
        DisconnectReason::Tls(_) => "tls",
        DisconnectReason::Network(_) => "network",
        DisconnectReason::KeepaliveTimeout(_) => "keepalive",
        DisconnectReason::Closed => "closed",
    }
}

/// Calls `dispatch(kind, payload)` for `note` on the dispatcher thread.
pub(crate) fn deliver(py: Python<'_>, dispatch: &Py<PyAny>, note: Notification) {
    let called = notification_args(py, note).and_then(|args| dispatch.call1(py, args));
    if let Err(err) = called {
        // The package's dispatcher logs handler errors itself; this is a last resort.
        err.write_unraisable(py, Some(dispatch.bind(py)));
    }
}

fn notification_args(py: Python<'_>, note: Notification) -> PyResult<(&'static str, Py<PyAny>)> {
    let payload = |kind: &'static str, value: Bound<'_, PyAny>| Ok((kind, value.unbind()));
    let object = |value: Py<PyAny>| value.into_bound(py);
    let kv = |rev: u64, reload: bool, changes: Vec<KvChange>| {
        payload("kv", (rev, reload, changes).into_pyobject(py)?.into_any())
    };
    let warning = |text: String| payload("warning", text.into_pyobject(py)?.into_any());
    match note {
        Notification::Connected => payload("connected", py.None().into_bound(py)),
        Notification::Disconnected { reason, retry_in } => {
            let retry = retry_in.map(|d| d.as_secs_f64());
            let details = (disconnect_kind(&reason), reason.to_string(), retry);
            payload("disconnected", details.into_pyobject(py)?.into_any())
        }
        Notification::Command(command) => payload(
            "command",
            object(Py::new(py, Command::from_core(py, &command)?)?.into_any()),
        ),
        Notification::KvReloaded { rev, diff } => kv(rev, true, KvChange::list(py, &diff)?),
        Notification::KvChanged { rev, change } => {
            kv(rev, false, vec![KvChange::from_core(py, &change)?])
        }
        Notification::BulkResponse { response, .. } => payload(
            "bulk_response",
            object(Py::new(py, BulkResponse::from_core(py, &response)?)?.into_any()),
        ),
        Notification::Error { topic, error } => {
            warning(format!("ignored a malformed message on {topic}: {error}"))
        }
        Notification::MessageDropped { topic, total } => warning(format!(
            "dropped a queued message for {topic}: the queue is full ({total} dropped so far)"
        )),
        Notification::Lagged { missed } => warning(format!(
            "handlers fell behind: {missed} notifications were dropped"
        )),
    }
}
