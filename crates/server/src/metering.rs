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
//! request id write no second row. Request ids are unique per
//! organisation: two tenants may send the same `x-request-id` without
//! touching each other's rows.
//!
//! While it runs, the charge records its progress in the reservation (at the
//! first token, then every [`CHECKPOINT_TOKENS`] tokens or
//! [`CHECKPOINT_INTERVAL`]), so a crash leaves a reservation that `serve`
//! settles at start for what was produced ([`settle_interrupted`]): a crash
//! costs the operator at most the tokens of one checkpoint interval per
//! request, and never bills a client twice.
//!
//! Budgets and plans: the store admits the reservation only if every budget
//! of the request's organisation, project and key can hold its worst case,
//! and a signed-in person's plan must allow the model and have quota left
//! ([`crate::quota`]); otherwise the answer is a 429 `insufficient_quota`
//! (a 403 for a model outside the plan) before any work. A settlement that
//! reaches a soft limit for the first time in its period is logged and
//! posted to the soft-limit webhook ([`crate::notify`]). The request's
//! tokens-per-minute estimate is corrected with the real usage when the
//! charge settles.
//!
//! Every write the meter spawns (settlements, releases, progress records)
//! runs on the meter's task tracker, so a shutdown can wait until each has
//! written ([`Meter::flush`]). A request routed to a remote backend is
//! settled for the backend and model that served it, at that model's
//! prices, with the upstream's reported tokens ([`Charge::served_by`],
//! [`Charge::set_prompt_tokens`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{ApiError, FinishReason};
use billing::{ModelPrices, PriceTable, Timestamp, Usage};
use store::{NewReservation, NewUsage, Progress, Reservation, SoftLimitReached, Store};
use tokio_util::task::TaskTracker;

/// Progress is recorded every this many generated tokens…
pub const CHECKPOINT_TOKENS: u32 = 16;
/// …or when this much time has passed since the last record, whichever
/// comes first (checked as tokens arrive).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// The backend name written in the ledger for the in-process engine.
pub const LOCAL_BACKEND: &str = "local";

/// Who a request is billed to, and what its key may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenant {
    /// The organisation billed.
    pub org_id: String,
    /// Its project.
    pub project_id: String,
    /// The key id written in the ledger (a real key, or a built-in name
    /// such as `local` or `admin`).
    pub api_key_id: String,
    /// Whether the key may manage the organisation (an admin key, the
    /// `PARLANCE_ADMIN_KEY`, or the open server's single user).
    pub admin: bool,
    /// The key's own rate limits (`None`s fall back to the project's).
    pub key_limits: store::RateLimits,
    /// Models the key may use; `None` means all.
    pub allowed_models: Option<Vec<String>>,
    /// The signed-in person (web app session), whose plan applies.
    pub user_id: Option<String>,
}

