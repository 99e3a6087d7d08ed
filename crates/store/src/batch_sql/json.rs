//! PostgreSQL's batch statements that take their rows as one JSON
//! parameter: the text never changes, so sqlx keeps each prepared per
//! connection and it costs one round trip. Id lists are matched as
//! `= ANY(ARRAY(SELECT json_array_elements_text($n::json)))`, which the
//! generic plan of a kept statement looks up in the (org_id, request_id)
//! index (`IN (SELECT …)` there became a scan of the organisation's whole
//! ledger); rows are read with `json_to_recordset` (integers as JSON
//! numbers, exact for `bigint`). Every statement of a batch has a form
//! here, so a batch costs one round trip per statement (the ledger insert
//! and its rollups in one).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{hold_period, pairs, Admitted, Latest, PROGRESS_SET, PROGRESS_WHERE};
use crate::batch_set::{Counter, CounterKey};
use crate::budget::BUDGET_COLUMNS;
use crate::{NewUsage, Result};

/// `items` as a JSON array.
fn json_list(items: &[&str]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

/// The progress update of `rows`; answers the requests it wrote.
pub(super) async fn progress(
    conn: &mut AnyConnection,
    rows: &[((&str, &str), Latest<'_>)],
) -> Result<HashSet<(String, String)>> {
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|((org, req), (p, served))| {
            serde_json::json!({
                "column1": org, "column2": req,
                "column3": p.prompt_tokens, "column4": p.cached_tokens,
                "column5": p.completion_tokens, "column6": p.cost,
                "column7": served.map(|(m, _)| m), "column8": served.map(|(_, b)| b),
            })
        })
        .collect();
    let found = sqlx::query(&format!(
        "{PROGRESS_SET} FROM json_to_recordset($1::json) AS v(column1 text, column2 text, \
         column3 bigint, column4 bigint, column5 bigint, column6 bigint, column7 text, \
         column8 text) {PROGRESS_WHERE}"
    ))
    .bind(serde_json::Value::from(json).to_string())
    .fetch_all(&mut *conn)
    .await?;
    pairs(found)
}

/// Deletes `org`'s reservations of `reqs`, returning their rows.
pub(super) async fn delete_reservations(
    conn: &mut AnyConnection,
    org: &str,
    reqs: &[&str],
) -> Result<Vec<AnyRow>> {
    Ok(sqlx::query(
        "DELETE FROM reservations WHERE org_id = $1 \
         AND request_id = ANY(ARRAY(SELECT json_array_elements_text($2::json))) \
         RETURNING request_id, amount, budget_scopes",
    )
    .bind(org)
    .bind(json_list(reqs))
    .fetch_all(&mut *conn)
    .await?)
}

/// `org`'s ids among `reqs` that are reserved (`'r'`) or billed (`'l'`).
pub(super) async fn existing(
    conn: &mut AnyConnection,
    org: &str,
    reqs: &[&str],
) -> Result<Vec<AnyRow>> {
    Ok(sqlx::query(
        "SELECT 'r' AS tab, request_id FROM reservations WHERE org_id = $1 \
         AND request_id = ANY(ARRAY(SELECT json_array_elements_text($2::json))) \
         UNION ALL SELECT 'l' AS tab, request_id FROM usage_ledger WHERE org_id = $1 \
         AND request_id = ANY(ARRAY(SELECT json_array_elements_text($2::json)))",
    )
    .bind(org)
    .bind(json_list(reqs))
    .fetch_all(&mut *conn)
    .await?)
}

/// The budgets of the organisations, projects and keys in `ids`.
pub(super) async fn budgets(conn: &mut AnyConnection, ids: &[Vec<&str>; 3]) -> Result<Vec<AnyRow>> {
    let sql = format!(
        "SELECT {BUDGET_COLUMNS} FROM budgets WHERE \
         (scope = 'org' AND scope_id = ANY(ARRAY(SELECT json_array_elements_text($1::json)))) \
         OR (scope = 'project' AND scope_id = ANY(ARRAY(SELECT json_array_elements_text($2::json)))) \
         OR (scope = 'key' AND scope_id = ANY(ARRAY(SELECT json_array_elements_text($3::json))))"
    );
    let mut q = sqlx::query(&sql);
    for list in ids {
        q = q.bind(json_list(list));
    }
    Ok(q.fetch_all(&mut *conn).await?)
}

/// A ledger row as `json_to_recordset` reads it (keys are column names).
#[derive(Serialize)]
struct LedgerRow<'a> {
    request_id: &'a str,
    org_id: &'a str,
    project_id: Option<&'a str>,
    api_key_id: Option<&'a str>,
    user_id: Option<&'a str>,
    model: &'a str,
    backend: &'a str,
    prompt_tokens: i64,
    cached_tokens: i64,
    completion_tokens: i64,
    cost: i64,
    latency_ms: i64,
    status: &'a str,
    finish_reason: Option<&'a str>,
    created_at: i64,
    endpoint: &'a str,
}

/// The ledger rows of `first` (one per request), `ON CONFLICT DO NOTHING`,
/// and the rollups of the rows it created, in one statement: the rollup
/// upsert reads the insert's `RETURNING` (a data-modifying `WITH`), sums
/// per key (`GROUP BY`, so no key is touched twice) and upserts in one
/// order (width rank, then the key, bytewise), as `rollup::record` would
/// one row at a time: a width's window starts at `at - at.rem_euclid(w)`.
/// Answers the new rows' ids by (organisation, request id).
pub(super) async fn insert_ledger_and_rollups(
    conn: &mut AnyConnection,
    first: &[&NewUsage],
) -> Result<HashMap<(String, String), i64>> {
    let rows: Vec<LedgerRow<'_>> = first
        .iter()
        .map(|u| LedgerRow {
            request_id: &u.request_id,
            org_id: &u.org_id,
            project_id: u.project_id.as_deref(),
            api_key_id: u.api_key_id.as_deref(),
            user_id: u.user_id.as_deref(),
            model: &u.model,
            backend: &u.backend,
            prompt_tokens: u.prompt_tokens,
            cached_tokens: u.cached_tokens,
            completion_tokens: u.completion_tokens,
            cost: u.cost,
            latency_ms: u.latency_ms,
            status: &u.status,
            finish_reason: u.finish_reason.as_deref(),
            created_at: u.created_at,
            endpoint: &u.endpoint,
        })
        .collect();
    let found = sqlx::query(ledger_sql())
        .bind(to_json(&rows)?)
        .fetch_all(&mut *conn)
        .await?;
    let mut ids = HashMap::with_capacity(found.len());
    for row in found {
        let key = (row.try_get::<String, _>(1)?, row.try_get::<String, _>(2)?);
        ids.insert(key, row.try_get::<i64, _>(0)?);
    }
    Ok(ids)
}

/// The text of [`insert_ledger_and_rollups`] (fixed: the widths are
/// constants).
fn ledger_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let widths = crate::rollup::WIDTHS
            .iter()
            .enumerate()
            .map(|(rank, width)| format!("({rank}, {width}::bigint)"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "WITH v AS (SELECT * FROM json_to_recordset($1::json) AS v(request_id text, \
             org_id text, project_id text, api_key_id text, user_id text, model text, \
             backend text, prompt_tokens bigint, cached_tokens bigint, completion_tokens bigint, \
             cost bigint, latency_ms bigint, status text, finish_reason text, created_at bigint, \
             endpoint text)), \
             ins AS (INSERT INTO usage_ledger (request_id, org_id, project_id, api_key_id, \
             user_id, model, backend, prompt_tokens, cached_tokens, completion_tokens, cost, \
             latency_ms, status, finish_reason, created_at, endpoint) \
             SELECT request_id, org_id, project_id, api_key_id, user_id, model, backend, \
             prompt_tokens, cached_tokens, completion_tokens, cost, latency_ms, status, \
             finish_reason, created_at, endpoint FROM v \
             ON CONFLICT (org_id, request_id) DO NOTHING \
             RETURNING id, org_id, request_id, project_id, api_key_id, user_id, model, \
             endpoint, prompt_tokens, cached_tokens, completion_tokens, cost, created_at), \
             w (rank, width) AS (VALUES {widths}), \
             sums AS (SELECT w.rank, i.org_id, w.width, \
             i.created_at - (((i.created_at % w.width) + w.width) % w.width) AS start_ms, \
             COALESCE(i.project_id, '') AS project_id, COALESCE(i.api_key_id, '') AS api_key_id, \
             i.model, COALESCE(i.user_id, '') AS user_id, i.endpoint, \
             SUM(i.prompt_tokens) AS input_tokens, SUM(i.cached_tokens) AS cached_tokens, \
             SUM(i.completion_tokens) AS output_tokens, COUNT(*) AS requests, SUM(i.cost) AS cost \
             FROM ins i CROSS JOIN w GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9), \
             roll AS (INSERT INTO usage_rollup (org_id, width_ms, start_ms, project_id, \
             api_key_id, model, user_id, endpoint, input_tokens, cached_tokens, output_tokens, \
             requests, cost) \
             SELECT org_id, width, start_ms, project_id, api_key_id, model, user_id, endpoint, \
             input_tokens, cached_tokens, output_tokens, requests, cost FROM sums \
             ORDER BY rank, org_id COLLATE \"C\", start_ms, project_id COLLATE \"C\", \
             api_key_id COLLATE \"C\", model COLLATE \"C\", user_id COLLATE \"C\", \
             endpoint COLLATE \"C\" \
             ON CONFLICT (org_id, width_ms, start_ms, project_id, api_key_id, model, user_id, \
             endpoint) DO UPDATE SET \
             input_tokens = usage_rollup.input_tokens + excluded.input_tokens, \
             cached_tokens = usage_rollup.cached_tokens + excluded.cached_tokens, \
             output_tokens = usage_rollup.output_tokens + excluded.output_tokens, \
             requests = usage_rollup.requests + excluded.requests, \
             cost = usage_rollup.cost + excluded.cost) \
             SELECT id, org_id, request_id FROM ins"
        )
    })
}

