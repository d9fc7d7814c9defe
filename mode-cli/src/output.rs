//! How `mode` writes: colour only for a terminal (and never with `NO_COLOR`), JSON lines for
//! scripts, and a last line of defence that blanks every known secret in anything written to
//! stderr (errors and `--verbose` logs).

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};

use std::time::Duration;

use mode_core::ddp::Change;
use serde_json::Value;

/// ANSI styling, on only when stdout is a terminal and `NO_COLOR` is unset or empty.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    color: bool,
}

/// Colours used by the timeline and summaries.
#[derive(Debug, Clone, Copy)]
pub enum Paint {
    /// Secondary text (times).
    Dim,
    /// Headings.
    Bold,
    /// Success.
    Green,
    /// Failure.
    Red,
    /// The cloud.
    Yellow,
    /// The device.
    Cyan,
    /// The app.
    Magenta,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is not set (https://no-color.org).
    pub fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: !no_color && std::io::stdout().is_terminal(),
        }
    }

    /// `text` in `paint`, or as is without colour.
    pub fn paint(&self, paint: Paint, text: impl AsRef<str>) -> String {
        let text = text.as_ref();
        if !self.color {
            return text.to_owned();
        }
        let code = match paint {
            Paint::Dim => "2",
            Paint::Bold => "1",
            Paint::Green => "32",
            Paint::Red => "31",
            Paint::Yellow => "33",
            Paint::Cyan => "36",
            Paint::Magenta => "35",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// Secrets (API keys, app keys) that must never reach stdout or stderr.
fn secrets() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Registers `secret` so [`redact`] blanks it wherever it appears.
pub fn register_secret(secret: &str) {
    if secret.len() >= 4 {
        secrets()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(secret.to_owned());
    }
}

/// `text` with every registered secret replaced by `<redacted>`.
pub fn redact(text: &str) -> String {
    let secrets = secrets().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_owned();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "<redacted>");
        }
    }
    out
}

/// Prints one line to stdout, redacted. A closed pipe (`mode listen | head`) ends quietly.
pub fn line(text: impl AsRef<str>) {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{}", redact(text.as_ref())).is_err() || stdout.flush().is_err() {
        std::process::exit(0);
    }
}

/// Prints one JSON value as one line.
pub fn json_line(value: &Value) {
    line(serde_json::to_string(value).expect("a JSON value serializes"));
}

/// Prints a note to stderr, redacted.
pub fn note(text: impl AsRef<str>) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{}", redact(text.as_ref()));
}

/// Stderr for `tracing`, redacted: every log event is formatted whole and written at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = redact(&String::from_utf8_lossy(buf));
        std::io::stderr().write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

/// A progress line on stderr for long transfers, drawn only when stderr is a terminal.
#[derive(Debug)]
pub struct Progress {
    on: bool,
    what: String,
}

impl Progress {
    /// A progress line for `what`, shown only if stderr is a terminal.
    pub fn new(what: impl Into<String>) -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            what: what.into(),
        }
    }

    /// Redraws the line with `status`.
    pub fn update(&self, status: impl AsRef<str>) {
        if self.on {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{}: {}", self.what, status.as_ref());
            let _ = stderr.flush();
        }
    }

    /// Clears the line.
    pub fn finish(&self) {
        if self.on {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}

/// One DDP change in words.
pub fn describe(change: &Change) -> String {
    match change {
        Change::Set {
            key,
            value,
            previous: None,
        } => format!("{key} = {value} (new)"),
        Change::Set {
            key,
            value,
            previous: Some(previous),
        } => format!("{key} = {value} (was {previous})"),
        Change::Deleted { key, previous } => format!("{key} deleted (was {previous})"),
    }
}

/// "; retry in 1.2s", or nothing once closed.
pub fn retry_text(retry_in: Option<Duration>) -> String {
    retry_in
        .map(|d| format!("; retry in {:.1}s", d.as_secs_f64()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_blanked_wherever_they_appear() {
        register_secret("v1.unit-test-secret");
        register_secret("abc"); // too short to blank without mangling ordinary text
        assert_eq!(
            redact("key v1.unit-test-secret and again v1.unit-test-secret, abc"),
            "key <redacted> and again <redacted>, abc"
        );
    }

    #[test]
    fn plain_style_adds_no_escape_codes() {
        let style = Style { color: false };
        assert_eq!(style.paint(Paint::Red, "x"), "x");
        let style = Style { color: true };
        assert_eq!(style.paint(Paint::Red, "x"), "\x1b[31mx\x1b[0m");
    }
}
