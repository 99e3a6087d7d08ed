//! The crate's one error type, [`ApiError`], and the OpenAI error object it
//! renders to on the wire.
//!
//! Every error knows three things a client sees: its OpenAI `type` string,
//! its machine-readable `code` (or none), and the request `param` it is
//! about (or none). It also knows its coarse [`ErrorKind`]; the `server`
//! crate maps that kind to an HTTP status in its one table. This crate
//! never speaks HTTP, but each kind documents the status it is meant for,
//! following the status classes the `openai` SDK turns into exceptions.

use serde::{Deserialize, Serialize};

/// The generic message a client sees for any server-side failure, so that
/// internals never leak through a 5xx.
pub const INTERNAL_ERROR_MESSAGE: &str = "The server had an error while processing your request. \
     Sorry about that!";

/// The coarse class of an error, which decides its HTTP status.
///
/// The intended status for each is written beside it; the `server` crate
/// owns the actual mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 400: the request is malformed or a parameter is invalid.
    InvalidRequest,
    /// 401: no API key, or an unknown one.
    Unauthorized,
    /// 403: the key is valid but may not do this.
    Forbidden,
    /// 404: the model (or other resource) does not exist.
    NotFound,
    /// 413: the request body is over the size limit.
    PayloadTooLarge,
    /// 429: too many requests or tokens for the key's rate limit.
    RateLimited,
    /// 429: the key's quota or budget is spent.
    QuotaExceeded,
    /// 503: the server is at capacity; retry later.
    Overloaded,
    /// 502: an upstream provider failed.
    Upstream,
    /// 504: the request took longer than its time limit.
    Timeout,
    /// 500: a bug or an unexpected failure on our side.
    Internal,
}

/// A machine-readable reason for an invalid request, sent as the error
/// object's `code` (spelled as OpenAI spells it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidCode {
    /// A parameter has the wrong JSON type.
    InvalidType,
    /// A parameter has a value outside its allowed set.
    InvalidValue,
    /// A required parameter is absent.
    MissingRequiredParameter,
    /// An array that must not be empty is empty.
    EmptyArray,
    /// An array has more entries than allowed.
    ArrayAboveMaxLength,
    /// An integer is below its minimum.
    IntegerBelowMinValue,
    /// An integer is above its maximum.
    IntegerAboveMaxValue,
    /// A decimal is below its minimum.
    DecimalBelowMinValue,
    /// A decimal is above its maximum.
    DecimalAboveMaxValue,
    /// The input was flagged by the project's moderation guardrail.
    ContentPolicyViolation,
}

impl InvalidCode {
    /// The `code` string as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidCode::InvalidType => "invalid_type",
            InvalidCode::InvalidValue => "invalid_value",
            InvalidCode::MissingRequiredParameter => "missing_required_parameter",
            InvalidCode::EmptyArray => "empty_array",
            InvalidCode::ArrayAboveMaxLength => "array_above_max_length",
            InvalidCode::IntegerBelowMinValue => "integer_below_min_value",
            InvalidCode::IntegerAboveMaxValue => "integer_above_max_value",
            InvalidCode::DecimalBelowMinValue => "decimal_below_min_value",
            InvalidCode::DecimalAboveMaxValue => "decimal_above_max_value",
            InvalidCode::ContentPolicyViolation => "content_policy_violation",
        }
    }
}

/// Which per-minute limit a request ran into, sent as the error object's
/// `type` (OpenAI answers `requests` or `tokens` there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimitResource {
    /// Requests per minute (RPM).
    Requests,
    /// Tokens per minute (TPM).
    Tokens,
}

impl RateLimitResource {
    /// The `type` string as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimitResource::Requests => "requests",
            RateLimitResource::Tokens => "tokens",
        }
    }
}

