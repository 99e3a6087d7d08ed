//! The installation's default organisation and project ([`DEFAULT_ORG`],
//! [`DEFAULT_PROJECT`]), and the fold of the old `local` organisation into
//! it ([`Store::fold_local_org`]).
//!
//! Before the names were unified, the command line put keys in an
//! organisation called `default` while the server's keyless and admin-key
//! tenants and the web app's sign-up used one called `local`. Opening a store
//! folds every `local` organisation into the default one, in one
//! transaction: a lone `local` is renamed (its id, and so every row pointing
//! at it, stays); beside an existing `default`, every row of the `local`
//! one moves to the default one's id, collisions merged as
//! [`Store::fold_local_org`] describes, and the `local` organisation is
//! deleted. When there is nothing to fold it costs one read of the
//! (small) organisations table and takes no lock.
//!
//! It runs from [`Store::connect`] rather than as a migration: it must
//! branch on what exists (rename, merge or nothing), which SQLite's SQL
//! cannot express; it has to lift the ledger's and the audit log's
//! refusal triggers, which differ between the two databases; and running on
//! every start also folds a `local` organisation that an older binary
//! sharing the database creates after the upgrade.

use serde_json::json;
use sqlx::{AnyConnection, Executor, Row};

use crate::budget::{budget_from_row, month_bounds, month_of, Budget, BudgetKind, BUDGET_COLUMNS};
use crate::{now_ms, Backend, ErrorKind, Result, Store, StoreError};

/// The name of the installation's default organisation: where the command
/// line puts keys when no organisation is named, the tenant of the keyless
/// server and of the admin key, and the organisation the web app signs
/// people up to. Names are not unique; the oldest organisation with this
/// name is the default one (see [`Store::find_org_by_name`]).
pub const DEFAULT_ORG: &str = "default";

/// The name of the default organisation's default project: where keys go
/// when no project is named, and whose usage the keyless server bills.
pub const DEFAULT_PROJECT: &str = "default";

/// The default organisation's name before the names were unified.
const LOCAL_ORG: &str = "local";

/// Every table with an `org_id` column; the fold moves each one's rows.
/// A table it does not know makes the fold fail before it changes anything
/// (a new table must be taught to it, not dropped by the cascade).
const ORG_TABLES: [&str; 15] = [
    "memberships",
    "invites",
    "signup_requests",
    "projects",
    "api_keys",
    "usage_ledger",
    "usage_rollup",
    "reservations",
    "audit_log",
    "budgets",
    "plan_assignments",
    "sessions",
    "conversations",
    "responses",
    "stored_chat_completions",
];

/// How often a fold that found the database busy is tried again (each try
/// waits for SQLite's busy timeout, or PostgreSQL's deadlock detection).
const FOLD_TRIES: u32 = 6;

/// What [`Store::fold_local_org`] did; empty when there was no `local`
/// organisation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalOrgFold {
    /// The default organisation's id, when a `local` one was renamed to it
    /// or merged into it.
    pub default_org_id: Option<String>,
    /// The `local` organisation renamed to [`DEFAULT_ORG`], there being no
    /// default one.
    pub renamed: Option<String>,
    /// The `local` organisations merged into the default one and deleted.
    pub merged: Vec<String>,
    /// Ledger rows and reservations of merged organisations whose request id
    /// the default organisation already had, and which therefore got the
    /// suffix `~<merged organisation id>`.
    pub renamed_request_ids: u64,
}

impl LocalOrgFold {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        self.renamed.is_some() || !self.merged.is_empty()
    }
}

/// The SQL rank of a role, lowest for the most powerful (as [`crate::Role`]
/// orders them), for keeping the higher of two memberships.
fn role_rank(column: &str) -> String {
    format!(
        "(CASE {column} WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 WHEN 'member' THEN 2 ELSE 3 END)"
    )
}

