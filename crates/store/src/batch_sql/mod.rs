//! The statements of a set-based metering batch (`batch_set`): each runs
//! once per batch (or per organisation, or per 256 rows) whatever the
//! number of writes.
//!
//! This module owns what both databases share: which rows each statement
//! gets (the latest progress record per request, a settlement once, the
//! rollups summed per key, the ids grouped per organisation) and what the
//! answers come to (rows created or already there, holds freed, counters
//! read). The statements themselves are in two forms, one per database:
//! - [`values`]: SQLite's, rows in the statement's text (multi-row
//!   `VALUES`, `IN (…)` lists) with anonymous `?` parameters, added to a
//!   script that runs several in one hop (`batch_sqlite` runs them);
//! - [`json`]: PostgreSQL's, the rows as one JSON parameter in a fixed
//!   text, so sqlx keeps the statement prepared: one round trip each
//!   instead of two (sqlx prepares a statement it does not keep in a round
//!   trip of its own), and the ledger insert carries its rollups. The
//!   functions here that run a statement run PostgreSQL's (`batch_set`).

mod json;
pub(crate) mod values;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::batch::LedgerWrite;
use crate::batch::LedgerWritten;
use crate::batch_set::{Counter, CounterKey};
use crate::budget::{budget_from_row, Budget};
use crate::ledger::{usage_from_row, Recorded, UsageRecord, USAGE_COLUMNS};
use crate::sqlite_raw::Cells;
use crate::{now_ms, NewReservation, NewUsage, Result, StoreError};

/// A request's latest progress record and the serving model and backend
/// last named.
pub(crate) type Latest<'w> = (&'w crate::Progress, Option<&'w (String, String)>);

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
    let rows = latest_progress(writes, indices);
    let written = if rows.is_empty() {
        HashSet::new()
    } else {
        json::progress(conn, &rows).await?
    };
    answer_progress(writes, indices, &written, out);
    Ok(())
}

/// Per request among the progress records at `indices`: the record that
/// knows most (a later one on a tie), and the last serving model and
/// backend named.
pub(crate) fn latest_progress<'w>(
    writes: &'w [LedgerWrite],
    indices: &[usize],
) -> Vec<((&'w str, &'w str), Latest<'w>)> {
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
    latest.into_iter().collect()
}

/// Answers the progress records at `indices`: whether their request's
/// reservation was `written`.
pub(crate) fn answer_progress(
    writes: &[LedgerWrite],
    indices: &[usize],
    written: &HashSet<(String, String)>,
    out: &mut [Option<Result<LedgerWritten>>],
) {
    for &i in indices {
        if let LedgerWrite::Progress {
            org_id, request_id, ..
        } = &writes[i]
        {
            let done = written.contains(&(org_id.clone(), request_id.clone()));
            out[i] = Some(Ok(LedgerWritten::Progressed(done)));
        }
    }
}

/// (organisation, request id) pairs of the rows a statement returned, as
/// its first two columns.
pub(crate) fn pairs<R: Cells>(rows: Vec<R>) -> Result<HashSet<(String, String)>> {
    rows.iter()
        .map(|row| Ok((row.cell::<String>(0)?, row.cell::<String>(1)?)))
        .collect()
}

/// A settlement's ledger row as it now stands.
pub(crate) struct Settled<'w> {
    pub(crate) index: usize,
    pub(crate) usage: &'w NewUsage,
    pub(crate) recorded: Recorded,
}

/// The first settlement of each request among `settles`.
pub(crate) fn first_settlements<'w>(settles: &[(usize, &'w NewUsage)]) -> Vec<&'w NewUsage> {
    let mut first = Vec::new();
    let mut seen = HashSet::new();
    for (_, u) in settles {
        if seen.insert((u.org_id.as_str(), u.request_id.as_str())) {
            first.push(*u);
        }
    }
    first
}

/// One multi-row ledger insert with the new rows' rollups; rows already
/// there (a retry) are read back and reported `created: false`.
pub(crate) async fn insert_settlements<'w>(
    conn: &mut AnyConnection,
    settles: &[(usize, &'w NewUsage)],
) -> Result<Vec<Settled<'w>>> {
    let first = first_settlements(settles);
    let ids = if first.is_empty() {
        HashMap::new()
    } else {
        json::insert_ledger_and_rollups(conn, &first).await?
    };
    settled(conn, settles, ids).await
}

