//! Usage rollups: the ledger summed per organisation, time bucket and
//! (project, key, model, user), so usage and costs queries read a few rows
//! per bucket instead of one per request.
//!
//! Two widths are kept in `usage_rollup` (migration `0004_usage_rollup`):
//! minutes and hours ([`WIDTHS`]). Each ledger insert that creates a row adds
//! it to both, inside the same transaction, with an upsert
//! (`ON CONFLICT … DO UPDATE SET x = usage_rollup.x + excluded.x`), so a
//! committed ledger row is always counted exactly once and a rolled-back one
//! never. A missing dimension is stored as `''` (it is part of the primary
//! key) and read back as absent, so an empty-string id cannot be told apart
//! from no id.

use crate::ledger::NewUsage;
use crate::Result;

/// The rollup widths in milliseconds, widest first: hours, then minutes.
/// Every usage bucket width (1m, 1h, 1d) is a multiple of the narrowest.
pub(crate) const WIDTHS: [i64; 2] = [3_600_000, 60_000];

const UPSERT_ROLLUP: &str = "INSERT INTO usage_rollup (org_id, width_ms, start_ms, project_id, \
    api_key_id, model, user_id, endpoint, input_tokens, cached_tokens, output_tokens, requests, \
    cost) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12) \
    ON CONFLICT (org_id, width_ms, start_ms, project_id, api_key_id, model, user_id, endpoint) \
    DO UPDATE SET \
    input_tokens = usage_rollup.input_tokens + excluded.input_tokens, \
    cached_tokens = usage_rollup.cached_tokens + excluded.cached_tokens, \
    output_tokens = usage_rollup.output_tokens + excluded.output_tokens, \
    requests = usage_rollup.requests + excluded.requests, \
    cost = usage_rollup.cost + excluded.cost";

/// The start of the bucket of `width` ms holding `at` (floor, also for
/// negative times; the migration's backfill aligns the same way).
pub(crate) fn align(at: i64, width: i64) -> i64 {
    at - at.rem_euclid(width)
}

/// Adds a ledger row to the rollups when `created` (the ledger insert wrote
/// it); does nothing for a retry that found the row already there. Runs on
/// the caller's connection, inside the transaction of the ledger insert.
pub(crate) async fn record(
    conn: &mut sqlx::AnyConnection,
    usage: &NewUsage,
    created: bool,
) -> Result<()> {
    if !created {
        return Ok(());
    }
    // Always widest first: concurrent writers lock rollup rows in one order.
    for width in WIDTHS {
        sqlx::query(UPSERT_ROLLUP)
            .bind(&usage.org_id)
            .bind(width)
            .bind(align(usage.created_at, width))
            .bind(usage.project_id.as_deref().unwrap_or(""))
            .bind(usage.api_key_id.as_deref().unwrap_or(""))
            .bind(&usage.model)
            .bind(usage.user_id.as_deref().unwrap_or(""))
            .bind(&usage.endpoint)
            .bind(usage.prompt_tokens)
            .bind(usage.cached_tokens)
            .bind(usage.completion_tokens)
            .bind(usage.cost)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::align;

    #[test]
    fn align_floors_also_below_zero() {
        assert_eq!(align(119_999, 60_000), 60_000);
        assert_eq!(align(120_000, 60_000), 120_000);
        assert_eq!(align(-1, 60_000), -60_000);
        assert_eq!(align(-60_000, 60_000), -60_000);
    }
}
