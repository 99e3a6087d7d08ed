//! Projects: `GET|POST /v1/organization/projects`,
//! `GET|POST /v1/organization/projects/{id}` (retrieve, modify) and
//! `POST /v1/organization/projects/{id}/archive`, in OpenAI's shapes. The
//! rules and the audit rows are `service::projects`'. Archived projects are
//! listed only with `include_archived=true`, as OpenAI does.

use api::{ApiError, InvalidCode};
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use store::Project;

use super::{admin, list_page, Admin, Params};
use crate::auth::Caller;
use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::state::AppState;
use service::manage::seconds;

/// OpenAI's project object.
pub(super) fn project_json(project: &Project) -> Value {
    json!({
        "id": project.id,
        "object": "organization.project",
        "name": project.name,
        "created_at": seconds(project.created_at),
        "archived_at": project.archived_at.map(seconds),
        "status": if project.archived_at.is_some() { "archived" } else { "active" },
    })
}

/// The caller's project `project_id`, or 404.
pub(super) async fn project(admin: &Admin, project_id: &str) -> Result<Project, ApiError> {
    admin
        .store
        .get_project(&admin.tenant.org_id, project_id)
        .await
        .map_err(|err| match err.kind() {
            store::ErrorKind::NotFound => ApiError::NotFound {
                message: format!("No project found with id '{project_id}'."),
            },
            _ => service::Error::from(err).into(),
        })
}

/// A JSON object body whose fields are all in `known`; `null`s of the
/// fields in `ignorable_nulls` (OpenAI's residency settings, which a
/// single server has no use for) are accepted, any value of them refused.
pub(super) fn object_body(
    body: &[u8],
    known: &[&str],
    ignorable_nulls: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| ApiError::invalid_body(format!("The request body is not JSON: {err}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::invalid_body(
            "The request body must be a JSON object.",
        ));
    };
    for (field, value) in &map {
        if known.contains(&field.as_str()) {
            continue;
        }
        if ignorable_nulls.contains(&field.as_str()) && value.is_null() {
            continue;
        }
        return Err(ApiError::InvalidRequest {
            message: format!("Unrecognized request argument supplied: {field}"),
            param: Some(field.clone()),
            code: None,
        });
    }
    Ok(map)
}

/// The string field `name` of `map`, required or not.
pub(super) fn string_field(
    map: &Map<String, Value>,
    name: &str,
    required: bool,
) -> Result<Option<String>, ApiError> {
    match map.get(name) {
        None | Some(Value::Null) if required => Err(ApiError::invalid(
            name,
            InvalidCode::MissingRequiredParameter,
            format!("`{name}` is required."),
        )),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ApiError::invalid(
            name,
            InvalidCode::InvalidType,
            format!("`{name}` must be a string."),
        )),
    }
}

const RESIDENCY: &[&str] = &["external_key_id", "geography", "residency"];

/// `GET /v1/organization/projects`: active projects, and archived ones
/// too with `include_archived=true`.
pub async fn list_projects(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    uri: Uri,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let params = Params::from_uri(&uri)?;
    let include_archived = match params.get("include_archived") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "include_archived",
                InvalidCode::InvalidValue,
                format!("`include_archived` must be true or false, not {other:?}."),
            )
            .into())
        }
    };
    let projects = admin
        .store
        .list_projects(&admin.tenant.org_id)
        .await
        .map_err(service::Error::from)?;
    let items = projects
        .iter()
        .filter(|p| include_archived || p.archived_at.is_none())
        .map(|p| (p.id.clone(), project_json(p)))
        .collect();
    Ok(Json(list_page(&params, items)?))
}

/// `POST /v1/organization/projects {name}`: a new project.
pub async fn create_project(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let map = object_body(&body, &["name"], RESIDENCY)?;
    let name = string_field(&map, "name", true)?.unwrap_or_default();
    let project = service::projects::create(
        &admin.store,
        &admin.tenant.org_id,
        &admin.tenant.api_key_id,
        &name,
    )
    .await?;
    Ok(Json(project_json(&project)))
}

/// `GET /v1/organization/projects/{project_id}`
pub async fn retrieve_project(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(project_id): Path<String>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    Ok(Json(project_json(&project(&admin, &project_id).await?)))
}

/// `POST /v1/organization/projects/{project_id} {name}`: renames it.
pub async fn modify_project(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(project_id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    let current = project(&admin, &project_id).await?;
    let map = object_body(&body, &["name"], RESIDENCY)?;
    let Some(name) = string_field(&map, "name", false)? else {
        // Nothing to change.
        return Ok(Json(project_json(&current)));
    };
    let project = service::projects::rename(
        &admin.store,
        &admin.tenant.org_id,
        &admin.tenant.api_key_id,
        &project_id,
        &name,
    )
    .await
    .map_err(archived_is_a_400)?;
    Ok(Json(project_json(&project)))
}

/// `POST /v1/organization/projects/{project_id}/archive`
pub async fn archive_project(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(project_id): Path<String>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    project(&admin, &project_id).await?;
    let project = service::projects::archive(
        &admin.store,
        &admin.tenant.org_id,
        &admin.tenant.api_key_id,
        &project_id,
    )
    .await?;
    Ok(Json(project_json(&project)))
}

fn archived_is_a_400(err: service::Error) -> ServerError {
    match err {
        service::Error::Store(store::StoreError::InvalidRequest(why)) => {
            ApiError::invalid_body(format!("Cannot modify the project: {why}.")).into()
        }
        err => err.into(),
    }
}
