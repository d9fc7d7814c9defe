//! What the application asks of an [`Engine`]: events, DDP writes, bulk data and requests, raw
//! data, close; and how a message is checked and accepted into the outbox.

use super::*;

impl Engine {
    /// Queues an event for the device's home.
    pub fn send_event(
        &mut self,
        event_type: &str,
        data: Map<String, Value>,
        qos: Qos,
    ) -> Result<MessageId, SendError> {
        let out = self
            .session
            .event(&EventMessage::new(event_type, data), qos)?;
        self.accept(out)
    }

    /// [`send_event`](Self::send_event) with the data as JSON text (one JSON object), copied as
    /// it is: a C or Python caller's text is never parsed into a map only to be written again.
    pub fn send_event_json(
        &mut self,
        event_type: &str,
        data: &str,
        qos: Qos,
    ) -> Result<MessageId, SendError> {
        let out = self.session.event_json(event_type, data, qos)?;
        self.accept(out)
    }

    /// Queues a write of `key` = `value` to the device's cloud store (QoS 1). The mirror changes
    /// when the cloud broadcasts the change with its rev.
    pub fn kv_set(&mut self, key: &str, value: Value) -> Result<MessageId, SendError> {
        let out = self.session.kv_set(key, value)?;
        self.accept(out)
    }

    /// Queues a delete of `key` from the device's cloud store (QoS 1).
    pub fn kv_delete(&mut self, key: &str) -> Result<MessageId, SendError> {
        let out = self.session.kv_delete(key)?;
        self.accept(out)
    }

    /// Queues raw bytes for the smart module of `label`.
    pub fn send_bulk_data(
        &mut self,
        label: &str,
        data: &[u8],
        qos: Qos,
    ) -> Result<MessageId, SendError> {
        let out = self.session.bulk_data(label, data, qos)?;
        self.accept(out)
    }

    /// Queues data for routing (`/devices/{id}/data`).
    pub fn send_data(&mut self, data: &[u8], qos: Qos) -> Result<MessageId, SendError> {
        let out = self.session.data(data, qos);
        self.accept(out)
    }

    /// Queues a bulk-data request (QoS 1) to the module of `label`, subscribing to the label's
    /// responses first. Its response arrives as [`Event::BulkResponse`] with `request: true`;
    /// with a `timeout`, [`Event::BulkTimeout`] comes instead if none arrived by `now + timeout`.
    /// Returns the message id and the request id.
    pub fn bulk_request(
        &mut self,
        label: &str,
        payload: Value,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<(MessageId, String), SendError> {
        self.check_open()?;
        // Everything that can refuse the request is checked before anything changes (the
        // request counter, the watched labels): the label, the payload, the size and the
        // queue's room.
        let request_id = self.session.next_request_id();
        let out =
            self.session
                .encode_bulk_request(label, payload, Qos::AtLeastOnce, &request_id)?;
        self.check_fits(&out)?;
        if self.outbox.len() >= self.config.queue_size
            && self.config.full_queue != FullQueuePolicy::DropOldest
        {
            return Err(SendError::QueueFull {
                capacity: self.config.queue_size,
            });
        }
        let response_topic = self.session.watch_bulk_responses(label)?;
        self.session.take_request_id();
        if let Link::Up { subscribed, .. } = &mut self.link
            && !subscribed.contains(&response_topic)
        {
            // Ahead of the request itself, so the response cannot come before the subscription.
            subscribed.push(response_topic.clone());
            self.transmits
                .push_back(Transmit::Subscribe(vec![response_topic]));
        }
        let id = self.accept(out)?;
        self.bulk_waits
            .insert(request_id.clone(), timeout.map(|timeout| now + timeout));
        Ok((id, request_id))
    }

    /// Stops waiting for the response of `request_id` (the caller gave up); a late response then
    /// arrives with `request: false`.
    pub fn forget_bulk_request(&mut self, request_id: &str) {
        self.bulk_waits.remove(request_id);
    }

    /// Starts closing: no new message is accepted; queued ones are delivered until `deadline`,
    /// then the engine unsubscribes and asks for DISCONNECT. [`Event::Closed`] ends it, by the
    /// deadline at the latest.
    pub fn close(&mut self, deadline: Instant, now: Instant) {
        if self.link == Link::Closed {
            return;
        }
        let closing = self.closing.get_or_insert(Closing { deadline });
        closing.deadline = closing.deadline.min(deadline);
        match self.link {
            Link::Down { .. } | Link::Connecting if self.outbox.is_empty() => {
                if self.link == Link::Connecting {
                    self.transmits.push_back(Transmit::Abort);
                }
                self.finish_close();
            }
            _ => {
                self.maybe_leave(now);
                if now >= deadline {
                    self.handle_timeout(now);
                }
            }
        }
    }

    fn check_open(&self) -> Result<(), SendError> {
        if self.is_closing() {
            return Err(SendError::Closed);
        }
        Ok(())
    }

    fn check_fits(&self, out: &Outgoing) -> Result<(), SendError> {
        let size = publish_packet_size(out);
        let max = self.config.max_message_size;
        if size > max {
            return Err(SendError::TooLarge { size, max });
        }
        Ok(())
    }

    /// One path for every outgoing message: checks, the full-queue policy, an id.
    fn accept(&mut self, out: Outgoing) -> Result<MessageId, SendError> {
        self.check_open()?;
        self.check_fits(&out)?;
        let full = self.outbox.len() >= self.config.queue_size;
        if full && self.config.full_queue != FullQueuePolicy::DropOldest {
            return Err(SendError::QueueFull {
                capacity: self.config.queue_size,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let publish = Publish {
            id,
            topic: out.topic,
            payload: out.payload,
            qos: out.qos,
        };
        self.stats.messages_queued += 1;
        if full {
            // DropOldest: the oldest message not yet on the wire gives its place; if every one
            // is on the wire, the new one is the one dropped.
            match self.outbox.drop_oldest() {
                Some(oldest) => {
                    self.stats.pending -= 1;
                    self.dropped(oldest, DropReason::QueueFull);
                }
                None => {
                    self.stats.messages_dropped += 1;
                    self.events.push_back(Event::Dropped {
                        id,
                        topic: publish.topic,
                        reason: DropReason::QueueFull,
                    });
                    return Ok(id);
                }
            }
        }
        self.stats.pending += 1;
        if self.config.journal {
            self.journal.push_back(OutboxChange::Added(publish.clone()));
        }
        self.outbox.push(publish);
        Ok(id)
    }
}

/// The size of the MQTT PUBLISH packet that carries `out`: fixed header, remaining length,
/// topic, packet id (QoS 1) and payload. Checked before queueing so an oversized message fails
/// its caller instead of breaking the connection later.
fn publish_packet_size(out: &Outgoing) -> usize {
    let remaining =
        2 + out.topic.len() + if out.qos == Qos::AtLeastOnce { 2 } else { 0 } + out.payload.len();
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}
