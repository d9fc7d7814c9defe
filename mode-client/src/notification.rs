//! What the client tells the application: connection changes, commands, DDP changes, bulk
//! responses and errors, delivered off the IO task through a bounded channel. When the
//! application falls behind, notifications are dropped and counted, never blocking the IO task;
//! the count arrives in-band as [`Notification::Lagged`].
//!
//! The channel is a queue under a short lock that holds memory only while notifications wait:
//! a fleet keeps thousands of idle devices, and a channel that reserves its first block of
//! slots up front (tokio's mpsc: 32 slots of 112 bytes) would cost each of them 3.5 KiB.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

pub use mode_core::engine::DisconnectReason;

use futures_util::task::AtomicWaker;

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
    /// A key was set or deleted in the cloud (by anyone, this device included). A `reload`
    /// arrives as [`Notification::KvReloaded`] instead.
    KvChanged {
        /// The store's revision of this change.
        rev: Rev,
        /// What changed: the key, its new value (none for a delete) and what it held before.
        change: Change,
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

/// The queue between the IO task and the application.
#[derive(Debug)]
struct Queue {
    waiting: Mutex<Waiting>,
    waker: AtomicWaker,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Waiting {
    items: VecDeque<Notification>,
    /// The IO task is gone: once `items` is empty, the stream ends.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending side, kept by the IO task. It never waits: a full queue counts a drop.
#[derive(Debug)]
pub(crate) struct Notifier {
    queue: Arc<Queue>,
    shared: Arc<Shared>,
}

impl Notifier {
    pub(crate) fn send(&self, notification: Notification) {
        let mut waiting = self.queue.lock();
        if waiting.items.len() >= self.queue.capacity {
            drop(waiting);
            self.shared
                .notifications_dropped
                .fetch_add(1, Ordering::Relaxed);
            self.shared.unreported_drops.fetch_add(1, Ordering::Relaxed);
            return;
        }
        waiting.items.push_back(notification);
        drop(waiting);
        self.queue.waker.wake();
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.waker.wake();
    }
}

/// The stream of [`Notification`]s of one client. It ends after the client closes.
#[derive(Debug)]
pub struct Notifications {
    queue: Arc<Queue>,
    shared: Arc<Shared>,
}

pub(crate) fn channel(capacity: usize, shared: Arc<Shared>) -> (Notifier, Notifications) {
    let queue = Arc::new(Queue {
        waiting: Mutex::new(Waiting::default()),
        waker: AtomicWaker::new(),
        capacity: capacity.max(1),
    });
    (
        Notifier {
            queue: queue.clone(),
            shared: shared.clone(),
        },
        Notifications { queue, shared },
    )
}

/// What the queue gives now: a notification, the end, or nothing yet.
enum Next {
    Item(Notification),
    End,
    Empty,
}

impl Notifications {
    fn lagged(&self) -> Option<Notification> {
        let missed = self.shared.unreported_drops.swap(0, Ordering::Relaxed);
        (missed > 0).then_some(Notification::Lagged { missed })
    }

    fn take(&self) -> Next {
        let mut waiting = self.queue.lock();
        match waiting.items.pop_front() {
            Some(item) => {
                // A burst grew the queue: give the memory back once it is drained.
                if waiting.items.is_empty() && waiting.items.capacity() > 64 {
                    waiting.items = VecDeque::new();
                }
                Next::Item(item)
            }
            None if waiting.closed => Next::End,
            None => Next::Empty,
        }
    }

    /// The next notification; `None` once the client has closed and all were received.
    pub async fn recv(&mut self) -> Option<Notification> {
        std::future::poll_fn(|cx| self.poll_next_notification(cx)).await
    }

    /// The next notification if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Notification> {
        if let Some(lagged) = self.lagged() {
            return Some(lagged);
        }
        match self.take() {
            Next::Item(item) => Some(item),
            Next::End | Next::Empty => None,
        }
    }

    fn poll_next_notification(&self, cx: &mut Context<'_>) -> Poll<Option<Notification>> {
        if let Some(lagged) = self.lagged() {
            return Poll::Ready(Some(lagged));
        }
        if let Next::Item(item) = self.take() {
            return Poll::Ready(Some(item));
        }
        // Registered before the second look, so a send in between wakes this task.
        self.queue.waker.register(cx.waker());
        match self.take() {
            Next::Item(item) => Poll::Ready(Some(item)),
            Next::End => Poll::Ready(self.lagged()),
            Next::Empty => Poll::Pending,
        }
    }
}

impl futures_util::Stream for Notifications {
    type Item = Notification;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Notification>> {
        self.poll_next_notification(cx)
    }
}
