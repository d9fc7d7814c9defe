//! Bulk-data requests and their responses: a request queued like any message, a waiter filed
//! under its `requestId` in the same lock, and the [`PendingResponse`] that awaits the answer.

use std::sync::Arc;
use std::time::Duration;

use mode_core::engine::SendError;
use mode_core::proto::BulkDataResponse;
use serde_json::Value;
use tokio::sync::oneshot;

use super::shared::{Shared, State};
use super::{Client, ClientError, Delivery, MessageId};

/// A bulk-data request on its way; its response is matched by `requestId`.
#[derive(Debug)]
pub struct PendingResponse {
    request_id: String,
    delivery: Delivery,
    rx: oneshot::Receiver<BulkDataResponse>,
    shared: Arc<Shared>,
}

impl PendingResponse {
    /// The request id the response will carry.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The id of the request's message, as the [`DeliveryHook`](crate::DeliveryHook) will name it.
    pub fn message_id(&self) -> MessageId {
        self.delivery.id
    }

    /// Waits up to `timeout` for the response.
    pub async fn response(self, timeout: Duration) -> Result<BulkDataResponse, ClientError> {
        let PendingResponse {
            request_id,
            delivery,
            rx,
            shared,
        } = self;
        // A request that could not be delivered fails with that reason rather than a timeout.
        let sent = async {
            delivery.wait().await?;
            std::future::pending::<Result<BulkDataResponse, ClientError>>().await
        };
        let answer = async { rx.await.map_err(|_| ClientError::Closed) };
        let outcome = tokio::time::timeout(timeout, async {
            tokio::select! {
                result = sent => result,
                response = answer => response,
            }
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(_) => {
                let mut state = shared.lock();
                state.bulk.remove(&request_id);
                state.engine.forget_bulk_request(&request_id);
                Err(ClientError::Timeout(timeout))
            }
        }
    }
}

impl Client {
    fn pending(
        &self,
        delivery: Delivery,
        request_id: String,
        rx: oneshot::Receiver<BulkDataResponse>,
    ) -> PendingResponse {
        PendingResponse {
            request_id,
            delivery,
            rx,
            shared: self.inner.shared.clone(),
        }
    }

    /// Sends a bulk-data request to the module of `label` and waits up to `timeout` for the
    /// response with the same `requestId` (subscribing to the label's responses first).
    pub async fn bulk_request(
        &self,
        label: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<BulkDataResponse, ClientError> {
        self.http_check(None)?;
        let mut waiter = None;
        let delivery = self
            .enqueue(|engine| self.bulk_with_waiter(engine, label, payload, &mut waiter))
            .await?;
        let (request_id, rx) = waiter.expect("a queued request has a waiter");
        self.pending(delivery, request_id, rx)
            .response(timeout)
            .await
    }

    /// Sends a bulk-data request without waiting; await the response on the returned handle.
    pub fn try_bulk_request(
        &self,
        label: &str,
        payload: Value,
    ) -> Result<PendingResponse, ClientError> {
        self.http_check(None)?;
        let mut waiter = None;
        let delivery =
            self.try_enqueue(|state| self.bulk_with_waiter(state, label, payload, &mut waiter))?;
        let (request_id, rx) = waiter.expect("a queued request has a waiter");
        Ok(self.pending(delivery, request_id, rx))
    }

    /// Queues the request and files its waiter. Runs under the state lock, so the waiter is
    /// there before the connection task can see the response.
    fn bulk_with_waiter(
        &self,
        state: &mut State,
        label: &str,
        payload: Value,
        waiter: &mut Option<(String, oneshot::Receiver<BulkDataResponse>)>,
    ) -> Result<MessageId, SendError> {
        let now = self.inner.shared.clock.now();
        let (id, request_id) = state.engine.bulk_request(label, payload, None, now)?;
        let (tx, rx) = oneshot::channel();
        state.bulk.insert(request_id.clone(), tx);
        *waiter = Some((request_id, rx));
        Ok(id)
    }
}
