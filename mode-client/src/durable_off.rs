//! Built without the `durable-outbox` feature: there is no store, and a configuration with
//! `outbox_dir` is refused when it is built, so none of this is ever reached.

use std::collections::HashSet;
use std::path::Path;

use mode_core::engine::{Engine, MessageId};

use super::config::{ConfigError, Opened, OutboxSettings};

/// Never exists without the feature.
#[derive(Debug)]
pub(crate) enum Tracker {}

/// Never handed out without the feature (only a [`Tracker`] makes one).
#[derive(Debug)]
pub(crate) struct Ticket;

pub(crate) fn start(_dir: &Path, _settings: &OutboxSettings) -> Result<Opened, ConfigError> {
    Err(ConfigError::OutboxUnavailable)
}

impl Tracker {
    pub(crate) fn unrecovered(&self) -> u64 {
        match *self {}
    }
    pub(crate) fn len(&self) -> usize {
        match *self {}
    }
    pub(crate) fn is_full(&self) -> bool {
        match *self {}
    }
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        match *self {}
    }
    pub(crate) fn holds(&self, _id: MessageId) -> bool {
        match *self {}
    }
    pub(crate) fn take_journal(
        &mut self,
        _engine: &mut Engine,
        _keep: &HashSet<MessageId>,
    ) -> Ticket {
        match *self {}
    }
    pub(crate) fn shutdown(&mut self) {
        match *self {}
    }
}

impl Ticket {
    pub(crate) async fn wait(self) -> Result<(), ConfigError> {
        Ok(())
    }
    pub(crate) fn wait_blocking(self) -> Result<(), ConfigError> {
        Ok(())
    }
}
