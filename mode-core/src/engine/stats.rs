//! The engine's counters: [`Counters`], the one list of them (`#[repr(C)]`, so the C APIs hand
//! out this very struct as `mode_stats_t`), and [`Stats`], the counters with the last error's
//! text, what [`Engine::stats`](super::Engine::stats) and the drivers return.

use core::ops::{Deref, DerefMut};

use crate::prelude::*;

/// The engine's counters, every one a `u64`. "Messages" are every outgoing publish or REST
/// write: events, kv writes, bulk data and requests, data for routing.
///
/// The one definition of them: Rust reads them through `Stats` (`stats.messages_queued`), C
/// as `mode_stats_t`, which is this struct (`#[repr(C)]`: its field order is part of the C ABI,
/// so a new counter goes at the end), and a binding lists them by name with `named()`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages accepted by a send call.
    pub messages_queued: u64,
    /// Messages handed to the network (a re-send after a reconnect counts again).
    pub messages_sent: u64,
    /// Messages the cloud acknowledged (PUBACK, HTTP 2xx), and QoS 0 messages once written.
    pub messages_acked: u64,
    /// Messages dropped by the full-queue policy, refused by the cloud or given up at close.
    pub messages_dropped: u64,
    /// Messages waiting now, queued or awaiting their acknowledgement.
    pub pending: u64,
    /// Successful connections after the first.
    pub reconnects: u64,
    /// Connection attempts, successful or not.
    pub connection_attempts: u64,
    /// DDP sync messages applied to the mirror.
    pub kv_applied: u64,
    /// DDP sync messages ignored as stale or duplicate.
    pub kv_stale: u64,
    /// DDP sync messages that could not be decoded.
    pub kv_invalid: u64,
    /// Commands received.
    pub commands_received: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
    /// Notifications dropped because the application did not keep up. Always 0 from the
    /// engine, which keeps every event until polled; a driver with a bounded channel (the
    /// managed client, libmode's `mode_client_t`) fills it in.
    pub notifications_dropped: u64,
    /// Messages a durable outbox held that could not be read back at start (a torn or damaged
    /// store). Always 0 from the engine; a driver with a durable outbox fills it in (a firmware
    /// keeping its own journal counts its own, see examples/c/durable_outbox.c).
    pub outbox_unrecovered: u64,
}

/// How many counters [`Counters`] holds.
pub const COUNTERS: usize = 15;

impl Counters {
    /// Every counter with its name, in field order: what a binding shows as a table (Python's
    /// `stats()` dict) without listing the fields again. A counter added to [`Counters`] does
    /// not compile until it is here too (the pattern names every field, the array's length is
    /// [`COUNTERS`]).
    pub fn named(&self) -> [(&'static str, u64); COUNTERS] {
        macro_rules! named {
            ($($field:ident),* $(,)?) => {{
                let Counters { $($field),* } = *self;
                [$((stringify!($field), $field)),*]
            }};
        }
        named!(
            messages_queued,
            messages_sent,
            messages_acked,
            messages_dropped,
            pending,
            reconnects,
            connection_attempts,
            kv_applied,
            kv_stale,
            kv_invalid,
            commands_received,
            bytes_in,
            bytes_out,
            notifications_dropped,
            outbox_unrecovered,
        )
    }
}

/// The engine's [`Counters`] (read as `stats.messages_queued`: it derefs to them) and the last
/// error seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// The counters.
    pub counters: Counters,
    /// The last error seen, as text.
    pub last_error: Option<String>,
}

impl Deref for Stats {
    type Target = Counters;

    fn deref(&self) -> &Counters {
        &self.counters
    }
}

impl DerefMut for Stats {
    fn deref_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_lists_every_counter_once_in_field_order() {
        // `named` binds each value by its field's name (the macro), so what is left to check
        // is the order: the struct's, which is mode_stats_t's. Debug prints fields in order.
        let counters = Counters {
            messages_queued: 1,
            outbox_unrecovered: 15,
            ..Counters::default()
        };
        let debug = format!("{counters:?}");
        let mut rest = debug.as_str();
        for (name, value) in counters.named() {
            let field = format!(" {name}: {value}");
            let at = rest
                .find(&field)
                .unwrap_or_else(|| panic!("{field} in {debug}"));
            rest = &rest[at + field.len()..];
        }
        assert_eq!(rest, " }");
        assert_eq!(counters.named()[0], ("messages_queued", 1));
        assert_eq!(counters.named()[COUNTERS - 1], ("outbox_unrecovered", 15));
        assert_eq!(size_of::<Counters>(), COUNTERS * size_of::<u64>());
    }

    #[test]
    fn stats_reads_and_writes_its_counters() {
        let mut stats = Stats::default();
        stats.pending += 2;
        stats.bytes_out = 7;
        assert_eq!(stats.counters.pending, 2);
        assert_eq!(stats.named()[12], ("bytes_out", 7));
    }
}
