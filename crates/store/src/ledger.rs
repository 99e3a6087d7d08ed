//! The usage ledger (one immutable row per request id of an organisation)
//! and the durable reservations taken before generation.
//!
//! Write path of a request: [`Store::reserve`] before any work, then
//! [`Store::settle`] — the ledger row and the deletion of the reservation
//! commit together — or [`Store::release`] when no work was done. After a
//! crash, [`Store::recover`] lists the reservations that were never settled.
//! Request ids are unique per organisation, not across organisations: two
//! organisations may use the same id, and each gets its own row. Ledger
//! inserts are idempotent on (organisation, request id): a retried insert
//! returns the row already there and never writes a second one.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::budget::SoftLimitReached;
use crate::error::conflict_on_unique;
use crate::{Result, Store, StoreError};

/// A usage record to write, one per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewUsage {
    /// Unique per request within the organisation; the idempotency key.
    pub request_id: String,
    /// The organisation billed.
    pub org_id: String,
    /// The project, when the request came with a key.
    pub project_id: Option<String>,
    /// The API key used, if any.
    pub api_key_id: Option<String>,
    /// The user (web app session), if any.
    pub user_id: Option<String>,
    /// The model as requested (after alias resolution).
    pub model: String,
    /// The backend that served it.
    pub backend: String,
    /// The endpoint it came through (`/v1/chat/completions`,
    /// `/v1/responses`, `/v1/messages`, …; `''` when unknown).
    pub endpoint: String,
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: i64,
    /// Prompt tokens served from cache.
    pub cached_tokens: i64,
    /// Generated tokens.
    pub completion_tokens: i64,
    /// Cost in the billing unit, as computed by the billing crate.
    pub cost: i64,
    /// Time from arrival to the last token.
    pub latency_ms: i64,
    /// `ok`, `cancelled`, `failed`… (the service decides the vocabulary).
    pub status: String,
    /// `stop`, `length`, … when the model finished.
    pub finish_reason: Option<String>,
    /// When the request started (unix ms); usage buckets use this time.
    pub created_at: i64,
}

/// A ledger row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// Row number, increasing with insertion.
    pub id: i64,
    /// Everything that was written.
    pub usage: NewUsage,
}

/// The outcome of an idempotent ledger insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The row now in the ledger for this organisation's request id.
    pub record: UsageRecord,
    /// `true` when this call wrote it, `false` when it was already there.
    pub created: bool,
}

/// A reservation to take before generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewReservation {
    /// The request it covers; the same id the ledger row will carry.
    pub request_id: String,
    /// Scopes whose budgets the amount is held against.
    pub org_id: String,
    /// Project scope.
    pub project_id: Option<String>,
    /// Key scope.
    pub api_key_id: Option<String>,
    /// User scope.
    pub user_id: Option<String>,
    /// Worst-case cost in the billing unit.
    pub amount: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The model, for the ledger row a recovery writes.
    pub model: Option<String>,
    /// The backend serving it.
    pub backend: Option<String>,
    /// The instance that made it (its lease, see [`Store::renew_lease`]);
    /// `None` for reservations made before instances held leases.
    pub owner: Option<String>,
    /// The endpoint the request came through (as in [`NewUsage::endpoint`]),
    /// for the ledger row a recovery writes; `""` when unknown (made
    /// before reservations recorded it).
    pub endpoint: String,
}

/// What an open reservation has produced so far, as last recorded by
/// [`Store::record_progress`]; a recovery bills exactly this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Prompt tokens processed (0 until the first checkpoint).
    pub prompt_tokens: i64,
    /// Of those, served from cache.
    pub cached_tokens: i64,
    /// Tokens generated so far.
    pub completion_tokens: i64,
    /// Their cost in the billing unit, as the billing crate computed it.
    pub cost: i64,
}

/// A reservation as stored: what was reserved and what it has produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservation {
    /// What was reserved.
    pub reserved: NewReservation,
    /// What it has produced so far.
    pub progress: Progress,
}