/// The org-scope budget of an organisation, if it has one.
async fn org_budget(conn: &mut AnyConnection, org_id: &str) -> Result<Option<Budget>> {
    let sql = format!("SELECT {BUDGET_COLUMNS} FROM budgets WHERE scope = 'org' AND scope_id = $1");
    let row = sqlx::query(&sql)
        .bind(org_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(budget_from_row).transpose()
}

/// Whether the organisation's org-scope counter of `period` exists.
async fn has_org_counter(conn: &mut AnyConnection, org_id: &str, period: &str) -> Result<bool> {
    let found: Option<String> = sqlx::query_scalar(
        "SELECT period FROM budget_counters WHERE scope = 'org' AND scope_id = $1 AND period = $2",
    )
    .bind(org_id)
    .bind(period)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

/// The organisation's ledger spend in `[start, end)`.
async fn ledger_spend(conn: &mut AnyConnection, org_id: &str, start: i64, end: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(cost), 0) AS BIGINT) FROM usage_ledger \
         WHERE org_id = $1 AND created_at >= $2 AND created_at < $3",
    )
    .bind(org_id)
    .bind(start)
    .bind(end)
    .fetch_one(&mut *conn)
    .await?)
}

/// A budget as audit-log JSON.
fn budget_json(budget: &Budget) -> serde_json::Value {
    json!({
        "scope": budget.scope.as_str(),
        "scope_id": budget.scope_id,
        "kind": budget.kind.as_str(),
        "hard_limit": budget.hard_limit,
        "soft_limit": budget.soft_limit,
    })
}

/// Appends a `system` audit entry inside the fold's transaction.
async fn audit(
    conn: &mut AnyConnection,
    org_id: &str,
    action: &str,
    target: &str,
    before: serde_json::Value,
    after: serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (org_id, actor, action, target, before_json, after_json, \
         created_at) VALUES ($1, 'system', $2, $3, $4, $5, $6)",
    )
    .bind(org_id)
    .bind(action)
    .bind(target)
    .bind(before.to_string())
    .bind(after.to_string())
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Fails when a table has an `org_id` column the fold does not move.
async fn check_org_tables(conn: &mut AnyConnection, backend: Backend) -> Result<()> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND p.name = 'org_id'"
        }
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND column_name = 'org_id'"
        }
    };
    let tables: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut *conn).await?;
    match tables.iter().find(|t| !ORG_TABLES.contains(&t.as_str())) {
        Some(unknown) => Err(StoreError::Corrupt(format!(
            "cannot fold the {LOCAL_ORG:?} organisation: table {unknown} has an org_id \
             the fold does not move"
        ))),
        None => Ok(()),
    }
}

/// The refusal triggers of the ledger and the audit log, lifted for the
/// fold's transaction (rolling back restores them too).
enum Lifted {
    /// SQLite has no `DISABLE TRIGGER`: the triggers' own `CREATE` text, to
    /// run again after they were dropped.
    Sqlite(Vec<String>),
    /// PostgreSQL: `DISABLE TRIGGER USER` on both tables.
    Postgres,
}

async fn lift_triggers(conn: &mut AnyConnection, backend: Backend) -> Result<Lifted> {
    match backend {
        Backend::Sqlite => {
            let rows = sqlx::query(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' \
                 AND tbl_name IN ('usage_ledger', 'audit_log') ORDER BY name",
            )
            .fetch_all(&mut *conn)
            .await?;
            let mut creates = Vec::with_capacity(rows.len());
            for row in &rows {
                let name: String = row.try_get("name")?;
                creates.push(row.try_get("sql")?);
                let drop = format!("DROP TRIGGER \"{}\"", name.replace('"', "\"\""));
                (&mut *conn).execute(drop.as_str()).await?;
            }
            Ok(Lifted::Sqlite(creates))
        }
        Backend::Postgres => {
            (&mut *conn)
                .execute(
                    "ALTER TABLE usage_ledger DISABLE TRIGGER USER; \
                 ALTER TABLE audit_log DISABLE TRIGGER USER",
                )
                .await?;
            Ok(Lifted::Postgres)
        }
    }
}

async fn restore_triggers(conn: &mut AnyConnection, lifted: Lifted) -> Result<()> {
    match lifted {
        Lifted::Sqlite(creates) => {
            for create in creates {
                (&mut *conn).execute(create.as_str()).await?;
            }
        }
        Lifted::Postgres => {
            (&mut *conn)
                .execute(
                    "ALTER TABLE usage_ledger ENABLE TRIGGER USER; \
                 ALTER TABLE audit_log ENABLE TRIGGER USER",
                )
                .await?;
        }
    }
    Ok(())
}

