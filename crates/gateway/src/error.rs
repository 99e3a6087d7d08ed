//! The gateway's two error types.
//!
//! - [`BackendError`]: one failed call to one backend, typed by
//!   [`FailureKind`] (connect refused, timeouts, 429, 5xx, garbage, dropped
//!   mid-stream, …) and saying whether any chunk had already been produced.
//!   The router reads it to decide between retry, failover and giving up.
//! - [`GatewayError`]: what the caller of the gateway gets when routing as a
//!   whole failed. What a client is told of it is decided in one place, the
//!   service crate's error table, not here.

use std::time::Duration;

use api::{ApiError, Usage};

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
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
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
    /// For a rejection by a backend that speaks the API itself (the local
    /// engine): the error meant for the client, with its `param` and `code`.
    pub client_error: Option<ApiError>,
}

impl BackendError {
    /// A failure before anything was produced.
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        BackendError {
            kind,
            detail: detail.into(),
            produced: false,
            client_error: None,
        }
    }

    /// A backend's refusal of the request itself, carrying the error the
    /// client is to see: never retried, never counted against the backend.
    pub fn rejected(client_error: ApiError) -> Self {
        BackendError {
            kind: FailureKind::Rejected { status: 400 },
            detail: client_error.to_string(),
            produced: false,
            client_error: Some(client_error),
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
        /// The whole error meant for the client, when the backend gave one
        /// (see [`BackendError::client_error`]).
        client_error: Option<ApiError>,
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
