//! Metering: the durable reservation before a generation and the one
//! ledger row after it.
//!
//! [`Meter::begin`] takes the request's tokens from its tokens-per-minute
//! limits (passed in: [`RequestLimits`]) and reserves its worst case (every
//! prompt token at the input price plus the most tokens it may generate at
//! the output price) under the request id, before any work. It hands back a
//! [`Charge`], which the request's answer owns until the generation ends.
//! A charge has one way to end, [`Charge::settle`] with the outcome and the
//! tokens used; dropping an unsettled charge (the client left, the handler
//! was cancelled) settles it as `cancelled` with the tokens recorded so
//! far. Settlement writes the ledger row and deletes the reservation in one
//! transaction, on a spawned task so that no drop path awaits, and corrects
//! the tokens-per-minute estimate with the real usage; the store makes a
//! retried request id write no second row. A request refused before any
//! work settles [`Outcome::Refused`]: no row, the reservation released, the
//! estimate refunded. Request ids are unique per organisation: two tenants
//! may send the same `x-request-id` without touching each other's rows.
//!
//! While it runs, the charge records its progress in the reservation
//! ([`Charge::record`]: at the first token, then every
//! [`CHECKPOINT_TOKENS`] tokens or [`CHECKPOINT_INTERVAL`]), so a crash
//! leaves a reservation that `serve` settles at start for what was produced
//! ([`settle_interrupted`]): a crash costs the operator at most the tokens
//! of one checkpoint interval per request, and never bills a client twice.
//!
//! Budgets and plans: the store admits the reservation only if every budget
//! of the request's organisation, project and key can hold its worst case,
//! and a signed-in person's plan must allow the model and have quota left
//! ([`crate::plans`]); otherwise the answer is a 429 `insufficient_quota`
//! (a 403 for a model outside the plan) before any work. A settlement that
//! reaches a soft limit for the first time in its period is logged and
//! posted to the soft-limit webhook ([`crate::notify`]).
//!
//! Every write the meter spawns (settlements, releases, progress records)
//! runs on the meter's task tracker, so a shutdown can wait until each has
//! written ([`Meter::flush`]). The writes themselves — reservations too —
//! go through the meter's one ledger writer, which commits whatever is
//! waiting in one transaction (group commit: [`crate::ledger_writer`]; on
//! a SQLite file the store's own writer thread does the gathering); each
//! is answered only after its batch committed. A request routed to a remote backend is
//! settled for the backend and model that served it, at that model's
//! prices, with the upstream's reported tokens ([`Charge::served_by`]).
//!
//! Where a price becomes a cost: [`Meter::prices_at`] fixes the request's
//! prices at its start (the store's table, read through its cache of
//! `store::PRICE_CACHE_TTL`, else the configured one);
//! `billing::worst_case` sizes the reservation and `billing::cost` prices
//! every progress record and the settlement, in integer picodollars.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{ApiError, FinishReason};
use billing::{ModelPrices, PriceTable, Timestamp, Usage};
use store::{
    LedgerWrite, LedgerWritten, NewReservation, NewUsage, Progress, Reservation, SoftLimitReached,
    Store, StoreError,
};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::ledger_writer::LedgerWriter;
use crate::limits::{RequestLimits, TokenCharge};
use crate::{Error, Result, Tenant};

/// Progress is recorded every this many generated tokens…
pub const CHECKPOINT_TOKENS: u64 = 16;
/// …or when this much time has passed since the last record, whichever
/// comes first (checked as tokens arrive).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// The backend name written in the ledger for the in-process engine.
pub const LOCAL_BACKEND: &str = "local";

/// The store and the prices every request is metered with. Cheap to clone.
#[derive(Clone)]
pub struct Meter {
    store: Store,
    prices: Arc<PriceTable>,
    /// Where soft-limit notices are posted (`http://…`), if anywhere.
    webhook: Option<Arc<str>>,
    /// The spawned ledger writes, for [`Meter::flush`].
    tasks: TaskTracker,
    /// The instance whose lease owns the reservations made here.
    owner: Option<Arc<str>>,
    /// The one task that commits this meter's writes in batches.
    writer: LedgerWriter,
}

