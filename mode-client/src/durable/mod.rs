//! The durable outbox (`outbox_dir`): every QoS 1 message a send accepts is appended to a
//! queue-file FIFO before the send returns, removed when the engine reports it finished (and
//! every message before it is), and put back into the engine at the next start. The engine's
//! journal says what changed; this module keeps the store in step with it, on a writer thread
//! that writes what has queued up as one commit (group commit; see `store::commit`).
//! [`store`] is the file, [`frame`] the layout of one record.

mod frame;
mod store;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::Instant;

use mode_core::engine::{Engine, MessageId, OutboxChange};
use mode_core::proto::Qos;

pub(crate) use self::frame::stored_size;
use self::store::{Change, Recovered, Store, lock, outbox_error};
use super::config::{ConfigError, Opened, OutboxSettings, SyncPolicy};

/// What the writer has done, for the senders waiting on it.
#[derive(Debug, Default)]
struct Durable {
    /// Changes `1..=on_disk` (counted in queue order) are on disk.
    on_disk: u64,
    /// A commit failed: nothing after it is written, and no send is accepted any more.
    failed: Option<String>,
    /// Tasks waiting in [`Ticket::wait`], by the change they wait for: a commit wakes only those
    /// it covers, not every sender (with a thousand senders waiting, waking them all after
    /// each commit cost more than the commit).
    waiters: BTreeMap<u64, Vec<Waker>>,
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
    failed: AtomicBool,
    dir: PathBuf,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Queue {
    fn new(dir: &Path) -> Queue {
        Queue {
            pending: Mutex::new(Pending::default()),
            work: Condvar::new(),
            durable: Mutex::new(Durable::default()),
            written: Condvar::new(),
            failed: AtomicBool::new(false),
            dir: dir.to_owned(),
        }
    }

    fn error(&self) -> ConfigError {
        self.error_in(&relock(&self.durable))
    }

    /// [`error`](Self::error) for a caller that holds the lock already (it is not reentrant).
    fn error_in(&self, durable: &Durable) -> ConfigError {
        let why = durable
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
            Some(Err(self.queue.error_in(durable)))
        } else {
            None
        }
    }

    /// Waits (on a task) until the change is on disk.
    pub(crate) async fn wait(self) -> Result<(), ConfigError> {
        std::future::poll_fn(|cx| {
            let mut durable = relock(&self.queue.durable);
            match self.reached(&durable) {
                Some(result) => Poll::Ready(result),
                None => {
                    let wakers = durable.waiters.entry(self.upto).or_default();
                    if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                        wakers.push(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await
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
    /// Starts the writer thread, which opens the store in `dir` (it owns the file: a
    /// `QueueFile` stays on one thread) and hands back what it holds.
    fn start(dir: &Path, settings: &OutboxSettings) -> Result<(Tracker, Recovered), ConfigError> {
        let lock = lock(dir)?;
        let queue = Arc::new(Queue::new(dir));
        let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel(1);
        let thread_queue = queue.clone();
        let thread_dir = dir.to_owned();
        let policy = settings.sync;
        let writer = std::thread::Builder::new()
            .name("mode-outbox".into())
            .spawn(move || match Store::open(&thread_dir, lock) {
                Ok((store, recovered)) => {
                    if opened_tx.send(Ok(recovered)).is_ok() {
                        write_loop(store, &thread_queue, policy);
                    }
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })
            .map_err(|e| outbox_error(dir, e))?;
        let recovered = opened_rx.recv().map_err(|_| {
            outbox_error(dir, "the outbox writer stopped while opening the store")
        })??;
        let stored: BTreeMap<MessageId, usize> = recovered
            .messages
            .iter()
            .map(|message| (message.id, stored_size(message)))
            .collect();
        let bytes = stored.values().sum();
        let tracker = Tracker {
            queue,
            writer: Some(writer),
            stored,
            bytes,
            max_bytes: settings.max_bytes,
            unrecovered: recovered.damaged,
        };
        Ok((tracker, recovered))
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

fn write_loop(mut store: Store, queue: &Queue, policy: SyncPolicy) {
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
        let result = store.write(batch);
        let mut durable = relock(&queue.durable);
        let woken = match result {
            Ok(()) => {
                durable.on_disk = upto;
                let later = durable.waiters.split_off(&(upto + 1));
                std::mem::replace(&mut durable.waiters, later)
            }
            Err(why) => {
                tracing::error!(dir = %store.dir.display(), error = %why, "the durable outbox could not be written; no message is accepted any more");
                durable.failed = Some(why);
                queue.failed.store(true, Ordering::Release);
                std::mem::take(&mut durable.waiters)
            }
        };
        drop(durable);
        queue.written.notify_all();
        woken.into_values().flatten().for_each(Waker::wake);
    }
    tracing::debug!(dir = %store.dir.display(), "durable outbox closed");
}

/// Opens the store in `dir`, reads what it holds and starts its writer.
pub(crate) fn start(dir: &Path, settings: &OutboxSettings) -> Result<Opened, ConfigError> {
    let (tracker, recovered) = Tracker::start(dir, settings)?;
    let report = recovered.report(dir);
    Ok(Opened {
        tracker,
        messages: recovered.messages,
        last_id: recovered.last_id,
        report,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A writer whose commit failed answers every sender waiting on it with that error, on a
    /// thread and on a task alike (both once took the state lock twice and hung instead).
    #[test]
    fn a_failed_writer_answers_every_waiting_sender_with_its_error() {
        let queue = Arc::new(Queue::new(Path::new("/outbox")));
        relock(&queue.durable).failed = Some("the disk is gone".into());
        queue.failed.store(true, Ordering::Release);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ticket = |upto| Ticket {
                upto,
                queue: queue.clone(),
            };
            let blocking = ticket(1).wait_blocking();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let waited = runtime.block_on(ticket(2).wait());
            let _ = tx.send([blocking, waited]);
        });
        let results = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a waiting sender hung on a failed writer");
        for result in results {
            let error = result.unwrap_err().to_string();
            assert!(error.contains("the disk is gone"), "{error}");
        }
    }
}
