//! What the transport and the clock tell an [`Engine`]: connected, subscribed, activity,
//! disconnected, an incoming publish, a delivery or refusal, and the timer (`handle_timeout`).

use super::*;

impl Engine {
    /// Notes an error the transport saw that ended nothing (e.g. a refused subscription), so
    /// [`Stats::last_error`] shows it.
    pub fn record_error(&mut self, error: String) {
        self.stats.last_error = Some(error);
    }

    /// The transport is up (MQTT: CONNACK accepted). The engine asks to subscribe and starts
    /// sending; it expects a fresh reload.
    pub fn connected(&mut self, now: Instant) {
        if self.link != Link::Connecting {
            return;
        }
        self.last_activity = now;
        // Before any sync message can arrive: the reload that follows the subscription is the
        // new truth even if the cloud's revisions went backwards.
        self.session.on_subscribed();
        let topics = self.session.subscriptions();
        self.transmits
            .push_back(Transmit::Subscribe(topics.clone()));
        self.link = Link::Up {
            announced: false,
            subscribed: topics,
            disconnect_sent: false,
        };
        self.backoff.on_connected(now);
        self.maybe_leave(now);
    }

    /// The subscriptions were acknowledged (MQTT: SUBACK; HTTP: the channels are open). The
    /// first one on a connection announces [`Event::Connected`].
    pub fn subscribed(&mut self, now: Instant) {
        self.last_activity = now;
        if let Link::Up { announced, .. } = &mut self.link
            && !*announced
        {
            *announced = true;
            if self.ever_connected {
                self.stats.reconnects += 1;
            }
            self.ever_connected = true;
            self.events.push_back(Event::Connected);
        }
    }

    /// Something arrived from the cloud (any packet, a ping response included): the connection
    /// is alive.
    pub fn handle_activity(&mut self, now: Instant) {
        self.last_activity = self.last_activity.max(now);
    }

    /// The transport ended, or an attempt failed. Unconfirmed messages go back to the front of
    /// the queue; the next attempt is scheduled by the backoff, jittered from the caller's seed.
    /// Ignored when no transport was up or being set up.
    pub fn disconnected(&mut self, reason: DisconnectReason, now: Instant) {
        let was_disconnecting = match &self.link {
            Link::Up {
                disconnect_sent, ..
            } => *disconnect_sent,
            Link::Connecting => false,
            Link::Down { .. } | Link::Closed => return,
        };
        self.link = Link::Down { retry_at: now };
        self.outbox.requeue();
        if self.closing.is_some() && (was_disconnecting || self.outbox.is_empty()) {
            self.finish_close();
            return;
        }
        let failure = match reason {
            DisconnectReason::AuthFailed(_) => Failure::Auth,
            _ => Failure::Connection,
        };
        let random = self.random.next_unit();
        // Whole milliseconds, as the caller's clock counts: the wait reported is the wait kept.
        let wait =
            Duration::from_millis(millis_ceil(self.backoff.on_failure(failure, now, random)));
        self.link = Link::Down {
            retry_at: now + wait,
        };
        self.stats.last_error = Some(reason.to_string());
        self.events.push_back(Event::Disconnected {
            reason,
            retry_in: Some(wait),
        });
    }

    /// A publish from the cloud (MQTT), or a message on one of the HTTP transport's WebSockets
    /// in its MQTT form.
    pub fn handle_publish(&mut self, topic: &str, payload: &[u8], now: Instant) {
        self.handle_activity(now);
        self.stats.bytes_in += payload.len() as u64;
        match self.session.handle(topic, payload) {
            Incoming::Command(command) => {
                self.stats.commands_received += 1;
                self.events.push_back(Event::Command(command));
            }
            Incoming::Kv(Applied::Changed {
                rev,
                reload,
                changes,
            }) => {
                self.stats.kv_applied += 1;
                self.events.push_back(Event::Kv {
                    rev,
                    reload,
                    changes,
                });
            }
            Incoming::Kv(Applied::Ignored { .. }) => self.stats.kv_stale += 1,
            Incoming::BulkResponse { label, response } => {
                let request = self.bulk_waits.remove(&response.request_id).is_some();
                self.events.push_back(Event::BulkResponse {
                    label,
                    response,
                    request,
                });
            }
            Incoming::Unrelated { .. } => {}
            Incoming::Invalid { topic, error } => {
                if matches!(
                    Topic::parse(&topic),
                    Ok(Topic {
                        kind: TopicKind::Kv,
                        ..
                    })
                ) {
                    self.stats.kv_invalid += 1;
                }
                self.stats.last_error = Some(format!("{topic}: {error}"));
                self.events.push_back(Event::Error { topic, error });
            }
        }
    }

    /// The cloud confirmed message `id` (QoS 1: PUBACK; QoS 0: written; REST: 2xx). A report for
    /// a message not in the network (already finished, or handed on a connection since lost) is
    /// ignored.
    pub fn delivered(&mut self, id: MessageId, now: Instant) {
        let Some(message) = self.outbox.finish(id) else {
            return;
        };
        self.stats.messages_acked += 1;
        self.stats.pending -= 1;
        self.journal_done(message.id);
        self.events.push_back(Event::Delivered(id));
        self.maybe_leave(now);
    }

    /// The cloud refused message `id` itself (e.g. REST 4xx for an invalid key): retrying cannot
    /// help, so it is dropped and the rest go on.
    pub fn failed(&mut self, id: MessageId, why: &str, now: Instant) {
        let Some(message) = self.outbox.finish(id) else {
            return;
        };
        self.stats.last_error = Some(format!("{}: {why}", message.topic));
        self.stats.pending -= 1;
        self.dropped(message, DropReason::Refused(why.to_owned()));
        self.maybe_leave(now);
    }

    /// Time passed: starts a due reconnect attempt, drops a connection the watchdog gave up on,
    /// times out bulk requests and ends a close at its deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(closing) = self.closing
            && now >= closing.deadline
        {
            if let Link::Up { .. } | Link::Connecting = self.link {
                self.transmits.push_back(Transmit::Abort);
            }
            self.finish_close();
            return;
        }
        let expired: Vec<String> = self
            .bulk_waits
            .iter()
            .filter(|(_, deadline)| deadline.is_some_and(|at| now >= at))
            .map(|(id, _)| id.clone())
            .collect();
        for request_id in expired {
            self.bulk_waits.remove(&request_id);
            self.events.push_back(Event::BulkTimeout { request_id });
        }
        match &self.link {
            // Closing with messages left keeps trying until the deadline.
            Link::Down { retry_at } if now >= *retry_at => {
                self.start_attempt();
            }
            Link::Up { .. } => {
                if let Some(watchdog) = self.config.watchdog
                    && now >= self.last_activity + watchdog
                {
                    self.transmits.push_back(Transmit::Abort);
                    self.disconnected(DisconnectReason::KeepaliveTimeout(watchdog), now);
                }
            }
            _ => {}
        }
    }
}
