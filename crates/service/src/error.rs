//! The one error table: every conversion from a crate's error into the API
//! error a client sees lives in this file.
//!
//! A use case fails with [`Error`], which wraps the error of whichever crate
//! failed (`?` converts each). [`ApiError::from`] then decides, in one
//! exhaustive match per crate, what the client is told: the OpenAI error
//! object's kind, message, `param` and `code`. The server maps the API
//! error's kind to an HTTP status (its `status_for`), and nothing else.
//!
//! Internals never reach a client: a 5xx API error keeps its detail for the
//! logs and shows a generic message.

use api::{ApiError, InvalidCode};
use billing::BillingError;
use encoder::EncoderError;
use engine::EngineError;
use gateway::GatewayError;
use store::StoreError;

/// How long an overloaded client should wait before retrying.
pub const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

/// Everything a use case can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Already the client's error (a refused parameter, a spent quota).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Money, prices or plans refused.
    #[error(transparent)]
    Billing(#[from] BillingError),
    /// The engine refused or failed; `param` names the request field a
    /// refusal is about.
    #[error("{source}")]
    Engine {
        /// The engine's error.
        source: EngineError,
        /// The request field the failure is about (`messages`, `prompt`).
        param: &'static str,
    },
    /// The embedding model refused or failed.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// Routing through the gateway failed as a whole (boxed: it is large).
    #[error(transparent)]
    Gateway(Box<GatewayError>),
    /// A blocking task (tokenizing, rendering) panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Blocking(#[from] tokio::task::JoinError),
}

impl Error {
    /// An engine error about request field `param`.
    pub fn engine(source: EngineError, param: &'static str) -> Self {
        Error::Engine { source, param }
    }
}

impl From<GatewayError> for Error {
    fn from(err: GatewayError) -> Self {
        Error::Gateway(Box::new(err))
    }
}

/// A shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for ApiError {
    fn from(err: Error) -> ApiError {
        match err {
            Error::Api(err) => err,
            Error::Store(err) => from_store(err),
            Error::Billing(err) => from_billing(err),
            Error::Engine { source, param } => from_engine(source, param),
            Error::Gateway(err) => from_gateway(*err),
            Error::Encoder(err) => from_encoder(err),
            Error::Blocking(err) => ApiError::Internal {
                detail: format!("blocking task failed: {err}"),
            },
        }
    }
}

/// A store failure: another organisation's or a missing row is a 404, a bad
/// argument or a taken value a 400 (a bad page cursor names `page`), a
/// wrong credential a 401, an exhausted budget a 429 `insufficient_quota`,
/// a saturated database a 503 to retry, anything else a 500.
fn from_store(err: StoreError) -> ApiError {
    match err {
        StoreError::NotFound(_) => ApiError::NotFound {
            message: format!("{err}."),
        },
        StoreError::InvalidCursor(_) => {
            ApiError::invalid("page", InvalidCode::InvalidValue, err.to_string())
        }
        StoreError::Conflict(_) | StoreError::InvalidRequest(_) | StoreError::UnsupportedUrl(_) => {
            ApiError::invalid_body(err.to_string())
        }
        StoreError::Unauthorized(_) => ApiError::Unauthorized {
            message: err.to_string(),
        },
        StoreError::BudgetExceeded(why) => ApiError::QuotaExceeded {
            message: format!(
                "You exceeded your current quota, please check your plan and billing details: \
                 {why}."
            ),
        },
        StoreError::Database(_) | StoreError::Sqlite { .. }
            if err.kind() == store::ErrorKind::Unavailable =>
        {
            tracing::warn!(error = %err, "the store is saturated; asking the client to retry");
            ApiError::Overloaded {
                retry_after_secs: Some(OVERLOADED_RETRY_AFTER_SECS),
            }
        }
        StoreError::Database(_)
        | StoreError::Sqlite { .. }
        | StoreError::Migrate(_)
        | StoreError::Password(_)
        | StoreError::Corrupt(_) => ApiError::Internal {
            detail: format!("store: {err}"),
        },
    }
}

/// A billing refusal: a model outside the person's plan is a 403, a spent
/// plan a 429 `insufficient_quota`, bad amounts a 400, the rest a 500.
fn from_billing(err: BillingError) -> ApiError {
    match err {
        BillingError::ModelNotInPlan { model, plan } => ApiError::Forbidden {
            message: format!("Your plan ({plan}) does not include the model `{model}`."),
        },
        BillingError::PlanQuotaExhausted { plan, .. } => ApiError::QuotaExceeded {
            message: format!(
                "You have used this month's quota of your plan ({plan}). \
                 It renews at the start of next month, or change your plan."
            ),
        },
        other => match other.kind() {
            billing::ErrorKind::InvalidRequest => ApiError::invalid_body(other.to_string()),
            billing::ErrorKind::QuotaExceeded => ApiError::QuotaExceeded {
                message: other.to_string(),
            },
            billing::ErrorKind::Forbidden => ApiError::Forbidden {
                message: other.to_string(),
            },
            billing::ErrorKind::NotFound | billing::ErrorKind::Internal => ApiError::Internal {
                detail: format!("billing: {other}"),
            },
        },
    }
}

