//! Parlance's rate limits: requests per minute (RPM) and tokens per minute
//! (TPM) per subject (an API key or a project), with OpenAI's headers.
//!
//! - [`bucket`]: the algorithm — a token bucket with continuous refill, in
//!   exact integers (scaled units and milliseconds) — and its values:
//!   [`Limits`], [`Cost`], [`Decision`], [`Snapshot`].
//! - [`RateLimiter`]: check-and-consume ([`acquire`](RateLimiter::acquire))
//!   and correct-after-usage ([`adjust`](RateLimiter::adjust)), implemented
//!   in-process by [`MemoryLimiter`] and across instances by [`RedisLimiter`];
//!   [`Limiter`] picks one from configuration.
//! - [`headers`]: `x-ratelimit-*`, `retry-after` and `retry-after-ms`.
//!
//! No HTTP here: the server calls [`RateLimiter::acquire`] before any work,
//! answers 429 with [`decision_headers`] when limited, attaches the same
//! headers to every other response, and calls [`RateLimiter::adjust`] with
//! `actual − estimated` tokens once the usage is known.
//!
//! Every fallible operation returns [`RateLimitError`], whose
//! [`kind`](RateLimitError::kind) the server maps to a status.

use std::future::Future;

pub mod bucket;
pub mod error;
pub mod headers;
pub mod memory;
pub mod redis;

pub use bucket::{Cost, Decision, Limits, Snapshot, MAX_LIMIT};
pub use error::{ErrorKind, RateLimitError};
pub use headers::{decision_headers, format_duration, ratelimit_headers, retry_headers};
pub use memory::MemoryLimiter;
pub use redis::RedisLimiter;

/// A store of per-subject RPM/TPM buckets.
pub trait RateLimiter: Send + Sync {
    /// Consumes `cost` from the subject's buckets if both can afford it;
    /// otherwise consumes nothing and says how long to wait. A cost larger
    /// than a limit is [`RateLimitError::RequestTooLarge`].
    fn acquire(
        &self,
        subject: &str,
        limits: &Limits,
        cost: Cost,
    ) -> impl Future<Output = Result<Decision, RateLimitError>> + Send;

    /// Corrects the subject's token count once real usage is known:
    /// `token_delta = actual − estimated`, negative to refund, positive to
    /// charge (which may leave the bucket in debt, at most one minute's worth).
    fn adjust(
        &self,
        subject: &str,
        limits: &Limits,
        token_delta: i64,
    ) -> impl Future<Output = Result<Snapshot, RateLimitError>> + Send;
}

/// The backend chosen by configuration: Redis when a URL is given, else
/// in-process.
#[derive(Debug)]
pub enum Limiter {
    /// Limits in this process only.
    Memory(MemoryLimiter),
    /// Limits shared through Redis.
    Redis(Box<RedisLimiter>),
}

impl Limiter {
    /// Connects to Redis at `redis_url` (keys under
    /// [`redis::DEFAULT_PREFIX`]), or keeps limits in memory when `None`.
    pub async fn from_url(redis_url: Option<&str>) -> Result<Self, RateLimitError> {
        match redis_url {
            Some(url) => Ok(Self::Redis(Box::new(
                RedisLimiter::connect(url, redis::DEFAULT_PREFIX).await?,
            ))),
            None => Ok(Self::Memory(MemoryLimiter::new())),
        }
    }
}

impl RateLimiter for Limiter {
    async fn acquire(
        &self,
        subject: &str,
        limits: &Limits,
        cost: Cost,
    ) -> Result<Decision, RateLimitError> {
        match self {
            Self::Memory(m) => m.acquire(subject, limits, cost).await,
            Self::Redis(r) => r.acquire(subject, limits, cost).await,
        }
    }

    async fn adjust(
        &self,
        subject: &str,
        limits: &Limits,
        token_delta: i64,
    ) -> Result<Snapshot, RateLimitError> {
        match self {
            Self::Memory(m) => m.adjust(subject, limits, token_delta).await,
            Self::Redis(r) => r.adjust(subject, limits, token_delta).await,
        }
    }
}