/// Runs `sql` with `$1` = the `local` organisation's id and `$2` = the
/// default one's; returns the rows it touched.
async fn run(conn: &mut AnyConnection, sql: &str, local: &str, default: &str) -> Result<u64> {
    let done = sqlx::query(sql)
        .bind(local)
        .bind(default)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// Moves every row of organisation `local` to `default` and deletes
/// `local`; returns how many request ids got a suffix.
async fn merge(conn: &mut AnyConnection, local: &str, default: &str) -> Result<u64> {
    // What decides the org-scope budget, read before anything moves.
    let local_budget = org_budget(conn, local).await?;
    let default_budget = org_budget(conn, default).await?;
    let month = month_of(now_ms());
    let (month_start, month_end) =
        month_bounds(&month).ok_or_else(|| StoreError::Corrupt(format!("month {month:?}")))?;
    let mut month_backfill = 0;
    let kept_kind = default_budget
        .as_ref()
        .or(local_budget.as_ref())
        .map(|b| b.kind);
    if kept_kind == Some(BudgetKind::Monthly) {
        // Like a new monthly budget, the kept one counts the month's spend
        // of an organisation that had no monthly budget and no counter.
        for (org, budget) in [(local, &local_budget), (default, &default_budget)] {
            let monthly = budget
                .as_ref()
                .is_some_and(|b| b.kind == BudgetKind::Monthly);
            if !monthly && !has_org_counter(conn, org, &month).await? {
                month_backfill += ledger_spend(conn, org, month_start, month_end).await?;
            }
        }
    }

    // Request ids are unique per organisation: a merged row whose id the
    // default organisation has (in its ledger or its open reservations)
    // gets a suffix naming the organisation it came from, and so does the
    // chat message that names it.
    let suffix = format!("~{local}");
    let taken = "(SELECT request_id FROM usage_ledger WHERE org_id = $2 \
                 UNION SELECT request_id FROM reservations WHERE org_id = $2)";
    let messages = format!(
        "UPDATE conversation_messages SET request_id = request_id || $3 \
         WHERE conversation_id IN (SELECT id FROM conversations WHERE org_id = $1) \
         AND request_id IN {taken}"
    );
    let ledger = format!(
        "UPDATE usage_ledger SET request_id = request_id || $3 \
         WHERE org_id = $1 AND request_id IN {taken}"
    );
    let reservations = format!(
        "UPDATE reservations SET request_id = request_id || $3 \
         WHERE org_id = $1 AND request_id IN {taken}"
    );
    let mut renamed = 0;
    for (sql, counts) in [(messages, false), (ledger, true), (reservations, true)] {
        let done = sqlx::query(&sql)
            .bind(local)
            .bind(default)
            .bind(&suffix)
            .execute(&mut *conn)
            .await?;
        if counts {
            renamed += done.rows_affected();
        }
    }

    // Rows with no key of their own beyond their id move as they are.
    for table in [
        "usage_ledger",
        "projects",
        "api_keys",
        "sessions",
        "conversations",
        "invites",
        "audit_log",
        "responses",
        "stored_chat_completions",
    ] {
        let sql = format!("UPDATE {table} SET org_id = $2 WHERE org_id = $1");
        run(conn, &sql, local, default).await?;
    }
    // Open reservations, with their holds on the org-scope counters, which
    // move to the default organisation's below.
    sqlx::query(
        "UPDATE reservations SET org_id = $2, budget_scopes = REPLACE(budget_scopes, $3, $4) \
         WHERE org_id = $1",
    )
    .bind(local)
    .bind(default)
    .bind(format!("org:{local}:"))
    .bind(format!("org:{default}:"))
    .execute(&mut *conn)
    .await?;

    // Rollup buckets that both organisations have are added together.
    run(
        conn,
        "INSERT INTO usage_rollup (org_id, width_ms, start_ms, project_id, api_key_id, model, \
         user_id, endpoint, input_tokens, cached_tokens, output_tokens, requests, cost) \
         SELECT $2, width_ms, start_ms, project_id, api_key_id, model, user_id, endpoint, \
         input_tokens, cached_tokens, output_tokens, requests, cost FROM usage_rollup \
         WHERE org_id = $1 \
         ON CONFLICT (org_id, width_ms, start_ms, project_id, api_key_id, model, user_id, \
         endpoint) \
         DO UPDATE SET input_tokens = usage_rollup.input_tokens + excluded.input_tokens, \
         cached_tokens = usage_rollup.cached_tokens + excluded.cached_tokens, \
         output_tokens = usage_rollup.output_tokens + excluded.output_tokens, \
         requests = usage_rollup.requests + excluded.requests, \
         cost = usage_rollup.cost + excluded.cost",
        local,
        default,
    )
    .await?;
    run(
        conn,
        "DELETE FROM usage_rollup WHERE org_id = $1",
        local,
        default,
    )
    .await?;

    // A person in both keeps the higher role.
    let sql = format!(
        "INSERT INTO memberships (org_id, user_id, role, created_at) \
         SELECT $2, user_id, role, created_at FROM memberships WHERE org_id = $1 \
         ON CONFLICT (org_id, user_id) DO UPDATE SET role = CASE WHEN {} < {} \
         THEN excluded.role ELSE memberships.role END",
        role_rank("excluded.role"),
        role_rank("memberships.role"),
    );
    run(conn, &sql, local, default).await?;
    run(
        conn,
        "DELETE FROM memberships WHERE org_id = $1",
        local,
        default,
    )
    .await?;

    // A pending sign-up moves, unless the person is (now) a member of the
    // default organisation or waits for it already; nobody is left both a
    // member and pending.
    run(
        conn,
        "INSERT INTO signup_requests (org_id, user_id, created_at) \
         SELECT $2, user_id, created_at FROM signup_requests WHERE org_id = $1 \
         AND user_id NOT IN (SELECT user_id FROM memberships WHERE org_id = $2) \
         ON CONFLICT (org_id, user_id) DO NOTHING",
        local,
        default,
    )
    .await?;
    run(
        conn,
        "DELETE FROM signup_requests WHERE org_id = $1 OR (org_id = $2 AND user_id IN \
         (SELECT user_id FROM memberships WHERE org_id = $2))",
        local,
        default,
    )
    .await?;

    // A person on a plan in both keeps the one assigned last (the default
    // organisation's on a tie).
    run(
        conn,
        "INSERT INTO plan_assignments (org_id, user_id, plan_id, assigned_at) \
         SELECT $2, user_id, plan_id, assigned_at FROM plan_assignments WHERE org_id = $1 \
         ON CONFLICT (org_id, user_id) DO UPDATE SET plan_id = excluded.plan_id, \
         assigned_at = excluded.assigned_at \
         WHERE excluded.assigned_at > plan_assignments.assigned_at",
        local,
        default,
    )
    .await?;
    run(
        conn,
        "DELETE FROM plan_assignments WHERE org_id = $1",
        local,
        default,
    )
    .await?;

    // Project and key budgets are keyed by their own ids: only the owner
    // changes. The org-scope budget: the default organisation's is kept
    // (two prepaid balances add up: that credit was bought); the `local`
    // one moves when the default organisation has none.
    run(
        conn,
        "UPDATE budgets SET org_id = $2 WHERE org_id = $1 AND scope <> 'org'",
        local,
        default,
    )
    .await?;
    match (&local_budget, &default_budget) {
        (Some(_), None) => {
            run(
                conn,
                "UPDATE budgets SET scope_id = $2, org_id = $2 \
                 WHERE scope = 'org' AND scope_id = $1",
                local,
                default,
            )
            .await?;
        }
        (Some(l), Some(d)) => {
            if let (BudgetKind::Prepaid, BudgetKind::Prepaid, Some(credit), Some(_)) =
                (l.kind, d.kind, l.hard_limit, d.hard_limit)
            {
                sqlx::query(
                    "UPDATE budgets SET hard_limit = hard_limit + $2, updated_at = $3 \
                     WHERE scope = 'org' AND scope_id = $1",
                )
                .bind(default)
                .bind(credit)
                .bind(now_ms())
                .execute(&mut *conn)
                .await?;
            }
            run(
                conn,
                "DELETE FROM budgets WHERE scope = 'org' AND scope_id = $1",
                local,
                default,
            )
            .await?;
        }
        (None, _) => {}
    }
    // Org-scope counters: spend and holds of a period add up. Whether a
    // soft limit was already reported stays the kept budget's.
    let soft = if default_budget.is_none() {
        "soft_notified"
    } else {
        "CAST(NULL AS BIGINT)"
    };
    let sql = format!(
        "INSERT INTO budget_counters (scope, scope_id, period, spent, reserved, soft_notified) \
         SELECT scope, $2, period, spent, reserved, {soft} FROM budget_counters \
         WHERE scope = 'org' AND scope_id = $1 \
         ON CONFLICT (scope, scope_id, period) DO UPDATE SET \
         spent = budget_counters.spent + excluded.spent, \
         reserved = budget_counters.reserved + excluded.reserved"
    );
    run(conn, &sql, local, default).await?;
    run(
        conn,
        "DELETE FROM budget_counters WHERE scope = 'org' AND scope_id = $1",
        local,
        default,
    )
    .await?;
    if month_backfill > 0 {
        sqlx::query(
            "INSERT INTO budget_counters (scope, scope_id, period, spent, reserved) \
             VALUES ('org', $1, $2, $3, 0) ON CONFLICT (scope, scope_id, period) \
             DO UPDATE SET spent = budget_counters.spent + excluded.spent",
        )
        .bind(default)
        .bind(&month)
        .bind(month_backfill)
        .execute(&mut *conn)
        .await?;
    }

    // Nothing may be left for the cascade to delete or to orphan.
    for table in ORG_TABLES {
        let sql = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table} WHERE org_id = $1");
        let left: i64 = sqlx::query_scalar(&sql)
            .bind(local)
            .fetch_one(&mut *conn)
            .await?;
        if left != 0 {
            return Err(StoreError::Corrupt(format!(
                "folding organisation {local}: {left} rows left in {table}"
            )));
        }
    }

    let (local_org, local_created): (String, i64) = {
        let row = sqlx::query("SELECT name, created_at FROM organizations WHERE id = $1")
            .bind(local)
            .fetch_one(&mut *conn)
            .await?;
        (row.try_get("name")?, row.try_get("created_at")?)
    };
    let kept = org_budget(conn, default).await?;
    audit(
        conn,
        default,
        "organization.merged",
        local,
        json!({
            "organization": {"id": local, "name": local_org, "created_at": local_created},
            "org_budget": local_budget.as_ref().map(budget_json),
            "default_org_budget": default_budget.as_ref().map(budget_json),
        }),
        json!({
            "organization": {"id": default, "name": DEFAULT_ORG},
            "org_budget": kept.as_ref().map(budget_json),
            "renamed_request_ids": renamed,
            "request_id_suffix": suffix,
        }),
    )
    .await?;
    run(
        conn,
        "DELETE FROM organizations WHERE id = $1",
        local,
        default,
    )
    .await?;
    Ok(renamed)
}

