//! The durable outbox (`outbox_dir`): every QoS 1 message a send accepts is written to a redb
//! file before the send returns, removed when the engine reports it finished, and put back into
//! the engine at the next start. The engine's journal says what changed; this module keeps the
//! store in step with it, on a writer thread that commits what has queued up as one fsynced
//! transaction (group commit), and reads back what it can of a torn or damaged store.
//!
//! Each stored value is a self-checking frame (magic, length, CRC-32, id, QoS, topic, payload),
//! so a damaged record is found and reported rather than sent, and a file redb cannot open at
//! all is still searched for intact frames before it is set aside.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use mode_core::engine::{Engine, MessageId, OutboxChange, Publish};
use mode_core::proto::Qos;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use tokio::sync::Notify;

use super::config::{ConfigError, OutboxSettings, SyncPolicy};

/// id -> one frame (see [`encode`]).
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
/// "last_id" -> the largest id ever stored, so ids continue when the store is empty.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LAST_ID: &str = "last_id";

/// The files inside the outbox directory.
pub(crate) const DB_FILE: &str = "outbox.redb";
const LOCK_FILE: &str = "outbox.lock";
/// Where a store redb could not open is moved, once its intact messages were copied out.
const DAMAGED_FILE: &str = "outbox.redb.damaged";

const MAGIC: [u8; 4] = *b"MDOB";
/// Magic, body length, CRC-32 of the body.
const HEADER: usize = 12;
/// id, QoS, topic length.
const BODY_FIXED: usize = 8 + 1 + 2;

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// CRC-32 (IEEE), bitwise: a few hundred bytes per message, far below the cost of the fsync.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// How many bytes a message takes in the store (its frame), for the size bound.
pub(crate) fn stored_size(message: &Publish) -> usize {
    HEADER + BODY_FIXED + message.topic.len() + message.payload.len()
}

fn encode(message: &Publish) -> Vec<u8> {
    let mut body = Vec::with_capacity(BODY_FIXED + message.topic.len() + message.payload.len());
    body.extend_from_slice(&message.id.to_le_bytes());
    body.push(match message.qos {
        Qos::AtMostOnce => 0,
        Qos::AtLeastOnce => 1,
    });
    let topic_len = u16::try_from(message.topic.len()).expect("MODE topics are short");
    body.extend_from_slice(&topic_len.to_le_bytes());
    body.extend_from_slice(message.topic.as_bytes());
    body.extend_from_slice(&message.payload);
    let mut frame = Vec::with_capacity(HEADER + body.len());
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32(&body).to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// The message in `bytes` (a frame at its start), and the frame's length; `None` when it is
/// not an intact frame.
fn decode(bytes: &[u8]) -> Option<(Publish, usize)> {
    if bytes.len() < HEADER || bytes[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    let body = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    if len < BODY_FIXED || crc32(body) != crc {
        return None;
    }
    let id = u64::from_le_bytes(body[..8].try_into().ok()?);
    let qos = match body[8] {
        0 => Qos::AtMostOnce,
        1 => Qos::AtLeastOnce,
        _ => return None,
    };
    let topic_len = usize::from(u16::from_le_bytes(body[9..11].try_into().ok()?));
    let topic = body.get(BODY_FIXED..BODY_FIXED + topic_len)?;
    let topic = String::from_utf8(topic.to_vec()).ok()?;
    let payload = body[BODY_FIXED + topic_len..].to_vec();
    (id != 0).then_some((
        Publish {
            id,
            topic,
            payload,
            qos,
        },
        HEADER + len,
    ))
}

// ---------------------------------------------------------------------------------------------
// Opening and recovery
// ---------------------------------------------------------------------------------------------

/// What the store held at start.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Intact unfinished messages, in id order.
    pub messages: Vec<Publish>,
    /// The largest id ever stored.
    pub last_id: MessageId,
    /// Records found damaged and dropped.
    pub damaged: u64,
    /// redb could not open the file: why (its intact frames were salvaged).
    pub unreadable: Option<String>,
}

impl Recovered {
    /// A sentence for the application when something was lost, else `None`.
    pub(crate) fn report(&self, dir: &Path) -> Option<String> {
        if self.damaged == 0 && self.unreadable.is_none() {
            return None;
        }
        let mut text = format!(
            "the durable outbox in {} was damaged: {} damaged message(s) could not be recovered and are gone; {} intact message(s) restored",
            dir.display(),
            self.damaged,
            self.messages.len()
        );
        if let Some(why) = &self.unreadable {
            text.push_str(&format!(
                " (the store could not be opened: {why}; its intact records were salvaged from its bytes, so messages already delivered may be sent again, and the damaged file was kept as {DAMAGED_FILE})"
            ));
        }
        Some(text)
    }
}

fn outbox_error(dir: &Path, detail: impl std::fmt::Display) -> ConfigError {
    ConfigError::Outbox {
        dir: dir.display().to_string(),
        detail: detail.to_string(),
    }
}

/// Takes the directory's lock: one process (one client) per outbox directory.
fn lock(dir: &Path) -> Result<File, ConfigError> {
    std::fs::create_dir_all(dir).map_err(|e| outbox_error(dir, e))?;
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| outbox_error(dir, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ConfigError::OutboxLocked {
            dir: dir.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(outbox_error(dir, e)),
    }
}

/// A panic inside redb (a damaged file it did not expect) as an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Err(format!("redb failed on the file: {what}"))
    })
}

