//! Per-model prices with the time each took effect, and plans for people
//! with their assignments. Prices are installation-wide (the model `*` is
//! the default for models without their own); a request pays the price in
//! force when it started, so a change applies only to requests that start
//! after it, and every past price stays recorded.
//!
//! The meter reads prices through [`Store::price_at_cached`]: a model's
//! rows (and the default's) are read once and reused for
//! [`PRICE_CACHE_TTL`], so a price recorded by another process applies to
//! requests starting up to that long after it takes effect; one recorded
//! through any store in this process empties the cache at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_ms, Result, Store, StoreError};

/// The model name of the default price row.
pub const DEFAULT_PRICE_MODEL: &str = "*";

/// One recorded price, per token, in the billing unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPrice {
    /// The model, or `*` for the default.
    pub model: String,
    /// Requests starting at or after this time (unix ms) pay it.
    pub effective_at: i64,
    /// Per uncached prompt token.
    pub input: i64,
    /// Per cached prompt token.
    pub cached_input: i64,
    /// Per completion token.
    pub output: i64,
}

fn price_from_row(row: &AnyRow) -> Result<StoredPrice> {
    Ok(StoredPrice {
        model: row.try_get("model")?,
        effective_at: row.try_get("effective_at")?,
        input: row.try_get("input")?,
        cached_input: row.try_get("cached_input")?,
        output: row.try_get("output")?,
    })
}

/// A plan as stored: its id and its definition (the billing crate's JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlan {
    /// `free`, `plus`, …
    pub id: String,
    /// The definition as JSON text.
    pub definition: String,
    /// Unix milliseconds of the last change.
    pub updated_at: i64,
}

const PRICE_COLUMNS: &str = "model, effective_at, input, cached_input, output";

/// How long [`Store::price_at_cached`] reuses a model's price rows.
pub const PRICE_CACHE_TTL: Duration = Duration::from_secs(1);

/// Bumped by every price recorded in this process: cached rows read
/// before it are stale.
static PRICES_CHANGED: AtomicU64 = AtomicU64::new(0);

/// The most models whose rows are kept; past it the cache starts over.
const PRICE_CACHE_MODELS: usize = 4096;

/// A model's price rows and the default's, as read at a moment.
#[derive(Debug)]
struct CachedPrices {
    read_at: Instant,
    generation: u64,
    rows: Vec<StoredPrice>,
}

/// Recently read price rows, per model.
#[derive(Debug, Default)]
pub(crate) struct PriceCache {
    models: Mutex<HashMap<String, CachedPrices>>,
}

/// What `price_at` answers, from `rows` (the model's and the default's):
/// the model's latest price effective at `at_ms`, else the default's.
fn pick(rows: &[StoredPrice], model: &str, at_ms: i64) -> Option<StoredPrice> {
    let latest = |name: &str| {
        rows.iter()
            .filter(|p| p.model == name && p.effective_at <= at_ms)
            .max_by_key(|p| p.effective_at)
    };
    latest(model)
        .or_else(|| latest(DEFAULT_PRICE_MODEL))
        .cloned()
}

