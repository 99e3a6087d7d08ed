//! The statements of a set-based metering batch (`batch_set`): each runs
//! once per batch (or per organisation, or per 256 rows) whatever the
//! number of writes — multi-row inserts and upserts, `IN (…)` lists and
//! `UPDATE … FROM (VALUES …)`, written once for SQLite and PostgreSQL.
//! On PostgreSQL the id lists, the budget read and the progress update take
//! their rows as one JSON parameter instead, so their text is fixed and
//! sqlx keeps them prepared: one round trip each instead of two.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

use crate::batch::LedgerWrite;
use crate::batch::LedgerWritten;
use crate::batch_set::{Counter, CounterKey};
use crate::budget::{budget_from_row, Budget, BUDGET_COLUMNS};
use crate::ledger::{usage_from_row, Recorded, UsageRecord, USAGE_COLUMNS};
use crate::{now_ms, Backend, NewReservation, NewUsage, Result, StoreError};

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
    fn pg(self) -> bool {
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

/// `items` as a JSON array (a PostgreSQL list parameter: `= ANY(ARRAY(SELECT
/// json_array_elements_text($n::json)))`, which the generic plan of a kept
/// statement looks up in the (org_id, request_id) index; `IN (SELECT …)`
/// there became a scan of the organisation's whole ledger).
fn json_list(items: &[&str]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

/// A request's latest progress record and the serving model and backend
/// last named.
type Latest<'w> = (&'w crate::Progress, Option<&'w (String, String)>);

/// A progress update's head and tail, around its rows `v` (`column1` …
/// `column8`: organisation, request id, the four counts, model, backend).
const PROGRESS_SET: &str = "UPDATE reservations SET prompt_tokens = v.column3, \
     cached_tokens = v.column4, completion_tokens = v.column5, cost = v.column6, \
     model = COALESCE(v.column7, reservations.model), \
     backend = COALESCE(v.column8, reservations.backend)";
const PROGRESS_WHERE: &str = "WHERE reservations.org_id = v.column1 \
     AND reservations.request_id = v.column2 AND reservations.completion_tokens <= v.column5 \
     RETURNING reservations.org_id, reservations.request_id";

/// The latest progress record per request, written in one statement.
pub(crate) async fn write_progress(
    conn: &mut AnyConnection,
    writes: &[LedgerWrite],
    indices: &[usize],
    out: &mut [Option<Result<LedgerWritten>>],
) -> Result<()> {
    let style = Style::of(conn);
    // Per request: the record that knows most (a later one on a tie), and
    // the last serving model and backend named.
    let mut latest: BTreeMap<(&str, &str), Latest<'_>> = BTreeMap::new();
    for &i in indices {
        let LedgerWrite::Progress {
            org_id,
            request_id,
            progress,
            served,
        } = &writes[i]
        else {
            continue;
        };
        let entry = latest
            .entry((org_id.as_str(), request_id.as_str()))
            .or_insert((progress, None));
        if progress.completion_tokens >= entry.0.completion_tokens {
            entry.0 = progress;
        }
        if served.is_some() {
            entry.1 = served.as_ref();
        }
    }
    let rows: Vec<_> = latest.into_iter().collect();
    let mut written = HashSet::new();
    if style.pg() && !rows.is_empty() {
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
        for row in found {
            written.insert((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
        }
    }
    let sqlite_rows = if style.pg() { &rows[..0] } else { &rows[..] };
    for chunk in sqlite_rows.chunks(CHUNK) {
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
        for row in q.fetch_all(&mut *conn).await? {
            written.insert((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
        }
    }
    for &i in indices {
        if let LedgerWrite::Progress {
            org_id, request_id, ..
        } = &writes[i]
        {
            let done = written.contains(&(org_id.clone(), request_id.clone()));
            out[i] = Some(Ok(LedgerWritten::Progressed(done)));
        }
    }
    Ok(())
}

/// A settlement's ledger row as it now stands.
pub(crate) struct Settled<'w> {
    pub(crate) index: usize,
    pub(crate) usage: &'w NewUsage,
    pub(crate) recorded: Recorded,
}

/// One multi-row ledger insert; rows already there (a retry) are read back
/// and reported `created: false`; the new rows' rollups are upserted.
pub(crate) async fn insert_settlements<'w>(
    conn: &mut AnyConnection,
    settles: &[(usize, &'w NewUsage)],
) -> Result<Vec<Settled<'w>>> {
    let style = Style::of(conn);
    let mut first = Vec::new();
    let mut seen = HashSet::new();
    for (_, u) in settles {
        if seen.insert((u.org_id.as_str(), u.request_id.as_str())) {
            first.push(*u);
        }
    }
    let mut ids: HashMap<(String, String), i64> = HashMap::new();
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
    let mut rollups: Vec<&NewUsage> = Vec::new();
    let mut known: HashMap<(String, String), UsageRecord> = HashMap::new();
    let mut out = Vec::with_capacity(settles.len());
    for (index, usage) in settles {
        let key = (usage.org_id.clone(), usage.request_id.clone());
        let recorded = match ids.remove(&key) {
            Some(id) => {
                rollups.push(usage);
                let record = UsageRecord {
                    id,
                    usage: (*usage).clone(),
                };
                known.insert(key, record.clone());
                Recorded {
                    record,
                    created: true,
                }
            }
            None => {
                let record = match known.get(&key) {
                    Some(record) => record.clone(),
                    None => {
                        let record = read_back(conn, usage).await?;
                        known.insert(key, record.clone());
                        record
                    }
                };
                Recorded {
                    record,
                    created: false,
                }
            }
        };
        out.push(Settled {
            index: *index,
            usage,
            recorded,
        });
    }
    upsert_rollups(conn, &rollups).await?;
    Ok(out)
}

async fn read_back(conn: &mut AnyConnection, usage: &NewUsage) -> Result<UsageRecord> {
    let sql =
        format!("SELECT {USAGE_COLUMNS} FROM usage_ledger WHERE org_id = $1 AND request_id = $2");
    let row = sqlx::query(&sql)
        .persistent(false)
        .bind(&usage.org_id)
        .bind(&usage.request_id)
        .fetch_one(&mut *conn)
        .await?;
    usage_from_row(&row)
}

/// The new rows summed per rollup key (widest first, the lock order of
/// `rollup::record`), one upsert per key.
async fn upsert_rollups(conn: &mut AnyConnection, rows: &[&NewUsage]) -> Result<()> {
    let style = Style::of(conn);
    type RollupKey<'a> = (
        usize,
        &'a str,
        i64,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
    );
    let mut sums: BTreeMap<RollupKey<'_>, [i64; 5]> = BTreeMap::new();
    for u in rows {
        for (rank, width) in crate::rollup::WIDTHS.iter().enumerate() {
            let key = (
                rank,
                u.org_id.as_str(),
                crate::rollup::align(u.created_at, *width),
                u.project_id.as_deref().unwrap_or(""),
                u.api_key_id.as_deref().unwrap_or(""),
                u.model.as_str(),
                u.user_id.as_deref().unwrap_or(""),
                u.endpoint.as_str(),
            );
            let sum = sums.entry(key).or_default();
            for (slot, add) in sum.iter_mut().zip([
                u.prompt_tokens,
                u.cached_tokens,
                u.completion_tokens,
                1,
                u.cost,
            ]) {
                *slot = slot.saturating_add(add);
            }
        }
    }
    let sums: Vec<_> = sums.into_iter().collect();
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

/// What deleting the batch's reservations freed.
pub(crate) struct Freed<'w> {
    /// The (organisation, request id) pairs whose reservation was deleted.
    pub(crate) deleted: HashSet<(&'w str, &'w str)>,
    /// The holds given back: counter and amount.
    pub(crate) holds: Vec<(CounterKey, i64)>,
}

/// Deletes the reservations of `keys` (organisation, request id), one
/// statement per organisation, returning their holds.
pub(crate) async fn delete_reservations<'w>(
    conn: &mut AnyConnection,
    keys: &[(&'w str, &'w str)],
) -> Result<Freed<'w>> {
    let style = Style::of(conn);
    let mut by_org: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (org, req) in keys {
        by_org.entry(org).or_default().push(req);
    }
    let mut freed = Freed {
        deleted: HashSet::new(),
        holds: Vec::new(),
    };
    for (org, reqs) in by_org {
        if style.pg() {
            let rows = sqlx::query(
                "DELETE FROM reservations WHERE org_id = $1 \
                 AND request_id = ANY(ARRAY(SELECT json_array_elements_text($2::json))) \
                 RETURNING request_id, amount, budget_scopes",
            )
            .bind(org)
            .bind(json_list(&reqs))
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                freed.add(org, &reqs, &row)?;
            }
            continue;
        }
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
            for row in q.fetch_all(&mut *conn).await? {
                freed.add(org, chunk, &row)?;
            }
        }
    }
    Ok(freed)
}

