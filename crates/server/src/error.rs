//! The server's error type, [`ServerError`], and the one table from an API
//! error's kind to its HTTP status ([`status_for`]).
//!
//! Handlers fail with a `service::Error` or an [`ApiError`]; what a client
//! is told of each crate's error is decided in one place, the service
//! crate's error table (`service::error`). Here the API error renders as
//! the OpenAI error object `{"error": {message, type, param, code}}` with
//! the status of its kind, plus `retry-after` where the error knows when a
//! retry may succeed.

use api::{ApiError, ErrorKind};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Everything that can go wrong in the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// An error a client is shown as the OpenAI error object.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The listener failed (binding, accepting, serving).
    #[error("server I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

impl From<service::Error> for ServerError {
    fn from(err: service::Error) -> Self {
        ServerError::Api(err.into())
    }
}

impl From<store::StoreError> for ServerError {
    fn from(err: store::StoreError) -> Self {
        service::Error::from(err).into()
    }
}

/// The HTTP status of each error kind: the server's one table.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RateLimited | ErrorKind::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The response for an API error: its status, the error object and, when
/// known, `retry-after`.
pub fn api_error_response(err: &ApiError) -> Response {
    let status = status_for(err.kind());
    if status.is_server_error() {
        tracing::error!(error = %err, "request failed");
    } else {
        tracing::debug!(error = %err, "request refused");
    }
    let mut response = (status, Json(err.to_response())).into_response();
    if let Some(secs) = err.retry_after_secs() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        match self {
            ServerError::Api(err) => api_error_response(&err),
            ServerError::Io(err) => api_error_response(&ApiError::Internal {
                detail: err.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_documented_status() {
        let table = [
            (ErrorKind::InvalidRequest, 400),
            (ErrorKind::Unauthorized, 401),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::NotFound, 404),
            (ErrorKind::PayloadTooLarge, 413),
            (ErrorKind::RateLimited, 429),
            (ErrorKind::QuotaExceeded, 429),
            (ErrorKind::Overloaded, 503),
            (ErrorKind::Upstream, 502),
            (ErrorKind::Timeout, 504),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in table {
            assert_eq!(status_for(kind).as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn an_overloaded_engine_sets_retry_after() {
        let err = service::Error::engine(engine::EngineError::Overloaded, "messages");
        let response = ServerError::from(err).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn a_missing_row_is_a_404_on_every_path() {
        let response = ServerError::from(store::StoreError::NotFound("project")).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
