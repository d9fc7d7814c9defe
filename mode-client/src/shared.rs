//! State shared by the client's handles and its connection task: the engine (every protocol
//! decision, the outbox and the DDP mirror) behind one short lock, who waits for what, and the
//! flags the handles read without locking. The lock is held only while the engine computes,
//! never across an `.await`, so no call can deadlock on it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use mode_core::engine::{Engine, MessageId};
use mode_core::proto::BulkDataResponse;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::{Notify, oneshot};

use super::clock::Clock;
use super::durable::Tracker;
use super::error::ClientError;

/// What the handles and the task share under the lock.
#[derive(Debug)]
pub(crate) struct State {
    pub engine: Engine,
    /// Senders told the outcome of their message, by id.
    pub deliveries: Deliveries,
    /// Callers waiting for a bulk response, by request id.
    pub bulk: HashMap<String, oneshot::Sender<BulkDataResponse>>,
    /// Callers of `close`, told how it ended.
    pub close_replies: Vec<oneshot::Sender<Result<(), ClientError>>>,
    /// The durable outbox (`outbox_dir`), kept in step with the engine's journal.
    pub durable: Option<Tracker>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the connection task: the engine has work (a send, a close).
    pub wake: Wake,
    /// Wakes senders waiting for queue room (policy `Block`).
    pub room: Notify,
    /// How many senders wait on `room`: the task wakes them only when there are some.
    pub room_waiters: AtomicUsize,
    pub clock: Clock,
    pub connected: AtomicBool,
    pub closed: AtomicBool,
    pub notifications_dropped: AtomicU64,
    pub unreported_drops: AtomicU64,
}

impl Shared {
    pub(crate) fn new(engine: Engine, durable: Option<Tracker>, clock: Clock) -> Self {
        Shared {
            state: Mutex::new(State {
                engine,
                deliveries: Deliveries::default(),
                bulk: HashMap::new(),
                close_replies: Vec::new(),
                durable,
            }),
            wake: Wake::default(),
            room: Notify::new(),
            room_waiters: AtomicUsize::new(0),
            clock,
            connected: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            notifications_dropped: AtomicU64::new(0),
            unreported_drops: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this short lock leaves plain data behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// A wake-up for the connection task: a flag and the task's waker. Cheaper than a `Notify`,
/// whose waiter list takes a lock on every wait; this is two atomic operations when the task is
/// busy, which it is while messages stream.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    pending: AtomicBool,
    waker: AtomicWaker,
}

impl Wake {
    /// Wakes the task (once for any number of calls before it looks).
    pub(crate) fn notify(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Ready once `notify` was called since the last time this was ready.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.pending.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        // Registered before looking again, so a notify in between is not missed.
        self.waker.register(cx.waker());
        if self.pending.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// The senders waiting for their messages' outcomes, by message id. Ids are handed out in
/// increasing order under the state lock, so this is a window of slots from the oldest
/// unfinished id: no hashing on the path of every message.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    first: MessageId,
    slots: VecDeque<Option<oneshot::Sender<Result<(), ClientError>>>>,
}

impl Deliveries {
    /// Files the sender of `id`, the newest id so far.
    pub(crate) fn insert(
        &mut self,
        id: MessageId,
        sender: oneshot::Sender<Result<(), ClientError>>,
    ) {
        if self.slots.is_empty() {
            self.first = id;
        }
        let index = usize::try_from(id - self.first).unwrap_or(usize::MAX);
        while self.slots.len() < index {
            self.slots.push_back(None);
        }
        self.slots.push_back(Some(sender));
    }

    /// Takes the sender of `id`, if one was filed.
    pub(crate) fn remove(
        &mut self,
        id: MessageId,
    ) -> Option<oneshot::Sender<Result<(), ClientError>>> {
        let index = usize::try_from(id.checked_sub(self.first)?).ok()?;
        let sender = self.slots.get_mut(index)?.take();
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.first += 1;
        }
        sender
    }
}
