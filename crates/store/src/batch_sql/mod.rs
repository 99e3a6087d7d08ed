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
//!   `VALUES`, `IN (…)` lists) with anonymous `?` parameters;
//! - [`json`]: PostgreSQL's, the rows as one JSON parameter in a fixed
//!   text, so sqlx keeps the statement prepared: one round trip each
//!   instead of two (sqlx prepares a statement it does not keep in a round
//!   trip of its own), and the ledger insert carries its rollups.

mod json;
mod values;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::batch::LedgerWrite;
use crate::batch::LedgerWritten;
use crate::batch_set::{Counter, CounterKey};
use crate::budget::{budget_from_row, Budget};
use crate::ledger::{usage_from_row, Recorded, UsageRecord, USAGE_COLUMNS};
use crate::{now_ms, NewReservation, NewUsage, Result, StoreError};

use values::Style;

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
    let written = if rows.is_empty() {
        HashSet::new()
    } else if style.pg() {
        json::progress(conn, &rows).await?
    } else {
        values::progress(conn, style, &rows).await?
    };
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

/// (organisation, request id) pairs of the rows a statement returned, as
/// its first two columns.
fn pairs(rows: Vec<AnyRow>) -> Result<HashSet<(String, String)>> {
    rows.iter()
        .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?)))
        .collect()
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
    let mut ids = if first.is_empty() {
        HashMap::new()
    } else if style.pg() {
        json::insert_ledger_and_rollups(conn, &first).await?
    } else {
        values::insert_ledger(conn, style, &first).await?
    };
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
    if !style.pg() {
        upsert_rollups(conn, &rollups).await?;
    }
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
type RollupSum<'a> = (RollupKey<'a>, [i64; 5]);

/// The new rows summed per rollup key (widest first, the lock order of
/// `rollup::record`), one upsert per key.
async fn upsert_rollups(conn: &mut AnyConnection, rows: &[&NewUsage]) -> Result<()> {
    let style = Style::of(conn);
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
    let sums: Vec<RollupSum<'_>> = sums.into_iter().collect();
    values::upsert_rollups(conn, style, &sums).await
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
    let mut freed = Freed {
        deleted: HashSet::new(),
        holds: Vec::new(),
    };
    for (org, reqs) in by_org(keys) {
        let rows = if style.pg() {
            json::delete_reservations(conn, org, &reqs).await?
        } else {
            values::delete_reservations(conn, style, org, &reqs).await?
        };
        for row in rows {
            freed.add(org, &reqs, &row)?;
        }
    }
    Ok(freed)
}

/// `keys` (organisation, request id) grouped per organisation.
fn by_org<'w>(keys: &[(&'w str, &'w str)]) -> BTreeMap<&'w str, Vec<&'w str>> {
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
    let mut found = Existing::default();
    for (org, reqs) in by_org(keys) {
        let rows = if style.pg() {
            json::existing(conn, org, &reqs).await?
        } else {
            values::existing(conn, style, org, &reqs).await?
        };
        for row in rows {
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
    let rows = if style.pg() {
        json::budgets(conn, &ids).await?
    } else {
        values::budgets(conn, style, &ids).await?
    };
    rows.iter().map(budget_from_row).collect()
}

/// Creates the `wanted` counters that are missing, then reads them and the
/// `held` ones (what released reservations hold), locking them on
/// PostgreSQL in lock order (SQLite's batch holds the write lock).
pub(crate) async fn load_counters(
    conn: &mut AnyConnection,
    wanted: &[CounterKey],
    held: &[CounterKey],
) -> Result<BTreeMap<CounterKey, Counter>> {
    let style = Style::of(conn);
    let wanted: Vec<&CounterKey> = wanted.iter().collect::<BTreeSet<_>>().into_iter().collect();
    if style.pg() {
        if !wanted.is_empty() {
            json::create_counters(conn, &wanted).await?;
        }
    } else {
        values::create_counters(conn, style, &wanted).await?;
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
    let rows = if style.pg() {
        json::read_counters(conn, &ids, &periods).await?
    } else {
        values::read_counters(conn, style, &ids, &periods).await?
    };
    for row in rows {
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
    let style = Style::of(conn);
    if admitted.is_empty() {
        Ok(HashSet::new())
    } else if style.pg() {
        json::insert_reservations(conn, admitted).await
    } else {
        values::insert_reservations(conn, style, admitted).await
    }
}

/// The month a reservation's holds belong to, or "" without holds.
fn hold_period(r: &NewReservation, holds: &str) -> String {
    if holds.is_empty() {
        String::new()
    } else {
        crate::budget::month_of(r.created_at)
    }
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
    if style.pg() {
        if !changed.is_empty() {
            json::add_to_counters(conn, &changed).await?;
        }
    } else {
        values::add_to_counters(conn, style, &changed).await?;
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
