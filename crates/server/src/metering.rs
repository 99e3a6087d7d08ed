//! Metering: the durable reservation before a generation and the one
//! ledger row after it.
//!
//! [`Meter::begin`] reserves the worst case (every prompt token at the
//! input price plus the most tokens the request may generate at the output
//! price) under the request id, before any work. It hands back a
//! [`Charge`], which the request's answer owns until the generation ends:
//! [`Charge::finish`] settles it with what was generated, and dropping an
//! unfinished charge (the client left, the handler was cancelled) settles
//! it as `cancelled` with the tokens seen so far. Settlement writes the
//! ledger row and deletes the reservation in one transaction, from a
//! spawned task so that no drop path awaits; the store makes a retried
//! request id write no second row. A crash between the two leaves the
//! reservation, which `serve` settles at start ([`settle_interrupted`]).
//! Request ids are unique per organisation: two tenants may send the same
//! `x-request-id` without touching each other's rows.

use std::time::Instant;

use api::{ApiError, FinishReason};
use billing::{ModelPrices, PriceTable, Timestamp, Usage};
use store::{NewReservation, NewUsage, Reservation, Store};

/// The backend name written in the ledger for the in-process engine.
pub const LOCAL_BACKEND: &str = "local";

/// Who a request is billed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// The organisation billed.
    pub org_id: String,
    /// Its project.
    pub project_id: String,
    /// The key id written in the ledger (a real key, or a built-in name
    /// such as `local` or `admin`).
    pub api_key_id: String,
}

/// The store and the prices every request is metered with. Cheap to clone.
#[derive(Clone)]
pub struct Meter {
    store: Store,
    prices: std::sync::Arc<PriceTable>,
}

/// How a generation ended, for the ledger's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every choice finished.
    Ok,
    /// The engine failed (or the request timed out) midway.
    Error,
    /// The client left before the end.
    Cancelled,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// What one request asks for, to size its reservation.
#[derive(Debug, Clone)]
pub struct Planned<'a> {
    /// The request id (the idempotency key).
    pub request_id: &'a str,
    /// The model served.
    pub model: &'a str,
    /// Prompt tokens as the usage object reports them.
    pub prompt_tokens: u32,
    /// The most tokens every choice together may generate.
    pub max_completion_tokens: u64,
}

impl Meter {
    /// A meter writing to `store` at the prices of `prices`.
    pub fn new(store: Store, prices: PriceTable) -> Self {
        Meter {
            store,
            prices: std::sync::Arc::new(prices),
        }
    }

    /// The store the ledger lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reserves the worst case of `planned` for `tenant`, before any work.
    pub async fn begin(&self, tenant: &Tenant, planned: Planned<'_>) -> Result<Charge, ApiError> {
        let started_at = Timestamp::now();
        let prices = self
            .prices
            .price_at(planned.model, started_at)
            .map_err(internal)?;
        let worst = billing::worst_case(
            u64::from(planned.prompt_tokens),
            planned.max_completion_tokens,
            &prices,
        )
        .and_then(billing::Money::to_i64_units)
        .map_err(internal)?;
        match self
            .store
            .get_usage(&tenant.org_id, planned.request_id)
            .await
        {
            Ok(_) => {
                return Err(ApiError::invalid_body(format!(
                    "The request id {} was already used; send a new x-request-id.",
                    planned.request_id
                )))
            }
            Err(err) if err.kind() == store::ErrorKind::NotFound => {}
            Err(err) => return Err(internal(err)),
        }
        let reservation = NewReservation {
            request_id: planned.request_id.to_owned(),
            org_id: tenant.org_id.clone(),
            project_id: Some(tenant.project_id.clone()),
            api_key_id: Some(tenant.api_key_id.clone()),
            user_id: None,
            amount: worst,
            created_at: started_at.unix_millis(),
        };
        self.store
            .reserve(&reservation)
            .await
            .map_err(|err| match err.kind() {
                store::ErrorKind::Conflict => ApiError::invalid_body(format!(
                    "A request with id {} is already in progress.",
                    planned.request_id
                )),
                _ => internal(err),
            })?;
        Ok(Charge {
            meter: self.clone(),
            tenant: tenant.clone(),
            request_id: planned.request_id.to_owned(),
            model: planned.model.to_owned(),
            prices,
            prompt_tokens: planned.prompt_tokens,
            completion_tokens: 0,
            started: Instant::now(),
            started_at,
            settled: false,
        })
    }
}

fn internal(err: impl std::fmt::Display) -> ApiError {
    ApiError::Internal {
        detail: format!("metering failed: {err}"),
    }
}

/// A reservation taken for one request; settles exactly once, on
/// [`Charge::finish`] or, failing that, when dropped.
pub struct Charge {
    meter: Meter,
    tenant: Tenant,
    request_id: String,
    model: String,
    prices: ModelPrices,
    prompt_tokens: u32,
    completion_tokens: u32,
    started: Instant,
    started_at: Timestamp,
    settled: bool,
}

impl Charge {
    /// Records the tokens generated so far (all choices together), for a
    /// settlement that happens on drop.
    pub fn set_completion_tokens(&mut self, tokens: u32) {
        self.completion_tokens = tokens;
    }

