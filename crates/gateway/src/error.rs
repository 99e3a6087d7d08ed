//! The gateway's two error types.
//!
//! - [`BackendError`]: one failed call to one backend, typed by
//!   [`FailureKind`] (connect refused, timeouts, 429, 5xx, garbage, dropped
//!   mid-stream, …) and saying whether any chunk had already been produced.
//!   The router reads it to decide between retry, failover and giving up.
//! - [`GatewayError`]: what the caller of the gateway gets when routing as a
//!   whole failed, with its coarse [`api::ErrorKind`] and a conversion to
//!   the OpenAI error object ([`api::ApiError`]). Only the server maps kinds
//!   to HTTP statuses.

use std::time::Duration;

use api::{ApiError, ErrorKind, Usage};

/// How a call to a backend failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The TCP/TLS connection could not be made (refused, unreachable, DNS).
    Connect,
    /// Connected, but no response head arrived within the headers timeout.
    HeadersTimeout,
    /// The response began, but no first token arrived in time.
    FirstTokenTimeout,
    /// A stream went silent for longer than the idle timeout.
    IdleTimeout,
    /// A whole (non-streamed) answer took longer than the request timeout.
    RequestTimeout,
    /// The upstream answered 429; retry after the given time if it said.
    RateLimited {
        /// From `retry-after-ms` or `retry-after`, when present.
        retry_after: Option<Duration>,
    },
    /// The upstream answered with a server-side (or auth) error status, or
    /// sent an error event mid-stream (status 0 then).
    Status {
        /// The HTTP status, 0 for an in-stream error event.
        status: u16,
    },
    /// The upstream refused the request itself (400, 404, 422, …): the
    /// client's fault, not the backend's; never retried, never counted
    /// against the backend.
    Rejected {
        /// The HTTP status.
        status: u16,
    },
    /// The body could not be decoded (not JSON, wrong shape, bad SSE).
    Decode,
    /// The connection closed before the answer was complete.
    Dropped,
    /// The backend does not serve this kind of request (e.g. tools).
    Unsupported,
}

impl FailureKind {
    /// Whether the failure says something about the backend's health (and
    /// so feeds its circuit breaker).
    pub fn counts_against_backend(&self) -> bool {
        !matches!(
            self,
            FailureKind::Rejected { .. }
                | FailureKind::Unsupported
                | FailureKind::RateLimited { .. }
        )
    }

    /// Whether another attempt (this or another backend) may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, FailureKind::Rejected { .. })
    }

    /// Whether this is one of the timeouts.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            FailureKind::HeadersTimeout
                | FailureKind::FirstTokenTimeout
                | FailureKind::IdleTimeout
                | FailureKind::RequestTimeout
        )
    }

    /// A short stable name, for logs, metrics and incident records.
    pub fn name(&self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::HeadersTimeout => "headers_timeout",
            FailureKind::FirstTokenTimeout => "first_token_timeout",
            FailureKind::IdleTimeout => "idle_timeout",
            FailureKind::RequestTimeout => "request_timeout",
            FailureKind::RateLimited { .. } => "rate_limited",
            FailureKind::Status { .. } => "status",
            FailureKind::Rejected { .. } => "rejected",
            FailureKind::Decode => "decode",
            FailureKind::Dropped => "dropped",
            FailureKind::Unsupported => "unsupported",
        }
    }
}

/// One failed call to one backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} failure: {detail}", kind.name())]
pub struct BackendError {
    /// What went wrong.
    pub kind: FailureKind,
    /// Detail for logs (may quote the upstream; never shown to clients
    /// except for [`FailureKind::Rejected`], whose message is the client's
    /// business).
    pub detail: String,
    /// Whether any chunk had already been produced when it failed.
    pub produced: bool,
}

impl BackendError {
    /// A failure before anything was produced.
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        BackendError {
            kind,
            detail: detail.into(),
            produced: false,
        }
    }

    /// The same failure, marked as happening after output began.
    pub fn after_output(mut self) -> Self {
        self.produced = true;
        self
    }
}

