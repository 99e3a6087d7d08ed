//! Budgets: hard and soft spending limits on an organisation, a project or
//! a key, monthly or prepaid, and the counters that make them impossible to
//! overspend under any concurrency.
//!
//! Each budgeted scope has, per period (`YYYY-MM` for a monthly budget,
//! `all` for a prepaid balance), one counter row with what was `spent` and
//! what open requests have `reserved`. A reservation is admitted by one
//! conditional `UPDATE … SET reserved = reserved + amount WHERE spent +
//! reserved + amount <= hard_limit` per budgeted scope, inside the same
//! transaction as the reservation row: the database serialises the updates
//! of one counter (SQLite's single writer; PostgreSQL's row lock, after
//! which the `WHERE` is evaluated again), so concurrent requests can never
//! together pass a limit. Scopes are always taken in the order organisation,
//! project, key, so two transactions never wait on each other in a cycle.
//! Settlement moves the request's amount out of `reserved` and its real cost
//! into `spent`, in the ledger row's transaction. A soft limit is reported
//! once per period, the first time spend reaches it.
//!
//! The store holds no prices: amounts arrive as integers in the billing
//! unit, computed by the billing crate.

use sqlx::{AnyConnection, Row};

use crate::{now_ms, Result, Store, StoreError};

/// What a budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BudgetScope {
    /// A whole organisation (`scope_id` is the organisation id).
    Org,
    /// One project.
    Project,
    /// One API key.
    Key,
}

impl BudgetScope {
    /// The stored name: `org`, `project` or `key`.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetScope::Org => "org",
            BudgetScope::Project => "project",
            BudgetScope::Key => "key",
        }
    }
}

impl std::str::FromStr for BudgetScope {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<BudgetScope> {
        match s {
            "org" | "organization" => Ok(BudgetScope::Org),
            "project" => Ok(BudgetScope::Project),
            "key" | "api_key" => Ok(BudgetScope::Key),
            other => Err(StoreError::InvalidRequest(format!(
                "budget scope must be org, project or key, not {other:?}"
            ))),
        }
    }
}

/// How a budget's spend is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BudgetKind {
    /// Spend per calendar month (UTC); starts again each month.
    #[default]
    Monthly,
    /// A balance: `hard_limit` is the credit bought so far, spend draws it
    /// down for good.
    Prepaid,
}

impl BudgetKind {
    /// The stored name: `monthly` or `prepaid`.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetKind::Monthly => "monthly",
            BudgetKind::Prepaid => "prepaid",
        }
    }

    /// The counter period of a request started at `at_ms`.
    pub(crate) fn period(self, at_ms: i64) -> String {
        match self {
            BudgetKind::Monthly => month_of(at_ms),
            BudgetKind::Prepaid => PREPAID_PERIOD.to_owned(),
        }
    }
}

impl std::str::FromStr for BudgetKind {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<BudgetKind> {
        match s {
            "monthly" => Ok(BudgetKind::Monthly),
            "prepaid" => Ok(BudgetKind::Prepaid),
            other => Err(StoreError::InvalidRequest(format!(
                "budget kind must be monthly or prepaid, not {other:?}"
            ))),
        }
    }
}

/// The period name of a prepaid balance's one counter.
const PREPAID_PERIOD: &str = "all";

/// A budget on one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// What it limits.
    pub scope: BudgetScope,
    /// The organisation, project or key id.
    pub scope_id: String,
    /// The owning organisation.
    pub org_id: String,
    /// Monthly or prepaid.
    pub kind: BudgetKind,
    /// Requests whose worst case would pass this are refused; `None`: no
    /// hard limit.
    pub hard_limit: Option<i64>,
    /// Reaching this is reported once per period; `None`: no soft limit.
    pub soft_limit: Option<i64>,
    /// Unix milliseconds of the last change.
    pub updated_at: i64,
}

/// A budget with its counter for the current period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStatus {
    /// The budget.
    pub budget: Budget,
    /// `YYYY-MM` or `all`.
    pub period: String,
    /// Settled spend in the period.
    pub spent: i64,
    /// Held by requests in flight.
    pub reserved: i64,
}

impl BudgetStatus {
    /// What new requests may still reserve: `None` without a hard limit.
    pub fn available(&self) -> Option<i64> {
        self.budget
            .hard_limit
            .map(|limit| (limit - self.spent - self.reserved).max(0))
    }
}

/// A soft limit reached by a settlement, reported once per period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftLimitReached {
    /// The budget whose soft limit was reached.
    pub budget: Budget,
    /// The period.
    pub period: String,
    /// Spend in the period, the settlement included.
    pub spent: i64,
}