/// A reservation as `json_to_recordset` reads it.
#[derive(Serialize)]
struct ReservationRow<'a> {
    request_id: &'a str,
    org_id: &'a str,
    project_id: Option<&'a str>,
    api_key_id: Option<&'a str>,
    user_id: Option<&'a str>,
    amount: i64,
    created_at: i64,
    model: Option<&'a str>,
    backend: Option<&'a str>,
    owner: Option<&'a str>,
    endpoint: &'a str,
    budget_scopes: &'a str,
    period: String,
}

/// The admitted reservations with their holds in one insert; answers the
/// ones written.
pub(super) async fn insert_reservations(
    conn: &mut AnyConnection,
    admitted: &[Admitted<'_>],
) -> Result<HashSet<(String, String)>> {
    let rows: Vec<ReservationRow<'_>> = admitted
        .iter()
        .map(|(_, r, holds, _)| ReservationRow {
            request_id: &r.request_id,
            org_id: &r.org_id,
            project_id: r.project_id.as_deref(),
            api_key_id: r.api_key_id.as_deref(),
            user_id: r.user_id.as_deref(),
            amount: r.amount,
            created_at: r.created_at,
            model: r.model.as_deref(),
            backend: r.backend.as_deref(),
            owner: r.owner.as_deref(),
            endpoint: &r.endpoint,
            budget_scopes: holds,
            period: hold_period(r, holds),
        })
        .collect();
    let found = sqlx::query(
        "INSERT INTO reservations (request_id, org_id, project_id, api_key_id, user_id, \
         amount, created_at, model, backend, owner, endpoint, budget_scopes, period, \
         prompt_tokens, cached_tokens, completion_tokens, cost) \
         SELECT request_id, org_id, project_id, api_key_id, user_id, amount, created_at, model, \
         backend, owner, endpoint, budget_scopes, period, 0, 0, 0, 0 \
         FROM json_to_recordset($1::json) AS v(request_id text, org_id text, project_id text, \
         api_key_id text, user_id text, amount bigint, created_at bigint, model text, \
         backend text, owner text, endpoint text, budget_scopes text, period text) \
         ON CONFLICT (org_id, request_id) DO NOTHING RETURNING org_id, request_id",
    )
    .bind(to_json(&rows)?)
    .fetch_all(&mut *conn)
    .await?;
    pairs(found)
}

/// A budget counter and the change to it, as `json_to_recordset` reads it.
#[derive(Serialize)]
struct CounterRow<'a> {
    scope: &'a str,
    scope_id: &'a str,
    period: &'a str,
    spent: i64,
    reserved: i64,
}

