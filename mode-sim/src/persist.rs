//! Optional persistence (`--data-dir`): every device's DDP store and the event log, kept in a
//! redb file so they survive a restart, even a `kill -9` or a power cut.
//!
//! The cloud never waits for the disk: changes go to one writer thread, in order. The thread
//! commits whatever is queued as one durable (fsynced) transaction, then publishes how many
//! changes are on disk (`Durable`); while it commits, the next batch queues up (group
//! commit). Whoever acknowledges a change to a client (PUBACK, HTTP 204) first takes a
//! [`Ticket`] and waits for it, so nothing is acknowledged that a crash could lose.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use mode_core::proto::{DeviceId, HomeEvent, KvItem, Rev, decode_kv_item, encode_kv_item};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use tokio::sync::watch;

/// (device, key) -> the encoded `KvItem` (value and modification time).
const KV: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("kv");
/// device -> store revision.
const REVS: TableDefinition<u64, u64> = TableDefinition::new("revs");
/// sequence -> (project, encoded `HomeEvent`).
const EVENTS: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("events");

/// The file inside the data directory.
pub const DB_FILE: &str = "mode-sim.redb";

/// Persistence failed: the directory or file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("persistence in {path}: {detail}")]
pub struct PersistError {
    /// The database file.
    pub path: PathBuf,
    /// What went wrong.
    pub detail: String,
}

/// What a data directory held at start.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Per device: its revision and items.
    pub stores: Vec<(DeviceId, Rev, Vec<KvItem>)>,
    /// The event log, in order: (project, event).
    pub events: Vec<(u64, HomeEvent)>,
}

/// One change to write.
pub(crate) enum Op {
    KvSet {
        device: DeviceId,
        item: KvItem,
        rev: Rev,
    },
    KvDelete {
        device: DeviceId,
        key: String,
        rev: Rev,
    },
    Event {
        seq: u64,
        project: u64,
        event: HomeEvent,
    },
    Flush(mpsc::Sender<()>),
}

/// How far the writer got: the count of changes on disk, in queue order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Durable {
    /// Changes `1..=on_disk` (counted in the order they were queued) are durable.
    pub on_disk: u64,
    /// A commit failed: what it held is lost, and no later change is acknowledged either.
    pub failed: bool,
}

/// A promise about the changes queued so far: [`Ticket::wait`] returns once they are durable.
#[derive(Debug, Clone)]
pub struct Ticket {
    upto: u64,
    durable: Option<watch::Receiver<Durable>>,
}

/// A change could not be written to the data directory, so it is not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the simulator could not write to its data directory (see its log); the change is not acknowledged, send it again after fixing the directory"
)]
pub struct NotDurable;

impl Ticket {
    /// A ticket with nothing to wait for (no persistence).
    pub(crate) fn ready() -> Ticket {
        Ticket {
            upto: 0,
            durable: None,
        }
    }

    /// True when the changes are already durable (or failed: `wait` says which).
    pub fn is_ready(&self) -> bool {
        self.durable
            .as_ref()
            .is_none_or(|rx| Self::reached(&rx.borrow(), self.upto))
    }

    fn reached(d: &Durable, upto: u64) -> bool {
        d.failed || d.on_disk >= upto
    }

    /// Waits until every change queued before the ticket was taken is on disk.
    pub async fn wait(&mut self) -> Result<(), NotDurable> {
        let Some(rx) = self.durable.as_mut() else {
            return Ok(());
        };
        let upto = self.upto;
        match rx.wait_for(|d| Self::reached(d, upto)).await {
            Ok(d) if !d.failed => Ok(()),
            // A failure, or the writer gone (the cloud is shutting down): not known durable.
            _ => Err(NotDurable),
        }
    }
}

/// The cloud's handle on the writer thread.
pub(crate) struct Writer {
    tx: mpsc::Sender<Op>,
    thread: Option<JoinHandle<()>>,
    /// Changes queued so far.
    queued: AtomicU64,
    durable: watch::Receiver<Durable>,
}

/// Most changes written in one transaction.
const BATCH: usize = 4096;

impl Writer {
    /// Queues `op`; never blocks.
    pub fn send(&self, op: Op) {
        if !matches!(op, Op::Flush(_)) {
            self.queued.fetch_add(1, Ordering::SeqCst);
        }
        // The thread only ends when this handle drops, so the channel is open.
        let _ = self.tx.send(op);
    }

