//! The durable outbox's settings ([`ClientConfigBuilder::outbox_dir`] and its policies), kept
//! apart from the connection settings they do not touch, and what opening the outbox gives
//! back ([`Opened`], one definition for the build with the outbox and the one without).
//!
//! What each [`SyncPolicy`] survives, exactly:
//! - A message whose send returned `Ok` is in an fsynced queue-file append, under either policy: it
//!   survives the process being killed (`SIGKILL`, a panic, an OOM kill) and the power going
//!   out (as far as the disk honours fsync), and is sent again at the next start.
//! - A message whose send had not returned yet may or may not be there: its caller never heard
//!   it was accepted.
//! - A message delivered just before the crash may still be in the store (its removal was not
//!   committed yet) and is sent again: QoS 1 allows duplicates, and the cloud may see one.
//!
//! The policies differ in cost, not in what survives: `EveryMessage` spends one fsync on each
//! message (a send returns after its own commit), `GroupCommit` spends one on everything that
//! queued up meanwhile (a send returns after the commit of its batch, up to `every` plus one
//! commit later). Senders running concurrently share commits; one task sending in a loop gets
//! at most one message per commit under either policy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ClientConfigBuilder, ConfigError};

/// When the durable outbox fsyncs (see the module docs for what each survives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// One fsynced commit per message: a send returns once its own commit is on disk.
    EveryMessage,
    /// Group commit: one fsynced commit holds every change queued since the last one, at most
    /// one commit every this often (`Duration::ZERO`: as soon as the previous commit is done,
    /// the default). A send returns once the commit of its batch is on disk.
    GroupCommit(Duration),
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy::GroupCommit(Duration::ZERO)
    }
}

/// The durable outbox's settings inside a [`ClientConfig`](super::ClientConfig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxSettings {
    pub dir: Option<PathBuf>,
    pub max_bytes: usize,
    pub sync: SyncPolicy,
}

/// The default size bound of the durable outbox: 64 MiB of stored messages.
pub const DEFAULT_OUTBOX_MAX_BYTES: usize = 64 * 1024 * 1024;

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            dir: None,
            max_bytes: DEFAULT_OUTBOX_MAX_BYTES,
            sync: SyncPolicy::default(),
        }
    }
}

/// A durable outbox opened at start: its writer (running) and what to put back in the engine.
pub(crate) struct Opened {
    pub tracker: crate::durable::Tracker,
    /// Unfinished messages, in id order, for `Engine::restore`.
    pub messages: Vec<mode_core::engine::Publish>,
    /// New ids continue after this one.
    pub last_id: mode_core::engine::MessageId,
    /// What could not be recovered, in words, when something could not.
    pub report: Option<String>,
}

impl OutboxSettings {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.dir.is_none() {
            return Ok(());
        }
        if !cfg!(feature = "durable-outbox") {
            return Err(ConfigError::OutboxUnavailable);
        }
        if self.max_bytes == 0 {
            return Err(ConfigError::Zero("outbox_max_bytes"));
        }
        Ok(())
    }
}

impl super::ClientConfig {
    /// The durable outbox's directory, if one is configured.
    pub fn outbox_dir(&self) -> Option<&Path> {
        self.outbox.dir.as_deref()
    }
}

impl ClientConfigBuilder {
    setters! {
        /// Keeps the outbox in this directory (created if missing), so accepted QoS 1 messages
        /// survive the process dying or the power going out: each is in the store before its
        /// send returns (a `try_` send then waits for the commit too), is removed once the
        /// cloud confirmed it, and what remains is sent first at the next start, in order, with
        /// its original message id. QoS 0 messages are never stored. Messages still queued when
        /// the client closes (or is dropped) stay in the store for the next start.
        ///
        /// One client at a time: [`Client::connect`](crate::Client::connect) fails with
        /// [`ConfigError::OutboxLocked`] while another process (or client) has it open. A store
        /// found torn or damaged is read as far as it can be; what was lost is reported as a
        /// [`Notification::Error`](crate::Notification::Error) whose topic starts with
        /// `outbox:` and counted in the `outbox_unrecovered` counter of [`Stats`](crate::Stats).
        /// Needs mode-client's `durable-outbox` feature (off by default; on in the Python wheel
        /// and the CLI); without it, `build` fails with [`ConfigError::OutboxUnavailable`].
        outbox_dir(dir: impl Into<PathBuf>) => outbox.dir = Some(dir.into());
        /// The most the durable outbox holds, in bytes of stored messages (default 64 MiB).
        /// When it holds that much, a send does what the
        /// [`FullQueuePolicy`](super::FullQueuePolicy) says for a full queue: waits for room
        /// (`Block`), fails with `QueueFull` (`Error`), or drops the oldest messages not yet on
        /// the network (`DropOldest`; with every stored message on the network the new one is
        /// stored all the same).
        outbox_max_bytes(bytes: usize) => outbox.max_bytes = bytes;
        /// When the durable outbox fsyncs (default: group commit, as soon as the previous
        /// commit is done).
        outbox_sync(policy: SyncPolicy) => outbox.sync = policy;
    }
}