/// An engine failure; `param` names the field an invalid request is about.
fn from_engine(err: EngineError, param: &str) -> ApiError {
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

/// A routing failure. Upstream internals stay in `detail` fields, which the
/// API error keeps out of 5xx bodies; a rejection carries the error the
/// backend meant for the client.
fn from_gateway(err: GatewayError) -> ApiError {
    match err {
        GatewayError::UnknownModel { model } => ApiError::ModelNotFound { model },
        GatewayError::Rejected {
            message,
            client_error,
            ..
        } => client_error.unwrap_or(ApiError::InvalidRequest {
            message,
            param: None,
            code: None,
        }),
        GatewayError::Unsupported { detail } => ApiError::invalid_body(detail),
        GatewayError::RateLimited { retry_after, .. } => ApiError::RateLimited {
            message: "The upstream providers of this model are rate limited; please retry later."
                .to_owned(),
            retry_after_secs: retry_after.map(|wait| wait.as_secs().max(1)),
        },
        GatewayError::NoHealthyBackend { .. } => ApiError::Overloaded {
            retry_after_secs: Some(OVERLOADED_RETRY_AFTER_SECS),
        },
        GatewayError::Exhausted {
            ref last, elapsed, ..
        } if last.kind.is_timeout() => ApiError::Timeout {
            after_secs: elapsed.as_secs().max(1),
        },
        other @ (GatewayError::Exhausted { .. } | GatewayError::Interrupted { .. }) => {
            ApiError::Upstream {
                detail: other.to_string(),
            }
        }
    }
}

fn saturate(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// The embedding model's errors: bad input is the caller's (400 naming
/// `input`), a full queue is an overload, the rest are internal.
fn from_encoder(err: EncoderError) -> ApiError {
    match err {
        EncoderError::TooLong { .. } | EncoderError::BadToken { .. } => {
            ApiError::invalid("input", InvalidCode::InvalidValue, err.to_string())
        }
        EncoderError::Overloaded => ApiError::Overloaded {
            retry_after_secs: Some(OVERLOADED_RETRY_AFTER_SECS),
        },
        EncoderError::Io { .. } | EncoderError::BadModel { .. } | EncoderError::Stopped => {
            ApiError::Internal {
                detail: err.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn context_length_maps_to_its_code() {
        let err = ApiError::from(Error::engine(
            EngineError::ContextLengthExceeded {
                prompt: 9000,
                requested: 10,
                n_ctx: 8192,
            },
            "messages",
        ));
        assert_eq!(err.code(), Some("context_length_exceeded"));
        assert_eq!(err.kind(), api::ErrorKind::InvalidRequest);
    }

    #[test]
    fn internal_engine_errors_do_not_leak() {
        let err = ApiError::from(Error::engine(EngineError::Stopped, "messages"));
        assert_eq!(err.kind(), api::ErrorKind::Internal);
        assert!(!err.to_object().message.contains("stopped"));
    }

    #[test]
    fn an_invalid_engine_request_names_the_param() {
        let err = ApiError::from(Error::engine(
            EngineError::InvalidRequest("bad".into()),
            "prompt",
        ));
        assert_eq!(err.param(), Some("prompt"));
    }

    #[test]
    fn a_missing_store_row_is_a_404_wherever_it_comes_from() {
        let err = ApiError::from(Error::from(StoreError::NotFound("project")));
        assert_eq!(err.kind(), api::ErrorKind::NotFound);
    }

    #[test]
    fn a_bad_cursor_names_page() {
        let err = ApiError::from(Error::from(StoreError::InvalidCursor("x".into())));
        assert_eq!(err.param(), Some("page"));
    }

    #[test]
    fn a_spent_budget_is_insufficient_quota() {
        let err = ApiError::from(Error::from(StoreError::BudgetExceeded(
            "organization budget".into(),
        )));
        assert_eq!(err.code(), Some("insufficient_quota"));
    }

    #[test]
    fn plan_refusals_read_as_plans() {
        let err = ApiError::from(Error::from(BillingError::ModelNotInPlan {
            model: "m".into(),
            plan: "free".into(),
        }));
        assert_eq!(err.kind(), api::ErrorKind::Forbidden);
        assert!(err.to_string().contains("free"));
    }

    #[test]
    fn gateway_timeouts_are_504_and_the_rest_of_exhaustion_502() {
        let last = gateway::BackendError::new(gateway::FailureKind::HeadersTimeout, "slow");
        let err = ApiError::from(Error::from(GatewayError::Exhausted {
            model: "m".into(),
            attempts: 2,
            last,
            elapsed: Duration::from_millis(1500),
        }));
        assert_eq!(err.kind(), api::ErrorKind::Timeout);
        let last = gateway::BackendError::new(gateway::FailureKind::Connect, "refused");
        let err = ApiError::from(Error::from(GatewayError::Exhausted {
            model: "m".into(),
            attempts: 2,
            last,
            elapsed: Duration::from_millis(10),
        }));
        assert_eq!(err.kind(), api::ErrorKind::Upstream);
        assert!(!err.to_object().message.contains("refused"));
    }
}
