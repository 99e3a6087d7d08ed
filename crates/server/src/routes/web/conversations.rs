//! `/api/conversations…`: the signed-in person's conversations, as JSON.
//!
//! - `GET /api/conversations?search=&limit=`: newest first.
//! - `POST /api/conversations {title?, model?, system_prompt?, settings?}`.
//! - `GET /api/conversations/{id}`: the conversation with its messages.
//! - `PATCH /api/conversations/{id}`: rename, or change model, system
//!   prompt or settings.
//! - `DELETE /api/conversations/{id}`.
//! - `POST /api/conversations/{id}/messages {role, content, request_id?,
//!   prompt_tokens?, completion_tokens?}`: append.
//! - `POST /api/conversations/{id}/truncate {from_message_id}`: delete that
//!   message and every later one (regenerate, edit-and-resend).
//!
//! Another person's conversation is a 404, as is an unknown one.

use api::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use store::{Conversation, ConversationUpdate, Message, NewConversation, NewMessage};

use super::{json_body, person};
use crate::auth::Caller;
use crate::state::AppState;

/// The longest title kept, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

#[derive(Deserialize)]
pub struct ListQuery {
    search: Option<String>,
    limit: Option<u32>,
}

/// The body that creates a conversation or updates one: each field
/// optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConversationFields {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    system_prompt: Option<String>,
    #[serde(default)]
    settings: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    role: String,
    content: String,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruncateRequest {
    from_message_id: String,
}

/// `GET /api/conversations`.
pub async fn list(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, crate::ServerError> {
    let p = person(&state, caller)?;
    let Query(query) = query.map_err(|err| ApiError::InvalidRequest {
        message: format!("Invalid query string: {}", err.body_text()),
        param: None,
        code: None,
    })?;
    let found = p
        .store
        .list_conversations(
            &p.org_id,
            &p.user_id,
            query.search.as_deref(),
            query.limit.unwrap_or(100),
        )
        .await
        .map_err(service::Error::from)?;
    let data: Vec<Value> = found.iter().map(conversation_json).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `POST /api/conversations`.
pub async fn create(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Result<Response, crate::ServerError> {
    let p = person(&state, caller)?;
    let request: ConversationFields = if body.is_empty() {
        ConversationFields::default()
    } else {
        json_body(&body)?
    };
    let new = NewConversation {
        title: title(request.title.unwrap_or_else(|| "New chat".into()))?,
        model: request.model.unwrap_or_default(),
        system_prompt: request.system_prompt.unwrap_or_default(),
        settings: Value::Object(request.settings.unwrap_or_default()).to_string(),
    };
    let conversation = p
        .store
        .create_conversation(&p.org_id, &p.user_id, &new)
        .await
        .map_err(service::Error::from)?;
    let mut body = conversation_json(&conversation);
    body["messages"] = json!([]);
    Ok((axum::http::StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/conversations/{id}`.
pub async fn retrieve(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, crate::ServerError> {
    let p = person(&state, caller)?;
    let conversation = p
        .store
        .get_conversation(&p.org_id, &p.user_id, &id)
        .await
        .map_err(service::Error::from)?;
    let messages = p
        .store
        .list_messages(&p.org_id, &p.user_id, &id)
        .await
        .map_err(service::Error::from)?;
    let mut body = conversation_json(&conversation);
    body["messages"] = messages.iter().map(message_json).collect();
    Ok(Json(body))
}

/// `PATCH /api/conversations/{id}`.
pub async fn update(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, crate::ServerError> {
    let p = person(&state, caller)?;
    let request: ConversationFields = json_body(&body)?;
    let update = ConversationUpdate {
        title: request.title.map(title).transpose()?,
        model: request.model,
        system_prompt: request.system_prompt,
        settings: request.settings.map(|s| Value::Object(s).to_string()),
    };
    let conversation = p
        .store
        .update_conversation(&p.org_id, &p.user_id, &id, &update)
        .await
        .map_err(service::Error::from)?;
    Ok(Json(conversation_json(&conversation)))
}

/// `DELETE /api/conversations/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, crate::ServerError> {
    let p = person(&state, caller)?;
    p.store
        .delete_conversation(&p.org_id, &p.user_id, &id)
        .await
        .map_err(service::Error::from)?;
    Ok(Json(
        json!({"id": id, "object": "conversation.deleted", "deleted": true}),
    ))
}

/// `POST /api/conversations/{id}/messages`.
pub async fn append(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, crate::ServerError> {
    let p = person(&state, caller)?;
    let request: AppendRequest = json_body(&body)?;
    let new = NewMessage {
        role: request.role,
        content: request.content,
        request_id: request.request_id,
        prompt_tokens: request.prompt_tokens.map(i64::from),
        completion_tokens: request.completion_tokens.map(i64::from),
    };
    let message = p
        .store
        .append_message(&p.org_id, &p.user_id, &id, &new)
        .await
        .map_err(service::Error::from)?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(message_json(&message)),
    )
        .into_response())
}

/// `POST /api/conversations/{id}/truncate`.
pub async fn truncate(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, crate::ServerError> {
    let p = person(&state, caller)?;
    let request: TruncateRequest = json_body(&body)?;
    let deleted = p
        .store
        .truncate_conversation(&p.org_id, &p.user_id, &id, &request.from_message_id)
        .await
        .map_err(service::Error::from)?;
    Ok(Json(json!({"id": id, "deleted_messages": deleted})))
}

/// A title, trimmed and cut to [`MAX_TITLE_CHARS`]; empty is refused.
fn title(raw: String) -> Result<String, ApiError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(ApiError::InvalidRequest {
            message: "The title must not be empty.".into(),
            param: Some("title".into()),
            code: None,
        });
    }
    Ok(trimmed.chars().take(MAX_TITLE_CHARS).collect())
}

fn conversation_json(c: &Conversation) -> Value {
    let settings: Value = serde_json::from_str(&c.settings).unwrap_or_else(|_| json!({}));
    json!({
        "id": c.id,
        "object": "conversation",
        "title": c.title,
        "model": c.model,
        "system_prompt": c.system_prompt,
        "settings": settings,
        "created_ms": c.created_at,
        "updated_ms": c.updated_at,
    })
}

fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "object": "conversation.message",
        "role": m.role,
        "content": m.content,
        "created_ms": m.created_at,
        "request_id": m.request_id,
        "prompt_tokens": m.prompt_tokens,
        "completion_tokens": m.completion_tokens,
    })
}