/// The settlements among `settles` whose rows the batch did not create
/// (`ids`: the created rows, by organisation and request id): retries,
/// whose rows are to be read back, once per request.
pub(crate) fn to_read_back<'w>(
    settles: &[(usize, &'w NewUsage)],
    ids: &HashMap<(String, String), i64>,
) -> Vec<&'w NewUsage> {
    let mut seen = HashSet::new();
    settles
        .iter()
        .map(|(_, u)| *u)
        .filter(|u| {
            let key = (u.org_id.clone(), u.request_id.clone());
            !ids.contains_key(&key) && seen.insert(key)
        })
        .collect()
}

/// Each of `settles` as its ledger row now stands, given the `ids` of the
/// rows the batch created (by organisation and request id) and the rows
/// read back for the others ([`to_read_back`]): the first settlement of a
/// created row created it; any other is a retry.
pub(crate) fn settled_from<'w>(
    settles: &[(usize, &'w NewUsage)],
    mut ids: HashMap<(String, String), i64>,
    mut read: HashMap<(String, String), UsageRecord>,
) -> Result<Vec<Settled<'w>>> {
    let mut out = Vec::with_capacity(settles.len());
    for (index, usage) in settles {
        let key = (usage.org_id.clone(), usage.request_id.clone());
        let recorded = match ids.remove(&key) {
            Some(id) => {
                let record = UsageRecord {
                    id,
                    usage: (*usage).clone(),
                };
                read.insert(key, record.clone());
                Recorded {
                    record,
                    created: true,
                }
            }
            None => Recorded {
                record: read.get(&key).cloned().ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "settled request {} has no ledger row",
                        usage.request_id
                    ))
                })?,
                created: false,
            },
        };
        out.push(Settled {
            index: *index,
            usage,
            recorded,
        });
    }
    Ok(out)
}

/// [`settled_from`], reading back on `conn`.
pub(crate) async fn settled<'w>(
    conn: &mut AnyConnection,
    settles: &[(usize, &'w NewUsage)],
    ids: HashMap<(String, String), i64>,
) -> Result<Vec<Settled<'w>>> {
    let mut read = HashMap::new();
    for usage in to_read_back(settles, &ids) {
        let record = read_back(conn, usage).await?;
        read.insert((usage.org_id.clone(), usage.request_id.clone()), record);
    }
    settled_from(settles, ids, read)
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

/// A rollup key: the width's rank in `rollup::WIDTHS`, organisation, the
/// window's start, project, key, model, user, endpoint.
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

/// A rollup key and what it adds: input, cached and output tokens,
/// requests, cost.
pub(crate) type RollupSum<'a> = (RollupKey<'a>, [i64; 5]);

/// The new rows summed per rollup key (widest first, the lock order of
/// `rollup::record`), for one upsert per key.
pub(crate) fn rollup_sums<'a>(rows: &[&'a NewUsage]) -> Vec<RollupSum<'a>> {
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
    sums.into_iter().collect()
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
    let mut freed = Freed {
        deleted: HashSet::new(),
        holds: Vec::new(),
    };
    for (org, reqs) in by_org(keys) {
        for row in json::delete_reservations(conn, org, &reqs).await? {
            freed.add(org, &reqs, &row)?;
        }
    }
    Ok(freed)
}

/// `keys` (organisation, request id) grouped per organisation.
pub(crate) fn by_org<'w>(keys: &[(&'w str, &'w str)]) -> BTreeMap<&'w str, Vec<&'w str>> {
    let mut by_org: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (org, req) in keys {
        by_org.entry(org).or_default().push(req);
    }
    by_org
}

