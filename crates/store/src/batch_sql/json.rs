//! PostgreSQL's batch statements that take their rows as one JSON
//! parameter: the text never changes, so sqlx keeps each prepared per
//! connection and it costs one round trip. Id lists are matched as
//! `= ANY(ARRAY(SELECT json_array_elements_text($n::json)))`, which the
//! generic plan of a kept statement looks up in the (org_id, request_id)
//! index (`IN (SELECT …)` there became a scan of the organisation's whole
//! ledger); rows are read with `json_to_recordset`.

use std::collections::HashSet;

use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use super::{pairs, Latest, PROGRESS_SET, PROGRESS_WHERE};
use crate::budget::BUDGET_COLUMNS;
use crate::Result;

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
