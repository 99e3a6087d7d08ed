//! Anthropic's Messages API, thin: `POST /v1/messages` (whole, or streamed
//! as Anthropic's events) and `POST /v1/messages/count_tokens`; the work is
//! the service's (`service::anthropic`).
//!
//! [`anthropic_errors`] wraps these routes outside authentication and the
//! rate limits, so that every error they answer — a refused parameter, a
//! missing key, a spent quota — has Anthropic's shape
//! (`{"type": "error", "error": {"type", "message"}}`) with the same status.

use api::{AnthropicError, ErrorKind, ErrorResponse, MessagesRequest};
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use service::anthropic::MessagesStart;

use crate::error::ServerError;
use crate::middleware::RawBody;
use crate::routes::Context;
use crate::state::AppState;
use crate::stream::{gateway_blocks_response, sse_frames, sse_response};

/// The largest error body rewritten (error objects are small).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Creates a message.
pub async fn create_message(
    State(state): State<AppState>,
    context: Context,
    RawBody(body): RawBody,
) -> Result<Response, ServerError> {
    let request: MessagesRequest = api::parse_request(&body)?;
    let timeout = state.request_timeout();
    match state
        .service()
        .anthropic_messages(&context.0, request, timeout)
        .await?
    {
        MessagesStart::Stream(stream) => {
            let (answer, events) = *stream;
            Ok(sse_response(answer, events))
        }
        MessagesStart::Routed(routed) => Ok(gateway_blocks_response(*routed)),
        MessagesStart::Events(events) => Ok(sse_frames(
            events
                .iter()
                .map(|event| format!("event: {}\n{}", event.name(), api::sse_data(event)))
                .collect(),
        )),
        MessagesStart::Whole(message) => Ok(Json(message).into_response()),
    }
}

/// Counts a request's prompt tokens.
pub async fn count_tokens(
    State(state): State<AppState>,
    context: Context,
    RawBody(body): RawBody,
) -> Result<Response, ServerError> {
    let request: MessagesRequest = api::parse_request(&body)?;
    let count = state
        .service()
        .anthropic_count_tokens(&context.0, request)
        .await?;
    Ok(Json(count).into_response())
}

/// Rewrites an error answer (an OpenAI error object) in Anthropic's shape,
/// keeping its status and headers (`retry-after`, the rate-limit headers).
pub async fn anthropic_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_ERROR_BODY).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(error) = serde_json::from_slice::<ErrorResponse>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let kind = kind_of(parts.status);
    let body = AnthropicError::new(kind, error.error.message);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}

/// The error kind of an HTTP status (the inverse of `status_for`, for the
/// kinds Anthropic tells apart).
fn kind_of(status: axum::http::StatusCode) -> ErrorKind {
    match status.as_u16() {
        400 => ErrorKind::InvalidRequest,
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        413 => ErrorKind::PayloadTooLarge,
        429 => ErrorKind::RateLimited,
        503 => ErrorKind::Overloaded,
        _ => ErrorKind::Internal,
    }
}
