//! `/api/admin/…`: the web app's admin pages' JSON, for owners and admins
//! of the signed-in person's organisation (anyone else gets a 403).
//!
//! - `GET /api/admin/members`: members with role and plan.
//! - `PATCH /api/admin/members/{user_id} {role}`: change a role.
//! - `DELETE /api/admin/members/{user_id}`: remove from the organisation.
//! - `PUT /api/admin/members/{user_id}/plan {plan}`: assign a plan.
//! - `GET /api/admin/pending`: sign-ups waiting for approval.
//! - `POST /api/admin/pending/{user_id}/approve`: make them a member.
//! - `DELETE /api/admin/pending/{user_id}`: reject (their account goes).
//! - `GET /api/admin/invites`: the organisation's invites.
//! - `POST /api/admin/invites {email, role}`: a new invite with its one-time
//!   link (`invite_url`), shown once; only an owner may invite an owner.
//! - `DELETE /api/admin/invites/{invite_id}`: its link stops working.
//! - `GET /api/admin/plans`: every plan (built-in and stored).
//! - `GET /api/admin/prices`: every recorded price.
//! - `POST /api/admin/prices {model, input, output, cached_input?, per?}`:
//!   record a price (USD per `per` tokens, `1k` or `1m`), as
//!   `parlance prices set` does.
//! - `GET /api/admin/projects`: the organisation's active projects with
//!   their guardrails.
//! - `PUT /api/admin/projects/{project_id}/guardrails {input, output}`:
//!   moderate the project's input and output (`service::guardrails`).
//!
//! Every change is appended to the audit log with the acting person, and
//! the state before and after (`member.approved`, `member.rejected` too). Only an owner may make or unmake an owner,
//! and the last owner can be neither demoted nor removed.

use api::ApiError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use billing::Money;
use serde::Deserialize;
use serde_json::{json, Value};
use store::{Role, StoredPrice, DEFAULT_PRICE_MODEL};

use super::{json_body, person, Person};
use crate::auth::Caller;
use crate::state::AppState;
use service::manage;

/// The audit log's organisation for installation-wide changes (prices).

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsRequest {
    input: bool,
    output: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    plan: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRequest {
    model: String,
    input: String,
    output: String,
    #[serde(default)]
    cached_input: Option<String>,
    #[serde(default)]
    per: Option<String>,
}

/// The signed-in person, with their role, when they are an owner or admin.
async fn admin(
    state: &AppState,
    caller: Option<Extension<Caller>>,
) -> Result<(Person, Role), crate::ServerError> {
    let p = person(state, caller)?;
    let role = service::members::managing_role(&p.store, &p.org_id, &p.user_id).await?;
    Ok((p, role))
}

fn actor(p: &Person) -> String {
    format!("user:{}", p.user_id)
}

fn parse_role(text: &str) -> Result<Role, ApiError> {
    text.parse()
        .map_err(|_| ApiError::invalid_body("role must be owner, admin, member or reader"))
}

/// `GET /api/admin/members`.
pub async fn members(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, _) = admin(&state, caller).await?;
    let members = p
        .store
        .list_members(&p.org_id)
        .await
        .map_err(service::Error::from)?;
    let mut data = Vec::with_capacity(members.len());
    for (user, role) in members {
        let plan = service::plans::plan_of(&p.store, &p.org_id, &user.id).await?;
        data.push(json!({
            "id": user.id, "email": user.email, "name": user.name,
            "role": role.as_str(), "plan": plan.id, "you": user.id == p.user_id,
        }));
    }
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `PATCH /api/admin/members/{user_id} {role}`.
pub async fn set_role(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, acting) = admin(&state, caller).await?;
    let request: RoleRequest = json_body(&body)?;
    let to = parse_role(&request.role)?;
    let actor = actor(&p);
    service::members::set_role(&p.store, &p.org_id, (&actor, acting), &user_id, to).await?;
    Ok(Json(json!({"id": user_id, "role": to.as_str()})))
}