/// How a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every choice finished (the first one's reason, for the ledger).
    Finished(Option<FinishReason>),
    /// The engine or the upstream failed (or the request timed out) midway.
    Failed,
    /// The client left before the end.
    Cancelled,
    /// Refused before any work: no ledger row, the reservation released
    /// and the tokens-per-minute estimate refunded.
    Refused,
}

impl Outcome {
    /// The ledger's `status`; `None` when no row is written.
    fn status(self) -> Option<&'static str> {
        match self {
            Outcome::Finished(_) => Some("ok"),
            Outcome::Failed => Some("error"),
            Outcome::Cancelled => Some("cancelled"),
            Outcome::Refused => None,
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
    /// The endpoint the request came through, for the ledger.
    pub endpoint: &'a str,
    /// Prompt tokens as the usage object reports them (an estimate for a
    /// remote backend, corrected at settlement).
    pub prompt_tokens: u64,
    /// The most tokens every choice together may generate.
    pub max_completion_tokens: u64,
    /// The prices when the store sets none for the model: `None` is the
    /// configured table's; moderation passes zero (free by default, as
    /// OpenAI's is, yet counted in the ledger).
    pub unlisted: Option<ModelPrices>,
}

impl Meter {
    /// A meter writing to `store` at the prices of `prices`.
    pub fn new(store: Store, prices: PriceTable) -> Self {
        Meter {
            writer: LedgerWriter::new(store.clone()),
            store,
            prices: Arc::new(prices),
            webhook: None,
            tasks: TaskTracker::new(),
            owner: None,
        }
    }

    /// Names instance `id` (its lease: [`crate::instances`]) as the owner of
    /// every reservation made from now on, so that only that lease's expiry
    /// lets another instance recover them.
    pub fn with_owner(mut self, id: &str) -> Self {
        self.owner = Some(Arc::from(id));
        self
    }

    /// The instance named by [`Meter::with_owner`], if any: it owns the
    /// background responses started here too.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
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
    pub async fn prices_at(&self, model: &str, at: Timestamp) -> Result<ModelPrices> {
        match self.store.price_at_cached(model, at.unix_millis()).await? {
            Some(stored) => Ok(ModelPrices {
                input: billing::Money::from_i64_units(stored.input),
                cached_input: billing::Money::from_i64_units(stored.cached_input),
                output: billing::Money::from_i64_units(stored.output),
            }),
            None => Ok(self.prices.price_at(model, at)?),
        }
    }

    /// [`Meter::prices_at`], with `unlisted` (when given) in place of the
    /// configured table's prices for a model the store has no price for.
    async fn prices_or(
        &self,
        model: &str,
        at: Timestamp,
        unlisted: Option<ModelPrices>,
    ) -> Result<ModelPrices> {
        match unlisted {
            None => self.prices_at(model, at).await,
            Some(fallback) => match self.store.price_at_cached(model, at.unix_millis()).await? {
                Some(_) => self.prices_at(model, at).await,
                None => Ok(fallback),
            },
        }
    }

