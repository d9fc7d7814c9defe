//! Bounds the MQTT connections that hold bytes without having authenticated (all transports
//! together): a client that sends part of a CONNECT and never the rest holds memory for nothing.
//!
//! A connection counts once it holds part of a CONNECT (over WebSocket: once its handshake is
//! done, as tungstenite buffers an unfinished message out of sight). At most
//! `max_unauthenticated` count at once; one more pushes out the oldest. A real device sends its
//! CONNECT whole and at once, so it is read before it ever counts, and a flood of new
//! connections cannot push it out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// The connections holding part of a CONNECT.
pub(crate) struct Admission {
    max: usize,
    next_id: AtomicU64,
    /// Oldest first.
    waiting: Mutex<VecDeque<(u64, CancellationToken)>>,
}

/// One connection that has not authenticated yet; dropping it (authenticated or closed) frees
/// its place.
pub(crate) struct Pending {
    admission: Arc<Admission>,
    id: u64,
    counted: bool,
    evicted: CancellationToken,
}

impl Admission {
    pub(crate) fn new(max: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max: max.max(1),
            next_id: AtomicU64::new(0),
            waiting: Mutex::new(VecDeque::new()),
        })
    }

    /// A new connection; it does not count until [`Pending::hold`].
    pub(crate) fn admit(self: &Arc<Self>) -> Pending {
        Pending {
            admission: self.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            counted: false,
            evicted: CancellationToken::new(),
        }
    }
}

impl Pending {
    /// The connection holds bytes of an unfinished CONNECT: it counts from now on, and when
    /// that makes too many, the oldest counted one is pushed out.
    pub(crate) fn hold(&mut self) {
        if self.counted {
            return;
        }
        self.counted = true;
        let mut waiting = self
            .admission
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while waiting.len() >= self.admission.max {
            if let Some((_, oldest)) = waiting.pop_front() {
                oldest.cancel();
            }
        }
        waiting.push_back((self.id, self.evicted.clone()));
    }

    /// Cancelled when newer connections pushed this one out.
    pub(crate) fn eviction(&self) -> CancellationToken {
        self.evicted.clone()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut waiting = self
            .admission
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(at) = waiting.iter().position(|(id, _)| *id == self.id) {
            waiting.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_holder_is_pushed_out_and_a_finished_one_frees_its_place() {
        let admission = Admission::new(2);
        let [mut a, mut b, mut c, mut d, fresh] = [(); 5].map(|_| admission.admit());
        a.hold();
        b.hold();
        drop(b);
        c.hold();
        assert!(!a.evicted.is_cancelled() && !c.evicted.is_cancelled());
        d.hold();
        assert!(a.evicted.is_cancelled());
        assert!(!c.evicted.is_cancelled() && !d.evicted.is_cancelled());
        assert!(
            !fresh.evicted.is_cancelled(),
            "a connection holding nothing never counts"
        );
    }
}
