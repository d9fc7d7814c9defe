//! The engine's record of every accepted message until the cloud has it. MODE forces
//! cleanSession=true, so the broker keeps nothing across a reconnect: this outbox is the only
//! copy. A message is queued, then handed to the transport (in network), then finished. Messages
//! are handed from the front of the queue in id order, so everything in the network is older
//! than everything queued, and after a lost connection the network's messages go back to the
//! front of the queue in their order.

use alloc::collections::VecDeque;

use super::types::{MessageId, Publish};

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Publish>,
    /// In id order (handed from the front of the queue); confirmations mostly come in that
    /// order too, so finishing one is usually a pop from the front.
    in_network: VecDeque<Publish>,
}

impl Outbox {
    /// Every message not yet finished.
    pub(crate) fn len(&self) -> usize {
        self.queue.len() + self.in_network.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages handed to the transport and not yet confirmed.
    pub(crate) fn in_network(&self) -> usize {
        self.in_network.len()
    }

    pub(crate) fn push(&mut self, message: Publish) {
        self.queue.push_back(message);
    }

    /// Hands the front message to the network; returns a copy for the transport.
    pub(crate) fn hand_front(&mut self) -> Option<Publish> {
        let message = self.queue.pop_front()?;
        let copy = message.clone();
        self.in_network.push_back(message);
        Some(copy)
    }

    /// The transport finished `id` (confirmed or refused); `None` if it is not in the network
    /// (already finished, or handed on a connection since lost: a late report is ignored).
    pub(crate) fn finish(&mut self, id: MessageId) -> Option<Publish> {
        if self.in_network.front().is_some_and(|front| front.id == id) {
            return self.in_network.pop_front();
        }
        let index = self
            .in_network
            .binary_search_by_key(&id, |message| message.id)
            .ok()?;
        self.in_network.remove(index)
    }

    /// The connection is gone: every message in the network goes back to the front of the queue,
    /// oldest first.
    pub(crate) fn requeue(&mut self) {
        while let Some(message) = self.in_network.pop_back() {
            self.queue.push_front(message);
        }
    }

    /// Removes the oldest message not handed to the network.
    pub(crate) fn drop_oldest(&mut self) -> Option<Publish> {
        self.queue.pop_front()
    }

    /// Removes everything, oldest first (the engine is closing).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Publish> + '_ {
        self.requeue();
        self.queue.drain(..)
    }
}