pub(crate) const USAGE_COLUMNS: &str =
    "id, request_id, org_id, project_id, api_key_id, user_id, model, \
    backend, prompt_tokens, cached_tokens, completion_tokens, cost, latency_ms, status, \
    finish_reason, created_at, endpoint";

const INSERT_USAGE: &str = "INSERT INTO usage_ledger (request_id, org_id, project_id, \
    api_key_id, user_id, model, backend, prompt_tokens, cached_tokens, completion_tokens, cost, \
    latency_ms, status, finish_reason, created_at, endpoint) VALUES ($1, $2, $3, $4, $5, $6, $7, \
    $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (org_id, request_id) DO NOTHING";

pub(crate) const RESERVATION_COLUMNS: &str =
    "request_id, org_id, project_id, api_key_id, user_id, amount, \
    created_at, model, backend, owner, prompt_tokens, cached_tokens, completion_tokens, cost, \
    endpoint";

pub(crate) fn usage_from_row<R: crate::sqlite_raw::Cells>(row: &R) -> Result<UsageRecord> {
    Ok(UsageRecord {
        id: row.cell("id")?,
        usage: NewUsage {
            request_id: row.cell("request_id")?,
            org_id: row.cell("org_id")?,
            project_id: row.cell("project_id")?,
            api_key_id: row.cell("api_key_id")?,
            user_id: row.cell("user_id")?,
            model: row.cell("model")?,
            backend: row.cell("backend")?,
            endpoint: row.cell("endpoint")?,
            prompt_tokens: row.cell("prompt_tokens")?,
            cached_tokens: row.cell("cached_tokens")?,
            completion_tokens: row.cell("completion_tokens")?,
            cost: row.cell("cost")?,
            latency_ms: row.cell("latency_ms")?,
            status: row.cell("status")?,
            finish_reason: row.cell("finish_reason")?,
            created_at: row.cell("created_at")?,
        },
    })
}

pub(crate) fn reservation_from_row(row: &AnyRow) -> Result<Reservation> {
    Ok(Reservation {
        reserved: NewReservation {
            request_id: row.try_get("request_id")?,
            org_id: row.try_get("org_id")?,
            project_id: row.try_get("project_id")?,
            api_key_id: row.try_get("api_key_id")?,
            user_id: row.try_get("user_id")?,
            amount: row.try_get("amount")?,
            created_at: row.try_get("created_at")?,
            model: row.try_get("model")?,
            backend: row.try_get("backend")?,
            owner: row.try_get("owner")?,
            endpoint: row.try_get("endpoint")?,
        },
        progress: Progress {
            prompt_tokens: row.try_get("prompt_tokens")?,
            cached_tokens: row.try_get("cached_tokens")?,
            completion_tokens: row.try_get("completion_tokens")?,
            cost: row.try_get("cost")?,
        },
    })
}

pub(crate) fn check_usage(usage: &NewUsage) -> Result<()> {
    let counts = [
        usage.prompt_tokens,
        usage.cached_tokens,
        usage.completion_tokens,
        usage.cost,
        usage.latency_ms,
    ];
    if usage.request_id.is_empty() || usage.org_id.is_empty() {
        return Err(StoreError::InvalidRequest(
            "usage needs a request id and an organization".into(),
        ));
    }
    if counts.iter().any(|&n| n < 0) || usage.cached_tokens > usage.prompt_tokens {
        return Err(StoreError::InvalidRequest(
            "token counts, cost and latency must be non-negative, cached ≤ prompt".into(),
        ));
    }
    Ok(())
}