    /// Takes the request's tokens (prompt + the most it may generate) from
    /// `limits`, then reserves the worst case of `planned` for `tenant`,
    /// before any work. A refusal of either takes nothing.
    pub async fn begin(
        &self,
        tenant: &Tenant,
        limits: Option<&RequestLimits>,
        planned: Planned<'_>,
    ) -> Result<Charge> {
        let estimated = planned
            .prompt_tokens
            .saturating_add(planned.max_completion_tokens);
        let rate_charge = match limits {
            Some(limits) => Some(limits.charge_tokens(estimated).await?),
            None => None,
        };
        match self.reserve(tenant, &planned).await {
            Ok((prices, started_at)) => Ok(Charge {
                meter: self.clone(),
                tenant: tenant.clone(),
                request_id: planned.request_id.to_owned(),
                model: planned.model.to_owned(),
                endpoint: planned.endpoint.to_owned(),
                prices,
                used: Usage {
                    prompt_tokens: planned.prompt_tokens,
                    cached_tokens: 0,
                    completion_tokens: 0,
                },
                started: Instant::now(),
                started_at,
                settled: false,
                checkpointed: None,
                rate_charge,
                backend: LOCAL_BACKEND.to_owned(),
                relabel: false,
                unlisted: planned.unlisted,
            }),
            Err(err) => {
                if let Some(rate_charge) = rate_charge {
                    rate_charge.settle(0).await;
                }
                Err(err)
            }
        }
    }

    /// Admits and reserves `planned`, handing back its prices and when it
    /// started.
    async fn reserve(
        &self,
        tenant: &Tenant,
        planned: &Planned<'_>,
    ) -> Result<(ModelPrices, Timestamp)> {
        let started_at = Timestamp::now();
        // Prices come from the store's short-lived cache; whether the
        // request id was used already is checked in the reservation's batch.
        let prices = self
            .prices_or(planned.model, started_at, planned.unlisted)
            .await?;
        if let Some(user_id) = &tenant.user_id {
            crate::plans::admit(
                &self.store,
                &tenant.org_id,
                user_id,
                planned.model,
                started_at,
            )
            .await?;
        }
        let worst = billing::worst_case(
            planned.prompt_tokens,
            planned.max_completion_tokens,
            &prices,
        )
        .and_then(billing::Money::to_i64_units)?;
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
            owner: self.owner.as_deref().map(str::to_owned),
            endpoint: planned.endpoint.to_owned(),
        };
        match self.writer.write(LedgerWrite::Reserve(reservation)).await {
            Ok(_) => Ok((prices, started_at)),
            Err(StoreError::Conflict(why)) if why == store::REQUEST_ID_IN_LEDGER => {
                Err(ApiError::invalid_body(format!(
                    "The request id {} was already used; send a new x-request-id.",
                    planned.request_id
                ))
                .into())
            }
            Err(StoreError::Conflict(_)) => Err(ApiError::invalid_body(format!(
                "A request with id {} is already in progress.",
                planned.request_id
            ))
            .into()),
            Err(StoreError::BudgetExceeded(why)) => Err(ApiError::QuotaExceeded {
                message: format!(
                    "You exceeded your current quota, please check your plan and billing \
                     details: {why}. This request could cost up to {} USD.",
                    billing::Money::from_i64_units(worst).to_decimal_string()
                ),
            }
            .into()),
            Err(err) => Err(Error::from(err)),
        }
    }
}

/// A reservation taken for one request; settles exactly once, by
/// [`Charge::settle`] or, failing that, when dropped.
pub struct Charge {
    meter: Meter,
    tenant: Tenant,
    request_id: String,
    model: String,
    /// The endpoint written in the ledger.
    endpoint: String,
    prices: ModelPrices,
    /// The prices of a model the store has no price for (`None`: the
    /// configured table's), for a model that serves instead.
    unlisted: Option<ModelPrices>,
    /// The tokens recorded so far (the prompt's cached tokens are those the
    /// engine's prefix cache served, billed at the cached input price).
    used: Usage,
    started: Instant,
    started_at: Timestamp,
    settled: bool,
    /// Completion tokens and time of the last progress record.
    checkpointed: Option<(u64, Instant)>,
    /// The tokens-per-minute estimate taken for the request, corrected
    /// with the real usage when the charge settles.
    rate_charge: Option<TokenCharge>,
    /// The backend id written in the ledger.
    backend: String,
    /// Whether the next progress record names `model` and `backend` in the
    /// reservation (they changed since it was taken).
    relabel: bool,
}

