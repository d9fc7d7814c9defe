//! The client's own record of every outgoing message until the cloud has it. MODE forces
//! cleanSession=true, so the broker keeps nothing across a reconnect and rumqttc drops its own
//! unacknowledged publishes on a new session: this outbox is the only copy, and after a lost
//! connection everything not acknowledged goes back to the front of the queue, in order.
//!
//! A message moves queue -> handed (given to rumqttc, packet id not yet known) -> inflight
//! (written with packet id `pkid`, awaiting PUBACK) -> done. rumqttc reports each publish it
//! takes, in the order it was handed, as `Outgoing::Publish(pkid)` (or `AwaitAck(pkid)` when the
//! id collides with one still in flight, followed later by `Outgoing::Publish(pkid)`).

use std::collections::VecDeque;

use tokio::sync::oneshot;

use super::gate::Slot;

use super::config::DeliveryHook;
use super::error::ClientError;
use mode_core::proto::Qos;

/// One outgoing publish.
#[derive(Debug)]
pub(crate) struct Message {
    /// The message id: order of acceptance; re-sends keep it.
    pub seq: u64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: Qos,
    /// Told the outcome, if the sender is still listening.
    pub done: Option<oneshot::Sender<Result<(), ClientError>>>,
    /// The message's place in the bounded queue, given back when it is dropped.
    pub permit: Option<Slot>,
}

impl Message {
    /// Ends the message's life with `result`, told to the hook and to the sender if it still
    /// listens; its queue place is released.
    pub fn finish(mut self, result: Result<(), ClientError>, hook: Option<&DeliveryHook>) {
        if let Some(hook) = hook {
            (hook.0)(self.seq, &result);
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(result);
        }
    }
}

/// Queue, handed, in flight; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Message>,
    handed: VecDeque<Message>,
    inflight: Inflight,
    collided: Option<(u16, Message)>,
}

/// Messages awaiting their PUBACK, indexed by packet id. rumqttc numbers publishes from 1 up
/// to the inflight window and then starts over, so the table stays as small as the window, and
/// each publish and acknowledgement costs an index rather than a hash.
#[derive(Debug, Default)]
struct Inflight {
    slots: Vec<Option<Message>>,
    len: usize,
}

