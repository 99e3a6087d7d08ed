//! Budgets over HTTP (`/v1/organization/budgets`); the audited operations
//! themselves are `service::budgets`, shared with the CLI.
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
use serde::Deserialize;
use serde_json::{json, Value};
use service::budgets::{budget_json, delete, parse_scope, parse_usd, set, top_up};
use store::BudgetKind;

use super::admin;
use crate::auth::Caller;
use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::state::AppState;

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
        .map_err(service::Error::from)?;
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
    .map_err(service::Error::from)?;
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
        .map_err(service::Error::from)?;
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
        .map_err(service::Error::from)?;
    let mut answer = budget_json(&before);
    answer["deleted"] = Value::Bool(true);
    Ok(Json(answer))
}