/// Why routing a request failed as a whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    /// No model or alias of that name is configured.
    #[error("unknown model `{model}`")]
    UnknownModel {
        /// The name as asked for.
        model: String,
    },
    /// The upstream refused the request itself; `message` is its words.
    #[error("upstream rejected the request ({status}): {message}")]
    Rejected {
        /// The upstream's status.
        status: u16,
        /// The upstream's message, meant for the client.
        message: String,
    },
    /// The request asks for something no backend of the model supports.
    #[error("unsupported request: {detail}")]
    Unsupported {
        /// What is unsupported.
        detail: String,
    },
    /// Every backend is rate limited (429) or cooling down after one.
    #[error("every backend of `{model}` is rate limited")]
    RateLimited {
        /// The model asked for.
        model: String,
        /// The soonest a backend comes back.
        retry_after: Option<Duration>,
    },
    /// Every backend's circuit breaker is open.
    #[error("no healthy backend for `{model}`")]
    NoHealthyBackend {
        /// The model asked for.
        model: String,
    },
    /// Every attempt failed before any output; `last` is the last failure.
    #[error("all {attempts} attempts for `{model}` failed; last: {last}")]
    Exhausted {
        /// The model asked for.
        model: String,
        /// How many calls were made.
        attempts: u32,
        /// The last failure.
        last: BackendError,
        /// Time spent on all attempts together.
        elapsed: Duration,
    },
    /// The stream failed after output had reached the caller; `usage` is
    /// what was delivered (to bill).
    #[error("stream interrupted after output: {detail}")]
    Interrupted {
        /// Why it stopped.
        detail: String,
        /// The failure's kind.
        kind: FailureKind,
        /// Tokens delivered until then (completion tokens counted from the
        /// chunks when the upstream never said).
        usage: Usage,
    },
}

impl GatewayError {
    /// The coarse class, which decides the HTTP status in the server.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GatewayError::UnknownModel { .. } => ErrorKind::NotFound,
            GatewayError::Rejected { .. } | GatewayError::Unsupported { .. } => {
                ErrorKind::InvalidRequest
            }
            GatewayError::RateLimited { .. } => ErrorKind::RateLimited,
            GatewayError::NoHealthyBackend { .. } => ErrorKind::Overloaded,
            GatewayError::Exhausted { last, .. } if last.kind.is_timeout() => ErrorKind::Timeout,
            GatewayError::Exhausted { .. } | GatewayError::Interrupted { .. } => {
                ErrorKind::Upstream
            }
        }
    }

    /// The OpenAI error object for the client. Upstream internals stay in
    /// `detail` fields, which the API error keeps out of 5xx bodies.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            GatewayError::UnknownModel { model } => ApiError::ModelNotFound {
                model: model.clone(),
            },
            GatewayError::Rejected { message, .. } => ApiError::InvalidRequest {
                message: message.clone(),
                param: None,
                code: None,
            },
            GatewayError::Unsupported { detail } => ApiError::InvalidRequest {
                message: detail.clone(),
                param: None,
                code: None,
            },
            GatewayError::RateLimited { retry_after, .. } => ApiError::RateLimited {
                message: "The upstream providers of this model are rate limited; please retry \
                          later."
                    .to_owned(),
                retry_after_secs: retry_after.map(|wait| wait.as_secs().max(1)),
            },
            GatewayError::NoHealthyBackend { .. } => ApiError::Overloaded {
                retry_after_secs: Some(1),
            },
            GatewayError::Exhausted { last, elapsed, .. } if last.kind.is_timeout() => {
                ApiError::Timeout {
                    after_secs: elapsed.as_secs().max(1),
                }
            }
            other => ApiError::Upstream {
                detail: other.to_string(),
            },
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(err: GatewayError) -> Self {
        err.to_api_error()
    }
}
