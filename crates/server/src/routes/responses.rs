//! The Responses API, thin: `POST /v1/responses` (whole, streamed as typed
//! events, or in the background), `GET` / `DELETE /v1/responses/{id}`,
//! `GET /v1/responses/{id}/input_items` and `POST /v1/responses/{id}/cancel`.
//! The work is the service's (`service::responses`).

use std::collections::BTreeMap;

use api::{ApiError, CreateResponseRequest, InvalidCode};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Json;
use service::responses::{ItemsPage, ResponseStart};

use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::routes::Context;
use crate::state::AppState;
use crate::stream::{sse_frames, sse_response};

/// The routes, relative to `/v1`.
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/responses", post(create_response)),
        (
            "/responses/{id}",
            get(retrieve_response).delete(delete_response),
        ),
        ("/responses/{id}/input_items", get(list_input_items)),
        ("/responses/{id}/cancel", post(cancel_response)),
    ]
}

/// Creates a response.
pub async fn create_response(
    State(state): State<AppState>,
    context: Context,
    RawBody(body): RawBody,
) -> Result<Response, ServerError> {
    let request: CreateResponseRequest = api::parse_request(&body)?;
    let timeout = state.request_timeout();
    match state
        .service()
        .create_response(&context.0, request, timeout)
        .await?
    {
        ResponseStart::Stream(stream) => {
            let (answer, events) = *stream;
            Ok(sse_response(answer, events))
        }
        ResponseStart::Events(events) => Ok(sse_frames(
            events
                .iter()
                .map(|event| format!("event: {}\n{}", event.kind, api::sse_data(event)))
                .collect(),
        )),
        ResponseStart::Whole(object) => Ok(Json(object).into_response()),
    }
}

/// Retrieves a stored response.
pub async fn retrieve_response(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
) -> Result<Response, ServerError> {
    let object = state.service().retrieve_response(&context.0, &id).await?;
    Ok(Json(object).into_response())
}

/// Deletes a stored response.
pub async fn delete_response(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
) -> Result<Response, ServerError> {
    let deleted = state.service().delete_response(&context.0, &id).await?;
    Ok(Json(deleted).into_response())
}

/// Cancels a background response.
pub async fn cancel_response(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
) -> Result<Response, ServerError> {
    let object = state.service().cancel_response(&context.0, &id).await?;
    Ok(Json(object).into_response())
}

/// Lists a stored response's input items (`after`, `limit`, `order`).
pub async fn list_input_items(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Response, ServerError> {
    let limit = match query.get("limit") {
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            ApiError::invalid(
                "limit",
                InvalidCode::InvalidType,
                format!("Invalid 'limit': expected an integer, got '{text}'."),
            )
        })?),
        None => None,
    };
    let page = ItemsPage {
        after: query.get("after").cloned(),
        limit,
        order: query.get("order").cloned(),
    };
    let list = state
        .service()
        .response_input_items(&context.0, &id, &page)
        .await?;
    Ok(Json(list).into_response())
}