    /// A ticket for every change queued so far.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            upto: self.queued.load(Ordering::SeqCst),
            durable: Some(self.durable.clone()),
        }
    }

    /// A function that waits until everything queued before it was called is on disk; it can
    /// run without holding the cloud's lock.
    pub fn flusher(&self) -> impl FnOnce() + use<> {
        let (done, wait) = mpsc::channel();
        let queued = self.tx.send(Op::Flush(done)).is_ok();
        move || {
            if queued {
                let _ = wait.recv();
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after it wrote what is queued.
        let (tx, _) = mpsc::channel();
        self.tx = tx;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn err(path: &Path, e: impl std::fmt::Display) -> PersistError {
    PersistError {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Opens (or creates) the database in `dir`, reads what it holds, and starts the writer.
pub(crate) fn open(dir: &Path) -> Result<(Loaded, Writer), PersistError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let path = dir.join(DB_FILE);
    let db = Database::create(&path).map_err(|e| err(&path, e))?;
    let loaded = load(&db, &path)?;
    let (tx, rx) = mpsc::channel();
    let (durable_tx, durable) = watch::channel(Durable {
        on_disk: 0,
        failed: false,
    });
    let thread_path = path.clone();
    let thread = std::thread::Builder::new()
        .name("mode-sim-persist".into())
        .spawn(move || write_loop(db, rx, durable_tx, thread_path))
        .map_err(|e| err(&path, e))?;
    tracing::info!(path = %path.display(), devices = loaded.stores.len(), events = loaded.events.len(), "persistence on");
    Ok((
        loaded,
        Writer {
            tx,
            thread: Some(thread),
            queued: AtomicU64::new(0),
            durable,
        },
    ))
}

fn load(db: &Database, path: &Path) -> Result<Loaded, PersistError> {
    // Create the tables on first use, so reads below find them.
    let w = db.begin_write().map_err(|e| err(path, e))?;
    {
        w.open_table(KV).map_err(|e| err(path, e))?;
        w.open_table(REVS).map_err(|e| err(path, e))?;
        w.open_table(EVENTS).map_err(|e| err(path, e))?;
    }
    w.commit().map_err(|e| err(path, e))?;

    let r = db.begin_read().map_err(|e| err(path, e))?;
    let mut loaded = Loaded::default();
    let revs = r.open_table(REVS).map_err(|e| err(path, e))?;
    let kv = r.open_table(KV).map_err(|e| err(path, e))?;
    for entry in revs.iter().map_err(|e| err(path, e))? {
        let (device, rev) = entry.map_err(|e| err(path, e))?;
        let device = device.value();
        let mut items = Vec::new();
        for entry in kv.range((device, "")..).map_err(|e| err(path, e))? {
            let (key, bytes) = entry.map_err(|e| err(path, e))?;
            if key.value().0 != device {
                break;
            }
            match decode_kv_item(bytes.value()) {
                Ok(item) => items.push(item),
                Err(e) => tracing::warn!(device, %e, "skipping an unreadable stored key"),
            }
        }
        loaded.stores.push((device, rev.value(), items));
    }
    let events = r.open_table(EVENTS).map_err(|e| err(path, e))?;
    for entry in events.iter().map_err(|e| err(path, e))? {
        let (_, value) = entry.map_err(|e| err(path, e))?;
        let (project, bytes) = value.value();
        match HomeEvent::decode(bytes) {
            Ok(event) => loaded.events.push((project, event)),
            Err(e) => tracing::warn!(%e, "skipping an unreadable stored event"),
        }
    }
    Ok(loaded)
}

fn write_loop(
    db: Database,
    rx: mpsc::Receiver<Op>,
    durable: watch::Sender<Durable>,
    path: PathBuf,
) {
    let mut on_disk = 0;
    let mut failed = false;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let changes = batch
            .iter()
            .filter(|op| !matches!(op, Op::Flush(_)))
            .count() as u64;
        let mut flushes = Vec::new();
        // After a failure nothing is written: a later commit must not make the changes after
        // a lost batch look durable while the batch itself is gone.
        if !failed {
            match write_batch(&db, batch, &mut flushes) {
                Ok(()) => on_disk += changes,
                Err(e) => {
                    tracing::error!(path = %path.display(), %e, "could not persist changes; no further change will be acknowledged");
                    failed = true;
                }
            }
            durable.send_replace(Durable { on_disk, failed });
        } else {
            flushes.extend(batch.into_iter().filter_map(|op| match op {
                Op::Flush(done) => Some(done),
                _ => None,
            }));
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Writes `batch` in one transaction and returns once it is on disk (fsynced).
#[allow(clippy::result_large_err)] // redb's own error, logged once on the writer thread
fn write_batch(
    db: &Database,
    batch: Vec<Op>,
    flushes: &mut Vec<mpsc::Sender<()>>,
) -> Result<(), redb::Error> {
    let mut w = db.begin_write()?;
    w.set_durability(Durability::Immediate);
    {
        let mut kv = w.open_table(KV)?;
        let mut revs = w.open_table(REVS)?;
        let mut events = w.open_table(EVENTS)?;
        for op in batch {
            match op {
                Op::KvSet { device, item, rev } => {
                    kv.insert(
                        (device, item.key.as_str()),
                        encode_kv_item(&item).as_slice(),
                    )?;
                    revs.insert(device, rev)?;
                }
                Op::KvDelete { device, key, rev } => {
                    kv.remove((device, key.as_str()))?;
                    revs.insert(device, rev)?;
                }
                Op::Event {
                    seq,
                    project,
                    event,
                } => {
                    events.insert(seq, (project, event.encode().as_slice()))?;
                }
                Op::Flush(done) => flushes.push(done),
            }
        }
    }
    w.commit()?;
    Ok(())
}