/// An error that a client of the OpenAI-compatible API can be shown.
///
/// `Display` is the message for logs; [`ApiError::to_object`] is what the
/// client receives (server-side failures get a generic message there).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON. Kind: `InvalidRequest` (400).
    #[error("We could not parse the JSON body of your request: {detail}")]
    MalformedJson {
        /// What the JSON parser reported, with line and column.
        detail: String,
    },
    /// A parameter is missing, has the wrong type, or is out of range.
    /// Kind: `InvalidRequest` (400).
    #[error("{message}")]
    InvalidRequest {
        /// A sentence for the client, naming the parameter.
        message: String,
        /// The parameter, as OpenAI spells it (`messages[0].role`).
        param: Option<String>,
        /// The reason, when one of the known ones applies.
        code: Option<InvalidCode>,
    },
    /// The prompt plus the requested output do not fit the model's context.
    /// Kind: `InvalidRequest` (400), code `context_length_exceeded`.
    #[error(
        "This model's maximum context length is {context_length} tokens. However, you \
         requested {requested} tokens ({prompt_tokens} in the messages, \
         {completion_tokens} in the completion). Please reduce the length of the \
         messages or completion."
    )]
    ContextLengthExceeded {
        /// The model's context window in tokens.
        context_length: u32,
        /// Tokens in the rendered prompt.
        prompt_tokens: u32,
        /// Tokens reserved for the output.
        completion_tokens: u32,
        /// The sum of the two.
        requested: u64,
    },
    /// The requested model is not served here. Kind: `NotFound` (404),
    /// code `model_not_found`, param `model`.
    #[error("The model `{model}` does not exist or you do not have access to it.")]
    ModelNotFound {
        /// The model id as the client sent it.
        model: String,
    },
    /// Some other resource or route does not exist. Kind: `NotFound` (404).
    #[error("{message}")]
    NotFound {
        /// A sentence for the client.
        message: String,
    },
    /// The body is over the size limit. Kind: `PayloadTooLarge` (413).
    #[error("The request body is larger than the limit of {limit_bytes} bytes.")]
    PayloadTooLarge {
        /// The limit that was exceeded.
        limit_bytes: u64,
    },
    /// No key, or an unknown one. Kind: `Unauthorized` (401), code
    /// `invalid_api_key`.
    #[error("{message}")]
    Unauthorized {
        /// A sentence for the client (never echoes the key).
        message: String,
    },
    /// The key may not do this. Kind: `Forbidden` (403).
    #[error("{message}")]
    Forbidden {
        /// A sentence for the client.
        message: String,
    },
    /// Over a rate limit. Kind: `RateLimited` (429), code
    /// `rate_limit_exceeded`.
    #[error("{message}")]
    RateLimited {
        /// A sentence for the client, naming the limit.
        message: String,
        /// When a retry may succeed, for the `retry-after` header.
        retry_after_secs: Option<u64>,
    },
    /// Over a requests- or tokens-per-minute limit, or a request larger than
    /// the limit itself, worded as OpenAI words it. Kind: `RateLimited`
    /// (429), type `requests` or `tokens`, code `rate_limit_exceeded`.
    #[error("{message}")]
    RateLimitExceeded {
        /// A sentence for the client, naming the limit and the wait.
        message: String,
        /// The limit that was hit (the error object's `type`).
        resource: RateLimitResource,
        /// When a retry may succeed, in milliseconds; `None` when a retry
        /// cannot succeed (the request is larger than the limit).
        retry_after_ms: Option<u64>,
    },
    /// The key's quota or budget is spent. Kind: `QuotaExceeded` (429),
    /// type and code `insufficient_quota`.
    #[error("{message}")]
    QuotaExceeded {
        /// A sentence for the client.
        message: String,
    },
    /// The server is at capacity. Kind: `Overloaded` (503).
    #[error("The server is overloaded; please retry your request later.")]
    Overloaded {
        /// When a retry may succeed, for the `retry-after` header.
        retry_after_secs: Option<u64>,
    },
    /// An upstream provider failed. Kind: `Upstream` (502).
    #[error("upstream error: {detail}")]
    Upstream {
        /// What went wrong, for logs only.
        detail: String,
    },
    /// The request ran past its time limit. Kind: `Timeout` (504).
    #[error("The request timed out after {after_secs} seconds.")]
    Timeout {
        /// The limit that was hit.
        after_secs: u64,
    },
    /// A bug or unexpected failure. Kind: `Internal` (500).
    #[error("internal error: {detail}")]
    Internal {
        /// What went wrong, for logs only; never sent to the client.
        detail: String,
    },
}

