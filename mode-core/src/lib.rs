//! libmode's core: the MODE device protocol without IO.
//!
//! - [`proto`]: typed messages, topics and REST paths, with their exact JSON encodings.
//! - [`ddp`]: the Device Data Proxy mirror, a state machine that keeps a device's copy of its
//!   cloud key-value store true under reordered and duplicated sync messages.
//! - [`engine`]: one device's connection as a state machine (inputs `handle_*`/`connected`/...
//!   with the time passed in, outputs `poll_*`): outbox, in-flight window, reconnect
//!   [`backoff`], watchdog, bulk deadlines, close. [`session`] is its translation part: topics
//!   to subscribe, `(topic, payload)` in, typed messages out. Time ([`time`]) and randomness are
//!   arguments; nothing here reads a clock.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

/// What `std`'s prelude would bring: the `alloc` types every module uses.
mod prelude {
    pub(crate) use alloc::borrow::ToOwned;
    pub(crate) use alloc::format;
    pub(crate) use alloc::string::{String, ToString};
    pub(crate) use alloc::vec;
    pub(crate) use alloc::vec::Vec;
}

pub mod backoff;
pub mod ddp;
pub mod engine;
pub mod proto;
pub mod random;
pub mod session;
pub mod time;
