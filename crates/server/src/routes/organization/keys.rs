//! Project API keys and admin API keys:
//! `GET|POST /v1/organization/projects/{id}/api_keys`,
//! `GET|DELETE /v1/organization/projects/{id}/api_keys/{key}` and its
//! `POST …/rotate`, and the same for `/v1/organization/admin_api_keys`.
//!
//! A key is found only inside the caller's organisation, under the project
//! in the path, and of the kind of the route (a project key is not an admin
//! key): anything else is a 404. Creating and rotating answer the secret
//! once, as `value`; every change is audited through `service::manage`.

use api::{ApiError, InvalidCode};
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use store::{ApiKey, KeyKind, KeySecret, NewApiKey, RateLimits};

use super::projects::project;
use super::{admin, list_page, Admin, Params};
use crate::auth::Caller;
use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::state::AppState;
use service::manage::{self, seconds};

fn key_status(key: &ApiKey) -> &'static str {
    if key.revoked_at.is_some() {
        "revoked"
    } else if key.is_active(store::now_ms()) {
        "active"
    } else {
        "expired"
    }
}

/// OpenAI's project API key or admin API key object, plus our fields.
fn key_json(key: &ApiKey) -> Value {
    let object = match key.kind {
        KeyKind::Project => "organization.project.api_key",
        KeyKind::Admin => "organization.admin_api_key",
    };
    json!({
        "object": object,
        "id": key.id,
        "name": key.name,
        "redacted_value": key.redacted,
        "created_at": seconds(key.created_at),
        "last_used_at": key.last_used_at.map(seconds),
        "owner": {"type": "service_account"},
        "project_id": key.project_id,
        "kind": key.kind.as_str(),
        "status": key_status(key),
        "expires_at": key.expires_at.map(seconds),
        "revoked_at": key.revoked_at.map(seconds),
        "allowed_models": key.allowed_models,
        "rpm_limit": key.limits.rpm,
        "tpm_limit": key.limits.tpm,
    })
}

/// A key with its secret, as creation and rotation answer it.
fn created_json(key: &ApiKey, secret: &KeySecret) -> Value {
    let mut value = key_json(key);
    value["value"] = Value::String(secret.expose().to_owned());
    value
}

fn deleted_json(key: &ApiKey) -> Value {
    let object = match key.kind {
        KeyKind::Project => "organization.project.api_key.deleted",
        KeyKind::Admin => "organization.admin_api_key.deleted",
    };
    json!({"object": object, "id": key.id, "deleted": true})
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::NotFound {
        message: format!("No {what} found with id '{id}'."),
    }
}

/// The body of a key creation; every field optional.
#[derive(Debug, Default, Deserialize)]
struct CreateKey {
    name: Option<String>,
    /// Unix seconds.
    expires_at: Option<i64>,
    allowed_models: Option<Vec<String>>,
    rpm_limit: Option<u64>,
    tpm_limit: Option<u64>,
    /// Admin keys only: the project they are filed under (default: the
    /// caller's).
    project_id: Option<String>,
}

fn parse_create(body: &[u8]) -> Result<CreateKey, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CreateKey::default());
    }
    let create: CreateKey = serde_json::from_slice(body).map_err(|err| {
        ApiError::invalid_body(format!("The request body is not a valid key: {err}"))
    })?;
    if let Some(at) = create.expires_at {
        let now = seconds(store::now_ms());
        if at <= now || at.checked_mul(1000).is_none() {
            return Err(ApiError::invalid(
                "expires_at",
                InvalidCode::InvalidValue,
                "`expires_at` must be a future time in unix seconds.",
            ));
        }
    }
    if create.allowed_models.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::invalid(
            "allowed_models",
            InvalidCode::EmptyArray,
            "`allowed_models` must name at least one model (omit it to allow all).",
        ));
    }
    Ok(create)
}

fn new_key(create: CreateKey, project_id: String, kind: KeyKind) -> NewApiKey {
    NewApiKey {
        project_id,
        name: create.name.unwrap_or_default(),
        expires_at: create.expires_at.map(|s| s.saturating_mul(1000)),
        allowed_models: create.allowed_models,
        kind,
        limits: RateLimits {
            rpm: create.rpm_limit,
            tpm: create.tpm_limit,
        },
    }
}

/// The organisation's key `key_id` of `kind` (under `project_id` if given), or 404.
async fn key_of(
    admin: &Admin,
    project_id: Option<&str>,
    key_id: &str,
    kind: KeyKind,
) -> Result<ApiKey, ApiError> {
    let what = match kind {
        KeyKind::Project => "api key",
        KeyKind::Admin => "admin api key",
    };
    let key = admin
        .store
        .get_key(&admin.tenant.org_id, key_id)
        .await
        .map_err(|err| match err.kind() {
            store::ErrorKind::NotFound => not_found(what, key_id),
            _ => service::Error::from(err).into(),
        })?;
    if key.kind != kind || project_id.is_some_and(|p| p != key.project_id) {
        return Err(not_found(what, key_id));
    }
    Ok(key)
}