/// The store and the prices every request is metered with. Cheap to clone.
#[derive(Clone)]
pub struct Meter {
    store: Store,
    prices: Arc<PriceTable>,
    /// Where soft-limit notices are posted (`http://…`), if anywhere.
    webhook: Option<Arc<str>>,
    /// The spawned ledger writes, for [`Meter::flush`].
    tasks: TaskTracker,
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
            prices: Arc::new(prices),
            webhook: None,
            tasks: TaskTracker::new(),
        }
    }

    /// Waits until every ledger write spawned so far has finished (writes
    /// spawned meanwhile are waited for too).
    pub async fn flush(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }

    /// Ledger writes still running.
    pub fn pending_writes(&self) -> usize {
        self.tasks.len()
    }

    /// Posts soft-limit notices to `url` (plain `http://`) besides logging them.
    pub fn with_webhook(mut self, url: Option<String>) -> Self {
        self.webhook = url.map(Arc::from);
        self
    }

    /// The store the ledger lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The prices a request for `model` started at `at` pays: the store's
    /// (`parlance prices set`), else the configured table's.
    pub async fn prices_at(&self, model: &str, at: Timestamp) -> Result<ModelPrices, ApiError> {
        match self
            .store
            .price_at(model, at.unix_millis())
            .await
            .map_err(store_failed)?
        {
            Some(stored) => Ok(ModelPrices {
                input: billing::Money::from_i64_units(stored.input),
                cached_input: billing::Money::from_i64_units(stored.cached_input),
                output: billing::Money::from_i64_units(stored.output),
            }),
            None => self.prices.price_at(model, at).map_err(internal),
        }
    }

    /// Reserves the worst case of `planned` for `tenant`, before any work.
    pub async fn begin(&self, tenant: &Tenant, planned: Planned<'_>) -> Result<Charge, ApiError> {
        let started_at = Timestamp::now();
        // Both reads at once: one round trip to the store, not two.
        let (prices, used) = tokio::join!(
            self.prices_at(planned.model, started_at),
            self.store.get_usage(&tenant.org_id, planned.request_id)
        );
        let prices = prices?;
        if let Some(user_id) = &tenant.user_id {
            crate::quota::admit(
                &self.store,
                &tenant.org_id,
                user_id,
                planned.model,
                started_at,
            )
            .await?;
        }
        let worst = billing::worst_case(
            u64::from(planned.prompt_tokens),
            planned.max_completion_tokens,
            &prices,
        )
        .and_then(billing::Money::to_i64_units)
        .map_err(internal)?;
        match used {
            Ok(_) => {
                return Err(ApiError::invalid_body(format!(
                    "The request id {} was already used; send a new x-request-id.",
                    planned.request_id
                )))
            }
            Err(err) if err.kind() == store::ErrorKind::NotFound => {}
            Err(err) => return Err(store_failed(err)),
        }
        let reservation = NewReservation {
            request_id: planned.request_id.to_owned(),
            org_id: tenant.org_id.clone(),
            project_id: Some(tenant.project_id.clone()),
            api_key_id: Some(tenant.api_key_id.clone()),
            user_id: tenant.user_id.clone(),
            amount: worst,
            created_at: started_at.unix_millis(),
            model: Some(planned.model.to_owned()),
            backend: Some(LOCAL_BACKEND.to_owned()),
        };
        self.store
            .reserve(&reservation)
            .await
            .map_err(|err| match err.kind() {
                store::ErrorKind::Conflict => ApiError::invalid_body(format!(
                    "A request with id {} is already in progress.",
                    planned.request_id
                )),
                store::ErrorKind::QuotaExceeded => ApiError::QuotaExceeded {
                    message: format!(
                        "You exceeded your current quota, please check your plan and billing \
                         details: {}. This request could cost up to {} USD.",
                        err.to_string().trim_start_matches("insufficient quota: "),
                        billing::Money::from_i64_units(worst).to_decimal_string()
                    ),
                },
                _ => store_failed(err),
            })?;
        Ok(Charge {
            meter: self.clone(),
            tenant: tenant.clone(),
            request_id: planned.request_id.to_owned(),
            model: planned.model.to_owned(),
            prices,
            prompt_tokens: planned.prompt_tokens,
            cached_tokens: 0,
            completion_tokens: 0,
            started: Instant::now(),
            started_at,
            settled: false,
            checkpointed: None,
            rate_charge: None,
            backend: LOCAL_BACKEND.to_owned(),
            relabel: false,
        })
    }
}

fn internal(err: impl std::fmt::Display) -> ApiError {
    ApiError::Internal {
        detail: format!("metering failed: {err}"),
    }
}

