//! Optional persistence (`--data-dir`): every device's DDP store and the event log, kept in a
//! redb file so they survive a restart. The cloud never waits for the disk: changes go to one
//! writer thread that batches them into transactions, in order.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use mode_core::proto::{DeviceId, HomeEvent, KvItem, Rev, decode_kv_item, encode_kv_item};
use redb::{Database, Durability, ReadableTable, TableDefinition};

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

/// The cloud's handle on the writer thread.
pub(crate) struct Writer {
    tx: mpsc::Sender<Op>,
    thread: Option<JoinHandle<()>>,
}

/// Most changes written in one transaction.
const BATCH: usize = 4096;

impl Writer {
    /// Queues `op`; never blocks.
    pub fn send(&self, op: Op) {
        // The thread only ends when this handle drops, so the channel is open.
        let _ = self.tx.send(op);
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
    let thread_path = path.clone();
    let thread = std::thread::Builder::new()
        .name("mode-sim-persist".into())
        .spawn(move || write_loop(db, rx, thread_path))
        .map_err(|e| err(&path, e))?;
    tracing::info!(path = %path.display(), devices = loaded.stores.len(), events = loaded.events.len(), "persistence on");
    Ok((
        loaded,
        Writer {
            tx,
            thread: Some(thread),
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

fn write_loop(db: Database, rx: mpsc::Receiver<Op>, path: PathBuf) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut flushes = Vec::new();
        let durable = batch.iter().any(|op| matches!(op, Op::Flush(_)));
        if let Err(e) = write_batch(&db, batch, durable, &mut flushes) {
            tracing::error!(path = %path.display(), %e, "could not persist changes");
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
    // The cloud is gone: one last durable commit of anything left pending.
    let _ = write_batch(&db, Vec::new(), true, &mut Vec::new());
}

#[allow(clippy::result_large_err)] // redb's own error, logged once on the writer thread
fn write_batch(
    db: &Database,
    batch: Vec<Op>,
    durable: bool,
    flushes: &mut Vec<mpsc::Sender<()>>,
) -> Result<(), redb::Error> {
    let mut w = db.begin_write()?;
    w.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::Eventual
    });
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
