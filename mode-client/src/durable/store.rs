//! The durable outbox's file: a queue-file FIFO (crash-safe appends and removals, each element
//! checked by its CRC) of [`Record`] frames, in the order the engine accepted them, and the
//! directory lock that keeps a second client out. Confirmations may come out of order (HTTP),
//! so a finished message stays in the file, marked finished in memory, until every message
//! before it is finished too; a crash in between sends it again (QoS 1 allows that).

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use mode_core::engine::{MessageId, Publish};
use queue_file::{OffsetCacheKind, QueueFile};

use super::frame::{Record, decode, encode, salvage};
use crate::config::ConfigError;

/// The files inside the outbox directory.
pub(crate) const QUEUE_FILE: &str = "outbox.queue";
const LOCK_FILE: &str = "outbox.lock";
/// Where a file that could not be read whole is moved, once its intact messages were copied out.
pub(crate) const DAMAGED_FILE: &str = "outbox.queue.damaged";

/// What the store held at start.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Intact unfinished messages, in id order.
    pub messages: Vec<Publish>,
    /// The largest id ever stored.
    pub last_id: MessageId,
    /// Records found damaged and dropped.
    pub damaged: u64,
    /// The file could not be read whole: why (its intact frames were salvaged).
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
                " (the store could not be read whole: {why}; its intact records were salvaged from its bytes, so messages already delivered may be sent again, and the damaged file was kept as {DAMAGED_FILE})"
            ));
        }
        Some(text)
    }
}

pub(crate) fn outbox_error(dir: &Path, detail: impl std::fmt::Display) -> ConfigError {
    ConfigError::Outbox {
        dir: dir.display().to_string(),
        detail: detail.to_string(),
    }
}

/// Takes the directory's lock: one process (one client) per outbox directory. Taken before the
/// file is touched, so a second client fails cleanly and never writes to it.
pub(crate) fn lock(dir: &Path) -> Result<File, ConfigError> {
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

/// A panic inside queue-file (a damaged file it did not expect) as an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Err(format!("queue-file failed on the file: {what}"))
    })
}

/// One change to write.
#[derive(Debug)]
pub(crate) enum Change {
    Put(Publish),
    Delete(MessageId),
}

/// What a record of the file is, as the writer tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// A message the cloud has not confirmed.
    Waiting,
    /// A message confirmed, still in the file behind an unconfirmed one.
    Finished,
    /// An id marker (finished from the start).
    Marker,
}

/// An open store. Lives on the writer thread (a `QueueFile` is not `Send`).
pub(crate) struct Store {
    queue: QueueFile,
    /// The ids of the file's records, head first, and what each is now.
    order: VecDeque<(MessageId, Held)>,
    last_id: MessageId,
    pub(crate) dir: PathBuf,
    _lock: File,
}

impl Store {
    /// Opens (creating it if needed) the store in `dir`, whose lock the caller holds, and
    /// reads what it holds. A file that cannot be read whole is salvaged into a fresh one.
    pub(crate) fn open(dir: &Path, lock: File) -> Result<(Store, Recovered), ConfigError> {
        let path = dir.join(QUEUE_FILE);
        let (queue, records, recovered) = match read(&path) {
            Ok((queue, records)) => {
                let recovered = recovered_from(&records, 0, None);
                (queue, records, recovered)
            }
            Err(why) => {
                tracing::error!(path = %path.display(), error = %why, "the durable outbox cannot be read whole; salvaging its intact records");
                let bytes = std::fs::read(&path).map_err(|e| outbox_error(dir, e))?;
                let (found, last_id, damaged) = salvage(&bytes);
                std::fs::rename(&path, dir.join(DAMAGED_FILE)).map_err(|e| outbox_error(dir, e))?;
                let mut records: Vec<Record> = found.into_values().map(Record::Message).collect();
                if last_id > 0 && records.last().is_none_or(|r| r.id() < last_id) {
                    records.push(Record::LastId(last_id));
                }
                let queue = guarded(|| {
                    let mut queue = open_queue(&path)?;
                    commit(&mut queue, &records, 0)?;
                    Ok(queue)
                })
                .map_err(|e| outbox_error(dir, e))?;
                let recovered = recovered_from(&records, damaged, Some(why));
                (queue, records, recovered)
            }
        };
        let order = records.iter().map(order_entry).collect();
        let store = Store {
            queue,
            order,
            last_id: recovered.last_id,
            dir: dir.to_owned(),
            _lock: lock,
        };
        Ok((store, recovered))
    }

