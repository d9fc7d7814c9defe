//! A device's DDP sync stream ([`KvSubscription`]) with the faults a test asked for
//! ([`SyncFaults`]: delay, duplication, reordering), chosen by a seeded generator so a run can
//! be repeated exactly.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mode_core::proto::{DeviceId, SyncMessage};
use mode_core::random::SplitMix64;

use super::lock;
use super::subscriptions::Subscription;

/// Faults the cloud injects into one device's DDP sync stream (after the `reload`), to test a
/// mirror's handling of delayed, duplicated and reordered messages. Deterministic for a seed:
/// the same seed and the same messages give the same faults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncFaults {
    /// Each message waits this long before delivery.
    pub delay: Duration,
    /// Percent (0-100) of messages delivered twice.
    pub duplicate_percent: u8,
    /// Percent (0-100) of messages held back and delivered after the next one.
    pub reorder_percent: u8,
    /// Seed of the fault choices.
    pub seed: u64,
}

/// A device's DDP sync stream after the `reload`, with the device's [`SyncFaults`] applied.
/// [`KvSubscription::recv`] is cancel-safe: a message waiting out a delay or held back for
/// reordering stays in the subscription when the future is dropped (a server selects on it
/// next to its socket).
pub struct KvSubscription {
    pub(super) inner: Subscription<SyncMessage>,
    faults: Arc<Mutex<SyncFaults>>,
    device_id: DeviceId,
    /// Boxed so the subscription stays small next to the other streams a server holds.
    queue: Box<FaultQueue>,
}

/// Where [`KvSubscription`] keeps messages between its fault decisions.
struct FaultQueue {
    rng: SplitMix64,
    seeded_with: Option<u64>,
    /// Decided, delivered in this order.
    ready: VecDeque<SyncMessage>,
    /// Received, waiting out its delay until then.
    delayed: Option<(SyncMessage, tokio::time::Instant)>,
    /// Held back to go after its successor, or alone at that time.
    held: Option<(SyncMessage, tokio::time::Instant)>,
}

/// How long a message held back for reordering waits for a successor before going out alone.
const REORDER_WAIT: Duration = Duration::from_millis(20);

impl KvSubscription {
    pub(super) fn new(
        inner: Subscription<SyncMessage>,
        faults: Arc<Mutex<SyncFaults>>,
        device_id: DeviceId,
    ) -> Self {
        KvSubscription {
            inner,
            faults,
            device_id,
            queue: Box::new(FaultQueue {
                rng: SplitMix64(0),
                seeded_with: None,
                ready: VecDeque::new(),
                delayed: None,
                held: None,
            }),
        }
    }

    /// The next sync message; `None` when the stream ended.
    pub async fn recv(&mut self) -> Option<SyncMessage> {
        loop {
            if let Some(msg) = self.queue.ready.pop_front() {
                return Some(msg);
            }
            if let Some((_, until)) = &self.queue.delayed {
                tokio::time::sleep_until(*until).await;
                if let Some((msg, _)) = self.queue.delayed.take() {
                    self.decide(msg);
                }
                continue;
            }
            let received = match &self.queue.held {
                Some((_, until)) => {
                    let until = *until;
                    tokio::select! {
                        msg = self.inner.recv() => Some(msg),
                        _ = tokio::time::sleep_until(until) => None,
                    }
                }
                None => Some(self.inner.recv().await),
            };
            match received {
                // The held message waited long enough for a successor: it goes alone.
                None => {
                    if let Some((held, _)) = self.queue.held.take() {
                        self.deliver(held);
                    }
                }
                Some(None) => match self.queue.held.take() {
                    Some((held, _)) => self.deliver(held),
                    None => return None,
                },
                Some(Some(msg)) => {
                    let delay = self.faults().delay;
                    if delay.is_zero() {
                        self.decide(msg);
                    } else {
                        self.queue.delayed = Some((msg, tokio::time::Instant::now() + delay));
                    }
                }
            }
        }
    }

    /// The device's faults now, with the generator seeded for them.
    fn faults(&mut self) -> SyncFaults {
        let faults = lock(&self.faults).clone();
        if self.queue.seeded_with != Some(faults.seed) {
            self.queue.rng =
                SplitMix64(faults.seed ^ self.device_id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            self.queue.seeded_with = Some(faults.seed);
        }
        faults
    }

    /// Places a message that is due: after a held one's successor, held back itself, or ready.
    fn decide(&mut self, msg: SyncMessage) {
        let faults = self.faults();
        if let Some((held, _)) = self.queue.held.take() {
            self.deliver(msg);
            self.deliver(held);
        } else if percent(&mut self.queue.rng, faults.reorder_percent) {
            self.queue.held = Some((msg, tokio::time::Instant::now() + REORDER_WAIT));
        } else {
            self.deliver(msg);
        }
    }

    /// Makes `msg` ready, twice when the duplicate fault says so.
    fn deliver(&mut self, msg: SyncMessage) {
        let faults = self.faults();
        if percent(&mut self.queue.rng, faults.duplicate_percent) {
            self.queue.ready.push_back(msg.clone());
        }
        self.queue.ready.push_back(msg);
    }

    /// True when the stream was cut because the subscriber fell behind.
    pub fn overflowed(&self) -> bool {
        self.inner.overflowed()
    }
}

/// True `p` times in a hundred (the fault choices: same sequence for a seed everywhere).
fn percent(rng: &mut SplitMix64, p: u8) -> bool {
    p > 0 && rng.next_u64() % 100 < u64::from(p)
}
