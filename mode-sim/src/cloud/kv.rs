//! The DDP key-value stores: the key rule, reads, and the one write path ([`Cloud::kv_apply`])
//! that bumps the revision, feeds the sync subscribers, emits the home event and persists.

use std::time::SystemTime;

use mode_core::proto::{
    DeviceId, Event, KV_DELETED_EVENT, KV_SAVED_EVENT, KvItem, KvUpdate, Map, Reload, Rev,
    SyncMessage, Value,
};

use super::subscriptions::{Subscriber, fan_out};
use super::{
    Cloud, CloudError, ConnectionGuard, Device, KvOpRecord, KvSubscription, rfc3339_nanos,
};

/// Checks a DDP key against the rule of docs/protocol.md **(ours)**: 1-255 characters of ASCII
/// letters, digits, `_` and `-`, starting and ending with a letter or digit.
pub fn validate_kv_key(key: &str) -> Result<(), CloudError> {
    let fail = |reason| {
        Err(CloudError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return fail("a key must not be empty");
    }
    if key.len() > 255 {
        return fail("a key must be at most 255 characters");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return fail("a key may hold only letters, digits, '_' and '-'");
    }
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !ends_ok(key.bytes().next()) || !ends_ok(key.bytes().last()) {
        return fail("a key must start and end with a letter or digit");
    }
    Ok(())
}

/// Where a kv change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvSource {
    /// The device, over its sync channel (MQTT `/kv` publish).
    Device,
    /// The REST API (app or device).
    Rest,
}

impl Cloud {
    /// Subscribes connection `conn` to its device's DDP sync channel: the `reload` snapshot and
    /// every later change, taken atomically (nothing lost or repeated between the two).
    pub fn subscribe_kv(
        &self,
        conn: &ConnectionGuard,
    ) -> Result<(Reload, KvSubscription), CloudError> {
        let device_id = conn.device_id;
        let mut state = self.state();
        let device = state.device_mut(device_id)?;
        let (sub, subscription) = Subscriber::new(self.inner.subscriber_queue, Some(conn.token()));
        device.kv_subs.push(sub);
        let reload = device.reload();
        let kv = KvSubscription::new(subscription, device.faults.clone(), device_id);
        Ok((reload, kv))
    }

    /// The whole store of `device_id` as a `reload` would carry it.
    pub fn kv_snapshot(&self, device_id: DeviceId) -> Result<Reload, CloudError> {
        let state = self.state();
        let device = state.device(device_id)?;
        Ok(device.reload())
    }

    /// Every key of `device_id`'s store, in key order (the list form of `GET /devices/{id}/kv`).
    pub fn kv_list(&self, device_id: DeviceId) -> Result<Vec<KvItem>, CloudError> {
        Ok(self.kv_snapshot(device_id)?.items)
    }

    /// One key of `device_id`'s store.
    pub fn kv_get(&self, device_id: DeviceId, key: &str) -> Result<KvItem, CloudError> {
        let state = self.state();
        let device = state.device(device_id)?;
        let (value, time) = device
            .store
            .get(key)
            .ok_or_else(|| CloudError::KeyNotFound {
                device: device_id,
                key: key.to_owned(),
            })?;
        Ok(KvItem {
            key: key.to_owned(),
            value: value.clone(),
            modification_time: Some(time.clone()),
        })
    }

    /// Applies `update` to `device_id`'s store: checks the key, bumps the revision, sends the
    /// resulting `set`/`delete` to every sync subscriber of the device, and emits
    /// `_deviceKVSaved_` / `_deviceKVDeleted_` to its home. Returns the new revision. Deleting a
    /// missing key is [`CloudError::KeyNotFound`] and changes nothing.
    pub fn kv_apply(
        &self,
        device_id: DeviceId,
        update: KvUpdate,
        source: KvSource,
    ) -> Result<Rev, CloudError> {
        validate_kv_key(update.key())?;
        let mut state = self.state();
        let device = state.device_mut(device_id)?;
        let (sync, event) = match &update {
            KvUpdate::Set { key, value } => {
                device.rev += 1;
                let now = rfc3339_nanos(SystemTime::now());
                device.store.insert(key.clone(), (value.clone(), now));
                let mut data = Map::new();
                data.insert("deviceId".into(), device_id.into());
                data.insert("key".into(), key.clone().into());
                data.insert("value".into(), value.clone());
                let sync = SyncMessage::Set {
                    rev: device.rev,
                    key: key.clone(),
                    value: value.clone(),
                };
                (sync, Event::new(KV_SAVED_EVENT, data))
            }
            KvUpdate::Delete { key } => {
                if device.store.remove(key).is_none() {
                    return Err(CloudError::KeyNotFound {
                        device: device_id,
                        key: key.clone(),
                    });
                }
                device.rev += 1;
                let mut data = Map::new();
                data.insert("deviceId".into(), device_id.into());
                data.insert("key".into(), key.clone().into());
                let sync = SyncMessage::Delete {
                    rev: device.rev,
                    key: key.clone(),
                };
                (sync, Event::new(KV_DELETED_EVENT, data))
            }
        };
        let rev = device.rev;
        fan_out(&mut device.kv_subs, &sync, "kv sync");
        let persisted = match &update {
            KvUpdate::Set { key, .. } => {
                device
                    .store
                    .get(key)
                    .map(|(value, time)| crate::persist::Op::KvSet {
                        device: device_id,
                        item: KvItem {
                            key: key.clone(),
                            value: value.clone(),
                            modification_time: Some(time.clone()),
                        },
                        rev,
                    })
            }
            KvUpdate::Delete { key } => Some(crate::persist::Op::KvDelete {
                device: device_id,
                key: key.clone(),
                rev,
            }),
        };
        let home = (device.project_id, device.home_id);
        if let (Some(persist), Some(op)) = (&state.persist, persisted) {
            persist.send(op);
        }
        state.deliver_home_event(home, event, None);
        state.records.kv_ops.push(KvOpRecord {
            device_id,
            update,
            rev,
            source,
        });
        drop(state);
        tracing::debug!(device_id, rev, "kv store changed");
        self.notify();
        Ok(rev)
    }

    /// Sets `key` of `device_id` to `value` (see [`Cloud::kv_apply`]).
    pub fn kv_set(
        &self,
        device_id: DeviceId,
        key: &str,
        value: Value,
        source: KvSource,
    ) -> Result<Rev, CloudError> {
        let update = KvUpdate::Set {
            key: key.to_owned(),
            value,
        };
        self.kv_apply(device_id, update, source)
    }

    /// Deletes `key` of `device_id` (see [`Cloud::kv_apply`]).
    pub fn kv_delete(
        &self,
        device_id: DeviceId,
        key: &str,
        source: KvSource,
    ) -> Result<Rev, CloudError> {
        self.kv_apply(
            device_id,
            KvUpdate::Delete {
                key: key.to_owned(),
            },
            source,
        )
    }
}

impl Device {
    fn reload(&self) -> Reload {
        let items = self
            .store
            .iter()
            .map(|(key, (value, time))| KvItem {
                key: key.clone(),
                value: value.clone(),
                modification_time: Some(time.clone()),
            })
            .collect();
        Reload {
            rev: self.rev,
            items,
        }
    }
}
