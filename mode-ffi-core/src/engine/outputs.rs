//! What an engine asks of its transport and tells its application: `mode_engine_poll_transmit`, `poll_event`, `poll_timeout`, `poll_journal`, and the C forms they are handed out in.

use super::*;

/// Writes the next piece of work for the transport into `*out` (kind MODE_TRANSMIT_NONE when
/// there is nothing to do until another input). Call it after every input until it gives NONE.
/// Pointers in `*out` are borrowed until the next call on the engine.
///
/// # Safety
/// `engine` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_poll_transmit(
    engine: *mut ModeEngine,
    out: *mut ModeTransmit,
) -> ModeStatus {
    unsafe { poll(engine, out, transmit_view) }
}

/// The engine's next transmit in its C form.
fn transmit_view(engine: &mut ModeEngine) -> ModeTransmit {
    let held = &mut engine.held;
    let mut transmit = ModeTransmit {
        kind: ModeTransmitKind::ModeTransmitNone,
        topics: core::ptr::null(),
        topics_len: 0,
        publish: NO_PUBLISH,
    };
    let mut topics = |list: Vec<String>| {
        let views: Vec<ModeText> = list
            .into_iter()
            .map(|topic| {
                let (text, len) = held.text(topic);
                ModeText { text, len }
            })
            .collect();
        held.topics = views;
        (held.topics.as_ptr(), held.topics.len())
    };
    match engine.engine.poll_transmit() {
        None => {}
        Some(Transmit::Connect) => transmit.kind = ModeTransmitKind::ModeTransmitConnect,
        Some(Transmit::Subscribe(list)) => {
            transmit.kind = ModeTransmitKind::ModeTransmitSubscribe;
            (transmit.topics, transmit.topics_len) = topics(list);
        }
        Some(Transmit::Unsubscribe(list)) => {
            transmit.kind = ModeTransmitKind::ModeTransmitUnsubscribe;
            (transmit.topics, transmit.topics_len) = topics(list);
        }
        Some(Transmit::Publish(publish)) => {
            transmit.kind = ModeTransmitKind::ModeTransmitPublish;
            transmit.publish = held.publish(publish);
        }
        Some(Transmit::Disconnect) => transmit.kind = ModeTransmitKind::ModeTransmitDisconnect,
        Some(Transmit::Abort) => transmit.kind = ModeTransmitKind::ModeTransmitAbort,
    }
    transmit
}

fn disconnect_kind(reason: &DisconnectReason) -> ModeDisconnectKind {
    match reason {
        DisconnectReason::AuthFailed(_) => ModeDisconnectKind::ModeDisconnectAuth,
        DisconnectReason::Tls(_) => ModeDisconnectKind::ModeDisconnectTls,
        DisconnectReason::Network(_) => ModeDisconnectKind::ModeDisconnectNetwork,
        DisconnectReason::KeepaliveTimeout(_) => ModeDisconnectKind::ModeDisconnectKeepalive,
        DisconnectReason::Closed => ModeDisconnectKind::ModeDisconnectClosed,
    }
}

fn change_view(held: &mut Held, change: &Change) -> ModeChange {
    let (kind, key, value, previous) = ModeChangeKind::texts(change);
    let (key, key_len) = held.text(key.to_owned());
    let mut json = |value: Option<String>| match value {
        Some(value) => held.text(value),
        None => (core::ptr::null(), 0),
    };
    let (value, value_len) = json(value);
    let (previous, previous_len) = json(previous);
    ModeChange {
        kind,
        key,
        key_len,
        value,
        value_len,
        previous,
        previous_len,
    }
}

/// Writes the next thing for the application into `*out` (kind MODE_EVENT_NONE when there is
/// none). Poll until NONE after every input. Pointers in `*out` are borrowed until the next
/// call on the engine.
///
/// # Safety
/// `engine` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_poll_event(
    engine: *mut ModeEngine,
    out: *mut ModeEvent,
) -> ModeStatus {
    unsafe { poll(engine, out, event_view) }
}

