//! Bulk data: what devices send (recorded) and the request/response modules of a project,
//! which a test can take down.

use mode_core::proto::{BulkDataRequest, BulkDataResponse, BulkStatus, DeviceId, Map, Value};

use super::subscriptions::{Subscription, fan_out};
use super::{BulkRecord, BulkRequestRecord, Cloud, CloudError, ConnectionGuard, ProjectId};
use crate::config::BulkModuleKind;

/// A bulk-data response on its way to a device, with the label of its response topic.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkResponse {
    /// The label: the response goes on `/devices/{id}/bulkData/{label}/response`.
    pub label: String,
    /// The response.
    pub response: BulkDataResponse,
}

impl Cloud {
    feeds! {
        /// Subscribes connection `conn` to its device's bulk-data responses, every label alike:
        /// the connection picks the labels whose response topic it subscribed to.
        subscribe_bulk_responses -> BulkResponse: bulk_subs;
    }

    /// Records bulk data `data` sent by `device_id` on `label`.
    pub fn record_bulk_data(
        &self,
        device_id: DeviceId,
        label: &str,
        data: &[u8],
    ) -> Result<(), CloudError> {
        let mut state = self.state();
        if !state.devices.contains_key(&device_id) {
            return Err(CloudError::UnknownDevice(device_id));
        }
        state.records.bulk.push(BulkRecord {
            device_id,
            label: label.to_owned(),
            data: data.to_vec(),
        });
        drop(state);
        self.notify();
        Ok(())
    }

    /// Answers a bulk-data request that `device_id` published on `label`'s request topic, by
    /// the project's module for `label`: `OK` with the module's result, `INVALID_BULK_DATA_LABEL`
    /// when no module has the label, `SERVICE_UNAVAILABLE` when the module is down. The response
    /// goes to every bulk-response subscriber of the device (any of its connections, not only
    /// the one that asked), and is returned.
    pub fn bulk_request(
        &self,
        device_id: DeviceId,
        label: &str,
        request: BulkDataRequest,
    ) -> Result<BulkDataResponse, CloudError> {
        let mut state = self.state();
        let project = state.device(device_id)?.project_id;
        let (status, payload) = match state.bulk_modules.get(&(project, label.to_owned())) {
            None => (BulkStatus::InvalidBulkDataLabel, Value::Object(Map::new())),
            Some(m) if !m.available => (BulkStatus::ServiceUnavailable, Value::Object(Map::new())),
            Some(m) => match m.kind {
                BulkModuleKind::Echo => (BulkStatus::Ok, request.payload.clone()),
            },
        };
        let response = BulkDataResponse {
            request_id: request.request_id.clone(),
            status,
            payload,
        };
        if let Some(device) = state.devices.get_mut(&device_id) {
            let labelled = BulkResponse {
                label: label.to_owned(),
                response: response.clone(),
            };
            fan_out(&mut device.bulk_subs, &labelled, "bulk data responses");
        }
        state.records.bulk_requests.push(BulkRequestRecord {
            device_id,
            label: label.to_owned(),
            request,
            response: response.clone(),
        });
        drop(state);
        self.notify();
        Ok(response)
    }

    /// Takes project `project`'s module `label` down (`false`: requests get
    /// `SERVICE_UNAVAILABLE`) or up again.
    pub fn set_bulk_module_available(
        &self,
        project: ProjectId,
        label: &str,
        available: bool,
    ) -> Result<(), CloudError> {
        let mut state = self.state();
        let module = state
            .bulk_modules
            .get_mut(&(project, label.to_owned()))
            .ok_or_else(|| CloudError::UnknownBulkLabel {
                project,
                label: label.to_owned(),
            })?;
        module.available = available;
        Ok(())
    }
}