/// Which budget refused a reservation: the error's message names it.
pub(crate) fn refused(budget: &Budget, period: &str) -> StoreError {
    let what = match budget.kind {
        BudgetKind::Monthly => format!("monthly budget for {period}"),
        BudgetKind::Prepaid => "prepaid balance".to_owned(),
    };
    StoreError::BudgetExceeded(format!(
        "the {} {}'s {what} is exhausted",
        budget.scope.as_str(),
        budget.scope_id
    ))
}

/// `YYYY-MM` (UTC) of a unix-millisecond time.
pub fn month_of(at_ms: i64) -> String {
    let days = at_ms.div_euclid(86_400_000);
    // Civil-from-days on the proleptic Gregorian calendar (eras of 400 years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}

/// The unix-millisecond bounds `[start, end)` of a `YYYY-MM` month.
pub(crate) fn month_bounds(period: &str) -> Option<(i64, i64)> {
    let (y, m) = period.split_once('-')?;
    let (year, month): (i64, i64) = (y.parse().ok()?, m.parse().ok()?);
    if !(1..=12).contains(&month) {
        return None;
    }
    let start = days_from_civil(year, month) * 86_400_000;
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    Some((start, days_from_civil(ny, nm) * 86_400_000))
}

/// Days since 1970-01-01 of the first day of `month` in `year`.
fn days_from_civil(year: i64, month: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) const BUDGET_COLUMNS: &str =
    "scope, scope_id, org_id, kind, hard_limit, soft_limit, updated_at";

pub(crate) fn budget_from_row<R: crate::sqlite_raw::Cells>(row: &R) -> Result<Budget> {
    let scope: String = row.cell("scope")?;
    let kind: String = row.cell("kind")?;
    Ok(Budget {
        scope: scope
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("budget scope {scope:?}")))?,
        scope_id: row.cell("scope_id")?,
        org_id: row.cell("org_id")?,
        kind: kind
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("budget kind {kind:?}")))?,
        hard_limit: row.cell("hard_limit")?,
        soft_limit: row.cell("soft_limit")?,
        updated_at: row.cell("updated_at")?,
    })
}

/// The budgets on the request's scopes, in lock order (org, project, key).
async fn budgets_of(
    conn: &mut AnyConnection,
    org_id: &str,
    project_id: Option<&str>,
    api_key_id: Option<&str>,
) -> Result<Vec<Budget>> {
    let sql = format!(
        "SELECT {BUDGET_COLUMNS} FROM budgets WHERE org_id = $1 AND \
         ((scope = 'org' AND scope_id = $1) OR (scope = 'project' AND scope_id = $2) \
          OR (scope = 'key' AND scope_id = $3))"
    );
    let rows = sqlx::query(&sql)
        .bind(org_id)
        .bind(project_id.unwrap_or(""))
        .bind(api_key_id.unwrap_or(""))
        .fetch_all(&mut *conn)
        .await?;
    let mut budgets = rows
        .iter()
        .map(budget_from_row)
        .collect::<Result<Vec<_>>>()?;
    budgets.sort_by_key(|b| b.scope);
    Ok(budgets)
}

/// Makes sure the counter row exists (spend 0).
async fn ensure_counter(conn: &mut AnyConnection, budget: &Budget, period: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO budget_counters (scope, scope_id, period, spent, reserved) \
         VALUES ($1, $2, $3, 0, 0) ON CONFLICT (scope, scope_id, period) DO NOTHING",
    )
    .bind(budget.scope.as_str())
    .bind(&budget.scope_id)
    .bind(period)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Holds `amount` in every budget of the request's scopes, or fails with
/// [`StoreError::BudgetExceeded`] naming the first budget it does not fit
/// (the caller's transaction then rolls back). Returns the holds as
/// `scope:scope_id:period` entries, for [`release_holds`].
pub(crate) async fn hold(
    conn: &mut AnyConnection,
    org_id: &str,
    project_id: Option<&str>,
    api_key_id: Option<&str>,
    amount: i64,
    at_ms: i64,
) -> Result<String> {
    let mut holds = Vec::new();
    for budget in budgets_of(conn, org_id, project_id, api_key_id).await? {
        let period = budget.kind.period(at_ms);
        ensure_counter(conn, &budget, &period).await?;
        let done = sqlx::query(
            "UPDATE budget_counters SET reserved = reserved + $4 \
             WHERE scope = $1 AND scope_id = $2 AND period = $3 \
             AND ($5 IS NULL OR spent + reserved + $4 <= $5)",
        )
        .bind(budget.scope.as_str())
        .bind(&budget.scope_id)
        .bind(&period)
        .bind(amount)
        .bind(budget.hard_limit)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 0 {
            return Err(refused(&budget, &period));
        }
        holds.push(format!(
            "{}:{}:{period}",
            budget.scope.as_str(),
            budget.scope_id
        ));
    }
    Ok(holds.join(","))
}

