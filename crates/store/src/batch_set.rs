//! The set-based form of a metering batch ([`crate::Store::write_batch`]):
//! a fixed number of statements per batch, however many writes it holds.
//!
//! One write at a time costs a reservation ~4 statements and a settlement
//! ~8, each a round trip to the database (or to sqlx's SQLite thread); the
//! writer serialises them, so statements per request set the ceiling. Here a
//! batch runs, in this order:
//!
//! 1. reservations: one read of the request ids already reserved or already
//!    in the ledger (both tables in one `UNION ALL`; refused, as before);
//! 2. settlements: one multi-row ledger insert (`ON CONFLICT DO NOTHING
//!    RETURNING`, so a row already there is a retry: read back, not
//!    rewritten), their rollups summed in memory and upserted once per key;
//! 3. settled and released reservations: one `DELETE … IN (…)` per
//!    organisation, returning what each held;
//! 4. budgets: read once for every scope the batch touches; their counters
//!    created if missing and read once (`FOR UPDATE` on PostgreSQL, in the
//!    one lock order org, project, key; on SQLite the batch began
//!    `IMMEDIATE`, holding the write lock);
//! 5. in memory, in order: released holds given back, settled costs spent
//!    (a soft limit crossed is reported by the settlement that crossed it),
//!    then each reservation admitted only if every budget of its scopes
//!    still has room for its worst case — the same test as the one-by-one
//!    `UPDATE … WHERE spent + reserved + amount <= hard_limit`, against
//!    counters this transaction has locked, so no concurrency can pass a
//!    hard limit;
//! 6. the admitted reservations: one multi-row insert with their holds;
//!    progress records: one `UPDATE … FROM (VALUES …)` (the latest record
//!    per request; none for a request this batch ends, see [`Sorted::of`]);
//!    the counters: one upsert of each counter's change.
//!
//! A refusal (budget, request id in use) is that write's own error; the
//! rest commit. Any database error fails the whole attempt, which the
//! caller rolls back and runs again one write at a time.
//!
//! This module owns what both databases share — the writes sorted
//! ([`Sorted`]), the counters wanted, admission in memory ([`admit`]) — and
//! PostgreSQL's order of statements ([`apply`]). SQLite runs the same
//! statements and the same admission in another order, as scripts of
//! several statements (`batch_sqlite`).

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::AnyConnection;

use crate::batch::{LedgerWrite, LedgerWritten};
use crate::batch_sql::{
    delete_reservations, existing, insert_reservations, insert_settlements, load_budgets,
    load_counters, write_counters, write_progress, Admitted,
};
use crate::budget::{refused, Budget, BudgetScope, SoftLimitReached};
use crate::ledger::check_usage;
use crate::{NewReservation, NewUsage, Result, StoreError, REQUEST_ID_IN_LEDGER};

/// A budget counter: scope, scope id, period (ordered as locks are taken).
pub(crate) type CounterKey = (BudgetScope, String, String);

/// A budget counter as read, and this batch's changes to it.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    pub(crate) spent: i64,
    pub(crate) reserved: i64,
    pub(crate) soft_notified: bool,
    pub(crate) spent_delta: i64,
    pub(crate) reserved_delta: i64,
    pub(crate) mark_soft: bool,
}