    /// Drops the reservation without a ledger row: the request was refused
    /// before any work.
    pub async fn release(mut self) {
        self.settled = true;
        let store = self.meter.store.clone();
        let (org_id, request_id) = (self.tenant.org_id.clone(), self.request_id.clone());
        let released = tokio::spawn(async move {
            if let Err(err) = store.release(&org_id, &request_id).await {
                tracing::error!(
                    %request_id,
                    error = %err,
                    "cannot release; the reservation is left for recovery"
                );
            }
        });
        if let Err(err) = released.await {
            tracing::error!(error = %err, "the release task failed");
        }
    }

    /// Settles with `completion_tokens` generated, awaiting the write.
    pub async fn finish(
        mut self,
        outcome: Outcome,
        completion_tokens: u32,
        finish_reason: Option<FinishReason>,
    ) {
        self.completion_tokens = completion_tokens;
        self.settled = true;
        let (store, usage) = self.usage(outcome, finish_reason);
        // On its own task, so that a caller dropped mid-write (the client
        // left) cannot cut the settlement short.
        if let Err(err) = tokio::spawn(write(store, usage)).await {
            tracing::error!(error = %err, "the settlement task failed");
        }
    }

    /// Settles a whole (non-streamed) answer: `Some((completion tokens,
    /// finish reason))` when it succeeded, `None` when it failed (billing
    /// the tokens recorded so far).
    pub async fn conclude(self, ended: Option<(u32, Option<FinishReason>)>) {
        match ended {
            Some((tokens, reason)) => self.finish(Outcome::Ok, tokens, reason).await,
            None => {
                let tokens = self.completion_tokens;
                self.finish(Outcome::Error, tokens, None).await;
            }
        }
    }

    /// Settles from a synchronous path: the write runs on a spawned task.
    pub fn finish_detached(
        mut self,
        outcome: Outcome,
        completion_tokens: u32,
        finish_reason: Option<FinishReason>,
    ) {
        self.completion_tokens = completion_tokens;
        self.spawn_settlement(outcome, finish_reason);
    }

    fn spawn_settlement(&mut self, outcome: Outcome, finish_reason: Option<FinishReason>) {
        if self.settled {
            return;
        }
        self.settled = true;
        let (store, usage) = self.usage(outcome, finish_reason);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(write(store, usage));
            }
            Err(_) => tracing::error!(
                request_id = %usage.request_id,
                "no runtime to settle on; the reservation is left for recovery"
            ),
        }
    }

    fn usage(&self, outcome: Outcome, finish_reason: Option<FinishReason>) -> (Store, NewUsage) {
        let tokens = Usage::new(
            u64::from(self.prompt_tokens),
            u64::from(self.completion_tokens),
        );
        let cost = billing::cost(tokens, &self.prices)
            .and_then(billing::Money::to_i64_units)
            .unwrap_or_else(|err| {
                tracing::error!(error = %err, "cost overflow; recorded as the maximum");
                i64::MAX
            });
        let usage = NewUsage {
            request_id: self.request_id.clone(),
            org_id: self.tenant.org_id.clone(),
            project_id: Some(self.tenant.project_id.clone()),
            api_key_id: Some(self.tenant.api_key_id.clone()),
            user_id: None,
            model: self.model.clone(),
            backend: LOCAL_BACKEND.to_owned(),
            prompt_tokens: i64::from(self.prompt_tokens),
            cached_tokens: 0,
            completion_tokens: i64::from(self.completion_tokens),
            cost,
            latency_ms: i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX),
            status: outcome.as_str().to_owned(),
            finish_reason: finish_reason.map(finish_reason_name),
            created_at: self.started_at.unix_millis(),
        };
        (self.meter.store.clone(), usage)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.spawn_settlement(Outcome::Cancelled, None);
    }
}

async fn write(store: Store, usage: NewUsage) {
    match store.settle(&usage).await {
        Ok(recorded) if !recorded.created => tracing::info!(
            request_id = %usage.request_id,
            "request id already in the ledger; no second row written"
        ),
        Ok(_) => {}
        Err(err) => tracing::error!(
            request_id = %usage.request_id,
            error = %err,
            "cannot settle; the reservation is left for recovery"
        ),
    }
}

/// The ledger's name of a finish reason.
fn finish_reason_name(reason: FinishReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{reason:?}").to_lowercase())
}

/// Settles a reservation a crash left open at zero cost with status
/// `interrupted`: nothing is known of what it generated. Request ids are
/// unique per organisation, so another organisation's row with the same id
/// is no obstacle.
pub async fn settle_interrupted(store: &Store, reservation: &Reservation) -> store::Result<()> {
    let usage = NewUsage {
        request_id: reservation.request_id.clone(),
        org_id: reservation.org_id.clone(),
        project_id: reservation.project_id.clone(),
        api_key_id: reservation.api_key_id.clone(),
        user_id: reservation.user_id.clone(),
        model: "unknown".to_owned(),
        backend: LOCAL_BACKEND.to_owned(),
        status: "interrupted".to_owned(),
        created_at: reservation.created_at,
        ..NewUsage::default()
    };
    store.settle(&usage).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons_use_their_wire_names() {
        assert_eq!(finish_reason_name(FinishReason::Stop), "stop");
        assert_eq!(finish_reason_name(FinishReason::Length), "length");
    }
}
