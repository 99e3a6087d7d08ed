//! The routes, thin: each parses its body, finds its model, and hands the
//! work to [`crate::generation`] and [`crate::stream`]. Helpers shared by
//! the handlers live here.

pub mod access;
pub mod chat;
pub mod completions;
pub mod metrics;
pub mod models;
pub mod organization;
pub mod status;
pub mod tokenize;
pub mod web;

use std::future::Future;
use std::time::Duration;

use api::ApiError;
use axum::Extension;

use crate::auth::Caller;
use crate::generation::{submit_all, Settings, Tracked};
use crate::metering::{Charge, Planned};
use crate::middleware::RequestId;
use crate::state::AppState;

/// Takes the reservation of a metered request (`Ok(None)` when there is no
/// store): `prompt_tokens` as its usage reports them, `max_completion_tokens`
/// the most its choices together may generate. Both are first taken from
/// the caller's tokens-per-minute limits ([`crate::limits::charge_tokens`]):
/// a 429 when they do not fit.
pub async fn begin_charge(
    state: &AppState,
    caller: Option<&Extension<Caller>>,
    request_id: Option<&Extension<RequestId>>,
    model: &str,
    prompt_tokens: u32,
    max_completion_tokens: u64,
) -> Result<Option<Charge>, ApiError> {
    let (Some(meter), Some(Extension(Caller::Tenant(tenant)))) = (state.meter(), caller) else {
        return Ok(None);
    };
    let fresh;
    let request_id = match request_id {
        Some(Extension(RequestId(id))) => id.as_str(),
        None => {
            fresh = format!("req_{}", crate::random_hex());
            fresh.as_str()
        }
    };
    let estimated = u64::from(prompt_tokens).saturating_add(max_completion_tokens);
    let rate_charge = crate::limits::charge_tokens(estimated).await?;
    let planned = Planned {
        request_id,
        model,
        prompt_tokens,
        max_completion_tokens,
    };
    match meter.begin(tenant, planned).await {
        // The charge settles the tokens-per-minute estimate with the real
        // usage when it settles the ledger.
        Ok(mut charge) => {
            if let Some(rate_charge) = rate_charge {
                charge.attach_rate_charge(rate_charge);
            }
            Ok(Some(charge))
        }
        Err(err) => {
            if let Some(rate_charge) = rate_charge {
                rate_charge.settle(0).await;
            }
            Err(err)
        }
    }
}

/// Submits every choice of every prompt; when the engine refuses, releases
/// the request's reservation before handing the error back.
pub async fn submit_or_release(
    state: &AppState,
    engine: &engine::EngineHandle,
    prompts: &[Vec<u32>],
    n: u32,
    settings: &Settings,
    param: &str,
    charge: &mut Option<Charge>,
) -> Result<Vec<Tracked>, ApiError> {
    match submit_all(
        state.live_generations_counter(),
        engine,
        prompts,
        n,
        settings,
        param,
    ) {
        Ok(generations) => Ok(generations),
        Err(err) => {
            if let Some(charge) = charge.take() {
                charge.release().await;
            }
            Err(err)
        }
    }
}

/// Runs CPU work (tokenizing, template rendering) off the async executor.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ApiError::Internal {
            detail: format!("blocking task failed: {err}"),
        })
}

/// Runs `work`, failing with a 504 when it takes longer than `limit`
/// (dropping it, which cancels its generations).
pub async fn with_timeout<T>(
    limit: Duration,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or(Err(ApiError::Timeout {
            after_secs: limit.as_secs(),
        }))
}