impl ApiError {
    /// An invalid-request error about `param`.
    pub fn invalid(
        param: impl Into<String>,
        code: InvalidCode,
        message: impl Into<String>,
    ) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
            code: Some(code),
        }
    }

    /// An invalid-request error about the request as a whole.
    pub fn invalid_body(message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// The coarse class that decides the HTTP status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ApiError::MalformedJson { .. }
            | ApiError::InvalidRequest { .. }
            | ApiError::ContextLengthExceeded { .. } => ErrorKind::InvalidRequest,
            ApiError::ModelNotFound { .. } | ApiError::NotFound { .. } => ErrorKind::NotFound,
            ApiError::PayloadTooLarge { .. } => ErrorKind::PayloadTooLarge,
            ApiError::Unauthorized { .. } => ErrorKind::Unauthorized,
            ApiError::Forbidden { .. } => ErrorKind::Forbidden,
            ApiError::RateLimited { .. } | ApiError::RateLimitExceeded { .. } => {
                ErrorKind::RateLimited
            }
            ApiError::QuotaExceeded { .. } => ErrorKind::QuotaExceeded,
            ApiError::Overloaded { .. } => ErrorKind::Overloaded,
            ApiError::Upstream { .. } => ErrorKind::Upstream,
            ApiError::Timeout { .. } => ErrorKind::Timeout,
            ApiError::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// The OpenAI `type` string.
    pub fn error_type(&self) -> &'static str {
        if let ApiError::RateLimitExceeded { resource, .. } = self {
            return resource.as_str();
        }
        match self.kind() {
            // OpenAI answers a missing or wrong key with type
            // `invalid_request_error` and code `invalid_api_key`.
            ErrorKind::InvalidRequest
            | ErrorKind::NotFound
            | ErrorKind::PayloadTooLarge
            | ErrorKind::Unauthorized => "invalid_request_error",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::QuotaExceeded => "insufficient_quota",
            ErrorKind::Overloaded
            | ErrorKind::Upstream
            | ErrorKind::Timeout
            | ErrorKind::Internal => "server_error",
        }
    }

    /// The OpenAI `code` string, if this error has one.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            ApiError::InvalidRequest { code, .. } => code.map(InvalidCode::as_str),
            ApiError::ContextLengthExceeded { .. } => Some("context_length_exceeded"),
            ApiError::ModelNotFound { .. } => Some("model_not_found"),
            ApiError::PayloadTooLarge { .. } => Some("request_too_large"),
            ApiError::Unauthorized { .. } => Some("invalid_api_key"),
            ApiError::RateLimited { .. } | ApiError::RateLimitExceeded { .. } => {
                Some("rate_limit_exceeded")
            }
            ApiError::QuotaExceeded { .. } => Some("insufficient_quota"),
            ApiError::Overloaded { .. } => Some("server_overloaded"),
            ApiError::Timeout { .. } => Some("timeout"),
            ApiError::MalformedJson { .. }
            | ApiError::NotFound { .. }
            | ApiError::Forbidden { .. }
            | ApiError::Upstream { .. }
            | ApiError::Internal { .. } => None,
        }
    }

    /// The request parameter this error is about, if any.
    pub fn param(&self) -> Option<&str> {
        match self {
            ApiError::InvalidRequest { param, .. } => param.as_deref(),
            ApiError::ModelNotFound { .. } => Some("model"),
            ApiError::ContextLengthExceeded { .. } => Some("messages"),
            _ => None,
        }
    }

    /// How long the client should wait before retrying, where that is known.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited {
                retry_after_secs, ..
            }
            | ApiError::Overloaded { retry_after_secs } => *retry_after_secs,
            ApiError::RateLimitExceeded { retry_after_ms, .. } => {
                retry_after_ms.map(|ms| ms.div_ceil(1_000).max(1))
            }
            _ => None,
        }
    }

    /// The message the client sees: the `Display` text, except that
    /// server-side failures get a generic sentence.
    pub fn client_message(&self) -> String {
        match self {
            ApiError::Upstream { .. } | ApiError::Internal { .. } => {
                INTERNAL_ERROR_MESSAGE.to_owned()
            }
            other => other.to_string(),
        }
    }

    /// The inner error object (`message`, `type`, `param`, `code`).
    pub fn to_object(&self) -> ErrorObject {
        ErrorObject {
            message: self.client_message(),
            error_type: self.error_type().to_owned(),
            param: self.param().map(str::to_owned),
            code: self.code().map(str::to_owned),
        }
    }

    /// The whole response body, `{"error": {...}}`.
    pub fn to_response(&self) -> ErrorResponse {
        ErrorResponse {
            error: self.to_object(),
        }
    }
}

/// The body of every error response: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error itself.
    pub error: ErrorObject,
}