    /// Writes `changes` in one [`commit`]: the new messages appended, the finished prefix of
    /// the file removed. Returns when both are on disk.
    pub(crate) fn write(&mut self, changes: Vec<Change>) -> Result<(), String> {
        let mut puts = Vec::new();
        let mut deletes = HashSet::new();
        for change in changes {
            match change {
                Change::Put(message) => puts.push(message),
                Change::Delete(id) => {
                    deletes.insert(id);
                }
            }
        }
        for entry in self.order.iter_mut() {
            if deletes.is_empty() {
                break;
            }
            if deletes.remove(&entry.0) {
                entry.1 = Held::Finished;
            }
        }
        if let Some(last) = puts.last() {
            self.last_id = self.last_id.max(last.id);
        }
        // A message confirmed before its append was written need not be written at all.
        let mut added: Vec<Record> = puts
            .into_iter()
            .filter(|message| !deletes.contains(&message.id))
            .map(Record::Message)
            .collect();
        let finished = (self.order.iter())
            .take_while(|(_, held)| *held != Held::Waiting)
            .count();
        // Ids continue after a restart, so the newest record kept must name the last id handed
        // out; when it would not (everything finished, or the newest messages confirmed before
        // they were written), a marker of it is appended, in the same append as the rest.
        let newest_kept = match added.last() {
            Some(record) => Some(record.id()),
            None if finished < self.order.len() => self.order.back().map(|entry| entry.0),
            None => None,
        };
        let remove = if self.last_id == 0 || newest_kept.is_some_and(|id| id >= self.last_id) {
            finished
        } else if added.is_empty() && self.only_marker() {
            0 // the file holds just that marker already
        } else {
            added.push(Record::LastId(self.last_id));
            finished
        };
        guarded(|| commit(&mut self.queue, &added, remove))?;
        self.order.drain(..remove);
        debug_assert_eq!(
            self.queue.size(),
            self.order.len() + added.len(),
            "file and order differ"
        );
        self.order.extend(added.iter().map(order_entry));
        Ok(())
    }

    /// True when the file holds nothing but one id marker (nothing to remove or add).
    fn only_marker(&self) -> bool {
        self.order.len() == 1 && self.order[0] == (self.last_id, Held::Marker)
    }
}

/// Opens the queue file at `path` and decodes every record; an error when queue-file cannot
/// open it, an element cannot be read (its CRC is wrong, the file is cut short) or is not one
/// of our frames (all of them are then salvaged from the bytes).
fn read(path: &Path) -> Result<(QueueFile, Vec<Record>), String> {
    guarded(|| {
        let queue = open_queue(path)?;
        let mut records = Vec::with_capacity(queue.size());
        let mut damaged = 0;
        let mut read = 0;
        for element in queue.iter() {
            read += 1;
            match decode(&element) {
                Some((record, len)) if len == element.len() => records.push(record),
                _ => damaged += 1,
            }
        }
        if read != queue.size() {
            return Err(format!(
                "{} of its {} records could not be read",
                queue.size() - read,
                queue.size()
            ));
        }
        if damaged > 0 {
            // Intact to queue-file but not a frame of ours: not a file this client wrote.
            return Err(format!("{damaged} record(s) are not outbox frames"));
        }
        Ok((queue, records))
    })
}

/// A record's place in [`Store::order`] when it is written or read back.
fn order_entry(record: &Record) -> (MessageId, Held) {
    match record {
        Record::Message(message) => (message.id, Held::Waiting),
        Record::LastId(id) => (*id, Held::Marker),
    }
}

/// Opens (creating it if needed) the queue file, set up for the outbox: an append writes and
/// syncs its records but not the header, which [`commit`] writes once for the append and the
/// removal together; element positions are cached (a removal skips to its new head without
/// reading every element header back), at a memory cost that grows as the square root of the
/// count. Removed records stay zeroed (queue-file's default, a write and a sync more per
/// removal): with `set_overwrite_on_remove(false)`, queue-file 2.0.0 loses track of its
/// elements after some wraps of its ring (found by `random_histories_keep_every_unconfirmed_message`).
fn open_queue(path: &Path) -> Result<QueueFile, String> {
    let mut queue = QueueFile::open(path).map_err(|e| e.to_string())?;
    queue.set_skip_write_header_on_add(true);
    queue.set_cache_offset_policy(OffsetCacheKind::Quadratic);
    Ok(queue)
}

