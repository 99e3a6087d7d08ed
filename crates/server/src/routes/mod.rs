//! The routes, thin: each parses its body, finds its model, and hands the
//! work to [`crate::generation`] and [`crate::stream`]. Helpers shared by
//! the handlers live here.

pub mod chat;
pub mod completions;
pub mod models;
pub mod tokenize;

use std::future::Future;
use std::time::Duration;

use api::ApiError;

/// Runs CPU work (tokenizing, template rendering) off the async executor.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ApiError::Internal {
            detail: format!("blocking task failed: {err}"),
        })
}

/// Runs `work`, failing with a 504 when it takes longer than `limit`
/// (dropping it, which cancels its generations).
pub async fn with_timeout<T>(
    limit: Duration,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or(Err(ApiError::Timeout {
            after_secs: limit.as_secs(),
        }))
}