/// A batch's writes sorted by kind (by index into the batch), with the
/// answers already known (a write refused before any statement).
pub(crate) struct Sorted<'w> {
    pub(crate) out: Vec<Option<Result<LedgerWritten>>>,
    pub(crate) progress: Vec<usize>,
    pub(crate) settles: Vec<(usize, &'w NewUsage)>,
    pub(crate) releases: Vec<(usize, &'w str, &'w str)>,
    /// Reservations, a repeat within the batch refused already.
    pub(crate) candidates: Vec<(usize, &'w NewReservation)>,
    /// Which write ends each reservation a settlement or release names:
    /// the first one naming it.
    pub(crate) ender: HashMap<(&'w str, &'w str), usize>,
}

impl<'w> Sorted<'w> {
    pub(crate) fn of(writes: &'w [LedgerWrite]) -> Sorted<'w> {
        let mut out: Vec<Option<Result<LedgerWritten>>> = writes.iter().map(|_| None).collect();
        let (mut progress, mut settles, mut releases, mut reserves) =
            (vec![], vec![], vec![], vec![]);
        for (i, write) in writes.iter().enumerate() {
            match write {
                LedgerWrite::Reserve(r) if r.amount < 0 => {
                    out[i] = Some(Err(StoreError::InvalidRequest(
                        "negative reservation".into(),
                    )));
                }
                LedgerWrite::Reserve(r) => reserves.push((i, r)),
                LedgerWrite::Settle(u) => match check_usage(u) {
                    Ok(()) => settles.push((i, u)),
                    Err(err) => out[i] = Some(Err(err)),
                },
                LedgerWrite::Release(org, req) => {
                    releases.push((i, org.as_str(), req.as_str()));
                }
                LedgerWrite::Progress { .. } => progress.push(i),
            }
        }
        // Logically the batch runs reservations first, then progress
        // records, then settlements and releases (a write can only depend
        // on one answered before it was sent, i.e. in an earlier batch, or
        // on a reservation). The statements come in another order, so that
        // the counters are read once; a reservation settled or released in
        // its own batch is never inserted.
        let mut seen = HashSet::new();
        let mut candidates = Vec::new();
        for (i, r) in reserves {
            if seen.insert((r.org_id.as_str(), r.request_id.as_str())) {
                candidates.push((i, r));
            } else {
                out[i] = Some(Err(already_reserved()));
            }
        }
        let mut ends: Vec<(usize, &str, &str)> = settles
            .iter()
            .map(|(i, u)| (*i, u.org_id.as_str(), u.request_id.as_str()))
            .chain(releases.iter().copied())
            .collect();
        ends.sort_by_key(|(i, _, _)| *i);
        let mut ender: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, org, req) in &ends {
            ender.entry((*org, *req)).or_insert(*i);
        }
        // A progress record whose reservation this batch ends would update
        // nothing: the statements delete (or never insert) the reservation
        // before the progress update runs. It is answered as that update
        // would be (no row written), with no statement: with short answers
        // a request's first-token record and its settlement often share a
        // batch, and then the batch needs no progress update at all.
        progress.retain(|&i| match &writes[i] {
            LedgerWrite::Progress {
                org_id, request_id, ..
            } if ender.contains_key(&(org_id.as_str(), request_id.as_str())) => {
                out[i] = Some(Ok(LedgerWritten::Progressed(false)));
                false
            }
            _ => true,
        });
        Sorted {
            out,
            progress,
            settles,
            releases,
            candidates,
            ender,
        }
    }

    /// Refuses the candidates whose request id is `reserved` or `billed`
    /// already, keeping the rest.
    pub(crate) fn refuse_used(
        &mut self,
        reserved: impl Fn(&(String, String)) -> bool,
        billed: impl Fn(&(String, String)) -> bool,
    ) {
        let out = &mut self.out;
        self.candidates.retain(|(i, r)| {
            let key = (r.org_id.clone(), r.request_id.clone());
            if reserved(&key) {
                out[*i] = Some(Err(already_reserved()));
                false
            } else if billed(&key) {
                out[*i] = Some(Err(StoreError::Conflict(REQUEST_ID_IN_LEDGER.into())));
                false
            } else {
                true
            }
        });
    }

    /// The reservations settlements and releases end that are not taken in
    /// this batch (those are in the database).
    pub(crate) fn ended_in_db(&self) -> Vec<(&'w str, &'w str)> {
        let in_batch: HashSet<(&str, &str)> = self
            .candidates
            .iter()
            .map(|(_, r)| (r.org_id.as_str(), r.request_id.as_str()))
            .collect();
        self.ender
            .keys()
            .filter(|key| !in_batch.contains(*key))
            .copied()
            .collect()
    }

    /// Answers the releases: whether each ended a reservation (`deleted`:
    /// those deleted from the database).
    pub(crate) fn answer_releases(
        &mut self,
        ended: &HashMap<usize, bool>,
        deleted: &HashSet<(&str, &str)>,
    ) {
        for (i, org, req) in &self.releases {
            let ends_it = self.ender.get(&(*org, *req)) == Some(i)
                && (ended.contains_key(i) || deleted.contains(&(*org, *req)));
            self.out[*i] = Some(Ok(LedgerWritten::Released(ends_it)));
        }
    }

    /// The answers, every write answered.
    pub(crate) fn answers(self) -> Result<Vec<Result<LedgerWritten>>> {
        self.out
            .into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Corrupt("a batched write went unanswered".into())))
            .collect()
    }
}

