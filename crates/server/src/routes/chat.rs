//! `POST /v1/chat/completions`: the request is parsed and handed to the
//! service (`service::Service::chat`), which resolves the model, reserves,
//! and either generates on the local engine or routes through the gateway;
//! this route writes the answer whole or as a stream of chunks.

use api::ChatCompletionRequest;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use service::ChatStart;

use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::routes::Context;
use crate::state::AppState;
use crate::stream::{gateway_sse_response, sse_frames, sse_response};

/// The header naming a conversation, whose requests the gateway sends to
/// the backend that served it last (its prefix cache is warm there).
pub const CONVERSATION_HEADER: &str = "x-parlance-conversation";

/// Creates a chat completion.
pub async fn create_chat_completion(
    State(state): State<AppState>,
    context: Context,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ServerError> {
    let request: ChatCompletionRequest = api::parse_request(&body)?;
    let stream = request.is_stream();
    let include_usage = request.include_usage();
    let sticky = sticky_key(&context, &headers, &request);
    let timeout = state.request_timeout();
    match state
        .service()
        .chat(&context.0, request, sticky, timeout)
        .await?
    {
        ChatStart::Local(answer, format) if stream => Ok(sse_response(answer, format)),
        ChatStart::Local(answer, format) => {
            let whole = answer.collect_within(timeout).await?;
            Ok(Json(format.finish(whole).await).into_response())
        }
        ChatStart::Routed(stream, charge, keeper) => {
            Ok(gateway_sse_response(stream, charge, keeper))
        }
        // A whole answer asked for as a stream (under output moderation):
        // replayed as its chunks.
        ChatStart::RoutedWhole(answer) if stream => {
            let mut frames: Vec<String> = service::guardrails::replay(&answer, include_usage)
                .iter()
                .map(api::sse_data)
                .collect();
            frames.push(api::sse_done().to_owned());
            Ok(sse_frames(frames))
        }
        ChatStart::RoutedWhole(answer) => Ok(Json(answer).into_response()),
    }
}

/// The sticky key of a routed request: the conversation header, else the
/// request's `user`, scoped by organisation and by kind so that no two
/// collide.
fn sticky_key(
    context: &Context,
    headers: &HeaderMap,
    request: &ChatCompletionRequest,
) -> Option<String> {
    let org = context.tenant().map_or("", |tenant| tenant.org_id.as_str());
    let conversation = headers
        .get(CONVERSATION_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty());
    match (conversation, request.user.as_deref()) {
        (Some(conversation), _) => Some(format!("{org}/conversation:{conversation}")),
        (None, Some(user)) if !user.is_empty() => Some(format!("{org}/user:{user}")),
        _ => None,
    }
}
