//! People of the organisation, in OpenAI's shapes:
//! `GET /v1/organization/users` (with `after`, `limit` and `emails`),
//! `GET|POST|DELETE /v1/organization/users/{id}` (retrieve, change the
//! role, remove), and `GET|POST /v1/organization/invites`,
//! `GET|DELETE /v1/organization/invites/{id}`.
//!
//! An admin API key acts with an owner's authority (as OpenAI's do); the
//! rules — the last owner can be neither demoted nor removed — and the
//! audit rows are `service::members`' and `service::invites`'. Roles are
//! ours: `owner`, `admin`, `member` and `reader` (OpenAI's API names only
//! `owner` and `reader`; both mean the same here).
//!
//! There is no mail: a new invite answers its one-time link (`invite_url`,
//! a path on this server, and its `token`) once. Whoever opens the link and
//! signs up with the invited email joins with the invited role, approval
//! or not; the invite then reads `accepted`.

use api::{ApiError, InvalidCode};
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::{Extension, Json};
use serde_json::{json, Value};
use store::{Invite, Membership, Role};

use super::projects::{object_body, string_field};
use super::{admin, list_page, Admin, Params};
use crate::auth::Caller;
use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::state::AppState;
use service::manage::seconds;

fn user_json(member: &Membership) -> Value {
    json!({
        "object": "organization.user",
        "id": member.user.id,
        "name": member.user.name,
        "email": member.user.email,
        "role": member.role.as_str(),
        "added_at": seconds(member.added_at),
        "created": seconds(member.user.created_at),
    })
}

fn invite_json(invite: &Invite) -> Value {
    json!({
        "object": "organization.invite",
        "id": invite.id,
        "email": invite.email,
        "role": invite.role.as_str(),
        "status": invite.status(store::now_ms()),
        "created_at": seconds(invite.invited_at),
        "invited_at": seconds(invite.invited_at),
        "expires_at": seconds(invite.expires_at),
        "accepted_at": invite.accepted_at.map(seconds),
        "projects": [],
    })
}

fn role_param(text: &str) -> Result<Role, ApiError> {
    text.trim().to_lowercase().parse().map_err(|_| {
        ApiError::invalid(
            "role",
            InvalidCode::InvalidValue,
            format!("`role` must be owner, admin, member or reader, not {text:?}."),
        )
    })
}

fn no_user(user_id: &str) -> ApiError {
    ApiError::NotFound {
        message: format!("No user found with id '{user_id}'."),
    }
}

/// The organisation's member `user_id`, or 404.
async fn member(admin: &Admin, user_id: &str) -> Result<Membership, ServerError> {
    let members = admin
        .store
        .list_memberships(&admin.tenant.org_id)
        .await
        .map_err(service::Error::from)?;
    members
        .into_iter()
        .find(|m| m.user.id == user_id)
        .ok_or_else(|| no_user(user_id).into())
}

/// `GET /v1/organization/users`
pub async fn list_users(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    uri: Uri,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let params = Params::from_uri(&uri)?;
    let emails: Vec<String> = params
        .all("emails")
        .iter()
        .map(|e| e.to_lowercase())
        .collect();
    let members = admin
        .store
        .list_memberships(&admin.tenant.org_id)
        .await
        .map_err(service::Error::from)?;
    let items = members
        .iter()
        .filter(|m| emails.is_empty() || emails.contains(&m.user.email))
        .map(|m| (m.user.id.clone(), user_json(m)))
        .collect();
    Ok(Json(list_page(&params, items)?))
}

/// `GET /v1/organization/users/{user_id}`
pub async fn retrieve_user(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    Ok(Json(user_json(&member(&admin, &user_id).await?)))
}

/// `POST /v1/organization/users/{user_id} {role}`: changes their role.
pub async fn modify_user(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(user_id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    member(&admin, &user_id).await?;
    let map = object_body(&body, &["role"], &["role_id"])?;
    let role = role_param(&string_field(&map, "role", true)?.unwrap_or_default())?;
    service::members::set_role(
        &admin.store,
        &admin.tenant.org_id,
        (&admin.tenant.api_key_id, Role::Owner),
        &user_id,
        role,
    )
    .await?;
    Ok(Json(user_json(&member(&admin, &user_id).await?)))
}

/// `DELETE /v1/organization/users/{user_id}`: removes them from the
/// organisation (their account stays).
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    member(&admin, &user_id).await?;
    service::members::remove(
        &admin.store,
        &admin.tenant.org_id,
        (&admin.tenant.api_key_id, Role::Owner),
        &user_id,
    )
    .await?;
    Ok(Json(
        json!({"object": "organization.user.deleted", "id": user_id, "deleted": true}),
    ))
}

/// `GET /v1/organization/invites`
pub async fn list_invites(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    uri: Uri,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let params = Params::from_uri(&uri)?;
    let invites = admin
        .store
        .list_invites(&admin.tenant.org_id)
        .await
        .map_err(service::Error::from)?;
    let items = invites
        .iter()
        .map(|i| (i.id.clone(), invite_json(i)))
        .collect();
    Ok(Json(list_page(&params, items)?))
}

/// `POST /v1/organization/invites {email, role}`: the invite with its
/// one-time link, answered once.
pub async fn create_invite(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let map = object_body(&body, &["email", "role", "projects"], &[])?;
    let email = string_field(&map, "email", true)?.unwrap_or_default();
    let role = role_param(&string_field(&map, "role", true)?.unwrap_or_default())?;
    match map.get("projects") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) if list.is_empty() => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "projects",
                InvalidCode::InvalidValue,
                "`projects` is not supported: a member uses every project of the organization.",
            )
            .into())
        }
    }
    let (invite, token) = service::invites::create(
        &admin.store,
        &admin.tenant.org_id,
        &admin.tenant.api_key_id,
        &email,
        role,
    )
    .await?;
    let mut answer = invite_json(&invite);
    answer["invite_url"] = Value::String(service::invites::link_path(&token));
    answer["token"] = Value::String(token.expose().to_owned());
    Ok(Json(answer))
}

/// `GET /v1/organization/invites/{invite_id}`
pub async fn retrieve_invite(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(invite_id): Path<String>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let invite = admin
        .store
        .get_invite(&admin.tenant.org_id, &invite_id)
        .await
        .map_err(|err| match err.kind() {
            store::ErrorKind::NotFound => ApiError::NotFound {
                message: format!("No invite found with id '{invite_id}'."),
            }
            .into(),
            _ => ServerError::from(service::Error::from(err)),
        })?;
    Ok(Json(invite_json(&invite)))
}

/// `DELETE /v1/organization/invites/{invite_id}`: its link stops working;
/// an accepted invite cannot be deleted (400).
pub async fn delete_invite(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(invite_id): Path<String>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let invite = service::invites::delete(
        &admin.store,
        &admin.tenant.org_id,
        &admin.tenant.api_key_id,
        &invite_id,
    )
    .await
    .map_err(|err| match err {
        service::Error::Store(e) if e.kind() == store::ErrorKind::NotFound => ApiError::NotFound {
            message: format!("No invite found with id '{invite_id}'."),
        }
        .into(),
        err => ServerError::from(err),
    })?;
    Ok(Json(
        json!({"object": "organization.invite.deleted", "id": invite.id, "deleted": true}),
    ))
}