/// Gives back `amount` held under `holds` (as [`hold`] wrote them).
pub(crate) async fn release_holds(
    conn: &mut AnyConnection,
    holds: &str,
    amount: i64,
) -> Result<()> {
    for entry in holds.split(',').filter(|e| !e.is_empty()) {
        let mut parts = entry.splitn(3, ':');
        let (Some(scope), Some(scope_id), Some(period)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(StoreError::Corrupt(format!("reservation hold {entry:?}")));
        };
        sqlx::query(
            "UPDATE budget_counters SET reserved = reserved - $4 \
             WHERE scope = $1 AND scope_id = $2 AND period = $3",
        )
        .bind(scope)
        .bind(scope_id)
        .bind(period)
        .bind(amount)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Adds a settled request's cost to the spend of every budget of its
/// scopes, in the period it started in, and returns the soft limits this
/// reached for the first time in their period.
pub(crate) async fn spend(
    conn: &mut AnyConnection,
    org_id: &str,
    project_id: Option<&str>,
    api_key_id: Option<&str>,
    cost: i64,
    at_ms: i64,
) -> Result<Vec<SoftLimitReached>> {
    let mut reached = Vec::new();
    for budget in budgets_of(conn, org_id, project_id, api_key_id).await? {
        let period = budget.kind.period(at_ms);
        sqlx::query(
            "INSERT INTO budget_counters (scope, scope_id, period, spent, reserved) \
             VALUES ($1, $2, $3, $4, 0) ON CONFLICT (scope, scope_id, period) \
             DO UPDATE SET spent = budget_counters.spent + excluded.spent",
        )
        .bind(budget.scope.as_str())
        .bind(&budget.scope_id)
        .bind(&period)
        .bind(cost)
        .execute(&mut *conn)
        .await?;
        let Some(soft) = budget.soft_limit else {
            continue;
        };
        let marked = sqlx::query(
            "UPDATE budget_counters SET soft_notified = $5 \
             WHERE scope = $1 AND scope_id = $2 AND period = $3 \
             AND soft_notified IS NULL AND spent >= $4",
        )
        .bind(budget.scope.as_str())
        .bind(&budget.scope_id)
        .bind(&period)
        .bind(soft)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
        if marked.rows_affected() == 1 {
            let spent: i64 = sqlx::query_scalar(
                "SELECT spent FROM budget_counters \
                 WHERE scope = $1 AND scope_id = $2 AND period = $3",
            )
            .bind(budget.scope.as_str())
            .bind(&budget.scope_id)
            .bind(&period)
            .fetch_one(&mut *conn)
            .await?;
            reached.push(SoftLimitReached {
                budget,
                period,
                spent,
            });
        }
    }
    Ok(reached)
}

impl Store {
    /// Sets (creates or replaces) the budget of a scope of the organisation;
    /// the scope must be the organisation's own ([`StoreError::NotFound`]
    /// otherwise). A new monthly budget starts from the month's spend so
    /// far in the ledger; a prepaid one from zero. Returns the budget with
    /// its current counter.
    pub async fn set_budget(
        &self,
        org_id: &str,
        scope: BudgetScope,
        scope_id: &str,
        kind: BudgetKind,
        hard_limit: Option<i64>,
        soft_limit: Option<i64>,
    ) -> Result<BudgetStatus> {
        if hard_limit.is_some_and(|n| n < 0) || soft_limit.is_some_and(|n| n < 0) {
            return Err(StoreError::InvalidRequest(
                "budget limits must not be negative".into(),
            ));
        }
        match scope {
            BudgetScope::Org => {
                self.get_org(org_id).await?;
                if scope_id != org_id {
                    return Err(StoreError::NotFound("organization"));
                }
            }
            BudgetScope::Project => {
                self.get_project(org_id, scope_id).await?;
            }
            BudgetScope::Key => {
                self.get_key(org_id, scope_id).await?;
            }
        }
        let now = now_ms();
        let budget = Budget {
            scope,
            scope_id: scope_id.to_owned(),
            org_id: org_id.to_owned(),
            kind,
            hard_limit,
            soft_limit,
            updated_at: now,
        };
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO budgets (scope, scope_id, org_id, kind, hard_limit, soft_limit, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (scope, scope_id) DO UPDATE SET \
             kind = excluded.kind, hard_limit = excluded.hard_limit, \
             soft_limit = excluded.soft_limit, updated_at = excluded.updated_at",
        )
        .bind(scope.as_str())
        .bind(scope_id)
        .bind(org_id)
        .bind(kind.as_str())
        .bind(hard_limit)
        .bind(soft_limit)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let period = kind.period(now);
        if let Some((start, end)) = month_bounds(&period) {
            let column = match scope {
                BudgetScope::Org => "org_id",
                BudgetScope::Project => "project_id",
                BudgetScope::Key => "api_key_id",
            };
            let sql = format!(
                "INSERT INTO budget_counters (scope, scope_id, period, spent, reserved) \
                 SELECT $1, $2, $3, COALESCE(CAST(SUM(cost) AS BIGINT), 0), 0 FROM usage_ledger \
                 WHERE org_id = $4 AND {column} = $2 AND created_at >= $5 AND created_at < $6 \
                 ON CONFLICT (scope, scope_id, period) DO NOTHING"
            );
            sqlx::query(&sql)
                .bind(scope.as_str())
                .bind(scope_id)
                .bind(&period)
                .bind(org_id)
                .bind(start)
                .bind(end)
                .execute(&mut *tx)
                .await?;
        } else {
            ensure_counter(&mut tx, &budget, &period).await?;
        }
        tx.commit().await?;
        self.budget_status(org_id, scope, scope_id).await
    }

    /// Adds `amount` of credit to a prepaid budget (its hard limit) and
    /// returns its status; a scope without a prepaid budget is NotFound.
    pub async fn top_up(
        &self,
        org_id: &str,
        scope: BudgetScope,
        scope_id: &str,
        amount: i64,
    ) -> Result<BudgetStatus> {
        if amount <= 0 {
            return Err(StoreError::InvalidRequest(
                "a top-up must be positive".into(),
            ));
        }
        let done = sqlx::query(
            "UPDATE budgets SET hard_limit = COALESCE(hard_limit, 0) + $4, updated_at = $5 \
             WHERE org_id = $1 AND scope = $2 AND scope_id = $3 AND kind = 'prepaid'",
        )
        .bind(org_id)
        .bind(scope.as_str())
        .bind(scope_id)
        .bind(amount)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("prepaid budget"));
        }
        self.budget_status(org_id, scope, scope_id).await
    }

    /// Removes a scope's budget (its counters stay, unused). Returns
    /// whether there was one.
    pub async fn delete_budget(
        &self,
        org_id: &str,
        scope: BudgetScope,
        scope_id: &str,
    ) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM budgets WHERE org_id = $1 AND scope = $2 AND scope_id = $3")
                .bind(org_id)
                .bind(scope.as_str())
                .bind(scope_id)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// One budget of the organisation with its current counter.
    pub async fn budget_status(
        &self,
        org_id: &str,
        scope: BudgetScope,
        scope_id: &str,
    ) -> Result<BudgetStatus> {
        let sql = format!(
            "SELECT {BUDGET_COLUMNS} FROM budgets WHERE org_id = $1 AND scope = $2 AND scope_id = $3"
        );
        let row = sqlx::query(&sql)
            .bind(org_id)
            .bind(scope.as_str())
            .bind(scope_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound("budget"))?;
        self.status_of(budget_from_row(&row)?).await
    }

    /// Every budget of the organisation with its current counter, in scope
    /// order.
    pub async fn list_budgets(&self, org_id: &str) -> Result<Vec<BudgetStatus>> {
        let sql = format!(
            "SELECT {BUDGET_COLUMNS} FROM budgets WHERE org_id = $1 ORDER BY scope, scope_id"
        );
        let rows = sqlx::query(&sql)
            .bind(org_id)
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.status_of(budget_from_row(row)?).await?);
        }
        Ok(out)
    }

    async fn status_of(&self, budget: Budget) -> Result<BudgetStatus> {
        let period = budget.kind.period(now_ms());
        let row = sqlx::query(
            "SELECT spent, reserved FROM budget_counters \
             WHERE scope = $1 AND scope_id = $2 AND period = $3",
        )
        .bind(budget.scope.as_str())
        .bind(&budget.scope_id)
        .bind(&period)
        .fetch_optional(self.pool())
        .await?;
        let (spent, reserved) = match row {
            Some(row) => (row.try_get("spent")?, row.try_get("reserved")?),
            None => (0, 0),
        };
        Ok(BudgetStatus {
            budget,
            period,
            spent,
            reserved,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_of_times() {
        assert_eq!(month_of(0), "1970-01");
        // 2026-11-28T17:00:00Z
        assert_eq!(month_of(1_795_885_200_000), "2026-11");
        // 2024-02-29T23:59:59.999Z, then 2024-03-01T00:00Z
        assert_eq!(month_of(1_709_251_199_999), "2024-02");
        assert_eq!(month_of(1_709_251_200_000), "2024-03");
        assert_eq!(month_of(-1), "1969-12");
    }

    #[test]
    fn month_bounds_round_trip() {
        for period in ["1970-01", "2024-02", "2024-12", "2026-11"] {
            let (start, end) = month_bounds(period).unwrap();
            assert_eq!(month_of(start), period);
            assert_eq!(month_of(end - 1), period);
            assert_ne!(month_of(end), period);
        }
        assert!(month_bounds("2024-13").is_none());
        assert!(month_bounds("all").is_none());
    }
}
