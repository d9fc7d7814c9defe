//! Fan-out: bounded per-subscriber queues, so that no operation of the cloud ever waits on a
//! slow subscriber; one that falls behind is cut off (and its connection cancelled) instead.
//! And the one way a connection subscribes to a feed of its device.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Cloud, CloudError, ConnectionGuard, Device};

/// A bounded stream of messages from the cloud to one subscriber. It ends (`recv` gives `None`)
/// when the subscriber fell too far behind ([`Subscription::overflowed`] then says so), or when
/// its connection was dropped.
#[derive(Debug)]
pub struct Subscription<T> {
    rx: mpsc::Receiver<T>,
    overflowed: Arc<AtomicBool>,
}

impl<T> Subscription<T> {
    /// The next message; `None` when the stream ended.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    /// True when the stream was cut because the subscriber fell behind.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }
}

/// The sending half the cloud keeps for one subscriber.
pub(super) struct Subscriber<T> {
    tx: mpsc::Sender<T>,
    overflowed: Arc<AtomicBool>,
    /// The connection to cancel when this subscriber falls behind.
    owner: Option<CancellationToken>,
}

impl<T: Clone> Subscriber<T> {
    pub(super) fn new(
        capacity: usize,
        owner: Option<CancellationToken>,
    ) -> (Self, Subscription<T>) {
        let (tx, rx) = mpsc::channel(capacity);
        let overflowed = Arc::new(AtomicBool::new(false));
        let sub = Subscriber {
            tx,
            overflowed: overflowed.clone(),
            owner,
        };
        (sub, Subscription { rx, overflowed })
    }
}

/// Sends `msg` to every subscriber in `subs`, dropping the closed ones and disconnecting the
/// ones that fell behind. Never waits. Returns how many received it.
pub(super) fn fan_out<T: Clone>(subs: &mut Vec<Subscriber<T>>, msg: &T, what: &str) -> usize {
    let mut delivered = 0;
    subs.retain(|sub| match sub.tx.try_send(msg.clone()) {
        Ok(()) => {
            delivered += 1;
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!(
                stream = what,
                "subscriber fell behind (queue full); disconnecting it"
            );
            sub.overflowed.store(true, Ordering::Relaxed);
            if let Some(owner) = &sub.owner {
                owner.cancel();
            }
            false
        }
    });
    delivered
}

impl Cloud {
    /// Subscribes connection `conn` to one feed of its device: `feed` picks the feed's
    /// subscribers; the subscription ends with the connection.
    pub(super) fn subscribe_device<T: Clone>(
        &self,
        conn: &ConnectionGuard,
        feed: fn(&mut Device) -> &mut Vec<Subscriber<T>>,
    ) -> Result<Subscription<T>, CloudError> {
        let mut state = self.state();
        let device = state.device_mut(conn.device_id)?;
        let (sub, subscription) = Subscriber::new(self.inner.subscriber_queue, Some(conn.token()));
        feed(device).push(sub);
        Ok(subscription)
    }
}