impl Store {
    /// Folds every organisation named `local` (the old name of the default
    /// organisation) into the one named [`DEFAULT_ORG`], in one transaction;
    /// [`Store::connect`] calls it after the migrations. Idempotent: with no
    /// `local` organisation it does nothing (one read, no lock).
    ///
    /// - Only `local` exists: the oldest one is renamed to [`DEFAULT_ORG`];
    ///   ids do not change, so every row still points at it. Any further
    ///   `local` organisations are merged into it as below.
    /// - Both exist (the oldest `default` is the one kept): every row of the
    ///   `local` organisation moves to the default one's id, in every table
    ///   with an `org_id`, and the `local` organisation is deleted. Where
    ///   the two collide:
    ///   - memberships of one person: the higher role is kept;
    ///   - pending sign-ups move, except of people who are members of (or
    ///     already waiting for) the default organisation;
    ///   - plan assignments of one person: the one assigned last is kept
    ///     (the default organisation's on a tie);
    ///   - ledger rows and reservations (and the chat messages naming them)
    ///     whose request id the default organisation has in its ledger or
    ///     reservations get the suffix `~<local org id>`: no row is dropped;
    ///   - usage rollup buckets present in both are added together;
    ///   - projects keep their ids, so keys, ledger rows and budgets still
    ///     point at theirs; `(org_id, name)` is not unique, so two projects
    ///     of the same name both stay (a look-up by name finds the older);
    ///   - the org-scope budget: the default organisation's is kept, and
    ///     when both are prepaid the `local` one's credit is added to it;
    ///     without a default one, the `local` one moves. Org-scope budget
    ///     counters add their spend and holds per period (open
    ///     reservations' holds are rewritten to match), and a kept monthly
    ///     budget also counts this month's spend of an organisation that
    ///     had no monthly budget, as a new budget would. Project and key
    ///     budgets and counters keep their ids.
    ///
    /// An `organization.renamed` or `organization.merged` audit entry by
    /// `system` records each step (a merge with both organisations' org
    /// budgets). The ledger's and the audit log's refusal triggers are
    /// lifted only inside the transaction; a merge that would leave a row
    /// behind (a table with an `org_id` it does not know) fails and rolls
    /// back whole. A process still running an older binary keeps using the
    /// `local` id it looked up: stop those before upgrading.
    ///
    /// Two processes opening the store at once fold once: the transaction
    /// starts with a write to `organizations` (SQLite's write lock) or a
    /// `SHARE ROW EXCLUSIVE` lock on it (PostgreSQL), and reads what to fold
    /// only then; a busy database is tried again a few times.
    pub async fn fold_local_org(&self) -> Result<LocalOrgFold> {
        let mut tries = 0;
        loop {
            match self.fold_local_org_once().await {
                Err(e) if e.kind() == ErrorKind::Unavailable && tries + 1 < FOLD_TRIES => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(tries)))
                        .await;
                }
                done => return done,
            }
        }
    }

    async fn fold_local_org_once(&self) -> Result<LocalOrgFold> {
        let any: Option<String> =
            sqlx::query_scalar("SELECT id FROM organizations WHERE name = $1 LIMIT 1")
                .bind(LOCAL_ORG)
                .fetch_optional(self.pool())
                .await?;
        if any.is_none() {
            return Ok(LocalOrgFold::default());
        }
        let mut tx = self.pool().begin().await?;
        match self.backend() {
            Backend::Sqlite => {
                // Writes first: SQLite's write lock before anything is read.
                sqlx::query("UPDATE organizations SET name = name WHERE name = $1")
                    .bind(LOCAL_ORG)
                    .execute(&mut *tx)
                    .await?;
            }
            Backend::Postgres => {
                (&mut *tx)
                    .execute("LOCK TABLE organizations IN SHARE ROW EXCLUSIVE MODE")
                    .await?;
            }
        }
        let by_name = "SELECT id FROM organizations WHERE name = $1 ORDER BY created_at, id";
        let locals: Vec<String> = sqlx::query_scalar(by_name)
            .bind(LOCAL_ORG)
            .fetch_all(&mut *tx)
            .await?;
        let Some((first, rest)) = locals.split_first() else {
            // Another process folded it meanwhile.
            tx.commit().await?;
            return Ok(LocalOrgFold::default());
        };
        let defaults: Vec<String> = sqlx::query_scalar(by_name)
            .bind(DEFAULT_ORG)
            .fetch_all(&mut *tx)
            .await?;
        let mut fold = LocalOrgFold::default();
        let (default, to_merge) = match defaults.first() {
            Some(default) => (default.clone(), locals.as_slice()),
            None => {
                sqlx::query("UPDATE organizations SET name = $2 WHERE id = $1")
                    .bind(first)
                    .bind(DEFAULT_ORG)
                    .execute(&mut *tx)
                    .await?;
                audit(
                    &mut tx,
                    first,
                    "organization.renamed",
                    first,
                    json!({"organization": {"id": first, "name": LOCAL_ORG}}),
                    json!({"organization": {"id": first, "name": DEFAULT_ORG}}),
                )
                .await?;
                fold.renamed = Some(first.clone());
                (first.clone(), rest)
            }
        };
        if !to_merge.is_empty() {
            check_org_tables(&mut tx, self.backend()).await?;
            let lifted = lift_triggers(&mut tx, self.backend()).await?;
            for local in to_merge {
                fold.renamed_request_ids += merge(&mut tx, local, &default).await?;
                fold.merged.push(local.clone());
            }
            restore_triggers(&mut tx, lifted).await?;
        }
        fold.default_org_id = Some(default);
        tx.commit().await?;
        Ok(fold)
    }
}