impl Inflight {
    /// Returns the message that held `pkid` before, if any.
    fn insert(&mut self, pkid: u16, message: Message) -> Option<Message> {
        let index = usize::from(pkid);
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        let previous = self.slots[index].replace(message);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    fn remove(&mut self, pkid: u16) -> Option<Message> {
        let message = self.slots.get_mut(usize::from(pkid))?.take()?;
        self.len -= 1;
        Some(message)
    }

    fn contains(&self, pkid: u16) -> bool {
        matches!(self.slots.get(usize::from(pkid)), Some(Some(_)))
    }

    fn drain(&mut self) -> impl Iterator<Item = Message> + use<> {
        self.len = 0;
        std::mem::take(&mut self.slots).into_iter().flatten()
    }
}

impl Outbox {
    /// Every message not yet acknowledged.
    pub fn len(&self) -> usize {
        self.queue.len() + self.in_network()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages given to the network and not yet acknowledged.
    pub fn in_network(&self) -> usize {
        self.handed.len() + self.inflight.len + usize::from(self.collided.is_some())
    }

    pub fn push(&mut self, message: Message) {
        self.queue.push_back(message);
    }

    /// The next message to hand to the network.
    pub fn front(&self) -> Option<&Message> {
        self.queue.front()
    }

    /// The front message was handed to the network.
    pub fn hand_front(&mut self) {
        if let Some(message) = self.queue.pop_front() {
            self.handed.push_back(message);
        }
    }

    /// rumqttc wrote a publish with `pkid` (0 for QoS 0). Returns the message if it is done
    /// (QoS 0 needs no acknowledgement).
    pub fn on_outgoing_publish(&mut self, pkid: u16) -> Option<Message> {
        if let Some((collided_pkid, _)) = &self.collided
            && *collided_pkid == pkid
            && !self.inflight.contains(pkid)
        {
            let (_, message) = self.collided.take()?;
            self.inflight.insert(pkid, message);
            return None;
        }
        let message = self.handed.pop_front()?;
        if message.qos == Qos::AtMostOnce {
            return Some(message);
        }
        if let Some(previous) = self.inflight.insert(pkid, message) {
            // rumqttc never reuses an id in flight (it reports AwaitAck instead); if it did,
            // keep the older message rather than lose it.
            tracing::error!(
                pkid,
                "packet id reused while in flight; re-queueing the older message"
            );
            self.queue.push_front(previous);
        }
        None
    }

    /// rumqttc holds the next handed publish until `pkid` is acknowledged.
    pub fn on_await_ack(&mut self, pkid: u16) {
        if let Some(message) = self.handed.pop_front() {
            self.collided = Some((pkid, message));
        }
    }

    /// The oldest handed message is done (a transport without packet ids: one at a time).
    pub fn complete_handed(&mut self) -> Option<Message> {
        self.handed.pop_front()
    }

    /// The cloud acknowledged `pkid`; returns the message it acknowledged.
    pub fn on_puback(&mut self, pkid: u16) -> Option<Message> {
        self.inflight.remove(pkid)
    }

    /// The connection is gone: every message not acknowledged goes back to the queue, oldest
    /// first, to be sent again on the next connection.
    pub fn requeue(&mut self) {
        let mut all: Vec<Message> = self.handed.drain(..).collect();
        all.extend(self.inflight.drain());
        all.extend(self.collided.take().map(|(_, message)| message));
        if all.is_empty() {
            return;
        }
        all.extend(self.queue.drain(..));
        all.sort_by_key(|message| message.seq);
        self.queue = all.into();
    }

    /// Removes the oldest message that has not been handed to the network.
    pub fn drop_oldest(&mut self) -> Option<Message> {
        self.queue.pop_front()
    }

    /// Removes everything (the client is closing).
    pub fn drain(&mut self) -> Vec<Message> {
        self.requeue();
        self.queue.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, qos: Qos) -> Message {
        Message {
            seq,
            topic: "/devices/1/event".into(),
            payload: seq.to_string().into_bytes(),
            qos,
            done: None,
            permit: None,
        }
    }

    fn seqs(outbox: &mut Outbox) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(m) = outbox.drop_oldest() {
            out.push(m.seq);
        }
        out
    }

    #[test]
    fn unacknowledged_messages_return_to_the_queue_in_order_after_a_lost_connection() {
        let mut outbox = Outbox::default();
        for seq in 0..6 {
            outbox.push(message(seq, Qos::AtLeastOnce));
        }
        for _ in 0..4 {
            outbox.hand_front();
        }
        assert!(outbox.on_outgoing_publish(1).is_none());
        assert!(outbox.on_outgoing_publish(2).is_none());
        assert!(outbox.on_outgoing_publish(3).is_none());
        assert_eq!(outbox.on_puback(2).map(|m| m.seq), Some(1));
        assert_eq!(outbox.len(), 5);
        outbox.requeue();
        assert_eq!(outbox.in_network(), 0);
        assert_eq!(seqs(&mut outbox), [0, 2, 3, 4, 5]);
    }

    #[test]
    fn qos0_messages_are_done_once_written() {
        let mut outbox = Outbox::default();
        outbox.push(message(0, Qos::AtMostOnce));
        outbox.hand_front();
        assert_eq!(outbox.on_outgoing_publish(0).map(|m| m.seq), Some(0));
        assert!(outbox.is_empty());
    }

    #[test]
    fn a_packet_id_collision_is_followed_to_its_publish() {
        let mut outbox = Outbox::default();
        outbox.push(message(0, Qos::AtLeastOnce));
        outbox.push(message(1, Qos::AtLeastOnce));
        outbox.hand_front();
        outbox.hand_front();
        assert!(outbox.on_outgoing_publish(1).is_none());
        outbox.on_await_ack(1);
        assert_eq!(outbox.in_network(), 2);
        assert_eq!(outbox.on_puback(1).map(|m| m.seq), Some(0));
        assert!(outbox.on_outgoing_publish(1).is_none());
        assert_eq!(outbox.on_puback(1).map(|m| m.seq), Some(1));
        assert!(outbox.is_empty());
    }
}