async fn list_keys(
    admin: &Admin,
    project_id: Option<&str>,
    kind: KeyKind,
    uri: &Uri,
) -> Result<Value, ApiError> {
    let params = Params::from_uri(uri)?;
    let keys = admin
        .store
        .list_keys(&admin.tenant.org_id, project_id)
        .await
        .map_err(service::Error::from)?;
    let items = keys
        .iter()
        .filter(|k| k.kind == kind)
        .map(|k| (k.id.clone(), key_json(k)))
        .collect();
    list_page(&params, items)
}

/// `GET /v1/organization/projects/{project_id}/api_keys`
pub async fn list_project_keys(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(project_id): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    project(&admin, &project_id).await?;
    Ok(Json(
        list_keys(&admin, Some(&project_id), KeyKind::Project, &uri).await?,
    ))
}

/// `POST /v1/organization/projects/{project_id}/api_keys` (ours): a new
/// project key, its secret answered once as `value`.
pub async fn create_project_key(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(project_id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    project(&admin, &project_id).await?;
    let mut create = parse_create(&body)?;
    create.project_id = None;
    issue(&admin, new_key(create, project_id, KeyKind::Project)).await
}

/// `GET /v1/organization/projects/{project_id}/api_keys/{key_id}`
pub async fn retrieve_project_key(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path((project_id, key_id)): Path<(String, String)>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    project(&admin, &project_id).await?;
    let key = key_of(&admin, Some(&project_id), &key_id, KeyKind::Project).await?;
    Ok(Json(key_json(&key)))
}

/// `DELETE /v1/organization/projects/{project_id}/api_keys/{key_id}`: revokes it.
pub async fn delete_project_key(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path((project_id, key_id)): Path<(String, String)>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    project(&admin, &project_id).await?;
    delete(&admin, Some(&project_id), &key_id, KeyKind::Project).await
}

/// `POST /v1/organization/projects/{project_id}/api_keys/{key_id}/rotate`
/// (ours): revokes the key and answers its successor with the secret.
pub async fn rotate_project_key(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path((project_id, key_id)): Path<(String, String)>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    project(&admin, &project_id).await?;
    rotate(&admin, Some(&project_id), &key_id, KeyKind::Project).await
}

/// `GET /v1/organization/admin_api_keys`
pub async fn list_admin_keys(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    uri: Uri,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    Ok(Json(list_keys(&admin, None, KeyKind::Admin, &uri).await?))
}

/// `POST /v1/organization/admin_api_keys`: a new admin key, filed under
/// `project_id` (default: the caller's project); the secret answered once.
pub async fn create_admin_key(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let mut create = parse_create(&body)?;
    let project_id = create
        .project_id
        .take()
        .unwrap_or_else(|| admin.tenant.project_id.clone());
    project(&admin, &project_id).await.map_err(|_| {
        ApiError::invalid(
            "project_id",
            InvalidCode::InvalidValue,
            format!("No project found with id '{project_id}'."),
        )
    })?;
    issue(&admin, new_key(create, project_id, KeyKind::Admin)).await
}

/// `GET /v1/organization/admin_api_keys/{key_id}`
pub async fn retrieve_admin_key(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(key_id): Path<String>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    Ok(Json(key_json(
        &key_of(&admin, None, &key_id, KeyKind::Admin).await?,
    )))
}

/// `DELETE /v1/organization/admin_api_keys/{key_id}`: revokes it.
pub async fn delete_admin_key(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(key_id): Path<String>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    delete(&admin, None, &key_id, KeyKind::Admin).await
}

/// `POST /v1/organization/admin_api_keys/{key_id}/rotate` (ours).
pub async fn rotate_admin_key(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(key_id): Path<String>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    rotate(&admin, None, &key_id, KeyKind::Admin).await
}

/// Creates `new` and answers with it and its secret (shown once).
async fn issue(admin: &Admin, new: NewApiKey) -> Result<Json<Value>, ServerError> {
    let (key, secret) = manage::create_key(
        &admin.store,
        &admin.tenant.org_id,
        &new,
        &admin.tenant.api_key_id,
    )
    .await
    .map_err(service::Error::from)?;
    Ok(Json(created_json(&key, &secret)))
}

async fn delete(
    admin: &Admin,
    project_id: Option<&str>,
    key_id: &str,
    kind: KeyKind,
) -> Result<Json<Value>, ServerError> {
    key_of(admin, project_id, key_id, kind).await?;
    let key = manage::revoke_key(
        &admin.store,
        &admin.tenant.org_id,
        key_id,
        &admin.tenant.api_key_id,
    )
    .await
    .map_err(service::Error::from)?;
    Ok(Json(deleted_json(&key)))
}

async fn rotate(
    admin: &Admin,
    project_id: Option<&str>,
    key_id: &str,
    kind: KeyKind,
) -> Result<Json<Value>, ServerError> {
    key_of(admin, project_id, key_id, kind).await?;
    let (key, secret) = manage::rotate_key(
        &admin.store,
        &admin.tenant.org_id,
        key_id,
        &admin.tenant.api_key_id,
    )
    .await
    .map_err(|err| match err.kind() {
        store::ErrorKind::NotFound => ApiError::NotFound {
            message: format!(
                "No active key found with id '{key_id}'; a revoked key cannot be rotated."
            ),
        },
        _ => service::Error::from(err).into(),
    })?;
    Ok(Json(created_json(&key, &secret)))
}
