//! The batch statements whose rows are in their text: multi-row `VALUES`
//! inserts and upserts, `IN (…)` lists, `UPDATE … FROM (VALUES …)`, at most
//! [`CHUNK`] rows each, with anonymous `?` parameters ([`tuples`]):
//! SQLite's form (PostgreSQL's is `json`).
//!
//! Each function adds its statements to a [`Script`]: statements run in
//! order on the metering writer's own connection (`sqlite_raw`), whose
//! rows come back per statement (`batch_sqlite` runs a batch as three
//! scripts).

use super::{hold_period, Admitted, Latest, RollupSum, PROGRESS_SET, PROGRESS_WHERE};
use crate::batch_set::{Counter, CounterKey};
use crate::budget::BUDGET_COLUMNS;
use crate::sqlite_raw::{Bind, RawConn, RawRow};
use crate::{NewUsage, Result};

/// Rows per multi-row statement (SQLite allows 32,766 parameters; the
/// widest row here has 16).
const CHUNK: usize = 256;

/// `(?, ?, …), (…)`: `rows` rows of `cols` parameters, each followed by
/// `tail` (literal columns, e.g. `, 0, 0`). Parameters are anonymous: a
/// `$N` name costs SQLite a linear search per parameter, in its parser,
/// quadratic in a multi-row statement; they are bound in
/// the order they appear.
fn tuples(rows: usize, cols: usize, tail: &str) -> String {
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
            out.push('?');
        }
        out.push_str(tail);
        out.push(')');
    }
    out
}

/// `?, ?, …` (`n` of them).
fn list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Statements to run in order, their parameters bound in order.
#[derive(Default)]
pub(crate) struct Script<'a> {
    statements: Vec<String>,
    binds: Vec<Bind<'a>>,
}

impl<'a> Script<'a> {
    /// Adds statement `sql`; answers its position (for [`Script::run`]'s
    /// answer).
    fn statement(&mut self, sql: &str) -> usize {
        self.statements.push(sql.to_owned());
        self.statements.len() - 1
    }

    /// Adds statement `sql`, which takes no parameters (`BEGIN`, `COMMIT`).
    pub(crate) fn plain(&mut self, sql: &str) {
        self.statement(sql);
    }

    fn text(&mut self, value: &'a str) -> &mut Self {
        self.binds.push(Bind::Text(value));
        self
    }

    fn maybe_text(&mut self, value: Option<&'a str>) -> &mut Self {
        self.binds.push(Bind::MaybeText(value));
        self
    }

    fn int(&mut self, value: i64) -> &mut Self {
        self.binds.push(Bind::Int(value));
        self
    }

    /// Runs every statement in order on `conn`, the writer thread's own
    /// connection; answers each statement's rows. The first statement
    /// that fails ends the script with its error (those after it do not
    /// run).
    ///
    /// Each statement stays prepared on the connection by its text, which
    /// depends only on its row count: preparing — parsing and compiling an
    /// insert into a table with six indexes — was nearly half of a batch's
    /// time in SQLite (docs/PERFORMANCE.md).
    pub(crate) fn run(self, conn: &mut RawConn) -> Result<Vec<Vec<RawRow>>> {
        conn.run(&self.statements, &self.binds)
    }
}

