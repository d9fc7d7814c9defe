//! State shared by the client's handles and its connection task: the engine (every protocol
//! decision, the outbox and the DDP mirror) behind one short lock, who waits for what, and the
//! flags the handles read without locking. The lock is held only while the engine computes,
//! never across an `.await`, so no call can deadlock on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use mode_core::engine::{Engine, MessageId};
use mode_core::proto::BulkDataResponse;
use tokio::sync::{Notify, oneshot};

use super::clock::Clock;
use super::error::ClientError;

/// What the handles and the task share under the lock.
#[derive(Debug)]
pub(crate) struct State {
    pub engine: Engine,
    /// Senders told the outcome of their message, by id.
    pub deliveries: HashMap<MessageId, oneshot::Sender<Result<(), ClientError>>>,
    /// Callers waiting for a bulk response, by request id.
    pub bulk: HashMap<String, oneshot::Sender<BulkDataResponse>>,
    /// Callers of `close`, told how it ended.
    pub close_replies: Vec<oneshot::Sender<Result<(), ClientError>>>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the connection task: the engine has work (a send, a close).
    pub wake: Notify,
    /// Wakes senders waiting for queue room (policy `Block`).
    pub room: Notify,
    pub clock: Clock,
    pub connected: AtomicBool,
    pub closed: AtomicBool,
    pub notifications_dropped: AtomicU64,
    pub unreported_drops: AtomicU64,
}

impl Shared {
    pub(crate) fn new(engine: Engine, clock: Clock) -> Self {
        Shared {
            state: Mutex::new(State {
                engine,
                deliveries: HashMap::new(),
                bulk: HashMap::new(),
                close_replies: Vec::new(),
            }),
            wake: Notify::new(),
            room: Notify::new(),
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
