//! Embeddings and moderations through the gateway: whole JSON answers
//! routed like chat ([`Gateway::route`]: the model's backends by priority
//! and weight, retries, failover, fallback models, breakers), each call
//! held to the backend's headers + request timeouts. A backend that does
//! not serve the endpoint (a `local` chat engine, Anthropic) fails as
//! unsupported and the next is tried.

use std::time::{Duration, Instant};

use api::{EmbeddingList, EmbeddingRequest, Moderation, ModerationRequest};
use futures_util::future::BoxFuture;

use crate::error::{BackendError, FailureKind, GatewayError};
use crate::pool::BackendSlot;
use crate::router::{Gateway, RouteOptions, Served};

impl Gateway {
    /// Routes one embeddings request for its `model`; the answer's `model`
    /// is the gateway model that served.
    pub async fn embeddings(
        &self,
        request: EmbeddingRequest,
    ) -> Result<(EmbeddingList, Served), GatewayError> {
        let request = &request;
        let (mut list, served) = self
            .route(
                &request.model,
                &RouteOptions::default(),
                |slot, _| async move {
                    let mut upstream = request.clone();
                    upstream.model = slot.upstream_model.clone();
                    whole_call(&slot, slot.backend.embeddings(upstream)).await
                },
            )
            .await?;
        list.model = served.model.clone();
        Ok((list, served))
    }

    /// Routes one moderation request to the backends of gateway model
    /// `model`; the answer's `model` is left as the upstream wrote it.
    pub async fn moderations(
        &self,
        model: &str,
        request: ModerationRequest,
    ) -> Result<(Moderation, Served), GatewayError> {
        let request = &request;
        self.route(model, &RouteOptions::default(), |slot, _| async move {
            let mut upstream = request.clone();
            upstream.model = Some(slot.upstream_model.clone());
            whole_call(&slot, slot.backend.moderations(upstream)).await
        })
        .await
    }
}

/// Runs one call on `slot` within its headers + request timeouts, counted
/// in flight, and records a success in its breaker.
async fn whole_call<T>(
    slot: &std::sync::Arc<BackendSlot>,
    call: BoxFuture<'static, Result<T, BackendError>>,
) -> Result<T, BackendError> {
    let started = Instant::now();
    let _in_flight = slot.begin();
    let t = slot.timeouts;
    let limit = Duration::from_millis(t.headers_ms.saturating_add(t.request_ms));
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(answer)) => {
            slot.on_success(started.elapsed());
            Ok(answer)
        }
        Ok(Err(err)) => Err(err),
        Err(_) => Err(BackendError::new(
            FailureKind::RequestTimeout,
            format!("no answer within {} ms", limit.as_millis()),
        )),
    }
}
