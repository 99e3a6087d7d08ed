//! Sign-in throttling state, kept in the database so that every instance
//! sharing it sees the same failures and locks (an attacker spreading
//! guesses over instances behind a load balancer gains nothing).
//!
//! One row per throttled key — the service names them, e.g.
//! `account:alice@example.com` or `address:203.0.113.7` — holding what the
//! service's rules need ([`Throttle`]). The store holds no rule: the service
//! computes the next row from the current one, and [`Store::update_throttle`]
//! makes that read-modify-write atomic. It first upserts the row (inserting
//! an empty one, or bumping its version), which takes the row's write lock
//! (PostgreSQL's row lock; SQLite's database write lock) until the
//! transaction ends, so concurrent updates of one key run one after another
//! and none is lost. A row whose `expires_at` has passed means nothing and
//! may be deleted ([`Store::forget_throttles`]).

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Result, Store};

/// The throttling state of one key. The default (all zero) is a key
/// without failures; an absent row reads as it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttle {
    /// Failures counted in the current window.
    pub failures: i64,
    /// Lock-outs so far in the current window (the backoff's exponent).
    pub lockouts: i64,
    /// The last failure, unix milliseconds (0: none).
    pub last_failure_at: i64,
    /// Locked until then, unix milliseconds (0: never locked).
    pub locked_until: i64,
    /// After this, unix milliseconds, the row means nothing.
    pub expires_at: i64,
}

const COLUMNS: &str = "failures, lockouts, last_failure_at, locked_until, expires_at";

fn throttle_from_row(row: &AnyRow) -> Result<Throttle> {
    Ok(Throttle {
        failures: row.try_get("failures")?,
        lockouts: row.try_get("lockouts")?,
        last_failure_at: row.try_get("last_failure_at")?,
        locked_until: row.try_get("locked_until")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// The state of `key` (the default when it has none). A system read:
    /// throttle keys belong to no organisation.
    pub async fn throttle(&self, key: &str) -> Result<Throttle> {
        let sql = format!("SELECT {COLUMNS} FROM login_throttles WHERE throttle_key = $1");
        let row = sqlx::query(&sql)
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
        Ok(row
            .as_ref()
            .map(throttle_from_row)
            .transpose()?
            .unwrap_or_default())
    }

    /// Replaces the state of `key` by `next(current)` atomically (see the
    /// module documentation): no concurrent update of the same key is lost,
    /// whichever instance makes it. `next` answering `None` changes nothing;
    /// answering the default state deletes the row. Returns the state before
    /// and the state written (`None` when unchanged).
    pub async fn update_throttle(
        &self,
        key: &str,
        next: impl FnOnce(&Throttle) -> Option<Throttle>,
    ) -> Result<(Throttle, Option<Throttle>)> {
        let mut tx = self.pool().begin().await?;
        let sql = format!(
            "INSERT INTO login_throttles (throttle_key, failures, lockouts, last_failure_at, \
             locked_until, expires_at, version) VALUES ($1, 0, 0, 0, 0, 0, 0) \
             ON CONFLICT (throttle_key) DO UPDATE SET version = login_throttles.version + 1 \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql).bind(key).fetch_one(&mut *tx).await?;
        let current = throttle_from_row(&row)?;
        let Some(written) = next(&current) else {
            tx.rollback().await?;
            return Ok((current, None));
        };
        if written == Throttle::default() {
            sqlx::query("DELETE FROM login_throttles WHERE throttle_key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "UPDATE login_throttles SET failures = $2, lockouts = $3, last_failure_at = $4, \
                 locked_until = $5, expires_at = $6 WHERE throttle_key = $1",
            )
            .bind(key)
            .bind(written.failures)
            .bind(written.lockouts)
            .bind(written.last_failure_at)
            .bind(written.locked_until)
            .bind(written.expires_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((current, Some(written)))
    }

    /// Deletes the state of `key`; answers whether it had any.
    pub async fn clear_throttle(&self, key: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM login_throttles WHERE throttle_key = $1")
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes every row that expired at or before `now_ms`; answers how
    /// many. A system operation (housekeeping across keys).
    pub async fn forget_throttles(&self, now_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM login_throttles WHERE expires_at <= $1")
            .bind(now_ms)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
