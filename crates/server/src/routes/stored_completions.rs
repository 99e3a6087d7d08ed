//! Stored chat completions (`store: true`): `GET /v1/chat/completions`,
//! `GET/POST/DELETE /v1/chat/completions/{id}` and `GET
//! /v1/chat/completions/{id}/messages`. Each parses its query or body
//! (`api::stored`) and calls `service::stored_completions`, which keeps
//! every read to the caller's organisation and project.

use api::stored::{StoredCompletionsQuery, StoredMessagesQuery};
use api::{ApiError, ChatCompletionDeleted, ChatCompletionUpdate, ListPage};
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::Json;
use serde_json::Value;
use service::stored_completions as stored;

use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::routes::Context;
use crate::state::AppState;

/// The query string's decoded name/value pairs, in order.
fn pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|query| query.0)
        .map_err(|err| ApiError::invalid_body(format!("The query string is malformed: {err}")))
}

fn store(state: &AppState) -> Option<&store::Store> {
    state.meter().map(service::Meter::store)
}

/// Lists the caller's stored completions (`after`, `limit`, `order`,
/// `model`, `metadata[key]=value`).
pub async fn list(
    State(state): State<AppState>,
    context: Context,
    uri: Uri,
) -> Result<Json<ListPage<Value>>, ServerError> {
    let query = StoredCompletionsQuery::from_pairs(&pairs(&uri)?)?;
    Ok(Json(
        stored::list(store(&state), context.tenant(), &query).await?,
    ))
}

/// One stored completion.
pub async fn retrieve(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
) -> Result<Json<Value>, ServerError> {
    Ok(Json(
        stored::get(store(&state), context.tenant(), &id).await?,
    ))
}

/// Replaces a stored completion's metadata.
pub async fn update(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ServerError> {
    let update = ChatCompletionUpdate::parse(&body)?;
    Ok(Json(
        stored::update(store(&state), context.tenant(), &id, update).await?,
    ))
}

/// Deletes a stored completion.
pub async fn delete(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
) -> Result<Json<ChatCompletionDeleted>, ServerError> {
    Ok(Json(
        stored::delete(store(&state), context.tenant(), &id).await?,
    ))
}

/// A page of a stored completion's request messages.
pub async fn messages(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Json<ListPage<Value>>, ServerError> {
    let query = StoredMessagesQuery::from_pairs(&pairs(&uri)?)?;
    Ok(Json(
        stored::messages(store(&state), context.tenant(), &id, &query).await?,
    ))
}