/// The scopes (organisation, project, key) of the settlements that spend
/// and of the candidate reservations.
pub(crate) fn scopes<'a>(
    spenders: &'a [(usize, &'a NewUsage)],
    candidates: &'a [(usize, &'a NewReservation)],
) -> impl Iterator<Item = (&'a str, Option<&'a str>, Option<&'a str>)> {
    spenders
        .iter()
        .map(|(_, u)| {
            (
                u.org_id.as_str(),
                u.project_id.as_deref(),
                u.api_key_id.as_deref(),
            )
        })
        .chain(candidates.iter().map(|(_, r)| {
            (
                r.org_id.as_str(),
                r.project_id.as_deref(),
                r.api_key_id.as_deref(),
            )
        }))
}

/// The counters the spenders and candidates touch.
pub(crate) fn wanted_counters(
    budgets: &[Budget],
    spenders: &[(usize, &NewUsage)],
    candidates: &[(usize, &NewReservation)],
) -> Vec<CounterKey> {
    let mut wanted: Vec<CounterKey> = Vec::new();
    for (_, u) in spenders {
        for b in budgets_for(
            budgets,
            &u.org_id,
            u.project_id.as_deref(),
            u.api_key_id.as_deref(),
        ) {
            wanted.push(key_of(b, u.created_at));
        }
    }
    for (_, r) in candidates {
        for b in budgets_for(
            budgets,
            &r.org_id,
            r.project_id.as_deref(),
            r.api_key_id.as_deref(),
        ) {
            wanted.push(key_of(b, r.created_at));
        }
    }
    wanted
}

/// What admission came to: the reservations to insert, the ends of those
/// admitted and ended in the same batch, the soft limits each spender
/// reached.
pub(crate) struct Admission<'w> {
    pub(crate) lasting: Vec<Admitted<'w>>,
    pub(crate) ended: HashMap<usize, bool>,
    pub(crate) reached: HashMap<usize, Vec<SoftLimitReached>>,
}