impl Store {
    /// Records a price (replacing one of the same model at exactly the same
    /// time). Negative prices are refused.
    pub async fn set_price(&self, price: &StoredPrice) -> Result<()> {
        if price.input < 0 || price.cached_input < 0 || price.output < 0 || price.model.is_empty() {
            return Err(StoreError::InvalidRequest(
                "prices must be non-negative and name a model".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO prices (model, effective_at, input, cached_input, output) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (model, effective_at) DO UPDATE SET \
             input = excluded.input, cached_input = excluded.cached_input, \
             output = excluded.output",
        )
        .bind(&price.model)
        .bind(price.effective_at)
        .bind(price.input)
        .bind(price.cached_input)
        .bind(price.output)
        .execute(self.pool())
        .await?;
        PRICES_CHANGED.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// [`Store::price_at`], from the model's rows as read at most
    /// [`PRICE_CACHE_TTL`] ago (and not before a price was last recorded
    /// in this process).
    pub async fn price_at_cached(&self, model: &str, at_ms: i64) -> Result<Option<StoredPrice>> {
        let generation = PRICES_CHANGED.load(Ordering::Acquire);
        {
            let models = self
                .price_cache
                .models
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(cached) = models.get(model) {
                if cached.generation == generation && cached.read_at.elapsed() < PRICE_CACHE_TTL {
                    return Ok(pick(&cached.rows, model, at_ms));
                }
            }
        }
        let read_at = Instant::now();
        let sql = format!("SELECT {PRICE_COLUMNS} FROM prices WHERE model IN ($1, $2)");
        let rows = sqlx::query(&sql)
            .bind(model)
            .bind(DEFAULT_PRICE_MODEL)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(price_from_row)
            .collect::<Result<Vec<_>>>()?;
        let answer = pick(&rows, model, at_ms);
        let mut models = self
            .price_cache
            .models
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if models.len() >= PRICE_CACHE_MODELS {
            models.clear();
        }
        models.insert(
            model.to_owned(),
            CachedPrices {
                read_at,
                generation,
                rows,
            },
        );
        Ok(answer)
    }

    /// The price a request for `model` started at `at_ms` pays: the model's
    /// latest price effective then, else the default's (`*`); `None` when
    /// neither has one (the caller's built-in default applies).
    pub async fn price_at(&self, model: &str, at_ms: i64) -> Result<Option<StoredPrice>> {
        let sql = format!(
            "SELECT {PRICE_COLUMNS} FROM prices WHERE model IN ($1, $2) AND effective_at <= $3 \
             ORDER BY CASE WHEN model = $2 THEN 1 ELSE 0 END, effective_at DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(model)
            .bind(DEFAULT_PRICE_MODEL)
            .bind(at_ms)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(price_from_row).transpose()
    }

    /// Every recorded price, by model then time.
    pub async fn list_prices(&self) -> Result<Vec<StoredPrice>> {
        let sql = format!("SELECT {PRICE_COLUMNS} FROM prices ORDER BY model, effective_at");
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        rows.iter().map(price_from_row).collect()
    }

    /// Creates or replaces a plan definition.
    pub async fn put_plan(&self, id: &str, definition: &str) -> Result<StoredPlan> {
        if id.is_empty() {
            return Err(StoreError::InvalidRequest("a plan needs an id".into()));
        }
        let plan = StoredPlan {
            id: id.to_owned(),
            definition: definition.to_owned(),
            updated_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO plans (id, definition, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET definition = excluded.definition, \
             updated_at = excluded.updated_at",
        )
        .bind(&plan.id)
        .bind(&plan.definition)
        .bind(plan.updated_at)
        .execute(self.pool())
        .await?;
        Ok(plan)
    }

    /// Every plan, by id.
    pub async fn list_plans(&self) -> Result<Vec<StoredPlan>> {
        let rows = sqlx::query("SELECT id, definition, updated_at FROM plans ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredPlan {
                    id: row.try_get("id")?,
                    definition: row.try_get("definition")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Puts a member of the organisation on a plan, at once; returns the
    /// plan they were on before, if any.
    pub async fn assign_plan(
        &self,
        org_id: &str,
        user_id: &str,
        plan_id: &str,
    ) -> Result<Option<String>> {
        // The user must be a member: NotFound otherwise.
        self.get_role(org_id, user_id).await?;
        let before = self.plan_of(org_id, user_id).await?;
        sqlx::query(
            "INSERT INTO plan_assignments (org_id, user_id, plan_id, assigned_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, user_id) DO UPDATE SET \
             plan_id = excluded.plan_id, assigned_at = excluded.assigned_at",
        )
        .bind(org_id)
        .bind(user_id)
        .bind(plan_id)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::NotFound("plan")
            }
            _ => StoreError::Database(e),
        })?;
        Ok(before)
    }

    /// The plan a member of the organisation is on, if assigned.
    pub async fn plan_of(&self, org_id: &str, user_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT plan_id FROM plan_assignments WHERE org_id = $1 AND user_id = $2",
        )
        .bind(org_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// A user's use in `[start, end)` (unix ms) within the organisation:
    /// (requests, prompt + completion tokens), from the ledger.
    pub async fn user_use(
        &self,
        org_id: &str,
        user_id: &str,
        start: i64,
        end: i64,
    ) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS requests, \
             CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT) AS tokens \
             FROM usage_ledger WHERE user_id = $2 AND org_id = $1 \
             AND created_at >= $3 AND created_at < $4",
        )
        .bind(org_id)
        .bind(user_id)
        .bind(start)
        .bind(end)
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get("requests")?, row.try_get("tokens")?))
    }
}