/// `DELETE /api/admin/members/{user_id}`.
pub async fn remove(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, acting) = admin(&state, caller).await?;
    let actor = actor(&p);
    service::members::remove(&p.store, &p.org_id, (&actor, acting), &user_id).await?;
    Ok(Json(
        json!({"id": user_id, "object": "member.deleted", "deleted": true}),
    ))
}

/// `GET /api/admin/pending`: the people waiting for approval, oldest first.
pub async fn pending(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, _) = admin(&state, caller).await?;
    let requests = p
        .store
        .list_signup_requests(&p.org_id)
        .await
        .map_err(service::Error::from)?;
    let data: Vec<Value> = requests
        .iter()
        .map(|r| {
            json!({
                "id": r.user.id, "email": r.user.email, "name": r.user.name,
                "requested_at": manage::seconds(r.requested_at),
            })
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `POST /api/admin/pending/{user_id}/approve`.
pub async fn approve(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, _) = admin(&state, caller).await?;
    let user = service::members::approve(&p.store, &p.org_id, &actor(&p), &user_id).await?;
    Ok(Json(json!({
        "id": user.id, "email": user.email, "name": user.name,
        "status": "approved", "role": Role::Member.as_str(),
    })))
}

/// `DELETE /api/admin/pending/{user_id}`: rejects the sign-up.
pub async fn reject(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, _) = admin(&state, caller).await?;
    let user = service::members::reject(&p.store, &p.org_id, &actor(&p), &user_id).await?;
    Ok(Json(json!({
        "id": user.id, "email": user.email, "object": "signup_request.deleted",
        "status": "rejected", "deleted": true,
    })))
}

/// `GET /api/admin/plans`.
pub async fn plans(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, _) = admin(&state, caller).await?;
    let plans = service::plans::plans(&p.store).await?;
    Ok(Json(json!({"object": "list", "data": plans})))
}

/// `GET /api/admin/projects`: active projects, each with its guardrails.
pub async fn projects(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, _) = admin(&state, caller).await?;
    let projects = p
        .store
        .list_projects(&p.org_id)
        .await
        .map_err(service::Error::from)?;
    let mut data = Vec::new();
    for project in projects.iter().filter(|x| x.archived_at.is_none()) {
        let g = p
            .store
            .project_guardrails(&p.org_id, &project.id)
            .await
            .map_err(service::Error::from)?;
        data.push(json!({"id": project.id, "name": project.name,
            "guardrails": {"input": g.input, "output": g.output}}));
    }
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `PUT /api/admin/projects/{project_id}/guardrails {input, output}`.
pub async fn set_guardrails(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(project_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, _) = admin(&state, caller).await?;
    let request: GuardrailsRequest = json_body(&body)?;
    let wanted = service::guardrails::Guardrails {
        input: request.input,
        output: request.output,
    };
    let g = state
        .service()
        .set_guardrails(&p.store, &p.org_id, &project_id, wanted, &actor(&p))
        .await
        .map_err(service::Error::from)?;
    Ok(Json(
        json!({"id": project_id, "guardrails": {"input": g.input, "output": g.output}}),
    ))
}

/// `PUT /api/admin/members/{user_id}/plan {plan}`.
pub async fn assign_plan(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, _) = admin(&state, caller).await?;
    let request: PlanRequest = json_body(&body)?;
    let plan =
        service::plans::assign(&p.store, &p.org_id, &user_id, &request.plan, &actor(&p)).await?;
    Ok(Json(json!({"id": user_id, "plan": plan.id})))
}

/// The price per 1M tokens, in USD, as exact decimal text.
fn per_million(units: i64) -> String {
    Money::from_i64_units(units)
        .checked_mul(1_000_000)
        .map_or_else(|_| "overflow".to_owned(), Money::to_decimal_string)
}

/// A price as the admin page shows it: the audit fields and per 1M tokens.
fn price_json(price: &StoredPrice) -> Value {
    let mut body = manage::price_audit_json(price);
    body["input_per_1m_usd"] = per_million(price.input).into();
    body["cached_input_per_1m_usd"] = per_million(price.cached_input).into();
    body["output_per_1m_usd"] = per_million(price.output).into();
    body
}