/// The ledger write of a settled charge, running on the meter's tasks:
/// await [`Settlement::written`] to answer only once it is written, or
/// drop it (a shutdown still waits for it).
#[must_use = "await `written()` or drop the settlement explicitly"]
pub struct Settlement(Option<JoinHandle<()>>);

impl Settlement {
    /// Waits until the ledger row (or the release) is written.
    pub async fn written(self) {
        if let Some(task) = self.0 {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "the settlement task failed");
            }
        }
    }
}

impl Charge {
    /// Records that `backend` answered as gateway model `model`: the row
    /// names them, and the request pays `model`'s prices (it may be a
    /// fallback of the model asked for). The open reservation is relabelled
    /// with the next progress record, so that a crash before settlement is
    /// recovered under the right names without a write of its own.
    pub async fn served_by(&mut self, model: &str, backend: &str) {
        self.backend = backend.to_owned();
        self.relabel = true;
        if model != self.model {
            match self
                .meter
                .prices_or(model, self.started_at, self.unlisted)
                .await
            {
                Ok(prices) => {
                    self.prices = prices;
                    self.model = model.to_owned();
                }
                Err(err) => tracing::error!(%model, error = %err,
                    "no prices for the serving model; billed at the requested one's"),
            }
        }
    }

    /// The tokens recorded so far.
    pub fn used(&self) -> Usage {
        self.used
    }

    /// Records the tokens used so far, and the progress in the reservation
    /// at the first generated token and then every [`CHECKPOINT_TOKENS`] or
    /// [`CHECKPOINT_INTERVAL`].
    pub fn record(&mut self, used: Usage) {
        self.used = clamped(used);
        let tokens = self.used.completion_tokens;
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
            prompt_tokens: to_i64(self.used.prompt_tokens),
            cached_tokens: to_i64(self.used.cached_tokens),
            completion_tokens: to_i64(tokens),
            cost: self.cost(),
        };
        let writer = self.meter.writer.clone();
        let (org_id, request_id) = (self.tenant.org_id.clone(), self.request_id.clone());
        let served =
            std::mem::take(&mut self.relabel).then(|| (self.model.clone(), self.backend.clone()));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.meter.tasks.spawn_on(
            async move {
                let written = writer
                    .write(LedgerWrite::Progress {
                        org_id,
                        request_id: request_id.clone(),
                        progress,
                        served,
                    })
                    .await;
                if let Err(err) = written {
                    tracing::warn!(%request_id, error = %err, "cannot record progress");
                }
            },
            &runtime,
        );
    }

    /// Ends the charge: `used` is what the request consumed (prompt,
    /// cached and generated tokens, every choice together). Writes the
    /// ledger row (none for [`Outcome::Refused`]), deletes the reservation
    /// and corrects the tokens-per-minute estimate, on the meter's tasks.
    pub fn settle(mut self, outcome: Outcome, used: Usage) -> Settlement {
        self.used = clamped(used);
        self.spawn_settlement(outcome)
    }

    fn spawn_settlement(&mut self, outcome: Outcome) -> Settlement {
        if std::mem::replace(&mut self.settled, true) {
            return Settlement(None);
        }
        let rate_charge = self.rate_charge.take();
        let rate_tokens = match outcome {
            Outcome::Refused => 0,
            _ => self
                .used
                .prompt_tokens
                .saturating_add(self.used.completion_tokens),
        };
        let meter = self.meter.clone();
        let row = outcome.status().map(|status| self.row(status, outcome));
        let (org_id, request_id) = (self.tenant.org_id.clone(), self.request_id.clone());
        let write = async move {
            if let Some(rate_charge) = rate_charge {
                rate_charge.settle(rate_tokens).await;
            }
            match row {
                Some(row) => write(&meter, row).await,
                None => {
                    let release = LedgerWrite::Release(org_id, request_id.clone());
                    if let Err(err) = through_overload(&meter, &release, &request_id).await {
                        tracing::error!(%request_id, error = %err,
                            "cannot release; the reservation is left for recovery");
                    }
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Settlement(Some(self.meter.tasks.spawn_on(write, &runtime))),
            Err(_) => {
                tracing::error!(request_id = %self.request_id,
                    "no runtime to settle on; the reservation is left for recovery");
                Settlement(None)
            }
        }
    }

    /// The cost of the tokens used so far, in the billing unit.
    fn cost(&self) -> i64 {
        billing::cost(self.used, &self.prices)
            .and_then(billing::Money::to_i64_units)
            .unwrap_or_else(|err| {
                tracing::error!(error = %err, "cost overflow; recorded as the maximum");
                i64::MAX
            })
    }

    fn row(&self, status: &str, outcome: Outcome) -> NewUsage {
        let finish_reason = match outcome {
            Outcome::Finished(reason) => reason.map(finish_reason_name),
            _ => None,
        };
        NewUsage {
            request_id: self.request_id.clone(),
            org_id: self.tenant.org_id.clone(),
            project_id: Some(self.tenant.project_id.clone()),
            api_key_id: Some(self.tenant.api_key_id.clone()),
            user_id: self.tenant.user_id.clone(),
            model: self.model.clone(),
            backend: self.backend.clone(),
            endpoint: self.endpoint.clone(),
            prompt_tokens: to_i64(self.used.prompt_tokens),
            cached_tokens: to_i64(self.used.cached_tokens),
            completion_tokens: to_i64(self.used.completion_tokens),
            cost: self.cost(),
            latency_ms: i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX),
            status: status.to_owned(),
            finish_reason,
            created_at: self.started_at.unix_millis(),
        }
    }
}