impl<'w> Freed<'w> {
    /// A deleted reservation's row (`reqs`: the ids asked for).
    fn add(&mut self, org: &'w str, reqs: &[&'w str], row: &AnyRow) -> Result<()> {
        let req: String = row.try_get("request_id")?;
        let amount: i64 = row.try_get("amount")?;
        let holds: String = row.try_get("budget_scopes")?;
        if let Some(req) = reqs.iter().copied().find(|r| *r == req.as_str()) {
            self.deleted.insert((org, req));
        }
        for entry in holds.split(',').filter(|e| !e.is_empty()) {
            self.holds.push((parse_hold(entry)?, amount));
        }
        Ok(())
    }
}

fn parse_hold(entry: &str) -> Result<CounterKey> {
    let mut parts = entry.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(scope), Some(id), Some(period)) => Ok((
            scope
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("reservation hold {entry:?}")))?,
            id.to_owned(),
            period.to_owned(),
        )),
        _ => Err(StoreError::Corrupt(format!("reservation hold {entry:?}"))),
    }
}

/// Which of `keys` (organisation, request id) are reserved already, and
/// which are in the ledger: one read of both tables (a `UNION ALL`) per
/// organisation and chunk.
pub(crate) async fn existing(conn: &mut AnyConnection, keys: &[(&str, &str)]) -> Result<Existing> {
    let style = Style::of(conn);
    let mut by_org: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (org, req) in keys {
        by_org.entry(org).or_default().push(req);
    }
    let mut found = Existing::default();
    for (org, reqs) in by_org {
        if style.pg() {
            let rows = sqlx::query(
                "SELECT 'r' AS tab, request_id FROM reservations WHERE org_id = $1 \
                 AND request_id = ANY(ARRAY(SELECT json_array_elements_text($2::json))) \
                 UNION ALL SELECT 'l' AS tab, request_id FROM usage_ledger WHERE org_id = $1 \
                 AND request_id = ANY(ARRAY(SELECT json_array_elements_text($2::json)))",
            )
            .bind(org)
            .bind(json_list(&reqs))
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                found.add(org, &row)?;
            }
            continue;
        }
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
            for row in q.fetch_all(&mut *conn).await? {
                found.add(org, &row)?;
            }
        }
    }
    Ok(found)
}

