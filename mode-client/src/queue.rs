//! The one path every outgoing message takes into the engine's queue: the transport's check,
//! waiting for room (in the queue and in the durable outbox's size bound), the durable write a
//! send waits for, the [`Delivery`] that reports the message's outcome, and closing the queue.

use std::collections::HashSet;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use mode_core::engine::SendError;
use mode_core::proto::rest as paths;
use tokio::sync::oneshot;

use super::durable::{Ticket, Tracker};
use super::shared::{Shared, State};
use super::{Client, ClientError, FullQueuePolicy, MessageId, Transport, http};

/// The outcome of one sent message, for callers who want to know when the cloud has it.
/// Dropping it is fine: the message is delivered all the same.
#[derive(Debug)]
pub struct Delivery {
    pub(crate) id: MessageId,
    pub(crate) rx: oneshot::Receiver<Result<(), ClientError>>,
}

impl Delivery {
    /// The message's id, as the [`DeliveryHook`](crate::DeliveryHook) will name it.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// Waits until the cloud acknowledged the message (QoS 1: PUBACK; QoS 0: written to the
    /// network; HTTP: a 2xx answer), or it was dropped or given up at close. Awaiting the
    /// `Delivery` itself does the same.
    pub async fn wait(self) -> Result<(), ClientError> {
        self.await
    }
}

impl Future for Delivery {
    type Output = Result<(), ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(ClientError::Closed)))
    }
}

/// One sender waiting for queue room, counted while it lives.
struct RoomWaiter<'a>(&'a Shared);

impl<'a> RoomWaiter<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared
            .room_waiters
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        RoomWaiter(shared)
    }
}

impl Drop for RoomWaiter<'_> {
    fn drop(&mut self) {
        self.0
            .room_waiters
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Starts closing the engine of `shared` by `now + timeout`; `None` when it is already closed.
pub(crate) fn start_close(
    shared: &Shared,
    timeout: Duration,
) -> Option<oneshot::Receiver<Result<(), ClientError>>> {
    shared
        .closed
        .store(true, std::sync::atomic::Ordering::Release);
    // Senders waiting for queue room give up now.
    shared.room.notify_waiters();
    let rx = {
        let mut state = shared.lock();
        if state.engine.is_closed() {
            return None;
        }
        let (reply, rx) = oneshot::channel();
        state.close_replies.push(reply);
        let now = shared.clock.now();
        state.engine.close(now + timeout, now);
        rx
    };
    shared.wake.notify();
    Some(rx)
}

impl Client {
    /// Refuses what the HTTP transport has no REST form for, before anything is queued.
    pub(crate) fn http_check(&self, kv_key: Option<&str>) -> Result<(), ClientError> {
        if self.inner.config.transport != Transport::Http {
            return Ok(());
        }
        match kv_key {
            Some(key) => paths::kv_key_path(self.device_id(), key)
                .map(drop)
                .map_err(ClientError::from),
            None => Err(ClientError::Unsupported(http::NO_REST_FORM)),
        }
    }

    /// Queues one message with `send` under the lock, with a sender for its outcome; with a
    /// durable outbox, also the ticket its sender waits on before the send returns.
    pub(crate) fn submit_locked(
        &self,
        state: &mut State,
        send: impl FnOnce(&mut State) -> Result<MessageId, SendError>,
    ) -> Result<(Delivery, Option<Ticket>), ClientError> {
        if let Some(durable) = &state.durable {
            durable.check()?;
        }
        let id = send(state)?;
        let State {
            engine, durable, ..
        } = state;
        let ticket = match durable {
            Some(durable) => {
                let ticket = durable.take_journal(engine, &HashSet::new());
                durable.holds(id).then_some(ticket)
            }
            None => None,
        };
        let (tx, rx) = oneshot::channel();
        state.deliveries.insert(id, tx);
        Ok((Delivery { id, rx }, ticket))
    }

    /// False when the durable outbox holds its size bound and a send must wait or fail; under
    /// `DropOldest` it makes room first (the oldest messages not on the network go).
    pub(crate) fn store_room(&self, state: &mut State) -> bool {
        let State {
            engine, durable, ..
        } = state;
        let Some(durable) = durable else {
            return true;
        };
        if !durable.is_full() {
            return true;
        }
        if self.inner.config.full_queue == FullQueuePolicy::DropOldest {
            while durable.is_full() && engine.drop_oldest().is_some() {
                durable.take_journal(engine, &HashSet::new());
            }
            return true;
        }
        false
    }

    /// Queues without waiting for room.
    pub(crate) fn try_submit(
        &self,
        send: impl FnOnce(&mut State) -> Result<MessageId, SendError>,
    ) -> Result<(Delivery, Option<Ticket>), ClientError> {
        let shared = &self.inner.shared;
        if shared.is_closed() {
            return Err(ClientError::Closed);
        }
        let submitted = {
            let mut state = shared.lock();
            if !self.store_room(&mut state) {
                let capacity = state.durable.as_ref().map_or(0, Tracker::len);
                return Err(ClientError::QueueFull { capacity });
            }
            self.submit_locked(&mut state, send)?
        };
        shared.wake.notify();
        Ok(submitted)
    }

    /// Queues without waiting for room; with a durable outbox, blocks until the message is
    /// written.
    pub(crate) fn try_enqueue(
        &self,
        send: impl FnOnce(&mut State) -> Result<MessageId, SendError>,
    ) -> Result<Delivery, ClientError> {
        let (delivery, ticket) = self.try_submit(send)?;
        if let Some(ticket) = ticket {
            ticket.wait_blocking()?;
        }
        Ok(delivery)
    }

    /// Queues, waiting for room first when the policy is `Block`, then (with a durable outbox)
    /// until the message is written.
    pub(crate) async fn enqueue(
        &self,
        send: impl FnOnce(&mut State) -> Result<MessageId, SendError>,
    ) -> Result<Delivery, ClientError> {
        let (delivery, ticket) = if self.inner.config.full_queue == FullQueuePolicy::Block {
            self.submit_when_room(send).await?
        } else {
            self.try_submit(send)?
        };
        if let Some(ticket) = ticket {
            ticket.wait().await?;
        }
        Ok(delivery)
    }

    /// Queues once there is room (in the queue and in the durable outbox).
    pub(crate) async fn submit_when_room(
        &self,
        send: impl FnOnce(&mut State) -> Result<MessageId, SendError>,
    ) -> Result<(Delivery, Option<Ticket>), ClientError> {
        let shared = &self.inner.shared;
        let mut send = Some(send);
        loop {
            if shared.is_closed() {
                return Err(ClientError::Closed);
            }
            {
                let mut state = shared.lock();
                let room = state.engine.room() > 0 && self.store_room(&mut state);
                if room || state.engine.is_closing() {
                    let send = send.take().expect("sent only once: this returns");
                    let submitted = self.submit_locked(&mut state, send)?;
                    drop(state);
                    shared.wake.notify();
                    return Ok(submitted);
                }
            }
            // Full: wait for room. Counted as a waiter (the task wakes waiters only when there
            // are some) and registered before looking again, so a release between the look and
            // the wait is never missed.
            let _waiting = RoomWaiter::new(shared);
            let mut room = pin!(shared.room.notified());
            room.as_mut().enable();
            let full = {
                let mut state = shared.lock();
                let room = state.engine.room() > 0 && self.store_room(&mut state);
                !room && !state.engine.is_closing()
            };
            if full && !shared.is_closed() {
                room.await;
            }
        }
    }
}
