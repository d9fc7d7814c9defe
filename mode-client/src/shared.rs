//! State shared by the client's handles and its IO task: the protocol session (DDP mirror,
//! request ids), the counters behind [`Stats`], and the closed flag. Every lock here is held
//! only for a few instructions and never across an `.await`, so no call can deadlock on it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use mode_core::session::Session;

/// A snapshot of the client's counters. "Messages" are every outgoing publish or REST write:
/// events, kv writes, bulk data and requests, data for routing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages accepted by a send call.
    pub messages_queued: u64,
    /// Messages handed to the network (a re-send after a reconnect counts again).
    pub messages_sent: u64,
    /// Messages the cloud acknowledged (PUBACK, HTTP 2xx), and QoS 0 messages once written.
    pub messages_acked: u64,
    /// Messages dropped by the full-queue policy or given up at close.
    pub messages_dropped: u64,
    /// Messages waiting now, queued or awaiting their acknowledgement.
    pub pending: u64,
    /// Successful connections after the first.
    pub reconnects: u64,
    /// Connection attempts, successful or not.
    pub connection_attempts: u64,
    /// DDP sync messages applied to the mirror.
    pub kv_applied: u64,
    /// DDP sync messages ignored as stale or duplicate.
    pub kv_stale: u64,
    /// DDP sync messages that could not be decoded.
    pub kv_invalid: u64,
    /// Commands received.
    pub commands_received: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
    /// Notifications dropped because the application did not keep up.
    pub notifications_dropped: u64,
    /// The last error seen, as text.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub messages_queued: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_acked: AtomicU64,
    pub messages_dropped: AtomicU64,
    pub pending: AtomicU64,
    pub reconnects: AtomicU64,
    pub connection_attempts: AtomicU64,
    pub kv_applied: AtomicU64,
    pub kv_stale: AtomicU64,
    pub kv_invalid: AtomicU64,
    pub commands_received: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub session: Mutex<Session>,
    pub counters: Counters,
    pub notifications_dropped: AtomicU64,
    pub unreported_drops: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    pub closed: AtomicBool,
    pub connected: AtomicBool,
    /// The next message id (from 1; 0 is never an id, so C can use it as "none").
    pub next_id: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves plain data behind; keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn new(session: Session) -> Self {
        Shared {
            session: Mutex::new(session),
            counters: Counters::default(),
            notifications_dropped: AtomicU64::new(0),
            unreported_drops: AtomicU64::new(0),
            last_error: Mutex::new(None),
            closed: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        }
    }

    pub(crate) fn session(&self) -> MutexGuard<'_, Session> {
        lock(&self.session)
    }

    pub(crate) fn set_last_error(&self, error: String) {
        *lock(&self.last_error) = Some(error);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            messages_queued: get(&c.messages_queued),
            messages_sent: get(&c.messages_sent),
            messages_acked: get(&c.messages_acked),
            messages_dropped: get(&c.messages_dropped),
            pending: get(&c.pending),
            reconnects: get(&c.reconnects),
            connection_attempts: get(&c.connection_attempts),
            kv_applied: get(&c.kv_applied),
            kv_stale: get(&c.kv_stale),
            kv_invalid: get(&c.kv_invalid),
            commands_received: get(&c.commands_received),
            bytes_in: get(&c.bytes_in),
            bytes_out: get(&c.bytes_out),
            notifications_dropped: get(&self.notifications_dropped),
            last_error: lock(&self.last_error).clone(),
        }
    }
}
