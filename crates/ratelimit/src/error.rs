//! The rate-limit crate's one error type and the kind each error maps to.

/// What sort of failure a [`RateLimitError`] is, in the vocabulary the server
/// and CLI share; only they map kinds to statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A limit or correction is out of range (a configuration mistake).
    InvalidRequest,
    /// The request alone exceeds a per-minute limit and can never pass
    /// (OpenAI answers 429 "Request too large").
    RateLimited,
    /// The shared store (Redis) failed or answered nonsense.
    Internal,
}

/// Everything that can go wrong while rate limiting.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// A limit of zero or above [`MAX_LIMIT`](crate::MAX_LIMIT).
    #[error("rate limit {name} = {value} is out of range; use 1..={max}", max = crate::MAX_LIMIT)]
    InvalidLimit { name: &'static str, value: u64 },

    /// A token correction beyond [`MAX_LIMIT`](crate::MAX_LIMIT) either way.
    #[error("token adjustment {token_delta} is out of range; at most ±{max}", max = crate::MAX_LIMIT)]
    InvalidAdjustment { token_delta: i64 },

    /// One request costs more than its bucket can ever hold.
    #[error(
        "request too large: {requested} {dimension} requested, limit is {limit} {dimension} per minute"
    )]
    RequestTooLarge {
        dimension: &'static str,
        requested: u64,
        limit: u64,
    },

    /// Redis could not be reached or refused the script.
    #[error("rate-limit store (Redis) failed: {0}")]
    Redis(#[from] redis::RedisError),

    /// The Redis script answered something other than its documented reply.
    #[error("rate-limit store (Redis) gave an unexpected reply: {0}")]
    BadReply(String),
}

impl RateLimitError {
    /// The kind of failure, for mapping to an HTTP status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidLimit { .. } | Self::InvalidAdjustment { .. } => ErrorKind::InvalidRequest,
            Self::RequestTooLarge { .. } => ErrorKind::RateLimited,
            Self::Redis(_) | Self::BadReply(_) => ErrorKind::Internal,
        }
    }
}
