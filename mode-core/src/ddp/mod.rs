//! The device-side mirror of the Device Data Proxy: a state machine that applies the cloud's
//! sync messages by revision, so a device's copy converges to the cloud's store even when
//! messages arrive late, twice, or out of order. No IO: feed it messages, act on what it returns.

use crate::prelude::*;
use alloc::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::proto::{DecodeError, KvItem, Reload, Rev, SyncMessage};

/// What one key holds: a live value or a tombstone, and the revision that put it there.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    rev: Rev,
    /// `None` is a tombstone: the key was deleted at `rev`, and anything older for it is stale.
    value: Option<Value>,
    /// Known only for keys that came in a reload; a later `set` does not carry it.
    modification_time: Option<String>,
}

/// A visible change to the mirror, for the application to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `key` now holds `value`; `previous` is what it held before (`None`: it did not exist).
    Set {
        /// The key.
        key: String,
        /// Its new value.
        value: Value,
        /// Its value before, if it had one.
        previous: Option<Value>,
    },
    /// `key` was removed; it held `previous`.
    Deleted {
        /// The key.
        key: String,
        /// Its value before the delete.
        previous: Value,
    },
}

impl Change {
    /// The key that changed.
    pub fn key(&self) -> &str {
        match self {
            Change::Set { key, .. } | Change::Deleted { key, .. } => key,
        }
    }
}

/// Why a sync message changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IgnoreReason {
    /// The mirror already holds a newer revision for the key (or a newer reload).
    Stale,
    /// The mirror already applied this very revision for the key.
    Duplicate,
}

/// What [`Mirror::apply`] did with a message.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "the changes are what the application should act on"]
pub enum Applied {
    /// The message was applied. `changes` lists what an observer can see change; it may be
    /// empty (a delete of a key the mirror did not hold, a reload identical to the mirror).
    Changed {
        /// The message's revision.
        rev: Rev,
        /// True for a reload: `changes` is then the diff against the contents before it.
        reload: bool,
        /// The visible changes, in key order for a reload.
        changes: Vec<Change>,
    },
    /// The message was older than, or the same as, what the mirror holds.
    Ignored {
        /// The message's revision.
        rev: Rev,
        /// The revision the mirror holds for the key (for a reload, the mirror's revision).
        held: Rev,
        /// Stale or duplicate.
        reason: IgnoreReason,
    },
}

impl Applied {
    /// The visible changes; empty when the message was ignored.
    pub fn changes(&self) -> &[Change] {
        match self {
            Applied::Changed { changes, .. } => changes,
            Applied::Ignored { .. } => &[],
        }
    }

    /// Why the message was ignored, or `None` when it was applied.
    pub fn ignored(&self) -> Option<IgnoreReason> {
        match self {
            Applied::Changed { .. } => None,
            Applied::Ignored { reason, .. } => Some(*reason),
        }
    }
}

/// The device's mirror of its DDP store.
///
/// Rules (see `docs/protocol.md`):
/// - a `set` or `delete` for a key is applied only if its rev is greater than the rev held for
///   that key; a delete leaves a tombstone with its rev, so a late `set` is recognised;
/// - a `reload` replaces everything: each item gets the reload's rev, tombstones are dropped, and
///   the reload's rev becomes the floor for keys not held, so a late `set` of a key deleted before
///   the reload is ignored too;
/// - a reload older than the mirror's rev is stale, except the first one after
///   [`Mirror::expect_reload`]: a new subscription's snapshot is the truth even when the cloud's
///   revisions went backwards (a store that was reset).
///
/// ```
/// use mode_core::ddp::{Change, IgnoreReason, Mirror};
///
/// let mut mirror = Mirror::new();
/// // The cloud's snapshot first, then changes, each with the store's revision.
/// let reload = br#"{"action":"reload","rev":7,"items":[{"key":"mode","value":"eco"}]}"#;
/// mirror.apply_json(reload)?;
/// let set = mirror.apply_json(br#"{"action":"set","rev":9,"key":"mode","value":"boost"}"#)?;
/// assert_eq!(
///     set.changes(),
///     [Change::Set { key: "mode".into(), value: "boost".into(), previous: Some("eco".into()) }]
/// );
/// // A set from before it, arriving late, changes nothing and says why.
/// let late = mirror.apply_json(br#"{"action":"set","rev":8,"key":"mode","value":"off"}"#)?;
/// assert_eq!(late.ignored(), Some(IgnoreReason::Stale));
/// assert_eq!(mirror.get("mode"), Some(&"boost".into()));
/// assert_eq!(mirror.rev(), 9);
/// # Ok::<(), mode_core::proto::DecodeError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    entries: BTreeMap<String, Entry>,
    live: usize,
    rev: Rev,
    floor: Rev,
    reloads: u64,
    expecting_reload: bool,
}

impl Mirror {
    /// An empty mirror at revision 0, which accepts any first reload.
    pub fn new() -> Self {
        Mirror {
            expecting_reload: true,
            ..Mirror::default()
        }
    }

    /// Says that the next reload is the snapshot of a new subscription, so it is applied even if
    /// its rev is lower than the mirror's. Call it on every (re)subscription to the sync channel.
    pub fn expect_reload(&mut self) {
        self.expecting_reload = true;
    }

    /// Applies one sync message and says what changed.
    pub fn apply(&mut self, message: SyncMessage) -> Applied {
        match message {
            SyncMessage::Reload(reload) => self.apply_reload(reload),
            SyncMessage::Set { rev, key, value } => self.apply_change(rev, key, Some(value)),
            SyncMessage::Delete { rev, key } => self.apply_change(rev, key, None),
        }
    }

