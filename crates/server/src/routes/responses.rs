//! The Responses API, thin: `POST /v1/responses` (whole, streamed as typed
//! events, or in the background), `POST /v1/responses/input_tokens`,
//! `GET` (whole, or `stream=true`: its events replayed) / `DELETE
//! /v1/responses/{id}`,
//! `GET /v1/responses/{id}/input_items` and `POST /v1/responses/{id}/cancel`.
//! The work is the service's (`service::responses`).

use std::collections::BTreeMap;

use api::{ApiError, CreateResponseRequest, InvalidCode};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Json;
use service::responses::{replay, ItemsPage, ResponseStart};

use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::routes::Context;
use crate::state::AppState;
use crate::stream::{gateway_blocks_response, sse_frames, sse_response};

/// The routes, relative to `/v1`.
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/responses", post(create_response)),
        ("/responses/input_tokens", post(count_input_tokens)),
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
        ResponseStart::Routed(routed) => Ok(gateway_blocks_response(*routed)),
        ResponseStart::Events(events) => Ok(sse_frames(
            events
                .iter()
                .map(|event| format!("event: {}\n{}", event.kind, api::sse_data(event)))
                .collect(),
        )),
        ResponseStart::Whole(object) => Ok(Json(object).into_response()),
    }
}

/// Retrieves a stored response; with `stream=true`, its events (after
/// `starting_after`), replayed once it has ended.
pub async fn retrieve_response(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ServerError> {
    // `include` may repeat (`include[]=…`): each value is checked as on
    // create (only `message.output_text.logprobs` is served).
    let includes = pairs
        .iter()
        .filter(|(key, _)| key == "include" || key == "include[]");
    for (index, (_, value)) in includes.enumerate() {
        if let Some(why) = api::include_refusal(value) {
            return Err(ApiError::invalid(
                format!("include[{index}]"),
                InvalidCode::InvalidValue,
                why,
            )
            .into());
        }
    }
    let query: BTreeMap<String, String> = pairs.into_iter().collect();
    let stream = match query.get("stream").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "stream",
                InvalidCode::InvalidType,
                format!("Invalid 'stream': expected 'true' or 'false', got '{other}'."),
            )
            .into())
        }
    };
    if !stream {
        let object = state.service().retrieve_response(&context.0, &id).await?;
        return Ok(Json(object).into_response());
    }
    let after = replay::starting_after(query.get("starting_after").map(String::as_str))?;
    let events = state
        .service()
        .replay_response(&context.0, &id, after, state.request_timeout())
        .await?;
    Ok(sse_frames(
        events
            .iter()
            .map(|event| format!("event: {}\n{}", event.kind, api::sse_data(event)))
            .collect(),
    ))
}

/// Counts a turn's input tokens; `model` defaults to the first one served,
/// and a turn with no input counts its instructions alone.
pub async fn count_input_tokens(
    State(state): State<AppState>,
    context: Context,
    RawBody(body): RawBody,
) -> Result<Response, ServerError> {
    // Not JSON, or not an object: the parse below says why.
    let mut value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let body = match value.as_object_mut() {
        Some(fields) if !fields.contains_key("model") => {
            let first = state
                .service()
                .engine_for(context.tenant(), None)?
                .name
                .clone();
            fields.insert("model".into(), first.into());
            serde_json::to_vec(&value).map_err(|err| ApiError::Internal {
                detail: err.to_string(),
            })?
        }
        _ => body.to_vec(),
    };
    // Checked by the service: a turn with no input counts as empty.
    let request: CreateResponseRequest = api::parse_json(&body)?;
    let count = state
        .service()
        .count_response_input_tokens(&context.0, request)
        .await?;
    Ok(Json(count).into_response())
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