/// Request ids found by [`existing`]: (organisation, request id).
#[derive(Default)]
pub(crate) struct Existing {
    /// Those with a reservation.
    pub(crate) reserved: HashSet<(String, String)>,
    /// Those with a ledger row.
    pub(crate) billed: HashSet<(String, String)>,
}

impl Existing {
    fn add(&mut self, org: &str, row: &AnyRow) -> Result<()> {
        let tab: String = row.try_get(0)?;
        let key = (org.to_owned(), row.try_get::<String, _>(1)?);
        if tab == "r" {
            self.reserved.insert(key);
        } else {
            self.billed.insert(key);
        }
        Ok(())
    }
}

/// Every budget on the given scopes (organisation, project, key), in one read.
pub(crate) async fn load_budgets<'a>(
    conn: &mut AnyConnection,
    scopes: impl Iterator<Item = (&'a str, Option<&'a str>, Option<&'a str>)>,
) -> Result<Vec<Budget>> {
    let style = Style::of(conn);
    let mut ids: [Vec<&str>; 3] = [vec![], vec![], vec![]];
    let mut seen = HashSet::new();
    for (org, project, key) in scopes {
        for (slot, id) in [(0, Some(org)), (1, project), (2, key)] {
            if let Some(id) = id {
                if seen.insert((slot, id)) {
                    ids[slot].push(id);
                }
            }
        }
    }
    if ids.iter().all(Vec::is_empty) {
        return Ok(Vec::new());
    }
    if style.pg() {
        let sql = format!(
            "SELECT {BUDGET_COLUMNS} FROM budgets WHERE \
             (scope = 'org' AND scope_id = ANY(ARRAY(SELECT json_array_elements_text($1::json)))) \
             OR (scope = 'project' AND scope_id = ANY(ARRAY(SELECT json_array_elements_text($2::json)))) \
             OR (scope = 'key' AND scope_id = ANY(ARRAY(SELECT json_array_elements_text($3::json))))"
        );
        let mut q: Q<'_> = sqlx::query(&sql);
        for list in &ids {
            q = q.bind(json_list(list));
        }
        return q
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(budget_from_row)
            .collect();
    }
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
    q.fetch_all(&mut *conn)
        .await?
        .iter()
        .map(budget_from_row)
        .collect()
}