    /// Decodes a raw sync payload (as received on `/devices/{id}/kv`) and applies it. A payload
    /// that does not decode changes nothing.
    pub fn apply_json(&mut self, payload: &[u8]) -> Result<Applied, DecodeError> {
        Ok(self.apply(SyncMessage::decode(payload)?))
    }

    /// A `set` (`value` is `Some`) or a `delete` (`None`).
    fn apply_change(&mut self, rev: Rev, key: String, value: Option<Value>) -> Applied {
        let slot = self.entries.get_mut(&key);
        // A key the mirror does not hold is known up to the floor (the last reload's rev).
        let held = slot.as_ref().map_or(self.floor, |entry| entry.rev);
        if rev <= held {
            let reason = if slot.is_some() && rev == held {
                IgnoreReason::Duplicate
            } else {
                IgnoreReason::Stale
            };
            return Applied::Ignored { rev, held, reason };
        }
        let entry = Entry {
            rev,
            value: value.clone(),
            modification_time: None,
        };
        let previous = match slot {
            Some(slot) => core::mem::replace(slot, entry).value,
            None => {
                self.entries.insert(key.clone(), entry);
                None
            }
        };
        self.rev = self.rev.max(rev);
        self.changed(rev, key, value, previous)
    }

    fn changed(
        &mut self,
        rev: Rev,
        key: String,
        value: Option<Value>,
        previous: Option<Value>,
    ) -> Applied {
        let change = match (value, previous) {
            (Some(value), previous) => {
                if previous.is_none() {
                    self.live += 1;
                }
                Some(Change::Set {
                    key,
                    value,
                    previous,
                })
            }
            (None, Some(previous)) => {
                self.live -= 1;
                Some(Change::Deleted { key, previous })
            }
            (None, None) => None,
        };
        Applied::Changed {
            rev,
            reload: false,
            changes: change.into_iter().collect(),
        }
    }

    fn apply_reload(&mut self, reload: Reload) -> Applied {
        if reload.rev < self.rev && !self.expecting_reload {
            return Applied::Ignored {
                rev: reload.rev,
                held: self.rev,
                reason: IgnoreReason::Stale,
            };
        }
        let rev = reload.rev;
        let mut items = reload.items;
        items.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        let old = core::mem::take(&mut self.entries);
        let mut changes = Vec::new();
        let mut old = old
            .into_iter()
            .filter_map(|(key, entry)| entry.value.map(|v| (key, v)))
            .peekable();
        let mut fresh = Vec::with_capacity(items.len());
        // Both sides are in key order: one merge pass yields the diff in key order.
        for KvItem {
            key,
            value,
            modification_time,
        } in items
        {
            while let Some((gone, previous)) = old.next_if(|(old_key, _)| *old_key < key) {
                changes.push(Change::Deleted {
                    key: gone,
                    previous,
                });
            }
            let previous = old.next_if(|(old_key, _)| *old_key == key).map(|(_, v)| v);
            if previous.as_ref() != Some(&value) {
                changes.push(Change::Set {
                    key: key.clone(),
                    value: value.clone(),
                    previous,
                });
            }
            fresh.push((
                key,
                Entry {
                    rev,
                    value: Some(value),
                    modification_time,
                },
            ));
        }
        changes.extend(old.map(|(key, previous)| Change::Deleted { key, previous }));
        self.live = fresh.len();
        // Already in key order: the map is built in bulk rather than by 100k inserts.
        self.entries = fresh.into_iter().collect();
        self.rev = rev;
        self.floor = rev;
        self.reloads += 1;
        self.expecting_reload = false;
        Applied::Changed {
            rev,
            reload: true,
            changes,
        }
    }

    /// Drops the tombstones of revisions up to `settled` and raises the floor to it, so memory
    /// stays proportional to live keys. Call it only when every sync message up to `settled` has
    /// been delivered (a message at or below the floor for a key not held is treated as stale).
    /// A reload does this by itself for its own rev. Returns how many tombstones were dropped.
    pub fn compact_tombstones(&mut self, settled: Rev) -> usize {
        let settled = settled.min(self.rev);
        let before = self.entries.len();
        self.entries
            .retain(|_, entry| entry.value.is_some() || entry.rev > settled);
        self.floor = self.floor.max(settled);
        before - self.entries.len()
    }

    /// The value of `key`, if the mirror holds it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.get(key)?.value.as_ref()
    }

    /// True if the mirror holds `key` (a tombstone does not count).
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The live keys and values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> + '_ {
        self.entries
            .iter()
            .filter_map(|(key, entry)| entry.value.as_ref().map(|value| (key.as_str(), value)))
    }

    /// The live keys, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter().map(|(key, _)| key)
    }

    /// How many live keys the mirror holds.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True if the mirror holds no live key.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// How many tombstones the mirror keeps.
    pub fn tombstones(&self) -> usize {
        self.entries.len() - self.live
    }

    /// The highest revision applied.
    pub fn rev(&self) -> Rev {
        self.rev
    }

    /// The revision held for `key`, its tombstone's included; `None` if the mirror knows nothing
    /// of the key beyond the floor.
    pub fn key_rev(&self, key: &str) -> Option<Rev> {
        self.entries.get(key).map(|entry| entry.rev)
    }

    /// When the cloud last changed `key`, if a reload said so and no `set` has come since.
    pub fn modification_time(&self, key: &str) -> Option<&str> {
        let entry = self.entries.get(key)?;
        entry.value.as_ref()?;
        entry.modification_time.as_deref()
    }

    /// How many reloads the mirror has applied; 0 until the first, so a caller can tell an empty
    /// store from one not yet synced.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// The live contents as one JSON object, keys in order.
    pub fn snapshot(&self) -> Value {
        let map: Map<String, Value> = self
            .iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
        Value::Object(map)
    }
}