/// A store failure before any work: a busy or locked database (too many
/// requests at once) is a 503 to retry, anything else a 500.
fn store_failed(err: store::StoreError) -> ApiError {
    match err.kind() {
        store::ErrorKind::Unavailable => {
            tracing::warn!(error = %err, "the store is saturated; asking the client to retry");
            ApiError::Overloaded {
                retry_after_secs: Some(1),
            }
        }
        _ => internal(err),
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
    /// Of the prompt tokens, those the engine's prefix cache served (billed
    /// at the cached input price).
    cached_tokens: u32,
    completion_tokens: u32,
    started: Instant,
    started_at: Timestamp,
    settled: bool,
    /// Tokens and time of the last progress record.
    checkpointed: Option<(u32, Instant)>,
    /// The tokens-per-minute estimate taken for the request, corrected
    /// with the real usage when the charge settles.
    rate_charge: Option<crate::limits::TokenCharge>,
    /// The backend id written in the ledger.
    backend: String,
    /// Whether the next progress record names `model` and `backend` in the
    /// reservation (they changed since it was taken).
    relabel: bool,
}

impl Charge {
    /// Keeps the request's tokens-per-minute estimate, to correct it with
    /// the real usage (prompt + generated) at settlement; a release
    /// refunds all of it.
    pub fn attach_rate_charge(&mut self, rate_charge: crate::limits::TokenCharge) {
        self.rate_charge = Some(rate_charge);
    }

    /// Records that `backend` answered as gateway model `model`: the row
    /// names them, and the request pays `model`'s prices (it may be a
    /// fallback of the model asked for).
    pub async fn served_by(&mut self, model: &str, backend: &str) {
        self.backend = backend.to_owned();
        if model != self.model {
            match self.meter.prices_at(model, self.started_at).await {
                Ok(prices) => {
                    self.prices = prices;
                    self.model = model.to_owned();
                }
                Err(err) => tracing::error!(%model, error = %err,
                    "no prices for the serving model; billed at the requested one's"),
            }
        }
    }

    /// Names the serving backend and model (see [`Charge::served_by`]) in
    /// the open reservation with the next progress record (a stream records
    /// one at its first token), so that a crash before settlement is
    /// recovered under the right names without a write of its own.
    pub fn label_reservation(&mut self) {
        self.relabel = true;
    }

    /// Sets the prompt tokens billed (an upstream's own count replacing the
    /// estimate the reservation was sized with).
    pub fn set_prompt_tokens(&mut self, tokens: u32) {
        self.prompt_tokens = tokens;
    }

    /// Prompt and generated tokens so far, as the rate limits count them.
    fn used_tokens(&self) -> u64 {
        u64::from(self.prompt_tokens) + u64::from(self.completion_tokens)
    }

    /// Records progress in the reservation at the first token and then
    /// every [`CHECKPOINT_TOKENS`] or [`CHECKPOINT_INTERVAL`].
    pub fn set_completion_tokens(&mut self, tokens: u32) {
        self.completion_tokens = tokens;
        if self.settled || tokens == 0 {
            return;
        }
        let due = match self.checkpointed {
            None => true,
            Some((at_tokens, at)) => {
                tokens >= at_tokens.saturating_add(CHECKPOINT_TOKENS)
                    || (tokens > at_tokens && at.elapsed() >= CHECKPOINT_INTERVAL)
            }
        };
        if !due {
            return;
        }
        self.checkpointed = Some((tokens, Instant::now()));
        let progress = Progress {
            prompt_tokens: i64::from(self.prompt_tokens),
            cached_tokens: i64::from(self.cached_tokens.min(self.prompt_tokens)),
            completion_tokens: i64::from(tokens),
            cost: self.cost_of(tokens),
        };
        let store = self.meter.store.clone();
        let (org_id, request_id) = (self.tenant.org_id.clone(), self.request_id.clone());
        let served =
            std::mem::take(&mut self.relabel).then(|| (self.model.clone(), self.backend.clone()));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.meter.tasks.spawn_on(
                async move {
                    let written = match served {
                        Some((model, backend)) => {
                            store
                                .record_progress_served(
                                    &org_id,
                                    &request_id,
                                    progress,
                                    &model,
                                    &backend,
                                )
                                .await
                        }
                        None => store.record_progress(&org_id, &request_id, progress).await,
                    };
                    if let Err(err) = written {
                        tracing::warn!(%request_id, error = %err, "cannot record progress");
                    }
                },
                &runtime,
            );
        }
    }

    /// Records how many prompt tokens the prefix cache served (never more
    /// than the prompt).
    pub fn set_cached_tokens(&mut self, cached: u32) {
        self.cached_tokens = cached.min(self.prompt_tokens);
    }

    /// The cost of the prompt and `completion_tokens`, in the billing unit.
    fn cost_of(&self, completion_tokens: u32) -> i64 {
        let tokens = Usage {
            prompt_tokens: u64::from(self.prompt_tokens),
            cached_tokens: u64::from(self.cached_tokens.min(self.prompt_tokens)),
            completion_tokens: u64::from(completion_tokens),
        };
        billing::cost(tokens, &self.prices)
            .and_then(billing::Money::to_i64_units)
            .unwrap_or_else(|err| {
                tracing::error!(error = %err, "cost overflow; recorded as the maximum");
                i64::MAX
            })
    }

    /// Drops the reservation without a ledger row: the request was refused
    /// before any work.
    pub async fn release(mut self) {
        self.settled = true;
        if let Some(rate_charge) = self.rate_charge.take() {
            rate_charge.settle(0).await;
        }
        let store = self.meter.store.clone();
        let (org_id, request_id) = (self.tenant.org_id.clone(), self.request_id.clone());
        let released = self.meter.tasks.spawn(async move {
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
        if let Some(rate_charge) = self.rate_charge.take() {
            rate_charge.settle(self.used_tokens()).await;
        }
        let (meter, usage) = self.usage(outcome, finish_reason);
        // On its own task, so that a caller dropped mid-write (the client
        // left) cannot cut the settlement short.
        let tasks = meter.tasks.clone();
        if let Err(err) = tasks.spawn(write(meter, usage)).await {
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
        if let Some(rate_charge) = self.rate_charge.take() {
            rate_charge.settle_detached(self.used_tokens());
        }
        let (meter, usage) = self.usage(outcome, finish_reason);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let tasks = meter.tasks.clone();
                tasks.spawn_on(write(meter, usage), &runtime);
            }
            Err(_) => tracing::error!(
                request_id = %usage.request_id,
                "no runtime to settle on; the reservation is left for recovery"
            ),
        }
    }

    fn usage(&self, outcome: Outcome, finish_reason: Option<FinishReason>) -> (Meter, NewUsage) {
        let cost = self.cost_of(self.completion_tokens);
        let usage = NewUsage {
            request_id: self.request_id.clone(),
            org_id: self.tenant.org_id.clone(),
            project_id: Some(self.tenant.project_id.clone()),
            api_key_id: Some(self.tenant.api_key_id.clone()),
            user_id: self.tenant.user_id.clone(),
            model: self.model.clone(),
            backend: self.backend.clone(),
            prompt_tokens: i64::from(self.prompt_tokens),
            cached_tokens: i64::from(self.cached_tokens.min(self.prompt_tokens)),
            completion_tokens: i64::from(self.completion_tokens),
            cost,
            latency_ms: i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX),
            status: outcome.as_str().to_owned(),
            finish_reason: finish_reason.map(finish_reason_name),
            created_at: self.started_at.unix_millis(),
        };
        (self.meter.clone(), usage)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.spawn_settlement(Outcome::Cancelled, None);
    }
}