impl Drop for Charge {
    /// The safety net: a charge nobody settled (the client left, a handler
    /// was cancelled) settles `cancelled` for the tokens recorded so far.
    fn drop(&mut self) {
        drop(self.spawn_settlement(Outcome::Cancelled));
    }
}

/// `used` with the cached tokens never more than the prompt.
fn clamped(mut used: Usage) -> Usage {
    used.cached_tokens = used.cached_tokens.min(used.prompt_tokens);
    used
}

fn to_i64(tokens: u64) -> i64 {
    i64::try_from(tokens).unwrap_or(i64::MAX)
}

/// How long a settlement or release keeps trying through a passing
/// overload of the store, and its first and longest wait between tries.
const SETTLE_RETRY_FOR: Duration = Duration::from_secs(30);
const SETTLE_RETRY_FIRST: Duration = Duration::from_millis(20);
const SETTLE_RETRY_MOST: Duration = Duration::from_secs(2);

/// `write` through the meter's writer, tried again while the store answers
/// a passing overload ([`store::ErrorKind::Unavailable`]: busy, no
/// connection or no file descriptor free) for up to [`SETTLE_RETRY_FOR`].
/// For settlements and releases: the ledger is keyed by request id and a
/// release of a gone reservation does nothing, so a try that committed
/// unseen is not applied twice; and a live instance's reservation left
/// behind would wait for that instance's restart, then be billed only to
/// its last progress record (or hold its budget until then).
async fn through_overload(
    meter: &Meter,
    write: &LedgerWrite,
    request_id: &str,
) -> store::Result<LedgerWritten> {
    let until = Instant::now() + SETTLE_RETRY_FOR;
    let mut wait = SETTLE_RETRY_FIRST;
    loop {
        let written = meter.writer.write(write.clone()).await;
        match &written {
            Err(err) if err.kind() == store::ErrorKind::Unavailable && Instant::now() < until => {
                tracing::warn!(%request_id, error = %err,
                    "the store is saturated; trying the ledger write again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(SETTLE_RETRY_MOST);
            }
            _ => return written,
        }
    }
}

async fn write(meter: &Meter, usage: NewUsage) {
    let request_id = usage.request_id.clone();
    match through_overload(meter, &LedgerWrite::Settle(usage), &request_id).await {
        Ok(LedgerWritten::Settled(recorded, _)) if !recorded.created => tracing::info!(
            %request_id,
            "request id already in the ledger; no second row written"
        ),
        Ok(LedgerWritten::Settled(_, reached)) => {
            for notice in reached {
                crate::notify::soft_limit_reached(meter.webhook.as_deref(), &notice).await;
            }
        }
        Ok(_) => {}
        Err(err) => tracing::error!(
            %request_id,
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

/// The tokens of a wire usage object, as the ledger bills them.
pub fn billed(usage: &api::Usage) -> Usage {
    Usage {
        prompt_tokens: u64::from(usage.prompt_tokens),
        cached_tokens: usage
            .prompt_tokens_details
            .as_ref()
            .map_or(0, |details| u64::from(details.cached_tokens)),
        completion_tokens: u64::from(usage.completion_tokens),
    }
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
        endpoint: reserved.endpoint.clone(),
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

    /// Another connection holds SQLite's write lock past the store's busy
    /// timeout (5 s) for the batch and then for the write alone (the ledger
    /// writer's fallback), until a retry has begun: the write's first try
    /// fails busy, a later one lands. `outcome` ends the one request of a fresh store;
    /// answers the store, the organisation and the store's folder.
    async fn end_while_locked(outcome: Outcome) -> (Store, String, tempfile::TempDir) {
        use sqlx::{Connection, Executor};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
        let store = Store::connect(&url).await.unwrap();
        let org = store.create_org("acme").await.unwrap();
        let project = store.create_project(&org.id, "p").await.unwrap();
        let meter = Meter::new(store.clone(), PriceTable::reference());
        let tenant = Tenant {
            org_id: org.id.clone(),
            project_id: project.id.clone(),
            api_key_id: "key_1".into(),
            ..Tenant::default()
        };
        let planned = Planned {
            request_id: "req_locked",
            model: "m",
            endpoint: "/v1/chat/completions",
            prompt_tokens: 3,
            max_completion_tokens: 5,
            unlisted: None,
        };
        let charge = meter.begin(&tenant, None, planned).await.unwrap();
        sqlx::any::install_default_drivers();
        let mut raw = sqlx::AnyConnection::connect(&url).await.unwrap();
        raw.execute("BEGIN EXCLUSIVE").await.unwrap();
        let used = Usage {
            prompt_tokens: 3,
            cached_tokens: 0,
            completion_tokens: 4,
        };
        let ended = tokio::spawn(charge.settle(outcome, used).written());
        // Held until a second batch failed busy: the first try (the batch,
        // then the write alone) failed and a retry began; or until the
        // write gave up.
        let deadline = Instant::now() + Duration::from_secs(60);
        while store.batches_run_one_by_one() < 2 && !ended.is_finished() {
            assert!(Instant::now() < deadline, "no second try within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            store.list_reservations(&org.id).await.unwrap().len(),
            1,
            "nothing can be written while the lock is held"
        );
        raw.execute("COMMIT").await.unwrap();
        ended.await.unwrap();
        assert!(
            store.list_reservations(&org.id).await.unwrap().is_empty(),
            "the reservation is gone"
        );
        (store, org.id, dir)
    }

    /// A settlement waits out a locked database: billed once, for what the
    /// request used.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_settlement_waits_out_a_locked_database() {
        let (store, org, _dir) = end_while_locked(Outcome::Finished(None)).await;
        let row = store.get_usage(&org, "req_locked").await.unwrap();
        assert_eq!(
            (row.usage.prompt_tokens, row.usage.completion_tokens),
            (3, 4)
        );
    }

    /// A release (a refused request) too: no row, its budget hold freed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_release_waits_out_a_locked_database() {
        let (store, org, _dir) = end_while_locked(Outcome::Refused).await;
        assert!(store.get_usage(&org, "req_locked").await.is_err());
    }

    #[test]
    fn finish_reasons_use_their_wire_names() {
        assert_eq!(finish_reason_name(FinishReason::Stop), "stop");
        assert_eq!(finish_reason_name(FinishReason::Length), "length");
    }
}
