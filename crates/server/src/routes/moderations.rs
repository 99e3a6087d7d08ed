//! `POST /v1/moderations`: parse the body (`api`), hand it to
//! `Service::moderations` (the local classifier), answer as JSON.

use api::ModerationRequest;
use axum::extract::State;
use axum::routing::{post, MethodRouter};
use axum::Json;

use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::routes::Context;
use crate::state::AppState;

/// The moderation routes (mounted with and without `/v1`).
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![("/moderations", post(create_moderation))]
}

/// Classifies every input.
pub async fn create_moderation(
    State(state): State<AppState>,
    context: Context,
    RawBody(body): RawBody,
) -> Result<Json<api::Moderation>, ServerError> {
    let request: ModerationRequest = api::parse_request(&body)?;
    let answer = state.service().moderations(&context.0, request).await?;
    Ok(Json(answer))
}
