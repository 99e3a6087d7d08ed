//! The SQLite form of a set-based metering batch (`batch_set`): the same
//! statements, run as two scripts (three when a budget applies:
//! `batch_sql::values::Script`) and a `COMMIT` on the metering writer's
//! own connection (`sqlite_raw`), on its own thread (`ledger_thread`): no
//! hop to another thread inside a batch.
//!
//! What makes the order possible: the batch begins `IMMEDIATE`, so it holds
//! SQLite's one write lock from its first read, and nothing it read can
//! change before it commits. So:
//!
//! 1. **begin and reads**: `BEGIN IMMEDIATE`, then per organisation one
//!    read of every request id the batch names (reservations with what
//!    they hold, and ledger rows), and the budgets of every scope it
//!    touches;
//! 2. **counters** (only when a budget applies or a deleted reservation
//!    held one): missing counters created, then all read;
//! 3. in memory: which reservations are refused (id in use), which
//!    settlements create a row (the first of a request id not yet in the
//!    ledger), what the deleted reservations held, then admission exactly
//!    as on PostgreSQL (`batch_set::admit`);
//! 4. **writes and commit**: the new ledger rows, their rollups, the
//!    reservations deleted, the admitted ones inserted, progress records,
//!    the counters' changes, soft limits marked; the rows of retried
//!    settlements read back; `COMMIT`.
//!
//! The inserts have no `ON CONFLICT` clause: a ledger row or reservation
//! the reads missed would fail its statement, and a failed statement stops
//! the script before its `COMMIT`. On any error the transaction is rolled
//! back (the connection closed if that fails too) and the writer runs the
//! writes one at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::batch::{LedgerWrite, LedgerWritten};
use crate::batch_set::{admit, wanted_counters, Admission, CounterKey, Sorted};
use crate::batch_sql::values::{self, Script};
use crate::batch_sql::{
    answer_progress, budget_ids, by_org, changed_counters, counter_lists, counters_from_rows,
    distinct, first_settlements, latest_progress, pairs, rollup_sums, settled_from, to_read_back,
    Freed,
};
use crate::budget::{budget_from_row, Budget};
use crate::ledger::{usage_from_row, USAGE_COLUMNS};
use crate::sqlite_raw::{Bind, Cells, RawConn, RawRow};
use crate::{now_ms, NewUsage, Result, StoreError, UsageRecord};

/// Runs the batch `writes` in one transaction on `conn`; an error means
/// nothing of it was written. The second answer says whether `conn` is
/// still fit to use (false when its transaction could not be ended: it is
/// to be closed, which rolls back).
pub(crate) fn run(
    conn: &mut RawConn,
    writes: &[LedgerWrite],
) -> (Result<Vec<Result<LedgerWritten>>>, bool) {
    let outcome = apply(conn, writes, Sorted::of(writes));
    let fit = match &outcome {
        Ok(_) => !conn.in_transaction(),
        // Ended already if the error was the commit's own (SQLite then
        // rolled back).
        Err(_) => !conn.in_transaction() || conn.exec("ROLLBACK").is_ok(),
    };
    (outcome, fit)
}