/// Inserts unless the organisation's request id is there, then reads the
/// row back.
async fn insert_usage(conn: &mut sqlx::AnyConnection, usage: &NewUsage) -> Result<Recorded> {
    let done = sqlx::query(INSERT_USAGE)
        .bind(&usage.request_id)
        .bind(&usage.org_id)
        .bind(usage.project_id.clone())
        .bind(usage.api_key_id.clone())
        .bind(usage.user_id.clone())
        .bind(&usage.model)
        .bind(&usage.backend)
        .bind(usage.prompt_tokens)
        .bind(usage.cached_tokens)
        .bind(usage.completion_tokens)
        .bind(usage.cost)
        .bind(usage.latency_ms)
        .bind(&usage.status)
        .bind(usage.finish_reason.clone())
        .bind(usage.created_at)
        .bind(&usage.endpoint)
        .execute(&mut *conn)
        .await?;
    crate::rollup::record(&mut *conn, usage, done.rows_affected() == 1).await?;
    let sql =
        format!("SELECT {USAGE_COLUMNS} FROM usage_ledger WHERE org_id = $1 AND request_id = $2");
    let row = sqlx::query(&sql)
        .bind(&usage.org_id)
        .bind(&usage.request_id)
        .fetch_one(&mut *conn)
        .await?;
    let record = usage_from_row(&row)?;
    Ok(Recorded {
        record,
        created: done.rows_affected() == 1,
    })
}

