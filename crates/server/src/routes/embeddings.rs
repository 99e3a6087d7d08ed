//! `POST /v1/embeddings`: parse the body (`api`), hand it to
//! `Service::embeddings`, answer the list as JSON.

use api::EmbeddingRequest;
use axum::extract::State;
use axum::routing::{post, MethodRouter};
use axum::Json;

use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::routes::Context;
use crate::state::AppState;

/// The embeddings routes (mounted with and without `/v1`).
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![("/embeddings", post(create_embedding))]
}

/// Creates embeddings of every input.
pub async fn create_embedding(
    State(state): State<AppState>,
    context: Context,
    RawBody(body): RawBody,
) -> Result<Json<api::EmbeddingList>, ServerError> {
    let request: EmbeddingRequest = api::parse_request(&body)?;
    let list = state.service().embeddings(&context.0, request).await?;
    Ok(Json(list))
}