/// The engine's next event in its C form.
fn event_view(engine: &mut ModeEngine) -> ModeEvent {
    let held = &mut engine.held;
    let mut view = NO_EVENT;
    match engine.engine.poll_event() {
        None => {}
        Some(Event::Connected) => view.kind = ModeEventKind::ModeEventConnected,
        Some(Event::Disconnected { reason, retry_in }) => {
            view.kind = ModeEventKind::ModeEventDisconnected;
            view.disconnect = disconnect_kind(&reason);
            view.has_retry = retry_in.is_some();
            view.retry_in_ms = retry_in.map_or(0, |wait| wait.as_millis() as u64);
            (view.text, view.text_len) = held.text(reason.to_string());
        }
        Some(Event::Command(command)) => {
            view.kind = ModeEventKind::ModeEventCommand;
            (view.action, view.action_len) = held.text(command.action);
            let parameters = Value::Object(command.parameters).to_string();
            (view.parameters, view.parameters_len) = held.text(parameters);
        }
        Some(Event::Kv {
            rev,
            reload,
            changes,
        }) => {
            view.kind = ModeEventKind::ModeEventKv;
            view.rev = rev;
            view.reload = reload;
            let changes: Vec<ModeChange> = changes
                .into_iter()
                .map(|change| change_view(held, &change))
                .collect();
            held.changes = changes;
            view.changes = held.changes.as_ptr();
            view.changes_len = held.changes.len();
        }
        Some(Event::BulkResponse {
            label,
            response,
            request,
        }) => {
            view.kind = ModeEventKind::ModeEventBulkResponse;
            (view.label, view.label_len) = held.text(label);
            (view.status, view.status_len) = held.text(response.status.as_str().to_owned());
            (view.payload, view.payload_len) = held.text(response.payload.to_string());
            (view.request_id, view.request_id_len) = held.text(response.request_id);
            view.request = request;
        }
        Some(Event::BulkTimeout { request_id }) => {
            view.kind = ModeEventKind::ModeEventBulkTimeout;
            (view.request_id, view.request_id_len) = held.text(request_id);
        }
        Some(Event::Delivered(id)) => {
            view.kind = ModeEventKind::ModeEventDelivered;
            view.id = id;
        }
        Some(Event::Dropped { id, topic, reason }) => {
            view.kind = ModeEventKind::ModeEventDropped;
            view.id = id;
            view.drop = match reason {
                DropReason::QueueFull => ModeDropKind::ModeDropQueueFull,
                DropReason::Refused(_) => ModeDropKind::ModeDropRefused,
                DropReason::Closed => ModeDropKind::ModeDropClosed,
            };
            (view.text, view.text_len) = held.text(reason.to_string());
            (view.topic, view.topic_len) = held.text(topic);
        }
        Some(Event::Error { topic, error }) => {
            view.kind = ModeEventKind::ModeEventError;
            (view.text, view.text_len) = held.text(error.to_string());
            (view.topic, view.topic_len) = held.text(topic);
        }
        Some(Event::Closed { unsent }) => {
            view.kind = ModeEventKind::ModeEventClosed;
            view.unsent = unsent as u64;
        }
    }
    view
}

/// Writes into `*out_at_ms` when ::mode_engine_handle_timeout is next due (a reconnect attempt,
/// the watchdog, a bulk request's or a close's deadline), on the same clock as `now_ms`, or
/// MODE_NO_TIMEOUT when no timer is needed. It may be in the past: call handle_timeout then.
///
/// # Safety
/// `engine` NULL or live; `out_at_ms` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_poll_timeout(
    engine: *const ModeEngine,
    out_at_ms: *mut u64,
) -> ModeStatus {
    unsafe {
        read(engine, out_at_ms, |engine| {
            engine
                .poll_timeout()
                .map_or(MODE_NO_TIMEOUT, Instant::as_millis)
        })
    }
}

/// Writes the next change of the outbox to persist into `*out` (kind MODE_JOURNAL_NONE when
/// there is none; always NONE unless the config's `journal` is on). Pointers in `*out` are
/// borrowed until the next call on the engine.
///
/// # Safety
/// `engine` NULL or live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_engine_poll_journal(
    engine: *mut ModeEngine,
    out: *mut ModeJournal,
) -> ModeStatus {
    unsafe { poll(engine, out, journal_view) }
}

/// The engine's next outbox change in its C form.
fn journal_view(engine: &mut ModeEngine) -> ModeJournal {
    match engine.engine.poll_journal() {
        None => ModeJournal {
            kind: ModeJournalKind::ModeJournalNone,
            id: 0,
            publish: NO_PUBLISH,
        },
        Some(OutboxChange::Added(publish)) => {
            let publish = engine.held.publish(publish);
            ModeJournal {
                kind: ModeJournalKind::ModeJournalAdded,
                id: publish.id,
                publish,
            }
        }
        Some(OutboxChange::Done(id)) => ModeJournal {
            kind: ModeJournalKind::ModeJournalDone,
            id,
            publish: NO_PUBLISH,
        },
    }
}
