//! `GET /v1/models`, `GET /v1/models/{model}` (ids may contain `/`),
//! `DELETE /v1/models/{model}` (an alias; see `service::Service::delete_model`)
//! and `GET /health`. The models listed are the gateway's (local and remote),
//! each alias as an entry of its own, filtered by the key's
//! `allowed_models`.

use api::{Model, ModelDeleted, ModelList};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use service::ServedModel;

use crate::error::ServerError;
use crate::routes::Context;
use crate::state::AppState;

/// Who the served models are listed as belonging to.
const OWNED_BY: &str = "parlance";

fn created(state: &AppState) -> u64 {
    state.models().next().map_or(0, |m: &ServedModel| m.created)
}

/// Lists the models and aliases the caller may use.
pub async fn list_models(State(state): State<AppState>, context: Context) -> Json<ModelList> {
    let created = created(&state);
    let models = state
        .routing()
        .visible(context.tenant())
        .into_iter()
        .map(|(id, _)| Model::new(id, created, OWNED_BY))
        .collect();
    Json(ModelList::new(models))
}

/// One model or alias the caller may use, or 404 `model_not_found`.
pub async fn retrieve_model(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
) -> Result<Json<Model>, ServerError> {
    let id = id.strip_prefix('/').unwrap_or(&id);
    state.service().resolve(context.tenant(), id)?;
    Ok(Json(Model::new(id.to_owned(), created(&state), OWNED_BY)))
}

/// Deletes a model alias (see `service::Service::delete_model`): OpenAI's
/// `model.deleted` object, or a 400/403/404 saying why not.
pub async fn delete_model(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
) -> Result<Json<ModelDeleted>, ServerError> {
    let id = id.strip_prefix('/').unwrap_or(&id);
    Ok(Json(
        state.service().delete_model(context.tenant(), id).await?,
    ))
}

/// Liveness: the server answers and its models are loaded; while draining
/// (after a shutdown signal) a 503 with `"status": "draining"`, so a load
/// balancer stops sending.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (status, code) = if state.is_draining() {
        ("draining", StatusCode::SERVICE_UNAVAILABLE)
    } else {
        ("ok", StatusCode::OK)
    };
    let body = Json(json!({
        "status": status,
        "in_flight": state.in_flight(),
        "generations": state.live_generations(),
        "models": state.models().map(|m| m.name.clone()).collect::<Vec<_>>(),
        "engines": state
            .models()
            .map(|m| {
                let s = m.engine.stats();
                json!({
                    "model": m.name,
                    "running": s.running,
                    "waiting": s.waiting,
                    "kv_free_blocks": s.kv_free_blocks,
                    "kv_total_blocks": s.kv_total_blocks,
                    "finished": s.finished,
                    "cancelled": s.cancelled,
                    "preempted": s.preempted,
                })
            })
            .collect::<Vec<_>>(),
    }));
    (code, body)
}