/// In memory, in order: reservations admitted against the counters, holds
/// given back (`freed`), costs spent; the counters take the changes.
pub(crate) fn admit<'w>(
    sorted: &mut Sorted<'w>,
    budgets: &[Budget],
    counters: &mut BTreeMap<CounterKey, Counter>,
    freed: &[(CounterKey, i64)],
    spenders: &[(usize, &NewUsage)],
) -> Result<Admission<'w>> {
    let mut admitted: Vec<Admitted<'w>> = Vec::new();
    for (i, r) in &sorted.candidates {
        let mine = budgets_for(
            budgets,
            &r.org_id,
            r.project_id.as_deref(),
            r.api_key_id.as_deref(),
        );
        let mut refusal = None;
        for b in &mine {
            let key = key_of(b, r.created_at);
            let c = counters.get(&key).ok_or_else(missing_counter)?;
            let fits = b.hard_limit.is_none_or(|hard| {
                i128::from(c.spent) + i128::from(c.reserved) + i128::from(r.amount)
                    <= i128::from(hard)
            });
            if !fits {
                refusal = Some(refused(b, &key.2));
                break;
            }
        }
        if let Some(err) = refusal {
            sorted.out[*i] = Some(Err(err));
            continue;
        }
        let mut keys = Vec::with_capacity(mine.len());
        for b in &mine {
            let key = key_of(b, r.created_at);
            let c = counters.get_mut(&key).ok_or_else(missing_counter)?;
            c.reserved += r.amount;
            c.reserved_delta += r.amount;
            keys.push(key);
        }
        let holds = keys
            .iter()
            .map(|(scope, id, period)| format!("{}:{id}:{period}", scope.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        admitted.push((*i, *r, holds, keys));
    }
    // Admitted and ended in this batch: held, then given back at once.
    let mut ended: HashMap<usize, bool> = HashMap::new();
    let mut lasting = Vec::new();
    for entry in admitted {
        let (i, r, _, keys) = &entry;
        match sorted
            .ender
            .get(&(r.org_id.as_str(), r.request_id.as_str()))
        {
            Some(end) => {
                for key in keys {
                    if let Some(c) = counters.get_mut(key) {
                        c.reserved -= r.amount;
                        c.reserved_delta -= r.amount;
                    }
                }
                ended.insert(*end, true);
                sorted.out[*i] = Some(Ok(LedgerWritten::Reserved));
            }
            None => lasting.push(entry),
        }
    }
    for (key, amount) in freed {
        if let Some(c) = counters.get_mut(key) {
            c.reserved -= amount;
            c.reserved_delta -= amount;
        }
    }
    let mut reached: HashMap<usize, Vec<SoftLimitReached>> = HashMap::new();
    for (index, u) in spenders {
        for b in budgets_for(
            budgets,
            &u.org_id,
            u.project_id.as_deref(),
            u.api_key_id.as_deref(),
        ) {
            let key = key_of(b, u.created_at);
            let c = counters.get_mut(&key).ok_or_else(missing_counter)?;
            c.spent = c.spent.saturating_add(u.cost);
            c.spent_delta = c.spent_delta.saturating_add(u.cost);
            if let Some(soft) = b.soft_limit {
                if !c.soft_notified && c.spent >= soft {
                    c.soft_notified = true;
                    c.mark_soft = true;
                    reached.entry(*index).or_default().push(SoftLimitReached {
                        budget: (*b).clone(),
                        period: key.2.clone(),
                        spent: c.spent,
                    });
                }
            }
        }
    }
    Ok(Admission {
        lasting,
        ended,
        reached,
    })
}

/// Runs `writes` set-based on PostgreSQL connection `conn`, inside the
/// caller's transaction, one statement at a time in the order above
/// (SQLite's batch is `batch_sqlite`).
pub(crate) async fn apply(
    conn: &mut AnyConnection,
    writes: &[LedgerWrite],
) -> Result<Vec<Result<LedgerWritten>>> {
    let mut sorted = Sorted::of(writes);
    // Reservations: refuse ids reserved or billed already.
    let keys: Vec<(&str, &str)> = sorted
        .candidates
        .iter()
        .map(|(_, r)| (r.org_id.as_str(), r.request_id.as_str()))
        .collect();
    let found = existing(conn, &keys).await?;
    sorted.refuse_used(|k| found.reserved.contains(k), |k| found.billed.contains(k));

    let settled = insert_settlements(conn, &sorted.settles).await?;
    // Reservations to end: every settlement's and release's, once (the
    // first write naming it ends it).
    let from_db = sorted.ended_in_db();
    let freed = delete_reservations(conn, &from_db).await?;

    // Budgets and their counters, once for the batch.
    let spenders: Vec<(usize, &NewUsage)> = settled
        .iter()
        .filter(|s| s.recorded.created)
        .map(|s| (s.index, s.usage))
        .collect();
    let budgets = load_budgets(conn, scopes(&spenders, &sorted.candidates)).await?;
    let wanted = wanted_counters(&budgets, &spenders, &sorted.candidates);
    let held: Vec<CounterKey> = freed.holds.iter().map(|(key, _)| key.clone()).collect();
    let mut counters = load_counters(conn, &wanted, &held).await?;

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

    let inserted = insert_reservations(conn, &lasting).await?;
    for (i, r, _, keys) in &lasting {
        if inserted.contains(&(r.org_id.clone(), r.request_id.clone())) {
            sorted.out[*i] = Some(Ok(LedgerWritten::Reserved));
        } else {
            // Reserved meanwhile by another instance: no hold.
            for key in keys {
                if let Some(c) = counters.get_mut(key) {
                    c.reserved -= r.amount;
                    c.reserved_delta -= r.amount;
                }
            }
            sorted.out[*i] = Some(Err(already_reserved()));
        }
    }
    write_progress(conn, writes, &sorted.progress, &mut sorted.out).await?;
    write_counters(conn, &counters).await?;

    sorted.answer_releases(&ended, &freed.deleted);
    for s in settled {
        let notices = reached.remove(&s.index).unwrap_or_default();
        sorted.out[s.index] = Some(Ok(LedgerWritten::Settled(Box::new(s.recorded), notices)));
    }
    sorted.answers()
}

pub(crate) fn already_reserved() -> StoreError {
    StoreError::Conflict("request id already reserved".into())
}

fn missing_counter() -> StoreError {
    StoreError::Corrupt("a budget counter vanished within its batch".into())
}

/// The counter of budget `b` for a request started at `at_ms`.
fn key_of(b: &Budget, at_ms: i64) -> CounterKey {
    (b.scope, b.scope_id.clone(), b.kind.period(at_ms))
}

/// The budgets of a request's scopes, in lock order (org, project, key):
/// only the organisation's own.
fn budgets_for<'b>(
    budgets: &'b [Budget],
    org_id: &str,
    project_id: Option<&str>,
    api_key_id: Option<&str>,
) -> Vec<&'b Budget> {
    let mut mine: Vec<&Budget> = budgets
        .iter()
        .filter(|b| {
            b.org_id == org_id
                && match b.scope {
                    BudgetScope::Org => b.scope_id == org_id,
                    BudgetScope::Project => Some(b.scope_id.as_str()) == project_id,
                    BudgetScope::Key => Some(b.scope_id.as_str()) == api_key_id,
                }
        })
        .collect();
    mine.sort_by_key(|b| b.scope);
    mine
}
