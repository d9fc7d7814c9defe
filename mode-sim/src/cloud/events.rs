//! Home events: recording a device's event and delivering it to the apps watching its home
//! (and to the persistent log).

use std::time::SystemTime;

use mode_core::proto::{DeviceId, Event, HomeEvent};

use super::subscriptions::{Subscriber, Subscription, fan_out};
use super::{Cloud, CloudError, EventRecord, HomeId, ProjectId, State, rfc3339_nanos};

impl Cloud {
    /// Records an event from `device_id` and delivers it to the device's home. Returns the
    /// event as delivered (a device without a home has its events recorded with home id 0 and
    /// delivered nowhere).
    pub fn record_event(&self, device_id: DeviceId, event: Event) -> Result<HomeEvent, CloudError> {
        let mut state = self.state();
        let device = state.device(device_id)?;
        let home = (device.project_id, device.home_id);
        let home_event = state.deliver_home_event(home, event, Some(device_id));
        drop(state);
        self.notify();
        Ok(home_event)
    }

    /// Subscribes to the events of home `home` (what an app's event WebSocket streams).
    pub fn subscribe_home(&self, home: HomeId) -> Result<Subscription<HomeEvent>, CloudError> {
        let mut state = self.state();
        let h = state
            .homes
            .get_mut(&home)
            .ok_or(CloudError::UnknownHome(home))?;
        let (sub, subscription) = Subscriber::new(self.inner.subscriber_queue, None);
        h.subs.push(sub);
        Ok(subscription)
    }
}

impl State {
    /// Delivers `event` now to `home`, the project and home of the device it is about (home
    /// id 0 when the device has none), from device `origin` (`None`: the cloud's own event):
    /// records it, and sends it to the home's subscribers. Returns it as delivered.
    pub(super) fn deliver_home_event(
        &mut self,
        (project_id, home_id): (ProjectId, Option<HomeId>),
        event: Event,
        origin: Option<DeviceId>,
    ) -> HomeEvent {
        let event = HomeEvent {
            home_id: home_id.unwrap_or(0),
            timestamp: rfc3339_nanos(SystemTime::now()),
            event_type: event.event_type,
            event_data: event.event_data,
            origin_device_id: origin,
        };
        if let Some(home) = home_id.and_then(|id| self.homes.get_mut(&id)) {
            fan_out(&mut home.subs, &event, "home events");
        }
        if let Some(persist) = &self.persist {
            persist.send(crate::persist::Op::Event {
                seq: self.event_seq,
                project: project_id,
                event: event.clone(),
            });
        }
        self.event_seq += 1;
        self.records.events.push(EventRecord {
            project_id,
            event: event.clone(),
        });
        event
    }
}
