//! `GET /v1/models`, `GET /v1/models/{model}` (ids may contain `/`) and
//! `GET /health`.

use api::{Model, ModelList};
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ServerError;
use crate::routes::access;
use crate::state::{AppState, ServedModel};

/// Who the served models are listed as belonging to.
const OWNED_BY: &str = "parlance";

fn entry(model: &ServedModel) -> Model {
    Model::new(model.name.clone(), model.created, OWNED_BY)
}

/// Lists the served models the caller may use.
pub async fn list_models(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Json<ModelList> {
    let models = state
        .models()
        .filter(|m| access::may_use(caller.as_ref(), &m.name))
        .map(entry)
        .collect();
    Json(ModelList::new(models))
}

/// One served model the caller may use, or 404 `model_not_found`.
pub async fn retrieve_model(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ServerError> {
    let id = id.strip_prefix('/').unwrap_or(&id);
    Ok(Json(entry(access::resolve_model(
        &state,
        caller.as_ref(),
        id,
    )?)))
}

/// Liveness: the server answers and its models are loaded.
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
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
    }))
}
