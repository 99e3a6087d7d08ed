//! The batch statements whose rows are in their text: multi-row `VALUES`
//! inserts and upserts, `IN (…)` lists, `UPDATE … FROM (VALUES …)`, at most
//! [`CHUNK`] rows each, with parameters numbered for the backend
//! ([`Style`]): SQLite's form (PostgreSQL's is `json`).

use std::collections::{HashMap, HashSet};

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

use super::{hold_period, pairs, Admitted, Latest, RollupSum, PROGRESS_SET, PROGRESS_WHERE};
use crate::batch_set::{Counter, CounterKey};
use crate::budget::BUDGET_COLUMNS;
use crate::{NewUsage, Result};

/// Rows per multi-row statement (SQLite allows 32,766 parameters; the
/// widest row here has 16).
const CHUNK: usize = 256;

type Q<'q> = Query<'q, Any, AnyArguments<'q>>;

/// How a statement numbers its parameters: SQLite's anonymous `?` (its
/// `$N` names cost a linear search per parameter, in the parser and in
/// sqlx's binding: quadratic in a multi-row statement), PostgreSQL's `$N`.
/// Parameters are always bound in the order they appear.
#[derive(Clone, Copy)]
pub(crate) struct Style(bool);

impl Style {
    pub(crate) fn of(conn: &AnyConnection) -> Style {
        Style(conn.backend_name() == "SQLite")
    }

    /// PostgreSQL: lists go as one JSON parameter in a statement whose
    /// text never changes, so it is prepared once per connection and then
    /// costs one round trip (sqlx prepares a statement it does not keep,
    /// i.e. every multi-row statement of varying text, in a round trip of
    /// its own before running it).
    pub(super) fn pg(self) -> bool {
        !self.0
    }

    /// Parameter `i` (1-based).
    fn at(self, i: usize) -> String {
        if self.0 {
            "?".to_owned()
        } else {
            format!("${i}")
        }
    }

    /// `($s, $s+1, …), (…)`: `rows` rows of `cols` parameters from
    /// `start`, each followed by `tail` (literal columns, e.g. `, 0, 0`).
    fn rows(self, rows: usize, cols: usize, start: usize, tail: &str) -> String {
        let mut out = String::new();
        for r in 0..rows {
            if r > 0 {
                out.push_str(", ");
            }
            out.push('(');
            for c in 0..cols {
                if c > 0 {
                    out.push_str(", ");
                }
                out.push_str(&self.at(start + r * cols + c));
            }
            out.push_str(tail);
            out.push(')');
        }
        out
    }

    /// `$start, $start+1, …` (`n` of them).
    fn list(self, n: usize, start: usize) -> String {
        (start..start + n)
            .map(|i| self.at(i))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The progress update of `rows`; answers the requests it wrote.
pub(super) async fn progress(
    conn: &mut AnyConnection,
    style: Style,
    rows: &[((&str, &str), Latest<'_>)],
) -> Result<HashSet<(String, String)>> {
    let mut written = HashSet::new();
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "{PROGRESS_SET} FROM (VALUES {}) AS v {PROGRESS_WHERE}",
            style.rows(chunk.len(), 8, 1, "")
        );
        let mut q: Q<'_> = sqlx::query(&sql).persistent(false);
        for ((org, req), (p, served)) in chunk {
            q = q
                .bind(*org)
                .bind(*req)
                .bind(p.prompt_tokens)
                .bind(p.cached_tokens)
                .bind(p.completion_tokens)
                .bind(p.cost)
                .bind(served.map(|(m, _)| m.clone()))
                .bind(served.map(|(_, b)| b.clone()));
        }
        written.extend(pairs(q.fetch_all(&mut *conn).await?)?);
    }
    Ok(written)
}

/// The ledger rows of `first` (one per request), `ON CONFLICT DO NOTHING`;
/// answers the new rows' ids by (organisation, request id).
pub(super) async fn insert_ledger(
    conn: &mut AnyConnection,
    style: Style,
    first: &[&NewUsage],
) -> Result<HashMap<(String, String), i64>> {
    let mut ids = HashMap::new();
    for chunk in first.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO usage_ledger (request_id, org_id, project_id, api_key_id, user_id, \
             model, backend, prompt_tokens, cached_tokens, completion_tokens, cost, latency_ms, \
             status, finish_reason, created_at, endpoint) VALUES {} \
             ON CONFLICT (org_id, request_id) DO NOTHING RETURNING id, org_id, request_id",
            style.rows(chunk.len(), 16, 1, "")
        );
        let mut q: Q<'_> = sqlx::query(&sql).persistent(false);
        for u in chunk {
            q = q
                .bind(u.request_id.as_str())
                .bind(u.org_id.as_str())
                .bind(u.project_id.clone())
                .bind(u.api_key_id.clone())
                .bind(u.user_id.clone())
                .bind(u.model.as_str())
                .bind(u.backend.as_str())
                .bind(u.prompt_tokens)
                .bind(u.cached_tokens)
                .bind(u.completion_tokens)
                .bind(u.cost)
                .bind(u.latency_ms)
                .bind(u.status.as_str())
                .bind(u.finish_reason.clone())
                .bind(u.created_at)
                .bind(u.endpoint.as_str());
        }
        for row in q.fetch_all(&mut *conn).await? {
            let key = (row.try_get::<String, _>(1)?, row.try_get::<String, _>(2)?);
            ids.insert(key, row.try_get::<i64, _>(0)?);
        }
    }
    Ok(ids)
}

