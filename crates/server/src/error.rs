//! The crate's one error type, [`ServerError`], and the one table from an
//! error's kind to its HTTP status.
//!
//! Handlers fail with an [`ApiError`] (wrapped here); it renders as the
//! OpenAI error object `{"error": {message, type, param, code}}` with the
//! status [`status_for`] gives its kind, plus `retry-after` where the error
//! knows when a retry may succeed. Engine errors are translated into API
//! errors by [`from_engine`], naming the parameter the caller says the
//! failure is about.

use api::{ApiError, ErrorKind, InvalidCode};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::EngineError;
use store::StoreError;

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

/// How long an overloaded client should wait before retrying.
pub const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

/// Translates an engine error into the API error a client sees; `param`
/// names the request field an invalid-request failure is about.
pub fn from_engine(err: EngineError, param: &str) -> ApiError {
    match err {
        EngineError::ContextLengthExceeded {
            prompt,
            requested,
            n_ctx,
        } => ApiError::ContextLengthExceeded {
            context_length: saturate(n_ctx),
            prompt_tokens: saturate(prompt),
            completion_tokens: saturate(requested),
            requested: (prompt as u64).saturating_add(requested as u64),
        },
        EngineError::NoChatTemplate(message) => {
            ApiError::invalid("messages", InvalidCode::InvalidValue, message)
        }
        EngineError::Overloaded => ApiError::Overloaded {
            retry_after_secs: Some(OVERLOADED_RETRY_AFTER_SECS),
        },
        other => match other.kind() {
            engine::ErrorKind::InvalidRequest => {
                ApiError::invalid(param, InvalidCode::InvalidValue, other.to_string())
            }
            engine::ErrorKind::Overloaded => ApiError::Overloaded {
                retry_after_secs: Some(OVERLOADED_RETRY_AFTER_SECS),
            },
            engine::ErrorKind::Internal => ApiError::Internal {
                detail: other.to_string(),
            },
        },
    }
}

fn saturate(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// The API error of a store failure: another organisation's or a missing row
/// is a 404, a bad argument or a taken value a 400, a wrong credential a 401,
/// an exhausted budget a 429 `insufficient_quota`, a saturated database a 503
/// to retry, anything else a 500.
pub(crate) fn store_error(err: StoreError) -> ApiError {
    match err.kind() {
        store::ErrorKind::NotFound => ApiError::NotFound {
            message: format!("{err}."),
        },
        store::ErrorKind::InvalidRequest | store::ErrorKind::Conflict => {
            ApiError::invalid_body(err.to_string())
        }
        store::ErrorKind::Unauthorized => ApiError::Unauthorized {
            message: err.to_string(),
        },
        store::ErrorKind::QuotaExceeded => ApiError::QuotaExceeded {
            message: err.to_string(),
        },
        store::ErrorKind::Unavailable => ApiError::Overloaded {
            retry_after_secs: Some(1),
        },
        store::ErrorKind::Internal => ApiError::Internal {
            detail: err.to_string(),
        },
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
    fn overloaded_engine_sets_retry_after() {
        let response = api_error_response(&from_engine(EngineError::Overloaded, "messages"));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn context_length_maps_to_its_code() {
        let err = from_engine(
            EngineError::ContextLengthExceeded {
                prompt: 9000,
                requested: 10,
                n_ctx: 8192,
            },
            "messages",
        );
        assert_eq!(err.code(), Some("context_length_exceeded"));
        assert_eq!(status_for(err.kind()), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn internal_engine_errors_do_not_leak() {
        let err = from_engine(EngineError::Stopped, "messages");
        assert_eq!(status_for(err.kind()), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.to_object().message.contains("stopped"));
    }
}