/// The progress update of `rows`, returning the requests it wrote;
/// answers its statements' positions.
pub(crate) fn progress<'a>(
    script: &mut Script<'a>,
    rows: &[((&'a str, &'a str), Latest<'a>)],
) -> Vec<usize> {
    let mut at = Vec::new();
    for chunk in rows.chunks(CHUNK) {
        at.push(script.statement(&format!(
            "{PROGRESS_SET} FROM (VALUES {}) AS v {PROGRESS_WHERE}",
            tuples(chunk.len(), 8, "")
        )));
        for ((org, req), (p, served)) in chunk {
            script
                .text(org)
                .text(req)
                .int(p.prompt_tokens)
                .int(p.cached_tokens)
                .int(p.completion_tokens)
                .int(p.cost)
                .maybe_text(served.map(|(m, _)| m.as_str()))
                .maybe_text(served.map(|(_, b)| b.as_str()));
        }
    }
    at
}

/// The ledger rows of `first` (one per request, none in the ledger yet:
/// a conflict fails the statement), returning the new rows' id,
/// organisation and request id; answers its statements' positions.
pub(crate) fn insert_ledger<'a>(script: &mut Script<'a>, first: &[&'a NewUsage]) -> Vec<usize> {
    let mut at = Vec::new();
    for chunk in first.chunks(CHUNK) {
        at.push(script.statement(&format!(
            "INSERT INTO usage_ledger (request_id, org_id, project_id, api_key_id, user_id, \
             model, backend, prompt_tokens, cached_tokens, completion_tokens, cost, latency_ms, \
             status, finish_reason, created_at, endpoint) VALUES {} \
             RETURNING id, org_id, request_id",
            tuples(chunk.len(), 16, "")
        )));
        for u in chunk {
            script
                .text(&u.request_id)
                .text(&u.org_id)
                .maybe_text(u.project_id.as_deref())
                .maybe_text(u.api_key_id.as_deref())
                .maybe_text(u.user_id.as_deref())
                .text(&u.model)
                .text(&u.backend)
                .int(u.prompt_tokens)
                .int(u.cached_tokens)
                .int(u.completion_tokens)
                .int(u.cost)
                .int(u.latency_ms)
                .text(&u.status)
                .maybe_text(u.finish_reason.as_deref())
                .int(u.created_at)
                .text(&u.endpoint);
        }
    }
    at
}

/// One upsert per rollup key, adding its sums.
pub(crate) fn upsert_rollups<'a>(script: &mut Script<'a>, sums: &[RollupSum<'a>]) {
    for chunk in sums.chunks(CHUNK) {
        script.statement(&format!(
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
            tuples(chunk.len(), 13, "")
        ));
        for ((rank, org, start, project, key, model, user, endpoint), sum) in chunk {
            script
                .text(org)
                .int(crate::rollup::WIDTHS[*rank])
                .int(*start)
                .text(project)
                .text(key)
                .text(model)
                .text(user)
                .text(endpoint);
            for value in sum {
                script.int(*value);
            }
        }
    }
}

/// Deletes `org`'s reservations of `reqs`, returning their request ids;
/// answers its statements' positions.
pub(crate) fn delete_reservations<'a>(
    script: &mut Script<'a>,
    org: &'a str,
    reqs: &[&'a str],
) -> Vec<usize> {
    let mut at = Vec::new();
    for chunk in reqs.chunks(CHUNK) {
        at.push(script.statement(&format!(
            "DELETE FROM reservations WHERE org_id = ? AND request_id IN ({}) \
             RETURNING request_id",
            list(chunk.len())
        )));
        script.text(org);
        for req in chunk {
            script.text(req);
        }
    }
    at
}

/// `org`'s ids among `reqs` that are reserved (`'r'`, with the amount and
/// holds of the reservation) or billed (`'l'`): rows of tab, request id,
/// amount, holds; answers its statements' positions.
pub(crate) fn existing<'a>(script: &mut Script<'a>, org: &'a str, reqs: &[&'a str]) -> Vec<usize> {
    let mut at = Vec::new();
    for chunk in reqs.chunks(CHUNK) {
        let n = chunk.len();
        at.push(script.statement(&format!(
            "SELECT 'r' AS tab, request_id, amount, budget_scopes FROM reservations \
             WHERE org_id = ? AND request_id IN ({}) \
             UNION ALL SELECT 'l' AS tab, request_id, 0, '' FROM usage_ledger \
             WHERE org_id = ? AND request_id IN ({})",
            list(n),
            list(n)
        )));
        for _ in 0..2 {
            script.text(org);
            for req in chunk {
                script.text(req);
            }
        }
    }
    at
}

/// The budgets of the organisations, projects and keys in `ids`; answers
/// its statement's position.
pub(crate) fn budgets<'a>(script: &mut Script<'a>, ids: &[Vec<&'a str>; 3]) -> usize {
    let mut clauses = Vec::new();
    for (slot, name) in ["org", "project", "key"].iter().enumerate() {
        if !ids[slot].is_empty() {
            clauses.push(format!(
                "(scope = '{name}' AND scope_id IN ({}))",
                list(ids[slot].len())
            ));
        }
    }
    let at = script.statement(&format!(
        "SELECT {BUDGET_COLUMNS} FROM budgets WHERE {}",
        clauses.join(" OR ")
    ));
    for id in ids.iter().flatten() {
        script.text(id);
    }
    at
}

/// Creates the counters of `wanted` that are missing, at zero.
pub(crate) fn create_counters<'a>(script: &mut Script<'a>, wanted: &[&'a CounterKey]) {
    for chunk in wanted.chunks(CHUNK) {
        script.statement(&format!(
            "INSERT INTO budget_counters (scope, scope_id, period, spent, reserved) VALUES {} \
             ON CONFLICT (scope, scope_id, period) DO NOTHING",
            tuples(chunk.len(), 3, ", 0, 0")
        ));
        for (scope, id, period) in chunk {
            script.text(scope.as_str()).text(id).text(period);
        }
    }
}

