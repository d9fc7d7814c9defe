//! What the client tells the application: connection changes, commands, DDP changes, bulk
//! responses and errors, delivered off the IO task through a bounded channel. When the
//! application falls behind, notifications are dropped and counted, never blocking the IO task;
//! the count arrives in-band as [`Notification::Lagged`].

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

pub use mode_core::engine::DisconnectReason;

use serde_json::Value;
use tokio::sync::mpsc;

use super::shared::Shared;
use mode_core::ddp::Change;
use mode_core::proto::{BulkDataResponse, Command, DecodeError, Rev};

/// One thing that happened, for the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    /// Connected and subscribed (MQTT: the broker acknowledged the subscriptions; HTTP: both
    /// WebSockets open), so a command the cloud sends from now on reaches the device. The DDP
    /// `reload` the subscription brings arrives as [`Notification::KvReloaded`].
    Connected,
    /// The connection ended or an attempt failed; `retry_in` says when the next attempt starts
    /// (`None` once closed).
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// The wait before the next attempt.
        retry_in: Option<Duration>,
    },
    /// A command for the device, its integers exact.
    Command(Command),
    /// The mirror was replaced by a `reload`; `diff` is what changed against the previous
    /// contents, in key order.
    KvReloaded {
        /// The store's revision.
        rev: Rev,
        /// What changed.
        diff: Vec<Change>,
    },
    /// A key was set in the cloud (by anyone, this device included).
    KvSet {
        /// The store's revision of this change.
        rev: Rev,
        /// The key.
        key: String,
        /// Its new value.
        value: Value,
        /// What it held before, if anything.
        previous: Option<Value>,
    },
    /// A key was deleted in the cloud.
    KvDeleted {
        /// The store's revision of this change.
        rev: Rev,
        /// The key.
        key: String,
        /// What it held.
        previous: Value,
    },
    /// A bulk-data response that no pending `bulk_request` was waiting for.
    BulkResponse {
        /// The bulk-data label it came on.
        label: String,
        /// The response.
        response: BulkDataResponse,
    },
    /// The cloud sent something that could not be decoded; it was ignored.
    Error {
        /// Where it came from (MQTT topic or WebSocket path).
        topic: String,
        /// What was wrong.
        error: DecodeError,
    },
    /// A queued message was dropped to make room ([`FullQueuePolicy::DropOldest`]).
    ///
    /// [`FullQueuePolicy::DropOldest`]: super::FullQueuePolicy::DropOldest
    MessageDropped {
        /// The topic the message was for.
        topic: String,
        /// Messages dropped so far, this one included.
        total: u64,
    },
    /// The application fell behind: this many notifications were dropped before this point.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// The sending side, kept by the IO task. It never waits: a full channel counts a drop.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    tx: mpsc::Sender<Notification>,
    shared: Arc<Shared>,
}

impl Notifier {
    pub(crate) fn send(&self, notification: Notification) {
        if self.tx.try_send(notification).is_err() {
            self.shared
                .notifications_dropped
                .fetch_add(1, Ordering::Relaxed);
            self.shared.unreported_drops.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The stream of [`Notification`]s of one client. It ends after the client closes.
#[derive(Debug)]
pub struct Notifications {
    rx: mpsc::Receiver<Notification>,
    shared: Arc<Shared>,
}

pub(crate) fn channel(capacity: usize, shared: Arc<Shared>) -> (Notifier, Notifications) {
    let (tx, rx) = mpsc::channel(capacity);
    (
        Notifier {
            tx,
            shared: shared.clone(),
        },
        Notifications { rx, shared },
    )
}

impl Notifications {
    fn lagged(&self) -> Option<Notification> {
        let missed = self.shared.unreported_drops.swap(0, Ordering::Relaxed);
        (missed > 0).then_some(Notification::Lagged { missed })
    }

    /// The next notification; `None` once the client has closed and all were received.
    pub async fn recv(&mut self) -> Option<Notification> {
        if let Some(lagged) = self.lagged() {
            return Some(lagged);
        }
        self.rx.recv().await
    }

    /// The next notification if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Notification> {
        if let Some(lagged) = self.lagged() {
            return Some(lagged);
        }
        self.rx.try_recv().ok()
    }
}

impl futures_util::Stream for Notifications {
    type Item = Notification;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Notification>> {
        if let Some(lagged) = self.lagged() {
            return Poll::Ready(Some(lagged));
        }
        self.rx.poll_recv(cx)
    }
}