/// Creates the `wanted` counters that are missing, then reads them and the
/// `held` ones (what released reservations hold), locking them on
/// PostgreSQL in lock order.
pub(crate) async fn load_counters(
    conn: &mut AnyConnection,
    backend: Backend,
    wanted: &[CounterKey],
    held: &[CounterKey],
) -> Result<BTreeMap<CounterKey, Counter>> {
    let style = Style::of(conn);
    let wanted: Vec<&CounterKey> = wanted.iter().collect::<BTreeSet<_>>().into_iter().collect();
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
    let all: BTreeSet<&CounterKey> = wanted.into_iter().chain(held).collect();
    let mut counters = BTreeMap::new();
    if all.is_empty() {
        return Ok(counters);
    }
    let ids: Vec<&str> = all
        .iter()
        .map(|(_, id, _)| id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let periods: Vec<&str> = all
        .iter()
        .map(|(_, _, p)| p.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT scope, scope_id, period, spent, reserved, soft_notified FROM budget_counters \
         WHERE scope_id IN ({}) AND period IN ({}) \
         ORDER BY CASE scope WHEN 'org' THEN 0 WHEN 'project' THEN 1 ELSE 2 END, \
         scope_id, period{lock}",
        style.list(ids.len(), 1),
        style.list(periods.len(), 1 + ids.len())
    );
    let mut q: Q<'_> = sqlx::query(&sql).persistent(false);
    for id in &ids {
        q = q.bind(*id);
    }
    for period in &periods {
        q = q.bind(*period);
    }
    for row in q.fetch_all(&mut *conn).await? {
        let key = counter_key(&row)?;
        if all.contains(&key) {
            let soft: Option<i64> = row.try_get("soft_notified")?;
            counters.insert(
                key,
                Counter {
                    spent: row.try_get("spent")?,
                    reserved: row.try_get("reserved")?,
                    soft_notified: soft.is_some(),
                    ..Counter::default()
                },
            );
        }
    }
    Ok(counters)
}

fn counter_key(row: &AnyRow) -> Result<CounterKey> {
    let scope: String = row.try_get("scope")?;
    Ok((
        scope
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("budget scope {scope:?}")))?,
        row.try_get("scope_id")?,
        row.try_get("period")?,
    ))
}

/// One multi-row insert of the admitted reservations with their holds;
/// answers the ones written (a request id another instance reserved
/// meanwhile is not).
pub(crate) async fn insert_reservations(
    conn: &mut AnyConnection,
    admitted: &[(usize, &NewReservation, String, Vec<CounterKey>)],
) -> Result<HashSet<(String, String)>> {
    let style = Style::of(conn);
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
            let period = if holds.is_empty() {
                String::new()
            } else {
                crate::budget::month_of(r.created_at)
            };
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
                .bind(period);
        }
        for row in q.fetch_all(&mut *conn).await? {
            inserted.insert((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
        }
    }
    Ok(inserted)
}

/// Each changed counter's change in one upsert (in lock order), then the
/// soft limits crossed marked as notified.
pub(crate) async fn write_counters(
    conn: &mut AnyConnection,
    counters: &BTreeMap<CounterKey, Counter>,
) -> Result<()> {
    let style = Style::of(conn);
    let changed: Vec<_> = counters
        .iter()
        .filter(|(_, c)| c.spent_delta != 0 || c.reserved_delta != 0)
        .collect();
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
    for ((scope, id, period), _) in counters.iter().filter(|(_, c)| c.mark_soft) {
        sqlx::query(
            "UPDATE budget_counters SET soft_notified = $4 \
             WHERE scope = $1 AND scope_id = $2 AND period = $3 AND soft_notified IS NULL",
        )
        .bind(scope.as_str())
        .bind(id.as_str())
        .bind(period.as_str())
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
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
