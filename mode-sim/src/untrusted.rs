//! How much of a peer's input the simulator repeats: every log line and error body that quotes
//! a key, topic, path, field or parser message from a client goes through [`untrusted`].
//!
//! A client may send a 900 KB key or a 64 KB topic; quoting it whole would put it in one log
//! line (and in the error body sent back). [`untrusted`] keeps the first [`QUOTE_MAX`] bytes
//! and says how long the whole was, which is all a reader needs to recognise the input.

use std::fmt::{self, Write as _};

/// The most bytes of untrusted input quoted in a log line or an error body.
pub const QUOTE_MAX: usize = 128;

/// Peer input (or a message built from it, such as a parser error), fit to quote: shown whole
/// when it is at most [`QUOTE_MAX`] bytes, else its first [`QUOTE_MAX`] bytes (cut at a
/// character boundary) followed by `… (N bytes)`. `{}` writes the text, `{:?}` quotes and
/// escapes it like `str`'s `Debug`. Only the shown part is ever copied.
pub fn untrusted<T: fmt::Display + ?Sized>(input: &T) -> Untrusted {
    let mut head = Head {
        text: String::new(),
        total: 0,
    };
    // `Head` never fails; a Display that does leaves what it wrote so far.
    let _ = write!(head, "{input}");
    Untrusted(head)
}

/// What [`untrusted`] returns.
pub struct Untrusted(Head);

/// The first [`QUOTE_MAX`] bytes written to it, and the count of all of them.
struct Head {
    text: String,
    total: usize,
}

impl fmt::Write for Head {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.total += s.len();
        let room = QUOTE_MAX - self.text.len();
        if room > 0 {
            let mut cut = room.min(s.len());
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text.push_str(&s[..cut]);
        }
        Ok(())
    }
}

impl Untrusted {
    fn cut(&self) -> Option<usize> {
        (self.0.total > self.0.text.len()).then_some(self.0.total)
    }
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)?;
        match self.cut() {
            Some(total) => write!(f, "… ({total} bytes)"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.text)?;
        match self.cut() {
            Some(total) => write!(f, "… ({total} bytes)"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_quoted_whole_and_long_input_by_its_head_and_length() {
        assert_eq!(format!("{:?}", untrusted("a\"b")), r#""a\"b""#);
        assert_eq!(untrusted("plain").to_string(), "plain");
        let long = "k".repeat(900_000);
        let quoted = format!("{:?}", untrusted(&long));
        assert_eq!(
            quoted,
            format!("\"{}\"… (900000 bytes)", "k".repeat(QUOTE_MAX))
        );
        // A multi-byte character across the limit is left out, not split.
        let wide = format!("{}é{}", "x".repeat(QUOTE_MAX - 1), "y".repeat(10));
        assert_eq!(
            untrusted(&wide).to_string(),
            format!("{}… ({} bytes)", "x".repeat(QUOTE_MAX - 1), wide.len())
        );
    }
}
