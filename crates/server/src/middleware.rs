//! What wraps every route: the request id (echoed or generated, put on the
//! tracing span and the `x-request-id` response header), the body reader
//! that turns an oversized body into a 413 error object, panics into 500
//! error objects, and the 404/405 fallbacks.

use std::any::Any;

use api::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderName, HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use tracing::Instrument;

use crate::error::{api_error_response, ServerError};
use crate::state::AppState;

/// The header carrying the request id, both ways.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-sent request id that is echoed as is.
const MAX_CLIENT_REQUEST_ID: usize = 128;

/// The request's id, left in its extensions by [`request_id`]: the key of
/// its ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Gives the request an id (the client's `x-request-id` when it is sane,
/// else a fresh one), runs it inside a span carrying that id, leaves it in
/// the request's extensions as a [`RequestId`], and sets the header on the
/// response.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|value| is_sane_request_id(value))
        .cloned()
        .unwrap_or_else(fresh_request_id);
    let span = tracing::info_span!(
        "request",
        request_id = %String::from_utf8_lossy(id.as_bytes()),
        method = %request.method(),
        path = %request.uri().path(),
    );
    request.extensions_mut().insert(RequestId(
        String::from_utf8_lossy(id.as_bytes()).into_owned(),
    ));
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answered"
        );
    });
    response.headers_mut().insert(REQUEST_ID.clone(), id);
    response
}

fn is_sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_CLIENT_REQUEST_ID
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

fn fresh_request_id() -> HeaderValue {
    HeaderValue::from_str(&format!("req_{}", crate::random_hex()))
        .unwrap_or_else(|_| HeaderValue::from_static("req_unknown"))
}

/// A request body read whole, up to the state's limit: over it, a 413
/// with the OpenAI error object.
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ServerError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.body_limit();
        let too_large = || ApiError::PayloadTooLarge {
            limit_bytes: limit as u64,
        };
        let declared = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(too_large().into());
        }
        let mut chunks = request.into_body().into_data_stream();
        let mut body = Vec::with_capacity(declared.map_or(0, |length| length as usize));
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|err| {
                ApiError::invalid_body(format!("Could not read the request body: {err}"))
            })?;
            if body.len() + chunk.len() > limit {
                return Err(too_large().into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RawBody(Bytes::from(body)))
    }
}

/// Unknown routes: 404 with the error object.
pub async fn not_found(method: Method, uri: Uri) -> ServerError {
    ApiError::NotFound {
        message: format!("Unknown request URL: {method} {}.", uri.path()),
    }
    .into()
}

/// A known route asked with the wrong method: 405 with the error object.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let err = ApiError::invalid_body(format!(
        "Method {method} is not allowed for {}.",
        uri.path()
    ));
    let mut response = api_error_response(&err);
    *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// A handler panicked: log it and answer 500 with the error object.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a handler panicked")
        .to_owned();
    api_error_response(&ApiError::Internal {
        detail: format!("panic: {detail}"),
    })
}