impl<'w> Freed<'w> {
    /// A deleted reservation's row (`reqs`: the ids asked for).
    fn add(&mut self, org: &'w str, reqs: &[&'w str], row: &AnyRow) -> Result<()> {
        let req: String = row.try_get("request_id")?;
        let amount: i64 = row.try_get("amount")?;
        let holds: String = row.try_get("budget_scopes")?;
        if let Some(req) = reqs.iter().copied().find(|r| *r == req.as_str()) {
            self.add_held(org, req, amount, &holds)?;
        }
        Ok(())
    }

    /// Reservation `req` of `org`, which held `amount` on `holds`
    /// (`scope:id:period,…`), is deleted.
    pub(crate) fn add_held(
        &mut self,
        org: &'w str,
        req: &'w str,
        amount: i64,
        holds: &str,
    ) -> Result<()> {
        self.deleted.insert((org, req));
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
    let mut found = Existing::default();
    for (org, reqs) in by_org(keys) {
        for row in json::existing(conn, org, &reqs).await? {
            found.add(org, &row)?;
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
    pub(crate) fn add(&mut self, org: &str, row: &AnyRow) -> Result<()> {
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
    let ids = budget_ids(scopes);
    if ids.iter().all(Vec::is_empty) {
        return Ok(Vec::new());
    }
    json::budgets(conn, &ids)
        .await?
        .iter()
        .map(budget_from_row)
        .collect()
}

/// The organisations, projects and keys of `scopes`, each once.
pub(crate) fn budget_ids<'a>(
    scopes: impl Iterator<Item = (&'a str, Option<&'a str>, Option<&'a str>)>,
) -> [Vec<&'a str>; 3] {
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
    ids
}

/// Creates the `wanted` counters that are missing, then reads them and the
/// `held` ones (what released reservations hold), locking them on
/// PostgreSQL in lock order (SQLite's batch holds the write lock).
pub(crate) async fn load_counters(
    conn: &mut AnyConnection,
    wanted: &[CounterKey],
    held: &[CounterKey],
) -> Result<BTreeMap<CounterKey, Counter>> {
    let wanted = distinct(wanted);
    if !wanted.is_empty() {
        json::create_counters(conn, &wanted).await?;
    }
    let all: BTreeSet<&CounterKey> = wanted.into_iter().chain(held).collect();
    if all.is_empty() {
        return Ok(BTreeMap::new());
    }
    let (ids, periods) = counter_lists(&all);
    let rows = json::read_counters(conn, &ids, &periods).await?;
    counters_from_rows(&rows, &all)
}

/// `keys`, each once, in order.
pub(crate) fn distinct(keys: &[CounterKey]) -> Vec<&CounterKey> {
    keys.iter().collect::<BTreeSet<_>>().into_iter().collect()
}

/// The scope ids and the periods of the counters `all`, each once.
pub(crate) fn counter_lists<'a>(all: &BTreeSet<&'a CounterKey>) -> (Vec<&'a str>, Vec<&'a str>) {
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
    (ids, periods)
}

/// The counters among `rows` that are in `all`.
pub(crate) fn counters_from_rows<R: Cells>(
    rows: &[R],
    all: &BTreeSet<&CounterKey>,
) -> Result<BTreeMap<CounterKey, Counter>> {
    let mut counters = BTreeMap::new();
    for row in rows {
        let key = counter_key(row)?;
        if all.contains(&key) {
            let soft: Option<i64> = row.cell("soft_notified")?;
            counters.insert(
                key,
                Counter {
                    spent: row.cell("spent")?,
                    reserved: row.cell("reserved")?,
                    soft_notified: soft.is_some(),
                    ..Counter::default()
                },
            );
        }
    }
    Ok(counters)
}

fn counter_key<R: Cells>(row: &R) -> Result<CounterKey> {
    let scope: String = row.cell("scope")?;
    Ok((
        scope
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("budget scope {scope:?}")))?,
        row.cell("scope_id")?,
        row.cell("period")?,
    ))
}

/// An admitted reservation: its write's index, the reservation, its holds
/// (`scope:id:period,…`) and their counters.
pub(crate) type Admitted<'w> = (usize, &'w NewReservation, String, Vec<CounterKey>);

/// One multi-row insert of the admitted reservations with their holds;
/// answers the ones written (a request id another instance reserved
/// meanwhile is not).
pub(crate) async fn insert_reservations(
    conn: &mut AnyConnection,
    admitted: &[Admitted<'_>],
) -> Result<HashSet<(String, String)>> {
    if admitted.is_empty() {
        Ok(HashSet::new())
    } else {
        json::insert_reservations(conn, admitted).await
    }
}

/// The month a reservation's holds belong to, or "" without holds.
pub(crate) fn hold_period(r: &NewReservation, holds: &str) -> String {
    if holds.is_empty() {
        String::new()
    } else {
        crate::budget::month_of(r.created_at)
    }
}

/// The counters this batch changed, in lock order.
pub(crate) fn changed_counters(
    counters: &BTreeMap<CounterKey, Counter>,
) -> Vec<(&CounterKey, &Counter)> {
    counters
        .iter()
        .filter(|(_, c)| c.spent_delta != 0 || c.reserved_delta != 0)
        .collect()
}

/// Each changed counter's change in one upsert (in lock order), then the
/// soft limits crossed marked as notified.
pub(crate) async fn write_counters(
    conn: &mut AnyConnection,
    counters: &BTreeMap<CounterKey, Counter>,
) -> Result<()> {
    let changed = changed_counters(counters);
    if !changed.is_empty() {
        json::add_to_counters(conn, &changed).await?;
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
