//! A project's guardrails: `GET|POST
//! /v1/organization/projects/{id}/guardrails` (`{"input": bool,
//! "output": bool}`; a POST changes the fields it names). A Parlance
//! extension of the admin API; the rules and the audit row are
//! `service::guardrails`'.

use api::{ApiError, InvalidCode};
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{json, Value};
use service::guardrails::Guardrails;

use super::admin;
use super::projects::{object_body, project};
use crate::auth::Caller;
use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::state::AppState;

fn guardrails_json(project_id: &str, g: Guardrails) -> Value {
    json!({
        "object": "organization.project.guardrails",
        "project_id": project_id,
        "input": g.input,
        "output": g.output,
    })
}

/// `GET /v1/organization/projects/{project_id}/guardrails`
pub async fn retrieve_guardrails(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(project_id): Path<String>,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    project(&admin, &project_id).await?;
    let g = admin
        .store
        .project_guardrails(&admin.tenant.org_id, &project_id)
        .await
        .map_err(service::Error::from)?;
    Ok(Json(guardrails_json(&project_id, g)))
}

/// `POST /v1/organization/projects/{project_id}/guardrails {input?, output?}`
pub async fn modify_guardrails(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(project_id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ServerError> {
    let admin = admin(&state, caller)?;
    project(&admin, &project_id).await?;
    let map = object_body(&body, &["input", "output"], &[])?;
    let flag = |name: &str| -> Result<Option<bool>, ApiError> {
        match map.get(name) {
            None => Ok(None),
            Some(Value::Bool(on)) => Ok(Some(*on)),
            Some(_) => Err(ApiError::invalid(
                name,
                InvalidCode::InvalidType,
                format!("`{name}` must be a boolean."),
            )),
        }
    };
    let (input, output) = (flag("input")?, flag("output")?);
    let org = &admin.tenant.org_id;
    let mut g = admin
        .store
        .project_guardrails(org, &project_id)
        .await
        .map_err(service::Error::from)?;
    g.input = input.unwrap_or(g.input);
    g.output = output.unwrap_or(g.output);
    let actor = &admin.tenant.api_key_id;
    let g = state
        .service()
        .set_guardrails(&admin.store, org, &project_id, g, actor)
        .await
        .map_err(service::Error::from)?;
    Ok(Json(guardrails_json(&project_id, g)))
}
