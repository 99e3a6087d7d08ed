//! `GET /v1/models`, `GET /v1/models/{model}` (ids may contain `/`) and
//! `GET /health`.

use api::{Model, ModelList};
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ServerError;
use crate::state::{AppState, ServedModel};

/// Who the served models are listed as belonging to.
const OWNED_BY: &str = "parlance";

fn entry(model: &ServedModel) -> Model {
    Model::new(model.name.clone(), model.created, OWNED_BY)
}

/// Lists the served models.
pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList::new(state.models().map(entry).collect()))
}

/// One served model, or 404 `model_not_found`.
pub async fn retrieve_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ServerError> {
    let id = id.strip_prefix('/').unwrap_or(&id);
    Ok(Json(entry(state.model(id)?)))
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