/// Runs the batch `writes` (sorted: `sorted`) on `conn`: begins, writes
/// and commits.
fn apply<'w>(
    conn: &mut RawConn,
    writes: &'w [LedgerWrite],
    mut sorted: Sorted<'w>,
) -> Result<Vec<Result<LedgerWritten>>> {
    // 1. Reads: the state of every request id named, and the budgets.
    let first = first_settlements(&sorted.settles);
    let keys: BTreeSet<(&str, &str)> = sorted
        .candidates
        .iter()
        .map(|(_, r)| (r.org_id.as_str(), r.request_id.as_str()))
        .chain(sorted.ender.keys().copied())
        .collect();
    let keys: Vec<(&str, &str)> = keys.into_iter().collect();
    let mut reads = Script::default();
    reads.plain("BEGIN IMMEDIATE");
    let mut state_at = Vec::new();
    for (org, reqs) in by_org(&keys) {
        state_at.push((org, values::existing(&mut reads, org, &reqs)));
    }
    let ids = budget_ids(
        first
            .iter()
            .map(|u| {
                (
                    u.org_id.as_str(),
                    u.project_id.as_deref(),
                    u.api_key_id.as_deref(),
                )
            })
            .chain(sorted.candidates.iter().map(|(_, r)| {
                (
                    r.org_id.as_str(),
                    r.project_id.as_deref(),
                    r.api_key_id.as_deref(),
                )
            })),
    );
    let budgets_at = (!ids.iter().all(Vec::is_empty)).then(|| values::budgets(&mut reads, &ids));
    let read = reads.run(conn)?;
    let mut reserved: HashMap<(String, String), (i64, String)> = HashMap::new();
    let mut billed: HashSet<(String, String)> = HashSet::new();
    for (org, at) in &state_at {
        for row in at.iter().flat_map(|&at| &read[at]) {
            let tab: String = row.cell(0)?;
            let key = ((*org).to_owned(), row.cell::<String>(1)?);
            if tab == "r" {
                reserved.insert(key, (row.cell(2)?, row.cell(3)?));
            } else {
                billed.insert(key);
            }
        }
    }
    let budgets: Vec<Budget> = match budgets_at {
        Some(at) => read[at]
            .iter()
            .map(budget_from_row)
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };

    // What the reads say: ids in use refused, reservations deleted (and
    // what they held), the settlements that create a row.
    sorted.refuse_used(|k| reserved.contains_key(k), |k| billed.contains(k));
    let mut freed = Freed {
        deleted: HashSet::new(),
        holds: Vec::new(),
    };
    for (org, req) in sorted.ended_in_db() {
        if let Some((amount, holds)) = reserved.get(&(org.to_owned(), req.to_owned())) {
            freed.add_held(org, req, *amount, holds)?;
        }
    }
    let mut seen = HashSet::new();
    let spenders: Vec<(usize, &NewUsage)> = sorted
        .settles
        .iter()
        .filter(|(_, u)| {
            seen.insert((u.org_id.as_str(), u.request_id.as_str()))
                && !billed.contains(&(u.org_id.clone(), u.request_id.clone()))
        })
        .copied()
        .collect();
    let new_rows: Vec<&NewUsage> = spenders.iter().map(|(_, u)| *u).collect();

    // 2. Counters: created if missing, then read.
    let wanted = wanted_counters(&budgets, &spenders, &sorted.candidates);
    let wanted = distinct(&wanted);
    let held: Vec<CounterKey> = freed.holds.iter().map(|(key, _)| key.clone()).collect();
    let all: BTreeSet<&CounterKey> = wanted.iter().copied().chain(&held).collect();
    let mut counters = if all.is_empty() {
        BTreeMap::new()
    } else {
        let mut script = Script::default();
        values::create_counters(&mut script, &wanted);
        let (ids, periods) = counter_lists(&all);
        let at = values::read_counters(&mut script, &ids, &periods);
        counters_from_rows(&script.run(conn)?[at], &all)?
    };

    // 3. Admission, in memory.
    let Admission {
        lasting,
        ended,
        mut reached,
    } = admit(
        &mut sorted,
        &budgets,
        &mut counters,
        &freed.holds,
        &spenders,
    )?;

    // 4. Writes.
    let mut script = Script::default();
    let ledger_at = values::insert_ledger(&mut script, &new_rows);
    let sums = rollup_sums(&new_rows);
    values::upsert_rollups(&mut script, &sums);
    let deleted: Vec<(&str, &str)> = freed.deleted.iter().copied().collect();
    let mut delete_at = Vec::new();
    for (org, reqs) in by_org(&deleted) {
        delete_at.extend(values::delete_reservations(&mut script, org, &reqs));
    }
    let periods = values::hold_periods(&lasting);
    let insert_at = values::insert_reservations(&mut script, &lasting, &periods);
    let progress = latest_progress(writes, &sorted.progress);
    let progress_at = values::progress(&mut script, &progress);
    let changed = changed_counters(&counters);
    values::add_to_counters(&mut script, &changed);
    let now = now_ms();
    for (key, _) in counters.iter().filter(|(_, c)| c.mark_soft) {
        values::mark_soft(&mut script, key, now);
    }
    let mut wrote = script.run(conn)?;
    let mut take = |at: &[usize]| -> Vec<RawRow> {
        at.iter()
            .flat_map(|&i| std::mem::take(&mut wrote[i]))
            .collect()
    };

    // Every insert was as the reads predicted (a conflict would have
    // failed it); deletions cannot differ under the write lock.
    let mut ids: HashMap<(String, String), i64> = HashMap::new();
    for row in take(&ledger_at) {
        let key = (row.cell::<String>(1)?, row.cell::<String>(2)?);
        ids.insert(key, row.cell::<i64>(0)?);
    }
    let removed = take(&delete_at).len();
    let inserted = take(&insert_at).len();
    let written = pairs(take(&progress_at))?;
    if ids.len() != new_rows.len() || removed != deleted.len() || inserted != lasting.len() {
        tracing::error!(
            ledger_rows = ids.len(),
            predicted = new_rows.len(),
            removed,
            deleted = deleted.len(),
            inserted,
            admitted = lasting.len(),
            "a metering batch wrote other than it read"
        );
    }
    // Retried settlements' rows, read back before the commit: an error
    // until then leaves nothing written, so the writes can run again.
    let read = read_back(conn, &sorted.settles, &ids)?;
    let settled = settled_from(&sorted.settles, ids, read)?;
    conn.run(&["COMMIT".to_owned()], &[])?;

    for (i, ..) in &lasting {
        sorted.out[*i] = Some(Ok(LedgerWritten::Reserved));
    }
    answer_progress(writes, &sorted.progress, &written, &mut sorted.out);
    sorted.answer_releases(&ended, &freed.deleted);
    for s in settled {
        let notices = reached.remove(&s.index).unwrap_or_default();
        sorted.out[s.index] = Some(Ok(LedgerWritten::Settled(Box::new(s.recorded), notices)));
    }
    sorted.answers()
}

/// The ledger rows of the settlements among `settles` that the batch did
/// not create (`ids`: those it did): retries of requests settled before.
fn read_back(
    conn: &mut RawConn,
    settles: &[(usize, &NewUsage)],
    ids: &HashMap<(String, String), i64>,
) -> Result<HashMap<(String, String), UsageRecord>> {
    let mut read = HashMap::new();
    let retried = to_read_back(settles, ids);
    if retried.is_empty() {
        return Ok(read);
    }
    let sql = [format!(
        "SELECT {USAGE_COLUMNS} FROM usage_ledger WHERE org_id = ? AND request_id = ?"
    )];
    for usage in retried {
        let binds = [Bind::Text(&usage.org_id), Bind::Text(&usage.request_id)];
        let rows = conn.run(&sql, &binds)?;
        let row = rows.first().and_then(|rows| rows.first()).ok_or_else(|| {
            StoreError::Corrupt(format!("no ledger row for {}", usage.request_id))
        })?;
        read.insert(
            (usage.org_id.clone(), usage.request_id.clone()),
            usage_from_row(row)?,
        );
    }
    Ok(read)
}
