//! The library's own `tracing` events, forwarded to a client's log callback. A small `tracing`
//! subscriber per client is the default around the calls that run client code, and every task
//! of the client carries it (mode-client spawns with the caller's dispatcher), so it sees that
//! client's events and no one else's, even on IO threads many clients share: no global
//! subscriber that could clash with the host program's.

use std::ffi::{c_char, c_int};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::{Interest, Subscriber};
use tracing::{Dispatch, Event, Level, Metadata};

use crate::ModeStatus;

mode_ffi_core::c_enums!(ModeLogLevel);
use crate::util::{CText, enum_arg};

/// How serious a log line is. The values are fixed (1 and 2 came first), so they do not sort by
/// severity: compare with `==`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeLogLevel {
    /// Something worth knowing: connected, closed.
    ModeLogInfo = 1,
    /// Something went wrong and was handled: a malformed message, a dropped message, a lost
    /// connection.
    ModeLogWarn = 2,
    /// Something failed that needs the application's attention: e.g. the cloud refused the key.
    ModeLogError = 3,
    /// Detail for debugging: connection attempts, DDP revisions.
    ModeLogDebug = 4,
    /// Everything.
    ModeLogTrace = 5,
}

impl ModeLogLevel {
    fn of(level: Level) -> ModeLogLevel {
        match level {
            Level::ERROR => ModeLogLevel::ModeLogError,
            Level::WARN => ModeLogLevel::ModeLogWarn,
            Level::INFO => ModeLogLevel::ModeLogInfo,
            Level::DEBUG => ModeLogLevel::ModeLogDebug,
            Level::TRACE => ModeLogLevel::ModeLogTrace,
        }
    }

    /// A ::mode_log_level_t passed as an int, as the most verbose level to pass.
    pub(crate) fn filter_arg(level: c_int) -> Result<LevelFilter, ModeStatus> {
        use ModeLogLevel::*;
        let table = [
            (ModeLogInfo, LevelFilter::INFO),
            (ModeLogWarn, LevelFilter::WARN),
            (ModeLogError, LevelFilter::ERROR),
            (ModeLogDebug, LevelFilter::DEBUG),
            (ModeLogTrace, LevelFilter::TRACE),
        ];
        enum_arg(level, &table, "log level", "mode_log_level_t")
    }
}

/// One log line, borrowed for the callback only. Texts follow the rule at the top of mode.h.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModeLogRecord {
    /// How serious it is.
    pub level: ModeLogLevel,
    /// Where it comes from: a Rust module path such as "mode_client::task", or "mode_ffi".
    pub target: *const c_char,
    /// The target's length.
    pub target_len: usize,
    /// The message and its fields, e.g. "connection refused reason=... retry_in=2s"; no newline.
    /// Never holds the API key.
    pub message: *const c_char,
    /// The message's length.
    pub message_len: usize,
    /// The device the client speaks for.
    pub device_id: u64,
}

/// Receives one log line (see ::mode_log_record_t).
pub type ModeLogCb =
    Option<unsafe extern "C" fn(userdata: *mut std::ffi::c_void, record: *const ModeLogRecord)>;

/// A log line on its way to the dispatcher thread.
pub(crate) struct LogLine {
    pub level: ModeLogLevel,
    pub target: CText,
    pub message: CText,
}

/// More lines than this waiting for the callback are dropped (and counted): a slow callback
/// must not grow memory without bound while the connection task keeps logging.
const MAX_PENDING: usize = 1024;

/// A client's log settings, shared by its subscriber and its dispatcher.
pub(crate) struct LogState {
    /// The most verbose level that passes, as `level_index`.
    level: AtomicU8,
    /// A log callback is registered (set at start): without one nothing is formatted.
    pub wanted: AtomicBool,
    pub pending: AtomicUsize,
    pub dropped: AtomicUsize,
    api_key: String,
}

fn level_index(filter: LevelFilter) -> u8 {
    match filter.into_level() {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(Level::TRACE) => 5,
    }
}

impl LogState {
    pub fn new(api_key: String) -> Arc<LogState> {
        Arc::new(LogState {
            level: AtomicU8::new(level_index(LevelFilter::INFO)),
            wanted: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            api_key,
        })
    }

    pub fn set_level(&self, filter: LevelFilter) {
        self.level.store(level_index(filter), Ordering::Release);
        // Callsites cache whether any subscriber wants them; ask again.
        tracing::callsite::rebuild_interest_cache();
    }

    fn filter(&self) -> LevelFilter {
        match self.level.load(Ordering::Acquire) {
            0 => LevelFilter::OFF,
            1 => LevelFilter::ERROR,
            2 => LevelFilter::WARN,
            3 => LevelFilter::INFO,
            4 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        }
    }
}

/// The subscriber: formats each enabled event and hands it to `sink`.
struct Forwarder {
    state: Arc<LogState>,
    sink: Box<dyn Fn(LogLine) + Send + Sync>,
}

/// Collects an event's message and its other fields as `name=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

impl Subscriber for Forwarder {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level can change at any time: decide per event.
        Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.state.filter())
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event()
            && self.state.wanted.load(Ordering::Acquire)
            && self.state.filter() >= *metadata.level()
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // Spans are not tracked: the client knows its device id without them.
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let state = &self.state;
        if state.pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING {
            state.pending.fetch_sub(1, Ordering::AcqRel);
            state.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        let mut message = text.message + &text.fields;
        if !state.api_key.is_empty() && message.contains(&state.api_key) {
            // Defence in depth: the client never logs the key, and it must not leak if it did.
            message = message.replace(&state.api_key, "<api key>");
        }
        (self.sink)(LogLine {
            level: ModeLogLevel::of(*event.metadata().level()),
            target: CText::new(event.metadata().target()),
            message: CText::from_string(message),
        });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// The dispatch that forwards one client's events to `sink`.
pub(crate) fn dispatch(
    state: Arc<LogState>,
    sink: impl Fn(LogLine) + Send + Sync + 'static,
) -> Dispatch {
    Dispatch::new(Forwarder {
        state,
        sink: Box::new(sink),
    })
}