fn counter_rows<'a>(keys: impl Iterator<Item = (&'a CounterKey, i64, i64)>) -> Vec<CounterRow<'a>> {
    keys.map(|((scope, id, period), spent, reserved)| CounterRow {
        scope: scope.as_str(),
        scope_id: id,
        period,
        spent,
        reserved,
    })
    .collect()
}

const COUNTER_RECORDS: &str = "json_to_recordset($1::json) AS v(scope text, scope_id text, \
     period text, spent bigint, reserved bigint)";

/// Creates the counters of `wanted` that are missing, at zero (in the
/// given order).
pub(super) async fn create_counters(
    conn: &mut AnyConnection,
    wanted: &[&CounterKey],
) -> Result<()> {
    let rows = counter_rows(wanted.iter().map(|key| (*key, 0, 0)));
    sqlx::query(&format!(
        "INSERT INTO budget_counters (scope, scope_id, period, spent, reserved) \
         SELECT scope, scope_id, period, 0, 0 FROM {COUNTER_RECORDS} \
         ON CONFLICT (scope, scope_id, period) DO NOTHING"
    ))
    .bind(to_json(&rows)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The counters of any scope id in `ids` and period in `periods`, locked
/// `FOR UPDATE` in lock order (org, project, key).
pub(super) async fn read_counters(
    conn: &mut AnyConnection,
    ids: &[&str],
    periods: &[&str],
) -> Result<Vec<AnyRow>> {
    Ok(sqlx::query(
        "SELECT scope, scope_id, period, spent, reserved, soft_notified FROM budget_counters \
         WHERE scope_id = ANY(ARRAY(SELECT json_array_elements_text($1::json))) \
         AND period = ANY(ARRAY(SELECT json_array_elements_text($2::json))) \
         ORDER BY CASE scope WHEN 'org' THEN 0 WHEN 'project' THEN 1 ELSE 2 END, \
         scope_id, period FOR UPDATE",
    )
    .bind(json_list(ids))
    .bind(json_list(periods))
    .fetch_all(&mut *conn)
    .await?)
}

/// Each counter's change in one upsert (in the given order: lock order).
pub(super) async fn add_to_counters(
    conn: &mut AnyConnection,
    changed: &[(&CounterKey, &Counter)],
) -> Result<()> {
    let rows = counter_rows(
        changed
            .iter()
            .map(|(key, c)| (*key, c.spent_delta, c.reserved_delta)),
    );
    sqlx::query(&format!(
        "INSERT INTO budget_counters (scope, scope_id, period, spent, reserved) \
         SELECT scope, scope_id, period, spent, reserved FROM {COUNTER_RECORDS} \
         ON CONFLICT (scope, scope_id, period) DO UPDATE SET \
         spent = budget_counters.spent + excluded.spent, \
         reserved = budget_counters.reserved + excluded.reserved"
    ))
    .bind(to_json(&rows)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn to_json<T: Serialize>(rows: &T) -> Result<String> {
    serde_json::to_string(rows)
        .map_err(|err| crate::StoreError::Corrupt(format!("a batch's rows as JSON: {err}")))
}