/// One upsert per rollup key, adding its sums.
pub(super) async fn upsert_rollups(
    conn: &mut AnyConnection,
    style: Style,
    sums: &[RollupSum<'_>],
) -> Result<()> {
    for chunk in sums.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO usage_rollup (org_id, width_ms, start_ms, project_id, api_key_id, \
             model, user_id, endpoint, input_tokens, cached_tokens, output_tokens, requests, \
             cost) VALUES {} \
             ON CONFLICT (org_id, width_ms, start_ms, project_id, api_key_id, model, user_id, \
             endpoint) DO UPDATE SET \
             input_tokens = usage_rollup.input_tokens + excluded.input_tokens, \
             cached_tokens = usage_rollup.cached_tokens + excluded.cached_tokens, \
             output_tokens = usage_rollup.output_tokens + excluded.output_tokens, \
             requests = usage_rollup.requests + excluded.requests, \
             cost = usage_rollup.cost + excluded.cost",
            style.rows(chunk.len(), 13, 1, "")
        );
        let mut q: Q<'_> = sqlx::query(&sql).persistent(false);
        for ((rank, org, start, project, key, model, user, endpoint), sum) in chunk {
            q = q
                .bind(*org)
                .bind(crate::rollup::WIDTHS[*rank])
                .bind(*start)
                .bind(*project)
                .bind(*key)
                .bind(*model)
                .bind(*user)
                .bind(*endpoint);
            for value in sum {
                q = q.bind(*value);
            }
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes `org`'s reservations of `reqs`, returning their rows.
pub(super) async fn delete_reservations(
    conn: &mut AnyConnection,
    style: Style,
    org: &str,
    reqs: &[&str],
) -> Result<Vec<AnyRow>> {
    let mut rows = Vec::new();
    for chunk in reqs.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM reservations WHERE org_id = {} AND request_id IN ({}) \
             RETURNING request_id, amount, budget_scopes",
            style.at(1),
            style.list(chunk.len(), 2)
        );
        let mut q: Q<'_> = sqlx::query(&sql).persistent(false).bind(org);
        for req in chunk {
            q = q.bind(*req);
        }
        rows.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

/// `org`'s ids among `reqs` that are reserved (`'r'`) or billed (`'l'`).
pub(super) async fn existing(
    conn: &mut AnyConnection,
    style: Style,
    org: &str,
    reqs: &[&str],
) -> Result<Vec<AnyRow>> {
    let mut rows = Vec::new();
    for chunk in reqs.chunks(CHUNK) {
        let n = chunk.len();
        let sql = format!(
            "SELECT 'r' AS tab, request_id FROM reservations \
             WHERE org_id = {} AND request_id IN ({}) \
             UNION ALL SELECT 'l' AS tab, request_id FROM usage_ledger \
             WHERE org_id = {} AND request_id IN ({})",
            style.at(1),
            style.list(n, 2),
            style.at(n + 2),
            style.list(n, n + 3)
        );
        let mut q: Q<'_> = sqlx::query(&sql).persistent(false);
        for _ in 0..2 {
            q = q.bind(org);
            for req in chunk {
                q = q.bind(*req);
            }
        }
        rows.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

/// The budgets of the organisations, projects and keys in `ids`.
pub(super) async fn budgets(
    conn: &mut AnyConnection,
    style: Style,
    ids: &[Vec<&str>; 3],
) -> Result<Vec<AnyRow>> {
    let mut clauses = Vec::new();
    let mut next = 1;
    for (slot, name) in ["org", "project", "key"].iter().enumerate() {
        if !ids[slot].is_empty() {
            clauses.push(format!(
                "(scope = '{name}' AND scope_id IN ({}))",
                style.list(ids[slot].len(), next)
            ));
            next += ids[slot].len();
        }
    }
    let sql = format!(
        "SELECT {BUDGET_COLUMNS} FROM budgets WHERE {}",
        clauses.join(" OR ")
    );
    let mut q: Q<'_> = sqlx::query(&sql).persistent(false);
    for id in ids.iter().flatten() {
        q = q.bind(*id);
    }
    Ok(q.fetch_all(&mut *conn).await?)
}

/// Creates the counters of `wanted` that are missing, at zero.
pub(super) async fn create_counters(
    conn: &mut AnyConnection,
    style: Style,
    wanted: &[&CounterKey],
) -> Result<()> {
    for chunk in wanted.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO budget_counters (scope, scope_id, period, spent, reserved) VALUES {} \
             ON CONFLICT (scope, scope_id, period) DO NOTHING",
            style.rows(chunk.len(), 3, 1, ", 0, 0")
        );
        let mut q: Q<'_> = sqlx::query(&sql).persistent(false);
        for (scope, id, period) in chunk {
            q = q
                .bind(scope.as_str())
                .bind(id.as_str())
                .bind(period.as_str());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The counters of any scope id in `ids` and period in `periods`, in lock
/// order (org, project, key).
pub(super) async fn read_counters(
    conn: &mut AnyConnection,
    style: Style,
    ids: &[&str],
    periods: &[&str],
) -> Result<Vec<AnyRow>> {
    let sql = format!(
        "SELECT scope, scope_id, period, spent, reserved, soft_notified FROM budget_counters \
         WHERE scope_id IN ({}) AND period IN ({}) \
         ORDER BY CASE scope WHEN 'org' THEN 0 WHEN 'project' THEN 1 ELSE 2 END, \
         scope_id, period",
        style.list(ids.len(), 1),
        style.list(periods.len(), 1 + ids.len())
    );
    let mut q: Q<'_> = sqlx::query(&sql).persistent(false);
    for id in ids {
        q = q.bind(*id);
    }
    for period in periods {
        q = q.bind(*period);
    }
    Ok(q.fetch_all(&mut *conn).await?)
}

/// One multi-row insert of the admitted reservations with their holds;
/// answers the ones written.
pub(super) async fn insert_reservations(
    conn: &mut AnyConnection,
    style: Style,
    admitted: &[Admitted<'_>],
) -> Result<HashSet<(String, String)>> {
    let mut inserted = HashSet::new();
    for chunk in admitted.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO reservations (request_id, org_id, project_id, api_key_id, user_id, \
             amount, created_at, model, backend, owner, endpoint, budget_scopes, period, \
             prompt_tokens, cached_tokens, completion_tokens, cost) VALUES {} \
             ON CONFLICT (org_id, request_id) DO NOTHING RETURNING org_id, request_id",
            style.rows(chunk.len(), 13, 1, ", 0, 0, 0, 0")
        );
        let mut q: Q<'_> = sqlx::query(&sql).persistent(false);
        for (_, r, holds, _) in chunk {
            q = q
                .bind(r.request_id.as_str())
                .bind(r.org_id.as_str())
                .bind(r.project_id.clone())
                .bind(r.api_key_id.clone())
                .bind(r.user_id.clone())
                .bind(r.amount)
                .bind(r.created_at)
                .bind(r.model.clone())
                .bind(r.backend.clone())
                .bind(r.owner.clone())
                .bind(r.endpoint.as_str())
                .bind(holds.as_str())
                .bind(hold_period(r, holds));
        }
        inserted.extend(pairs(q.fetch_all(&mut *conn).await?)?);
    }
    Ok(inserted)
}

/// Each counter's change in one upsert (in the given order: lock order).
pub(super) async fn add_to_counters(
    conn: &mut AnyConnection,
    style: Style,
    changed: &[(&CounterKey, &Counter)],
) -> Result<()> {
    for chunk in changed.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO budget_counters (scope, scope_id, period, spent, reserved) VALUES {} \
             ON CONFLICT (scope, scope_id, period) DO UPDATE SET \
             spent = budget_counters.spent + excluded.spent, \
             reserved = budget_counters.reserved + excluded.reserved",
            style.rows(chunk.len(), 5, 1, "")
        );
        let mut q: Q<'_> = sqlx::query(&sql).persistent(false);
        for ((scope, id, period), c) in chunk {
            q = q
                .bind(scope.as_str())
                .bind(id.as_str())
                .bind(period.as_str())
                .bind(c.spent_delta)
                .bind(c.reserved_delta);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_in_order() {
        let pg = Style(false);
        assert_eq!(pg.rows(2, 2, 1, ""), "($1, $2), ($3, $4)");
        assert_eq!(pg.rows(1, 3, 2, ", 0"), "($2, $3, $4, 0)");
        assert_eq!(pg.list(3, 2), "$2, $3, $4");
        let sqlite = Style(true);
        assert_eq!(sqlite.rows(2, 2, 1, ", 0"), "(?, ?, 0), (?, ?, 0)");
        assert_eq!(sqlite.list(2, 5), "?, ?");
    }
}