async fn write(meter: Meter, usage: NewUsage) {
    match meter.store.settle_reporting(&usage).await {
        Ok((recorded, _)) if !recorded.created => tracing::info!(
            request_id = %usage.request_id,
            "request id already in the ledger; no second row written"
        ),
        Ok((_, reached)) => {
            for notice in reached {
                crate::notify::soft_limit_reached(meter.webhook.as_deref(), &notice).await;
            }
        }
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

/// Settles a reservation a crash left open, with status `interrupted`, for
/// exactly what its last progress record says it produced (nothing, at
/// zero cost, when it had not yet produced a token). Request ids are unique
/// per organisation, so another organisation's row with the same id is no
/// obstacle.
pub async fn settle_interrupted(
    store: &Store,
    reservation: &Reservation,
) -> store::Result<Vec<SoftLimitReached>> {
    let (reserved, progress) = (&reservation.reserved, reservation.progress);
    let usage = NewUsage {
        request_id: reserved.request_id.clone(),
        org_id: reserved.org_id.clone(),
        project_id: reserved.project_id.clone(),
        api_key_id: reserved.api_key_id.clone(),
        user_id: reserved.user_id.clone(),
        model: reserved
            .model
            .clone()
            .unwrap_or_else(|| "unknown".to_owned()),
        backend: reserved
            .backend
            .clone()
            .unwrap_or_else(|| LOCAL_BACKEND.to_owned()),
        prompt_tokens: progress.prompt_tokens,
        cached_tokens: progress.cached_tokens,
        completion_tokens: progress.completion_tokens,
        cost: progress.cost,
        status: "interrupted".to_owned(),
        created_at: reserved.created_at,
        ..NewUsage::default()
    };
    store
        .settle_reporting(&usage)
        .await
        .map(|(_, reached)| reached)
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
