//! The SQLite form of a set-based metering batch (`batch_set`): the same
//! statements, sent as scripts of several statements each
//! (`batch_sql::values::Script`), so that a batch costs two hops to sqlx's
//! connection thread (three with budgets) instead of one per statement
//! plus its begin and commit. Each hop waits for that thread and then for
//! the writer's task to be scheduled again, which on a busy machine was
//! most of a batch's time (docs/PERFORMANCE.md).
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
//!    the counters' changes, soft limits marked, `COMMIT`.
//!
//! The inserts have no `ON CONFLICT` clause: a ledger row or reservation
//! the reads missed would fail its statement, and a failed statement stops
//! the script before its `COMMIT`. On any error the transaction is rolled
//! back (the connection closed if that fails too, or if the batch is
//! dropped midway) and `Store::write_batch` runs the writes one at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Row};

use crate::batch::{LedgerWrite, LedgerWritten};
use crate::batch_set::{admit, wanted_counters, Admission, CounterKey, Sorted};
use crate::batch_sql::values::{self, Script};
use crate::batch_sql::{
    answer_progress, budget_ids, by_org, changed_counters, counter_lists, counters_from_rows,
    distinct, first_settlements, latest_progress, pairs, rollup_sums, settled, Freed,
};
use crate::budget::{budget_from_row, Budget};
use crate::{now_ms, NewUsage, Result};

/// A connection that may be inside a batch's transaction: closed when
/// dropped unless the batch ended (committed or rolled back), since
/// closing a SQLite connection rolls back what it left open.
struct Batch {
    conn: Option<PoolConnection<Any>>,
    ended: bool,
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let (Some(conn), false) = (self.conn.as_mut(), self.ended) {
            conn.close_on_drop();
        }
    }
}

/// Runs the batch `writes` in one transaction on `conn`; an error means
/// nothing of it was written. Hands `conn` back unless it is closed (its
/// transaction could not be ended).
pub(crate) async fn run(
    conn: PoolConnection<Any>,
    writes: &[LedgerWrite],
) -> (
    Result<Vec<Result<LedgerWritten>>>,
    Option<PoolConnection<Any>>,
) {
    let mut batch = Batch {
        conn: Some(conn),
        ended: false,
    };
    let Some(conn) = batch.conn.as_mut() else {
        return (
            Err(crate::StoreError::Corrupt("no connection".into())),
            None,
        );
    };
    let outcome = apply(conn, writes, Sorted::of(writes)).await;
    batch.ended = match &outcome {
        Ok(_) => true,
        // Ended already if the error was the commit's own (SQLite then
        // rolled back): a second rollback fails, and the connection is
        // closed, which costs nothing more.
        Err(_) => sqlx::query("ROLLBACK").execute(&mut **conn).await.is_ok(),
    };
    let kept = if batch.ended { batch.conn.take() } else { None };
    (outcome, kept)
}

/// Runs the batch `writes` (sorted: `sorted`) on `conn`: begins, writes
/// and commits.
async fn apply<'w>(
    conn: &mut AnyConnection,
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
    let read = reads.run(conn).await?;
    let mut reserved: HashMap<(String, String), (i64, String)> = HashMap::new();
    let mut billed: HashSet<(String, String)> = HashSet::new();
    for (org, at) in &state_at {
        for row in at.iter().flat_map(|&at| &read[at]) {
            let tab: String = row.try_get(0)?;
            let key = ((*org).to_owned(), row.try_get::<String, _>(1)?);
            if tab == "r" {
                reserved.insert(key, (row.try_get(2)?, row.try_get(3)?));
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
        counters_from_rows(&script.run(conn).await?[at], &all)?
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
    script.plain("COMMIT");
    let mut wrote = script.run(conn).await?;
    let mut take = |at: &[usize]| -> Vec<sqlx::any::AnyRow> {
        at.iter()
            .flat_map(|&i| std::mem::take(&mut wrote[i]))
            .collect()
    };

    // Committed: every insert was as the reads predicted (a conflict
    // would have failed it); deletions cannot differ under the write lock.
    let mut ids: HashMap<(String, String), i64> = HashMap::new();
    for row in take(&ledger_at) {
        let key = (row.try_get::<String, _>(1)?, row.try_get::<String, _>(2)?);
        ids.insert(key, row.try_get::<i64, _>(0)?);
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
            "a committed metering batch wrote other than it read"
        );
    }

    for (i, ..) in &lasting {
        sorted.out[*i] = Some(Ok(LedgerWritten::Reserved));
    }
    answer_progress(writes, &sorted.progress, &written, &mut sorted.out);
    sorted.answer_releases(&ended, &freed.deleted);
    for s in settled(conn, &sorted.settles, ids).await? {
        let notices = reached.remove(&s.index).unwrap_or_default();
        sorted.out[s.index] = Some(Ok(LedgerWritten::Settled(Box::new(s.recorded), notices)));
    }
    sorted.answers()
}
