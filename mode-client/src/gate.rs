//! The bound on the outgoing queue: at most `capacity` messages accepted and not yet finished.
//! Every message holds a [`Slot`] until it is acknowledged, dropped or given up.
//!
//! A counter, not `tokio::sync::Semaphore`: taking and giving back a place is on the path of
//! every message, and the semaphore costs an `Acquire` future per send and a mutex lock per
//! release (about 350 instructions of the client's per-event cost, measured with callgrind).
//! Here both are one atomic operation; only a caller that has to wait pays for a `Notify`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct Gate {
    capacity: usize,
    taken: AtomicUsize,
    /// Callers waiting in [`Gate::acquire`]; a release wakes one only when this is non-zero.
    waiting: AtomicUsize,
    closed: AtomicBool,
    room: Notify,
}

/// One place in the queue, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    gate: Arc<Gate>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.taken.fetch_sub(1, Ordering::SeqCst);
        // SeqCst pairs with `acquire`: either the waiter sees the place given back, or this
        // sees the waiter and wakes it.
        if self.gate.waiting.load(Ordering::SeqCst) > 0 {
            self.gate.room.notify_one();
        }
    }
}

impl Gate {
    pub(crate) fn new(capacity: usize) -> Arc<Gate> {
        Arc::new(Gate {
            capacity,
            taken: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            room: Notify::new(),
        })
    }

    /// A place if one is free and the gate is open.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        // Compare-and-swap rather than add-then-undo: an add that overshoots would, for a
        // moment, make a racing caller see the queue full when it is not, and a waiter failing
        // that way would sleep through the release that woke it.
        let mut taken = self.taken.load(Ordering::SeqCst);
        loop {
            if taken >= self.capacity {
                return None;
            }
            match self.taken.compare_exchange_weak(
                taken,
                taken + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(Slot { gate: self.clone() }),
                Err(now) => taken = now,
            }
        }
    }

    /// Waits for a place; `None` once the gate is closed.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Option<Slot> {
        if let Some(slot) = self.try_acquire() {
            return Some(slot);
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(self);
        loop {
            let room = self.room.notified();
            let mut room = std::pin::pin!(room);
            // Registered before looking again, so a release in between is not missed.
            room.as_mut().enable();
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            if let Some(slot) = self.try_acquire() {
                return Some(slot);
            }
            room.await;
        }
    }

    /// No more places are handed out; every waiter gets `None`. Places already taken stay
    /// valid until their messages finish.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
    }
}

/// Counts a waiter out again, however its wait ends (a place, the close, or cancellation).
struct Waiting<'a>(&'a Gate);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn no_more_places_than_the_capacity_are_handed_out_and_a_dropped_one_is_free_again() {
        let gate = Gate::new(2);
        let first = gate.try_acquire().expect("first place");
        let _second = gate.try_acquire().expect("second place");
        assert!(gate.try_acquire().is_none());
        drop(first);
        assert!(gate.try_acquire().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_caller_gets_the_place_another_gives_back() {
        let gate = Gate::new(1);
        let held = gate.try_acquire().expect("place");
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire().await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "the waiter must wait while the queue is full"
        );
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was woken")
            .expect("join");
        assert!(got);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closing_the_gate_ends_every_wait_and_refuses_new_places() {
        let gate = Gate::new(1);
        let _held = gate.try_acquire().expect("place");
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.acquire().await.is_none() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.close();
        for waiter in waiters {
            let refused = tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("the waiter was woken")
                .expect("join");
            assert!(refused);
        }
        assert!(gate.try_acquire().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_senders_racing_for_few_places_never_exceed_the_capacity_and_all_finish() {
        let gate = Gate::new(3);
        let inside = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (gate, inside) = (gate.clone(), inside.clone());
                tokio::spawn(async move {
                    for _ in 0..500 {
                        let slot = gate.acquire().await.expect("open");
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 3, "{now} places taken with a capacity of 3");
                        tokio::task::yield_now().await;
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(slot);
                    }
                })
            })
            .collect();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("no sender was left waiting")
                .expect("no sender panicked");
        }
    }
}
