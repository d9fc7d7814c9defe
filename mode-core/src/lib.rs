//! libmode's core: the MODE device protocol without IO.
//!
//! - [`proto`]: typed messages, topics and REST paths, with their exact JSON encodings.
//! - [`ddp`]: the Device Data Proxy mirror, a state machine that keeps a device's copy of its
//!   cloud key-value store true under reordered and duplicated sync messages.
//! - [`session`]: a sans-IO session a device with its own MQTT stack can drive, and the
//!   reconnect [`backoff`] policy. Time and randomness are arguments; nothing here reads a clock.
#![deny(missing_docs)]

pub mod backoff;
#[cfg(feature = "client")]
pub mod client;
pub mod ddp;
pub mod proto;
pub mod session;
