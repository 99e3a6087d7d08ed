//! `GET /v1/models`, `GET /v1/models/{model}` (ids may contain `/`) and
//! `GET /health`. The models listed are the gateway's (local and remote),
//! each alias as an entry of its own, filtered by the key's
//! `allowed_models`.

use api::{ApiError, Model, ModelList};
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ServerError;
use crate::routes::access;
use crate::state::{AppState, ServedModel};

/// Who the served models are listed as belonging to.
const OWNED_BY: &str = "parlance";

fn created(state: &AppState) -> u64 {
    state.models().next().map_or(0, |m: &ServedModel| m.created)
}

/// Lists the models and aliases the caller may use.
pub async fn list_models(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Json<ModelList> {
    let created = created(&state);
    let mut models = Vec::new();
    for (name, aliases) in &state.catalog() {
        for id in std::iter::once(name).chain(aliases) {
            if access::may_use(caller.as_ref(), id) || access::may_use(caller.as_ref(), name) {
                models.push(Model::new(id.clone(), created, OWNED_BY));
            }
        }
    }
    Json(ModelList::new(models))
}

/// One served model the caller may use, or 404 `model_not_found`.
pub async fn retrieve_model(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ServerError> {
    let id = id.strip_prefix('/').unwrap_or(&id);
    let not_found = || ApiError::ModelNotFound {
        model: id.to_owned(),
    };
    let gateway = state.gateway();
    let model = gateway.resolve(id).ok_or_else(not_found)?;
    if !access::may_use(caller.as_ref(), id) && !access::may_use(caller.as_ref(), model) {
        return Err(not_found().into());
    }
    Ok(Json(Model::new(id.to_owned(), created(&state), OWNED_BY)))
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