/// The counters of any scope id in `ids` and period in `periods`, in lock
/// order (org, project, key); answers its statement's position.
pub(crate) fn read_counters<'a>(
    script: &mut Script<'a>,
    ids: &[&'a str],
    periods: &[&'a str],
) -> usize {
    let at = script.statement(&format!(
        "SELECT scope, scope_id, period, spent, reserved, soft_notified FROM budget_counters \
         WHERE scope_id IN ({}) AND period IN ({}) \
         ORDER BY CASE scope WHEN 'org' THEN 0 WHEN 'project' THEN 1 ELSE 2 END, \
         scope_id, period",
        list(ids.len()),
        list(periods.len())
    ));
    for id in ids {
        script.text(id);
    }
    for period in periods {
        script.text(period);
    }
    at
}

/// One multi-row insert of the admitted reservations with their holds (none
/// reserved yet: a conflict fails the statement), returning the
/// organisation and request id of each; answers its statements' positions.
pub(crate) fn insert_reservations<'a>(
    script: &mut Script<'a>,
    admitted: &'a [Admitted<'a>],
    periods: &'a [String],
) -> Vec<usize> {
    let mut at = Vec::new();
    for (chunk, periods) in admitted.chunks(CHUNK).zip(periods.chunks(CHUNK)) {
        at.push(script.statement(&format!(
            "INSERT INTO reservations (request_id, org_id, project_id, api_key_id, user_id, \
             amount, created_at, model, backend, owner, endpoint, budget_scopes, period, \
             prompt_tokens, cached_tokens, completion_tokens, cost) VALUES {} \
             RETURNING org_id, request_id",
            tuples(chunk.len(), 13, ", 0, 0, 0, 0")
        )));
        for ((_, r, holds, _), period) in chunk.iter().zip(periods) {
            script
                .text(&r.request_id)
                .text(&r.org_id)
                .maybe_text(r.project_id.as_deref())
                .maybe_text(r.api_key_id.as_deref())
                .maybe_text(r.user_id.as_deref())
                .int(r.amount)
                .int(r.created_at)
                .maybe_text(r.model.as_deref())
                .maybe_text(r.backend.as_deref())
                .maybe_text(r.owner.as_deref())
                .text(&r.endpoint)
                .text(holds)
                .text(period);
        }
    }
    at
}

/// The periods the holds of `admitted` belong to (for
/// [`insert_reservations`]).
pub(crate) fn hold_periods(admitted: &[Admitted<'_>]) -> Vec<String> {
    admitted
        .iter()
        .map(|(_, r, holds, _)| hold_period(r, holds))
        .collect()
}

/// Each counter's change in one upsert (in the given order: lock order).
pub(crate) fn add_to_counters<'a>(
    script: &mut Script<'a>,
    changed: &[(&'a CounterKey, &'a Counter)],
) {
    for chunk in changed.chunks(CHUNK) {
        script.statement(&format!(
            "INSERT INTO budget_counters (scope, scope_id, period, spent, reserved) VALUES {} \
             ON CONFLICT (scope, scope_id, period) DO UPDATE SET \
             spent = budget_counters.spent + excluded.spent, \
             reserved = budget_counters.reserved + excluded.reserved",
            tuples(chunk.len(), 5, "")
        ));
        for ((scope, id, period), c) in chunk {
            script
                .text(scope.as_str())
                .text(id)
                .text(period)
                .int(c.spent_delta)
                .int(c.reserved_delta);
        }
    }
}

/// Marks the soft limit of counter `key` notified at `at`.
pub(crate) fn mark_soft<'a>(script: &mut Script<'a>, key: &'a CounterKey, at: i64) {
    let (scope, id, period) = key;
    script.statement(
        "UPDATE budget_counters SET soft_notified = ? \
         WHERE scope = ? AND scope_id = ? AND period = ? AND soft_notified IS NULL",
    );
    script.int(at).text(scope.as_str()).text(id).text(period);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_anonymous() {
        assert_eq!(tuples(2, 2, ", 0"), "(?, ?, 0), (?, ?, 0)");
        assert_eq!(tuples(1, 3, ""), "(?, ?, ?)");
        assert_eq!(list(2), "?, ?");
    }
}