/// Opens the database at `path` and reads it; damaged records are removed from it.
fn open_and_read(path: &Path) -> Result<(Database, Recovered), String> {
    guarded(|| {
        let db = Database::create(path).map_err(|e| e.to_string())?;
        let mut recovered = Recovered::default();
        let mut damaged_ids = Vec::new();
        {
            let r = db.begin_read().map_err(|e| e.to_string())?;
            match r.open_table(MESSAGES) {
                Ok(table) => {
                    for entry in table.iter().map_err(|e| e.to_string())? {
                        let (key, value) = entry.map_err(|e| e.to_string())?;
                        let id = key.value();
                        match decode(value.value()) {
                            Some((message, _)) if message.id == id => {
                                recovered.messages.push(message)
                            }
                            _ => damaged_ids.push(id),
                        }
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
            match r.open_table(META) {
                Ok(table) => {
                    if let Some(last) = table.get(LAST_ID).map_err(|e| e.to_string())? {
                        recovered.last_id = last.value();
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        recovered.damaged = damaged_ids.len() as u64;
        let w = db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut table = w.open_table(MESSAGES).map_err(|e| e.to_string())?;
            for id in damaged_ids {
                table.remove(id).map_err(|e| e.to_string())?;
            }
            w.open_table(META).map_err(|e| e.to_string())?;
        }
        w.commit().map_err(|e| e.to_string())?;
        Ok((db, recovered))
    })
}

/// Every intact frame in `bytes` (a file redb could not open), by id, and how many frames were
/// found damaged (their magic is there, their checksum is not right).
fn salvage(bytes: &[u8]) -> (BTreeMap<MessageId, Publish>, u64) {
    let mut found = BTreeMap::new();
    let mut damaged = 0;
    let mut at = 0;
    while let Some(offset) = find_magic(&bytes[at..]) {
        let start = at + offset;
        match decode(&bytes[start..]) {
            Some((message, len)) => {
                found.insert(message.id, message);
                at = start + len;
            }
            None => {
                damaged += 1;
                at = start + 1;
            }
        }
    }
    (found, damaged)
}

fn find_magic(bytes: &[u8]) -> Option<usize> {
    bytes.windows(MAGIC.len()).position(|w| w == MAGIC)
}

/// Opens (creating it if needed) the store in `dir`: its lock, its database and what it holds.
pub(crate) fn open(dir: &Path) -> Result<(Store, Recovered), ConfigError> {
    let lock = lock(dir)?;
    let path = dir.join(DB_FILE);
    let (db, recovered) = match open_and_read(&path) {
        Ok(opened) => opened,
        Err(why) => {
            tracing::error!(path = %path.display(), error = %why, "the durable outbox cannot be opened; salvaging its intact records");
            let bytes = std::fs::read(&path).map_err(|e| outbox_error(dir, e))?;
            let (found, damaged) = salvage(&bytes);
            std::fs::rename(&path, dir.join(DAMAGED_FILE)).map_err(|e| outbox_error(dir, e))?;
            let messages: Vec<Publish> = found.into_values().collect();
            let last_id = messages.last().map_or(0, |m| m.id);
            let (db, _) = open_and_read(&path).map_err(|e| outbox_error(dir, e))?;
            write_batch(
                &db,
                messages.iter().cloned().map(Change::Put).collect(),
                Some(last_id),
            )
            .map_err(|e| outbox_error(dir, e))?;
            (
                db,
                Recovered {
                    messages,
                    last_id,
                    damaged,
                    unreadable: Some(why),
                },
            )
        }
    };
    Ok((
        Store {
            db,
            _lock: lock,
            dir: dir.to_owned(),
        },
        recovered,
    ))
}

/// An open store: the database and the directory's lock, held until the writer ends.
pub(crate) struct Store {
    db: Database,
    _lock: File,
    dir: PathBuf,
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// One change to write.
#[derive(Debug)]
enum Change {
    Put(Publish),
    Delete(MessageId),
}

/// Writes `changes` in one durable (fsynced) transaction.
fn write_batch(db: &Database, changes: Vec<Change>, last_id: Option<u64>) -> Result<(), String> {
    guarded(|| {
        let mut w = db.begin_write().map_err(|e| e.to_string())?;
        w.set_durability(Durability::Immediate);
        {
            let mut table = w.open_table(MESSAGES).map_err(|e| e.to_string())?;
            for change in changes {
                match change {
                    Change::Put(message) => {
                        table
                            .insert(message.id, encode(&message).as_slice())
                            .map_err(|e| e.to_string())?;
                    }
                    Change::Delete(id) => {
                        table.remove(id).map_err(|e| e.to_string())?;
                    }
                }
            }
            if let Some(last_id) = last_id {
                let mut meta = w.open_table(META).map_err(|e| e.to_string())?;
                meta.insert(LAST_ID, last_id).map_err(|e| e.to_string())?;
            }
        }
        w.commit().map_err(|e| e.to_string())
    })
}

/// What the writer has done, for the senders waiting on it.
#[derive(Debug, Default)]
struct Durable {
    /// Changes `1..=on_disk` (counted in queue order) are on disk.
    on_disk: u64,
    /// A commit failed: nothing after it is written, and no send is accepted any more.
    failed: Option<String>,
}

#[derive(Debug, Default)]
struct Pending {
    changes: Vec<Change>,
    /// Changes queued so far.
    queued: u64,
    stop: bool,
}

/// Between the client (which queues changes under its state lock, in journal order) and the
/// writer thread.
#[derive(Debug)]
pub(crate) struct Queue {
    pending: Mutex<Pending>,
    work: Condvar,
    durable: Mutex<Durable>,
    /// Wakes threads waiting in [`Ticket::wait_blocking`].
    written: Condvar,
    /// Wakes tasks waiting in [`Ticket::wait`].
    written_async: Notify,
    failed: AtomicBool,
    dir: PathBuf,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Queue {
    fn error(&self) -> ConfigError {
        let why = relock(&self.durable)
            .failed
            .clone()
            .unwrap_or_else(|| "the outbox writer has stopped".to_owned());
        outbox_error(
            &self.dir,
            format!(
                "could not be written ({why}); no message is accepted until the client is restarted"
            ),
        )
    }
}

/// A promise that every change queued before it was taken is on disk, once [`wait`](Self::wait)
/// returns `Ok`.
#[derive(Debug)]
pub(crate) struct Ticket {
    upto: u64,
    queue: Arc<Queue>,
}

impl Ticket {
    fn reached(&self, durable: &Durable) -> Option<Result<(), ConfigError>> {
        if durable.on_disk >= self.upto {
            Some(Ok(()))
        } else if durable.failed.is_some() {
            Some(Err(self.queue.error()))
        } else {
            None
        }
    }

    /// Waits (on a task) until the change is on disk.
    pub(crate) async fn wait(self) -> Result<(), ConfigError> {
        loop {
            let notified = self.queue.written_async.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = self.reached(&relock(&self.queue.durable)) {
                return result;
            }
            notified.await;
        }
    }

    /// Waits (blocking the thread) until the change is on disk.
    pub(crate) fn wait_blocking(self) -> Result<(), ConfigError> {
        let mut durable = relock(&self.queue.durable);
        loop {
            if let Some(result) = self.reached(&durable) {
                return result;
            }
            durable = self
                .queue
                .written
                .wait(durable)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// The client's side of the store, kept under its state lock: what is stored, its size, and
/// the queue to the writer.
#[derive(Debug)]
pub(crate) struct Tracker {
    queue: Arc<Queue>,
    writer: Option<JoinHandle<()>>,
    /// The stored messages' sizes, by id.
    stored: BTreeMap<MessageId, usize>,
    bytes: usize,
    max_bytes: usize,
    /// Messages that could not be recovered at start.
    unrecovered: u64,
}

impl Tracker {
    /// Starts the writer thread on `store`; `restored` are the messages it holds.
    pub(crate) fn start(
        store: Store,
        restored: &[Publish],
        unrecovered: u64,
        max_bytes: usize,
        policy: SyncPolicy,
    ) -> Result<Tracker, ConfigError> {
        let queue = Arc::new(Queue {
            pending: Mutex::new(Pending::default()),
            work: Condvar::new(),
            durable: Mutex::new(Durable::default()),
            written: Condvar::new(),
            written_async: Notify::new(),
            failed: AtomicBool::new(false),
            dir: store.dir.clone(),
        });
        let stored: BTreeMap<MessageId, usize> = restored
            .iter()
            .map(|message| (message.id, stored_size(message)))
            .collect();
        let bytes = stored.values().sum();
        let thread_queue = queue.clone();
        let writer = std::thread::Builder::new()
            .name("mode-outbox".into())
            .spawn(move || write_loop(store, &thread_queue, policy))
            .map_err(|e| outbox_error(&queue.dir, e))?;
        Ok(Tracker {
            queue,
            writer: Some(writer),
            stored,
            bytes,
            max_bytes,
            unrecovered,
        })
    }

    /// The store holds its size bound or more: a send is refused, waits or drops the oldest,
    /// as the full-queue policy says.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes >= self.max_bytes
    }

    /// Messages that could not be recovered at start.
    pub(crate) fn unrecovered(&self) -> u64 {
        self.unrecovered
    }

    /// Messages stored now.
    pub(crate) fn len(&self) -> usize {
        self.stored.len()
    }

    /// An error when the writer failed: no send is accepted then.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.queue.failed.load(Ordering::Acquire) || self.writer.is_none() {
            return Err(self.queue.error());
        }
        Ok(())
    }

    /// True when message `id` is (being) stored: its sender waits for it.
    pub(crate) fn holds(&self, id: MessageId) -> bool {
        self.stored.contains_key(&id)
    }

    /// Moves the engine's journal into the writer's queue: QoS 1 messages are stored, finished
    /// ones removed, except those in `keep` (given up at close: the next start sends them).
    /// Returns a ticket for everything queued so far.
    pub(crate) fn take_journal(
        &mut self,
        engine: &mut Engine,
        keep: &HashSet<MessageId>,
    ) -> Ticket {
        let mut pending = relock(&self.queue.pending);
        let before = pending.changes.len();
        while let Some(change) = engine.poll_journal() {
            match change {
                OutboxChange::Added(message) if message.qos == Qos::AtLeastOnce => {
                    let size = stored_size(&message);
                    self.stored.insert(message.id, size);
                    self.bytes += size;
                    pending.changes.push(Change::Put(message));
                }
                OutboxChange::Added(_) => {}
                OutboxChange::Done(id) => {
                    if keep.contains(&id) {
                        continue;
                    }
                    if let Some(size) = self.stored.remove(&id) {
                        self.bytes -= size;
                        pending.changes.push(Change::Delete(id));
                    }
                }
            }
        }
        let added = (pending.changes.len() - before) as u64;
        pending.queued += added;
        let upto = pending.queued;
        drop(pending);
        if added > 0 {
            self.queue.work.notify_one();
        }
        Ticket {
            upto,
            queue: self.queue.clone(),
        }
    }

    /// Writes what is queued, stops the writer and releases the directory (at close).
    pub(crate) fn shutdown(&mut self) {
        relock(&self.queue.pending).stop = true;
        self.queue.work.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        // Every handle is gone (perhaps with the runtime): the writer finishes what is queued and
        // releases the directory; nobody waits for it here.
        relock(&self.queue.pending).stop = true;
        self.queue.work.notify_one();
    }
}

fn write_loop(store: Store, queue: &Queue, policy: SyncPolicy) {
    let mut last_commit = Instant::now();
    loop {
        let (batch, upto) = {
            let mut pending = relock(&queue.pending);
            while pending.changes.is_empty() && !pending.stop {
                pending = queue
                    .work
                    .wait(pending)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if pending.changes.is_empty() {
                break; // stopped, and everything is written
            }
            if let SyncPolicy::GroupCommit(every) = policy {
                // Let a burst gather: at most one commit every `every` (a stop cuts it short).
                let due = last_commit + every;
                while !pending.stop {
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    pending = queue
                        .work
                        .wait_timeout(pending, due - now)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0;
                }
            }
            let take = match policy {
                // One message per commit: the removals queued before it go along.
                SyncPolicy::EveryMessage => pending
                    .changes
                    .iter()
                    .position(|c| matches!(c, Change::Put(_)))
                    .map_or(pending.changes.len(), |put| put + 1),
                SyncPolicy::GroupCommit(_) => pending.changes.len(),
            };
            let batch: Vec<Change> = pending.changes.drain(..take).collect();
            let upto = pending.queued - pending.changes.len() as u64;
            (batch, upto)
        };
        last_commit = Instant::now();
        if queue.failed.load(Ordering::Acquire) {
            continue; // after a failure nothing more is written; waiters were told
        }
        let last_id = batch
            .iter()
            .filter_map(|c| match c {
                Change::Put(message) => Some(message.id),
                Change::Delete(_) => None,
            })
            .max();
        let result = write_batch(&store.db, batch, last_id);
        let mut durable = relock(&queue.durable);
        match result {
            Ok(()) => durable.on_disk = upto,
            Err(why) => {
                tracing::error!(dir = %store.dir.display(), error = %why, "the durable outbox could not be written; no message is accepted any more");
                durable.failed = Some(why);
                queue.failed.store(true, Ordering::Release);
            }
        }
        drop(durable);
        queue.written.notify_all();
        queue.written_async.notify_waiters();
    }
    tracing::debug!(dir = %store.dir.display(), "durable outbox closed");
}

/// A store opened at start: the tracker (writer running) and what to restore.
pub(crate) struct Opened {
    pub tracker: Tracker,
    /// Unfinished messages, in id order, for `Engine::restore`.
    pub messages: Vec<Publish>,
    /// New ids continue after this one.
    pub last_id: MessageId,
    /// What could not be recovered, in words, when something could not.
    pub report: Option<String>,
}

/// Opens the store in `dir`, reads what it holds and starts its writer.
pub(crate) fn start(dir: &Path, settings: &OutboxSettings) -> Result<Opened, ConfigError> {
    let (store, recovered) = open(dir)?;
    let report = recovered.report(dir);
    let tracker = Tracker::start(
        store,
        &recovered.messages,
        recovered.damaged,
        settings.max_bytes,
        settings.sync,
    )?;
    let last_id = recovered
        .messages
        .last()
        .map_or(recovered.last_id, |m| m.id.max(recovered.last_id));
    Ok(Opened {
        tracker,
        messages: recovered.messages,
        last_id,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: MessageId, payload: &[u8]) -> Publish {
        Publish {
            id,
            topic: "/devices/1001/event".into(),
            payload: payload.to_vec(),
            qos: Qos::AtLeastOnce,
        }
    }

    #[test]
    fn a_frame_reads_back_and_any_flipped_byte_is_noticed() {
        let m = message(7, br#"{"eventType":"x","eventData":{}}"#);
        let frame = encode(&m);
        assert_eq!(decode(&frame), Some((m.clone(), frame.len())));
        assert_eq!(stored_size(&m), frame.len());
        for at in 0..frame.len() {
            let mut bad = frame.clone();
            bad[at] ^= 0x10;
            assert!(
                decode(&bad).is_none_or(|(d, _)| d != m),
                "a flip at {at} went unnoticed"
            );
        }
        for cut in 0..frame.len() {
            assert!(decode(&frame[..cut]).is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn salvage_finds_every_intact_frame_among_garbage() {
        let mut bytes = b"garbage MDOB not a frame".to_vec();
        for id in 1..=5 {
            bytes.extend_from_slice(&encode(&message(id, b"{}")));
            bytes.extend_from_slice(b"\0\0junk");
        }
        let mut broken = encode(&message(6, b"{}"));
        let last = broken.len() - 1;
        broken[last] ^= 1;
        bytes.extend_from_slice(&broken);
        let (found, damaged) = salvage(&bytes);
        assert_eq!(found.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(damaged, 2);
    }
}
