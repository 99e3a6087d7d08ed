//! Budgets: the audited operations the HTTP admin API and the CLI share
//! ([`set`], [`top_up`], [`delete`]), their JSON, and the parsing of USD
//! amounts and scopes.
//!
//! Enforcement is not here: every budget of a request's organisation,
//! project and key is checked and held in the store, in SQL, when the
//! request's reservation is made ([`crate::Meter::begin`]), so several
//! instances share one truth.
//!
//! Amounts are USD as decimal strings (`"25.50"`), exact to the picodollar,
//! and are answered the same way.

use api::{ApiError, InvalidCode};
use billing::Money;
use serde_json::{json, Value};
use store::{BudgetKind, BudgetScope, BudgetStatus, Store, StoreError};

use crate::manage::{record_change, Change};

/// A budget's JSON: limits and counters as exact USD strings.
pub fn budget_json(status: &BudgetStatus) -> Value {
    let b = &status.budget;
    let usd = |units: i64| Money::from_i64_units(units).to_decimal_string();
    json!({
        "object": "organization.budget",
        "scope": scope_name(b.scope),
        "scope_id": b.scope_id,
        "kind": b.kind.as_str(),
        "hard_limit": b.hard_limit.map(usd),
        "soft_limit": b.soft_limit.map(usd),
        "period": status.period,
        "spent": usd(status.spent),
        "held": usd(status.reserved),
        "available": status.available().map(usd),
        "currency": "usd",
        "updated_at": b.updated_at / 1000,
    })
}

/// The wire name of a scope.
pub fn scope_name(scope: BudgetScope) -> &'static str {
    match scope {
        BudgetScope::Org => "organization",
        BudgetScope::Project => "project",
        BudgetScope::Key => "api_key",
    }
}

/// What the audit log keeps of a budget: its settings, not its counters.
fn audit_json(status: &BudgetStatus) -> Value {
    let b = &status.budget;
    let usd = |units: i64| Money::from_i64_units(units).to_decimal_string();
    json!({
        "scope": scope_name(b.scope),
        "scope_id": b.scope_id,
        "kind": b.kind.as_str(),
        "hard_limit": b.hard_limit.map(usd),
        "soft_limit": b.soft_limit.map(usd),
    })
}

async fn current(
    store: &Store,
    org_id: &str,
    scope: BudgetScope,
    scope_id: &str,
) -> Result<Option<BudgetStatus>, StoreError> {
    match store.budget_status(org_id, scope, scope_id).await {
        Ok(status) => Ok(Some(status)),
        Err(err) if err.kind() == store::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Records a budget change (its settings before and after).
async fn audit(
    store: &Store,
    change: Change<'_>,
    before: Option<&BudgetStatus>,
    after: Option<&BudgetStatus>,
) -> Result<(), StoreError> {
    record_change(store, change, before, after, audit_json).await
}

/// The change `actor` makes with `action` to the budget of `scope_id`.
fn change<'a>(org_id: &'a str, actor: &'a str, action: &'a str, scope_id: &'a str) -> Change<'a> {
    Change {
        org_id,
        actor,
        action,
        target: scope_id,
    }
}

/// Sets a budget and records `budget.set` by `actor`.
pub async fn set(
    store: &Store,
    org_id: &str,
    actor: &str,
    (scope, scope_id): (BudgetScope, &str),
    kind: BudgetKind,
    hard_limit: Option<i64>,
    soft_limit: Option<i64>,
) -> Result<BudgetStatus, StoreError> {
    let before = current(store, org_id, scope, scope_id).await?;
    let after = store
        .set_budget(org_id, scope, scope_id, kind, hard_limit, soft_limit)
        .await?;
    let change = change(org_id, actor, "budget.set", scope_id);
    audit(store, change, before.as_ref(), Some(&after)).await?;
    Ok(after)
}

/// Adds credit to a prepaid budget and records `budget.topped_up`.
pub async fn top_up(
    store: &Store,
    org_id: &str,
    actor: &str,
    (scope, scope_id): (BudgetScope, &str),
    amount: i64,
) -> Result<BudgetStatus, StoreError> {
    let before = current(store, org_id, scope, scope_id).await?;
    let after = store.top_up(org_id, scope, scope_id, amount).await?;
    let change = change(org_id, actor, "budget.topped_up", scope_id);
    audit(store, change, before.as_ref(), Some(&after)).await?;
    Ok(after)
}

/// Removes a budget and records `budget.deleted`; NotFound when none.
pub async fn delete(
    store: &Store,
    org_id: &str,
    actor: &str,
    (scope, scope_id): (BudgetScope, &str),
) -> Result<BudgetStatus, StoreError> {
    let before = store.budget_status(org_id, scope, scope_id).await?;
    store.delete_budget(org_id, scope, scope_id).await?;
    let change = change(org_id, actor, "budget.deleted", scope_id);
    audit(store, change, Some(&before), None).await?;
    Ok(before)
}

/// A USD amount as billing units: exact, non-negative, storable.
pub fn parse_usd(param: &str, text: &str) -> Result<i64, ApiError> {
    let bad = |why: &str| {
        ApiError::invalid(
            param,
            InvalidCode::InvalidValue,
            format!("`{param}` must be {why}, not {text:?}."),
        )
    };
    let money = Money::parse(text).map_err(|_| bad("a USD amount such as \"25.50\""))?;
    if money < Money::ZERO {
        return Err(bad("a non-negative amount"));
    }
    money
        .to_i64_units()
        .map_err(|_| bad("at most 9,223,372 USD"))
}

/// A scope as the API and the CLI name it.
pub fn parse_scope(text: &str) -> Result<BudgetScope, ApiError> {
    match text {
        "organization" | "org" => Ok(BudgetScope::Org),
        "project" => Ok(BudgetScope::Project),
        "api_key" | "key" => Ok(BudgetScope::Key),
        other => Err(ApiError::invalid(
            "scope",
            InvalidCode::InvalidValue,
            format!("`scope` must be organization, project or api_key, not {other:?}."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_amounts_are_exact_and_checked() {
        assert_eq!(parse_usd("x", "25.50").unwrap(), 25_500_000_000_000);
        assert_eq!(parse_usd("x", "0.000000000001").unwrap(), 1);
        for bad in ["-1", "abc", "0.0000000000001", "99999999"] {
            let err = parse_usd("hard_limit", bad).unwrap_err();
            assert_eq!(err.param(), Some("hard_limit"), "{bad}");
        }
    }
}