/// Appends `added` and removes the first `remove` records, durably: the records are written and
/// synced first, then one header (both slots alternate, each with its CRC) says where the queue
/// now starts and ends, and is synced. A crash before the header leaves the previous queue.
fn commit(queue: &mut QueueFile, added: &[Record], remove: usize) -> Result<(), String> {
    if !added.is_empty() {
        queue
            .add_n(added.iter().map(encode))
            .map_err(|e| e.to_string())?;
    }
    if remove > 0 {
        queue.remove_n(remove).map_err(|e| e.to_string())
    } else if !added.is_empty() {
        queue.sync_all().map_err(|e| e.to_string())
    } else {
        Ok(())
    }
}

fn recovered_from(records: &[Record], damaged: u64, unreadable: Option<String>) -> Recovered {
    let mut messages: Vec<Publish> = records
        .iter()
        .filter_map(|record| match record {
            Record::Message(message) => Some(message.clone()),
            Record::LastId(_) => None,
        })
        .collect();
    messages.sort_by_key(|message| message.id);
    Recovered {
        last_id: records.iter().map(Record::id).max().unwrap_or(0),
        messages,
        damaged,
        unreadable,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mode_core::proto::Qos;
    use mode_core::random::SplitMix64;

    use super::*;

    fn message(id: MessageId, len: usize) -> Publish {
        Publish {
            id,
            topic: "/devices/1001/event".into(),
            payload: vec![b'x'; len],
            qos: Qos::AtLeastOnce,
        }
    }

    /// Random histories of appends and confirmations (mostly oldest first, as MQTT confirms;
    /// sometimes out of order, as HTTP may), in batches as the writer makes them, with the
    /// store closed and reopened now and then: every unconfirmed message is always there,
    /// intact and in order, nothing never written appears, and ids continue.
    #[test]
    fn random_histories_keep_every_unconfirmed_message() {
        for seed in 0..16u64 {
            let dir = tempfile::tempdir().unwrap();
            let mut random = SplitMix64(seed);
            let (mut store, _) = Store::open(dir.path(), lock(dir.path()).unwrap()).unwrap();
            let mut live: BTreeMap<MessageId, Publish> = BTreeMap::new();
            let mut next_id = 1;
            for step in 0..400 {
                let mut changes = Vec::new();
                for _ in 0..random.next_u64() % 4 {
                    let m = message(next_id, (random.next_u64() % 300) as usize);
                    next_id += 1;
                    live.insert(m.id, m.clone());
                    changes.push(Change::Put(m));
                }
                for _ in 0..random.next_u64() % 4 {
                    let ids: Vec<MessageId> = live.keys().copied().collect();
                    if ids.is_empty() {
                        break;
                    }
                    let pick = if random.next_u64().is_multiple_of(5) {
                        ids[(random.next_u64() as usize) % ids.len()]
                    } else {
                        ids[0]
                    };
                    live.remove(&pick);
                    changes.push(Change::Delete(pick));
                }
                store
                    .write(changes)
                    .unwrap_or_else(|e| panic!("seed {seed}, step {step}: {e}"));
                if random.next_u64().is_multiple_of(50) {
                    drop(store);
                    let (reopened, recovered) =
                        Store::open(dir.path(), lock(dir.path()).unwrap()).unwrap();
                    store = reopened;
                    let got: BTreeMap<MessageId, Publish> =
                        recovered.messages.into_iter().map(|m| (m.id, m)).collect();
                    for (id, m) in &live {
                        assert_eq!(got.get(id), Some(m), "seed {seed}, step {step}: {id}");
                    }
                    assert!(got.keys().all(|id| *id < next_id), "seed {seed}");
                    // A confirmed message may come back only behind an unconfirmed one (a FIFO
                    // removes from the head); with everything confirmed, nothing comes back.
                    let oldest_live = live.keys().next().copied();
                    for id in got.keys().filter(|id| !live.contains_key(id)) {
                        assert!(
                            oldest_live.is_some_and(|oldest| oldest < *id),
                            "seed {seed}, step {step}: confirmed {id} came back, oldest unconfirmed {oldest_live:?}"
                        );
                    }
                    assert_eq!(recovered.last_id, next_id - 1, "seed {seed}, step {step}");
                    assert_eq!(recovered.damaged, 0);
                    // What came back but was confirmed is sent again; the model forgets it.
                    store
                        .write(
                            got.keys()
                                .filter(|id| !live.contains_key(id))
                                .map(|id| Change::Delete(*id))
                                .collect(),
                        )
                        .unwrap();
                }
            }
        }
    }
}