/// `GET /api/admin/prices`.
pub async fn prices(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, _) = admin(&state, caller).await?;
    let prices = p.store.list_prices().await.map_err(service::Error::from)?;
    let data: Vec<Value> = prices.iter().map(price_json).collect();
    Ok(Json(
        json!({"object": "list", "default_model": DEFAULT_PRICE_MODEL, "data": data}),
    ))
}

/// The exact per-token price, in billing units, of `price` USD per `per`
/// tokens, or a 400 naming the field.
fn per_token(field: &str, price: &str, per: u64) -> Result<i64, ApiError> {
    manage::per_token_units(price, per).ok_or_else(|| {
        ApiError::invalid_body(format!(
            "{field}: {price:?} USD per {per} tokens is not an exact non-negative price"
        ))
    })
}

/// `POST /api/admin/prices`: records a price effective now.
pub async fn set_price(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, _) = admin(&state, caller).await?;
    let request: PriceRequest = json_body(&body)?;
    let model = request.model.trim().to_owned();
    if model.is_empty() {
        return Err(ApiError::invalid_body("model: name a model, or * for the default").into());
    }
    let per = match request
        .per
        .as_deref()
        .unwrap_or("1m")
        .to_ascii_lowercase()
        .as_str()
    {
        "1k" => 1_000,
        "1m" => 1_000_000,
        other => {
            return Err(
                ApiError::invalid_body(format!("per must be 1k or 1m, not {other:?}")).into(),
            )
        }
    };
    let input = per_token("input", &request.input, per)?;
    let price = StoredPrice {
        model: model.clone(),
        effective_at: store::now_ms(),
        input,
        cached_input: match &request.cached_input {
            Some(text) if !text.trim().is_empty() => per_token("cached_input", text, per)?,
            _ => input,
        },
        output: per_token("output", &request.output, per)?,
    };
    manage::set_price(&p.store, &price, &actor(&p))
        .await
        .map_err(service::Error::from)?;
    Ok(Json(price_json(&price)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_and_non_negative() {
        assert_eq!(per_token("input", "1", 1_000_000).ok(), Some(1_000_000));
        assert!(per_token("input", "-1", 1_000).is_err());
        assert!(per_token("input", "abc", 1_000).is_err());
    }
}

fn invite_json(invite: &store::Invite) -> Value {
    json!({
        "id": invite.id, "email": invite.email, "role": invite.role.as_str(),
        "status": invite.status(store::now_ms()),
        "created_at": manage::seconds(invite.invited_at),
        "expires_at": manage::seconds(invite.expires_at),
        "accepted_at": invite.accepted_at.map(manage::seconds),
    })
}

/// `GET /api/admin/invites`: the organisation's invites, oldest first.
pub async fn invites(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, _) = admin(&state, caller).await?;
    let invites = p
        .store
        .list_invites(&p.org_id)
        .await
        .map_err(service::Error::from)?;
    let data: Vec<Value> = invites.iter().map(invite_json).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// The body of `POST /api/admin/invites`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    email: String,
    role: String,
}

/// `POST /api/admin/invites {email, role}`: the invite and, this once, its
/// link.
pub async fn invite(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, acting) = admin(&state, caller).await?;
    let request: InviteRequest = json_body(&body)?;
    let role = parse_role(request.role.trim())?;
    if role == Role::Owner && acting != Role::Owner {
        return Err(ApiError::Forbidden {
            message: "Only an owner may invite an owner.".into(),
        }
        .into());
    }
    let (invite, token) =
        service::invites::create(&p.store, &p.org_id, &actor(&p), &request.email, role).await?;
    let mut answer = invite_json(&invite);
    answer["invite_url"] = Value::String(service::invites::link_path(&token));
    Ok(Json(answer))
}

/// `DELETE /api/admin/invites/{invite_id}`.
pub async fn delete_invite(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(invite_id): Path<String>,
) -> Result<Json<Value>, crate::ServerError> {
    let (p, _) = admin(&state, caller).await?;
    let invite = service::invites::delete(&p.store, &p.org_id, &actor(&p), &invite_id).await?;
    Ok(Json(
        json!({"id": invite.id, "object": "invite.deleted", "deleted": true}),
    ))
}
