//! The gateway: which backend answers a request for a model, and what
//! happens when one fails.
//!
//! - [`Backend`]: one place that answers chat requests, whole or streamed
//!   ([`ChatReply`]), with typed failures ([`BackendError`]). Implemented
//!   here for OpenAI-compatible servers ([`OpenAiBackend`]) and Anthropic's
//!   Messages API ([`AnthropicBackend`], translated both ways); the service
//!   crate implements it for the local engine and hands it in through
//!   [`GatewayBuilder::backend`].
//! - [`Gateway`]: routing of a model (or alias) to its backends by priority
//!   and weight (or fewest in flight), sticky keys, retries with jittered
//!   backoff while nothing has reached the client, fallback models, 429
//!   cool-downs, first-token and idle timeouts ([`GatewayStream`]).
//! - Per-backend circuit breakers ([`breaker`]) fed by calls and active
//!   health checks, publishing [`BreakerEvent`]s for incidents; per-backend
//!   [`BackendStatus`] for the status page.
//! - Embeddings and moderations routed the same way, as whole answers
//!   (`whole`: [`Gateway::embeddings`], [`Gateway::moderations`]).
//! - [`GatewayConfig`]: the `[gateway]` section of the config file, with
//!   validation ([`ConfigError`]). Documented in `docs/GATEWAY.md`.
//!
//! Nothing here knows HTTP status tables, what a client is told of a
//! [`GatewayError`] (the service crate's error table decides), or the
//! engine.

pub mod anthropic;
mod backend;
pub mod breaker;
pub mod config;
mod error;
mod http;
mod openai;
mod pool;
mod router;
mod setup;
pub mod sse;
mod stream;
mod whole;

pub use anthropic::AnthropicBackend;
pub use backend::{Backend, ChatReply, ChunkStream};
pub use breaker::BreakerState;
pub use config::{
    BackendConfig, BackendKind, BreakerConfig, ConfigError, GatewayConfig, HealthConfig,
    ModelConfig, RetryConfig, RoutingStrategy, TimeoutsConfig,
};
pub use error::{BackendError, FailureKind, GatewayError};
pub use openai::{HttpTimeouts, OpenAiBackend};
pub use pool::{BackendStatus, BreakerEvent};
pub use router::{Gateway, GatewayReply, RouteOptions, Served, SharedBackend};
pub use setup::GatewayBuilder;
pub use stream::{estimate_prompt_tokens, GatewayStream};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
