//! Waiting with a deadline, the one way every command reports that the time ran out (exit 5,
//! saying what it waited for): for a future, and for a client's next notification.

use std::future::Future;
use std::time::Duration;

use mode_client::{Notification, Notifications};
use tokio::time::Instant;

use crate::error::{CliError, Exit};

/// What `future` gives, if it ends by `deadline`; else a timeout error saying `late()`.
pub async fn by_deadline<T>(
    deadline: Instant,
    future: impl Future<Output = T>,
    late: impl FnOnce() -> String,
) -> Result<T, CliError> {
    tokio::time::timeout_at(deadline, future)
        .await
        .map_err(|_| CliError::new(Exit::Timeout, late()))
}

/// [`by_deadline`] for a wait of `wait` from now.
pub async fn within<T>(
    wait: Duration,
    future: impl Future<Output = T>,
    late: impl FnOnce() -> String,
) -> Result<T, CliError> {
    by_deadline(Instant::now() + wait, future, late).await
}

/// The next notification by `deadline` (which is `wait` after the waiting began): a timeout
/// error when none came, another error when the client stopped, each naming `what` was awaited.
pub async fn next_note(
    notes: &mut Notifications,
    deadline: Instant,
    wait: Duration,
    what: &str,
) -> Result<Notification, CliError> {
    by_deadline(deadline, notes.recv(), || {
        format!("timed out after {wait:?} waiting for {what}")
    })
    .await?
    .ok_or_else(|| CliError::other(format!("the client stopped before {what}")))
}