/// Deletes the reservation, if any, and gives its hold back to its budgets.
pub(crate) async fn release_in(
    conn: &mut sqlx::AnyConnection,
    org_id: &str,
    request_id: &str,
) -> Result<bool> {
    // The delete comes first: it takes SQLite's write lock, and on
    // PostgreSQL it locks the row, so two releases cannot both give back.
    let row = sqlx::query(
        "DELETE FROM reservations WHERE org_id = $1 AND request_id = $2 \
         RETURNING amount, budget_scopes",
    )
    .bind(org_id)
    .bind(request_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let amount: i64 = row.try_get("amount")?;
    let holds: String = row.try_get("budget_scopes")?;
    crate::budget::release_holds(conn, &holds, amount).await?;
    Ok(true)
}

/// The reservation's writes (see [`Store::reserve`]) on `conn`, inside
/// the caller's transaction.
pub(crate) async fn reserve_in(
    conn: &mut sqlx::AnyConnection,
    reservation: &NewReservation,
) -> Result<()> {
    if reservation.amount < 0 {
        return Err(StoreError::InvalidRequest("negative reservation".into()));
    }
    // The insert comes first so SQLite takes its write lock at once.
    let sql = format!(
        "INSERT INTO reservations ({RESERVATION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, 0, 0, 0, $11)"
    );
    sqlx::query(&sql)
        .bind(&reservation.request_id)
        .bind(&reservation.org_id)
        .bind(reservation.project_id.clone())
        .bind(reservation.api_key_id.clone())
        .bind(reservation.user_id.clone())
        .bind(reservation.amount)
        .bind(reservation.created_at)
        .bind(reservation.model.clone())
        .bind(reservation.backend.clone())
        .bind(reservation.owner.clone())
        .bind(&reservation.endpoint)
        .execute(&mut *conn)
        .await
        .map_err(|e| conflict_on_unique(e, "request id already reserved"))?;
    let billed: Option<i64> =
        sqlx::query_scalar("SELECT id FROM usage_ledger WHERE org_id = $1 AND request_id = $2")
            .bind(&reservation.org_id)
            .bind(&reservation.request_id)
            .fetch_optional(&mut *conn)
            .await?;
    if billed.is_some() {
        return Err(StoreError::Conflict(crate::REQUEST_ID_IN_LEDGER.into()));
    }
    let holds = crate::budget::hold(
        &mut *conn,
        &reservation.org_id,
        reservation.project_id.as_deref(),
        reservation.api_key_id.as_deref(),
        reservation.amount,
        reservation.created_at,
    )
    .await?;
    if !holds.is_empty() {
        sqlx::query(
            "UPDATE reservations SET budget_scopes = $3, period = $4 \
                 WHERE org_id = $1 AND request_id = $2",
        )
        .bind(&reservation.org_id)
        .bind(&reservation.request_id)
        .bind(&holds)
        .bind(crate::budget::month_of(reservation.created_at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The settlement's writes (see [`Store::settle_reporting`]) on `conn`,
/// inside the caller's transaction.
pub(crate) async fn settle_in(
    conn: &mut sqlx::AnyConnection,
    usage: &NewUsage,
) -> Result<(Recorded, Vec<SoftLimitReached>)> {
    check_usage(usage)?;
    // The insert comes first so SQLite takes its write lock at once.
    let recorded = insert_usage(&mut *conn, usage).await?;
    release_in(&mut *conn, &usage.org_id, &usage.request_id).await?;
    let reached = if recorded.created {
        crate::budget::spend(
            &mut *conn,
            &usage.org_id,
            usage.project_id.as_deref(),
            usage.api_key_id.as_deref(),
            usage.cost,
            usage.created_at,
        )
        .await?
    } else {
        Vec::new()
    };
    Ok((recorded, reached))
}

/// A progress record (see [`Store::record_progress`]) on `conn`, naming
/// the serving model and backend when `served` is given.
pub(crate) async fn progress_in(
    conn: &mut sqlx::AnyConnection,
    org_id: &str,
    request_id: &str,
    progress: Progress,
    served: Option<(&str, &str)>,
) -> Result<bool> {
    let done = match served {
        None => {
            sqlx::query(
                "UPDATE reservations SET prompt_tokens = $3, cached_tokens = $4, \
                 completion_tokens = $5, cost = $6 WHERE org_id = $1 AND request_id = $2 \
                 AND completion_tokens <= $5",
            )
            .bind(org_id)
            .bind(request_id)
            .bind(progress.prompt_tokens)
            .bind(progress.cached_tokens)
            .bind(progress.completion_tokens)
            .bind(progress.cost)
            .execute(&mut *conn)
            .await?
        }
        Some((model, backend)) => {
            sqlx::query(
                "UPDATE reservations SET prompt_tokens = $3, cached_tokens = $4, \
                 completion_tokens = $5, cost = $6, model = $7, backend = $8 \
                 WHERE org_id = $1 AND request_id = $2 AND completion_tokens <= $5",
            )
            .bind(org_id)
            .bind(request_id)
            .bind(progress.prompt_tokens)
            .bind(progress.cached_tokens)
            .bind(progress.completion_tokens)
            .bind(progress.cost)
            .bind(model)
            .bind(backend)
            .execute(&mut *conn)
            .await?
        }
    };
    Ok(done.rows_affected() > 0)
}

impl Store {
    /// Writes the usage row for a request once; a retry with the same
    /// organisation and request id (even concurrent) returns the stored row
    /// with `created == false`. Another organisation's row with the same
    /// request id is neither read nor touched.
    pub async fn record_usage(&self, usage: &NewUsage) -> Result<Recorded> {
        check_usage(usage)?;
        // One transaction: the ledger row and its rollups commit together.
        let mut tx = self.pool().begin().await?;
        let recorded = insert_usage(&mut tx, usage).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// The ledger row of a request of the organisation.
    pub async fn get_usage(&self, org_id: &str, request_id: &str) -> Result<UsageRecord> {
        let sql = format!(
            "SELECT {USAGE_COLUMNS} FROM usage_ledger WHERE org_id = $1 AND request_id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(org_id)
            .bind(request_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound("usage record"))?;
        usage_from_row(&row)
    }

    /// The organisation's ledger rows with `start <= created_at < end`, in
    /// insertion order, at most `limit` after row id `after` (a cursor).
    pub async fn list_usage(
        &self,
        org_id: &str,
        start: i64,
        end: i64,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<UsageRecord>> {
        let sql = format!(
            "SELECT {USAGE_COLUMNS} FROM usage_ledger WHERE org_id = $1 AND created_at >= $2 \
             AND created_at < $3 AND id > $4 ORDER BY id LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(org_id)
            .bind(start)
            .bind(end)
            .bind(after.unwrap_or(i64::MIN))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(usage_from_row).collect()
    }

    /// Durably records a reservation before generation and holds its
    /// amount in every budget of its scopes, all or nothing: a budget it
    /// does not fit is [`StoreError::BudgetExceeded`] and nothing is
    /// written. A second reservation for the same organisation and request
    /// id, or one for a request id already in the ledger, is a
    /// [`StoreError::Conflict`] (the latter with the message
    /// [`crate::REQUEST_ID_IN_LEDGER`]); other organisations' rows do not
    /// count.
    pub async fn reserve(&self, reservation: &NewReservation) -> Result<()> {
        if reservation.amount < 0 {
            return Err(StoreError::InvalidRequest("negative reservation".into()));
        }
        let mut tx = self.pool().begin().await?;
        reserve_in(&mut tx, reservation).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records what an open reservation has produced so far, so that a
    /// crash bills it (see [`Store::recover`]). Progress only grows: an
    /// older record arriving late changes nothing. Returns `false` when
    /// nothing was written (the reservation is gone, or knows more already).
    pub async fn record_progress(
        &self,
        org_id: &str,
        request_id: &str,
        progress: Progress,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE reservations SET prompt_tokens = $3, cached_tokens = $4, \
             completion_tokens = $5, cost = $6 WHERE org_id = $1 AND request_id = $2 \
             AND completion_tokens <= $5",
        )
        .bind(org_id)
        .bind(request_id)
        .bind(progress.prompt_tokens)
        .bind(progress.cached_tokens)
        .bind(progress.completion_tokens)
        .bind(progress.cost)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// [`Store::record_progress`] that also names the backend and model
    /// serving the reservation (a routed request learns them after
    /// reserving), in the same write, so that crash recovery labels its row
    /// right.
    pub async fn record_progress_served(
        &self,
        org_id: &str,
        request_id: &str,
        progress: Progress,
        model: &str,
        backend: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE reservations SET prompt_tokens = $3, cached_tokens = $4, \
             completion_tokens = $5, cost = $6, model = $7, backend = $8 \
             WHERE org_id = $1 AND request_id = $2 AND completion_tokens <= $5",
        )
        .bind(org_id)
        .bind(request_id)
        .bind(progress.prompt_tokens)
        .bind(progress.cached_tokens)
        .bind(progress.completion_tokens)
        .bind(progress.cost)
        .bind(model)
        .bind(backend)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Writes the ledger row and deletes the request's reservation in one
    /// transaction: both happen or neither. Idempotent like
    /// [`Store::record_usage`]; settling without a reservation only records.
    pub async fn settle(&self, usage: &NewUsage) -> Result<Recorded> {
        self.settle_reporting(usage)
            .await
            .map(|(recorded, _)| recorded)
    }

    /// [`Store::settle`], also moving the reservation's hold out of its
    /// budgets and the cost into their spend, and answering the soft limits
    /// this settlement reached for the first time in their period.
    pub async fn settle_reporting(
        &self,
        usage: &NewUsage,
    ) -> Result<(Recorded, Vec<SoftLimitReached>)> {
        let mut tx = self.pool().begin().await?;
        let settled = settle_in(&mut tx, usage).await?;
        tx.commit().await?;
        Ok(settled)
    }

    /// Drops a reservation without a ledger row (the request was refused
    /// before any work) and gives its hold back to its budgets. Returns
    /// whether one was there.
    pub async fn release(&self, org_id: &str, request_id: &str) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let released = release_in(&mut tx, org_id, request_id).await?;
        tx.commit().await?;
        Ok(released)
    }

    /// The organisation's open reservations, oldest first.
    pub async fn list_reservations(&self, org_id: &str) -> Result<Vec<Reservation>> {
        let sql = format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE org_id = $1 \
             ORDER BY created_at, request_id"
        );
        let rows = sqlx::query(&sql)
            .bind(org_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(reservation_from_row).collect()
    }

    /// Every reservation left open, across organisations, oldest first,
    /// whoever owns it. A system operation, not a tenant read; recovery
    /// wants [`Store::orphaned_reservations`], which spares live instances'.
    pub async fn recover(&self) -> Result<Vec<Reservation>> {
        let sql = format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations ORDER BY created_at, org_id, request_id"
        );
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        rows.iter().map(reservation_from_row).collect()
    }
}
