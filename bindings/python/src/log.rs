//! mode-core's `tracing` events, INFO and above, forwarded to Python's `logging` (logger
//! `mode.core`). IO threads never touch Python: they queue the formatted line, and the
//! dispatcher threads (already attached to deliver notifications) hand it to `logging`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use pyo3::prelude::*;
use tokio::sync::Notify;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Lines kept for Python at most; beyond, the oldest go (a stalled interpreter cannot make
/// the IO threads grow memory).
const CAPACITY: usize = 1024;

struct Queue {
    lines: Mutex<VecDeque<(Level, String)>>,
    ready: Notify,
}

fn queue() -> &'static Queue {
    static QUEUE: OnceLock<Queue> = OnceLock::new();
    QUEUE.get_or_init(|| Queue {
        lines: Mutex::new(VecDeque::new()),
        ready: Notify::new(),
    })
}

/// Wakes when log lines are waiting.
pub async fn ready() {
    queue().ready.notified().await;
}

/// Installs the forwarding subscriber, unless the process already has one.
pub fn install() {
    let subscriber = tracing_subscriber::registry().with(Forward.with_filter(LevelFilter::INFO));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Hands the waiting lines to `logging.getLogger("mode.core")`.
pub fn drain(py: Python<'_>) {
    let lines: Vec<_> = {
        let mut lines = queue().lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.drain(..).collect()
    };
    if lines.is_empty() {
        return;
    }
    let Ok(logger) = py
        .import("logging")
        .and_then(|logging| logging.call_method1("getLogger", ("mode.core",)))
    else {
        return;
    };
    for (level, line) in lines {
        let level = match level {
            Level::ERROR => 40,
            Level::WARN => 30,
            Level::INFO => 20,
            _ => 10,
        };
        if let Err(err) = logger.call_method1("log", (level, line)) {
            err.write_unraisable(py, Some(&logger));
        }
    }
}

struct Forward;

impl<S: Subscriber> Layer<S> for Forward {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut line = Line::default();
        event.record(&mut line);
        let text = if line.fields.is_empty() {
            line.message
        } else {
            format!("{} ({})", line.message, line.fields.trim_start())
        };
        let q = queue();
        {
            let mut lines = q.lines.lock().unwrap_or_else(|p| p.into_inner());
            if lines.len() == CAPACITY {
                lines.pop_front();
            }
            lines.push_back((*event.metadata().level(), text));
        }
        q.ready.notify_one();
    }
}

#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}