/// The OpenAI error object. All four keys are always serialised;
/// `param` and `code` as `null` when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// A sentence for a human.
    pub message: String,
    /// The class, e.g. `invalid_request_error`.
    #[serde(rename = "type")]
    pub error_type: String,
    /// The offending parameter, e.g. `messages[0].role`.
    pub param: Option<String>,
    /// A machine-readable reason, e.g. `model_not_found`.
    pub code: Option<String>,
}

impl From<&ApiError> for ErrorResponse {
    fn from(err: &ApiError) -> Self {
        err.to_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_examples() -> Vec<ApiError> {
        vec![
            ApiError::MalformedJson { detail: "x".into() },
            ApiError::invalid("temperature", InvalidCode::DecimalAboveMaxValue, "too hot"),
            ApiError::invalid_body("body must be an object"),
            ApiError::ContextLengthExceeded {
                context_length: 4096,
                prompt_tokens: 5000,
                completion_tokens: 16,
                requested: 5016,
            },
            ApiError::ModelNotFound {
                model: "gpt-9".into(),
            },
            ApiError::NotFound {
                message: "no route".into(),
            },
            ApiError::PayloadTooLarge {
                limit_bytes: 1 << 20,
            },
            ApiError::Unauthorized {
                message: "Incorrect API key provided.".into(),
            },
            ApiError::Forbidden {
                message: "no".into(),
            },
            ApiError::RateLimited {
                message: "slow down".into(),
                retry_after_secs: Some(2),
            },
            ApiError::QuotaExceeded {
                message: "budget spent".into(),
            },
            ApiError::Overloaded {
                retry_after_secs: None,
            },
            ApiError::Upstream {
                detail: "secret upstream detail".into(),
            },
            ApiError::Timeout { after_secs: 600 },
            ApiError::Internal {
                detail: "secret panic detail".into(),
            },
            ApiError::RateLimitExceeded {
                message: "Rate limit reached for requests".into(),
                resource: RateLimitResource::Requests,
                retry_after_ms: Some(1_200),
            },
        ]
    }

    #[test]
    fn error_object_always_has_four_keys() {
        for err in all_examples() {
            let value = serde_json::to_value(err.to_response()).unwrap();
            let object = value["error"].as_object().unwrap();
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["code", "message", "param", "type"], "{err:?}");
        }
    }

    #[test]
    fn absent_param_and_code_are_null() {
        let value = serde_json::to_value(ApiError::invalid_body("bad").to_response()).unwrap();
        assert!(value["error"]["param"].is_null());
        assert!(value["error"]["code"].is_null());
        assert_eq!(value["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn model_not_found_names_model() {
        let err = ApiError::ModelNotFound {
            model: "nope".into(),
        };
        let obj = err.to_object();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(obj.param.as_deref(), Some("model"));
        assert_eq!(obj.code.as_deref(), Some("model_not_found"));
        assert!(obj.message.contains("nope"));
    }

    #[test]
    fn context_length_exceeded_has_its_code() {
        let err = &all_examples()[3];
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert_eq!(err.code(), Some("context_length_exceeded"));
        assert!(err.to_string().contains("4096"));
    }

    #[test]
    fn server_failures_do_not_leak_detail() {
        for err in all_examples() {
            let message = err.to_object().message;
            assert!(!message.contains("secret"), "{err:?} leaked: {message}");
        }
    }

    #[test]
    fn quota_and_rate_limit_types() {
        let examples = all_examples();
        assert_eq!(examples[9].error_type(), "rate_limit_error");
        assert_eq!(examples[9].retry_after_secs(), Some(2));
        assert_eq!(examples[10].error_type(), "insufficient_quota");
        assert_eq!(examples[7].error_type(), "invalid_request_error");
        assert_eq!(examples[7].code(), Some("invalid_api_key"));
        assert_eq!(examples[14].error_type(), "server_error");
    }

    #[test]
    fn rate_limit_exceeded_names_its_resource_as_type() {
        let err = &all_examples()[15];
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        assert_eq!(err.error_type(), "requests");
        assert_eq!(err.code(), Some("rate_limit_exceeded"));
        assert_eq!(err.retry_after_secs(), Some(2));
        let tokens = ApiError::RateLimitExceeded {
            message: "Request too large".into(),
            resource: RateLimitResource::Tokens,
            retry_after_ms: None,
        };
        assert_eq!(tokens.to_object().error_type, "tokens");
        assert_eq!(tokens.retry_after_secs(), None);
    }
}
