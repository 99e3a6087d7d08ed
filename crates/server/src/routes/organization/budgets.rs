//! Budgets over HTTP (`/v1/organization/budgets`) and the audited budget
//! operations the CLI shares ([`set`], [`top_up`], [`delete`]).
//!
//! - `GET /v1/organization/budgets`: the organisation's budgets with their
//!   current period's spend, holds and what is available;
//! - `POST /v1/organization/budgets`: `{scope, scope_id, kind, hard_limit,
//!   soft_limit}` sets (creates or replaces) one;
//! - `POST /v1/organization/budgets/top_up`: `{scope, scope_id, amount}`
//!   adds credit to a prepaid one;
//! - `DELETE /v1/organization/budgets/{scope}/{scope_id}` removes one.
//!
//! `scope` is `organization`, `project` or `api_key` (`scope_id` defaults
//! to the caller's organisation); amounts are USD as decimal strings
//! (`"25.50"`), exact to the picodollar, and are answered the same way.
//! Another organisation's project or key is a 404.

use api::{ApiError, InvalidCode};
use axum::extract::{Path, State};
use axum::{Extension, Json};
use billing::Money;
use serde::Deserialize;
use serde_json::{json, Value};
use store::{BudgetKind, BudgetScope, BudgetStatus, Store, StoreError};

use super::manage::{record_change, Change};
use super::{admin, store_error};
use crate::auth::Caller;
use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::state::AppState;

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
fn scope_name(scope: BudgetScope) -> &'static str {
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

fn parse_scope(text: &str) -> Result<BudgetScope, ApiError> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    scope: String,
    scope_id: Option<String>,
    kind: Option<String>,
    hard_limit: Option<String>,
    soft_limit: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopUpBody {
    scope: String,
    scope_id: Option<String>,
    amount: String,
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|err| ApiError::invalid_body(format!("The request body is not valid: {err}")))
}

/// `GET /v1/organization/budgets`
pub async fn list_budgets(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let budgets = admin
        .store
        .list_budgets(&admin.tenant.org_id)
        .await
        .map_err(store_error)?;
    let data: Vec<Value> = budgets.iter().map(budget_json).collect();
    Ok(Json(
        json!({ "object": "list", "data": data, "has_more": false }),
    ))
}

/// `POST /v1/organization/budgets`
pub async fn set_budget(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let body: SetBody = parse_body(&body)?;
    let scope = parse_scope(&body.scope)?;
    let org_id = admin.tenant.org_id.as_str();
    let scope_id = body.scope_id.as_deref().unwrap_or(org_id);
    let kind = match body.kind.as_deref() {
        None | Some("monthly") => BudgetKind::Monthly,
        Some("prepaid") => BudgetKind::Prepaid,
        Some(other) => {
            return Err(ApiError::invalid(
                "kind",
                InvalidCode::InvalidValue,
                format!("`kind` must be monthly or prepaid, not {other:?}."),
            )
            .into())
        }
    };
    let hard = body
        .hard_limit
        .as_deref()
        .map(|t| parse_usd("hard_limit", t))
        .transpose()?;
    let soft = body
        .soft_limit
        .as_deref()
        .map(|t| parse_usd("soft_limit", t))
        .transpose()?;
    if hard.is_none() && soft.is_none() {
        return Err(ApiError::invalid(
            "hard_limit",
            InvalidCode::MissingRequiredParameter,
            "Give `hard_limit`, `soft_limit` or both.",
        )
        .into());
    }
    let actor = admin.tenant.api_key_id.as_str();
    let status = set(
        &admin.store,
        org_id,
        actor,
        (scope, scope_id),
        kind,
        hard,
        soft,
    )
    .await
    .map_err(store_error)?;
    Ok(Json(budget_json(&status)))
}

/// `POST /v1/organization/budgets/top_up`
pub async fn top_up_budget(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let body: TopUpBody = parse_body(&body)?;
    let scope = parse_scope(&body.scope)?;
    let org_id = admin.tenant.org_id.as_str();
    let scope_id = body.scope_id.as_deref().unwrap_or(org_id);
    let amount = parse_usd("amount", &body.amount)?;
    let actor = admin.tenant.api_key_id.as_str();
    let status = top_up(&admin.store, org_id, actor, (scope, scope_id), amount)
        .await
        .map_err(store_error)?;
    Ok(Json(budget_json(&status)))
}

/// `DELETE /v1/organization/budgets/{scope}/{scope_id}`
pub async fn delete_budget(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path((scope, scope_id)): Path<(String, String)>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let scope = parse_scope(&scope)?;
    let org_id = admin.tenant.org_id.as_str();
    let actor = admin.tenant.api_key_id.as_str();
    let before = delete(&admin.store, org_id, actor, (scope, &scope_id))
        .await
        .map_err(store_error)?;
    let mut answer = budget_json(&before);
    answer["deleted"] = Value::Bool(true);
    Ok(Json(answer))
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
