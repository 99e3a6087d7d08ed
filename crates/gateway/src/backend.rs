//! The [`Backend`] trait: one place that can answer a chat request —
//! an OpenAI-compatible server, Anthropic's Messages API, or (implemented
//! by the service crate, which owns the engine handle) the local engine.
//!
//! A backend answers with a [`ChatReply`]: a whole [`ChatCompletion`] or a
//! [`ChunkStream`] of [`ChatCompletionChunk`]s. Streams report usage in a
//! final chunk with `choices: []` (as OpenAI's `include_usage` does); a
//! backend may also put partial usage (e.g. prompt tokens) on earlier
//! chunks, which the router records and strips. Failures are typed
//! [`BackendError`]s; the router adds timeouts (first token, idle stream,
//! whole request), retries, failover and breakers around any backend, so an
//! implementation only has to report honestly what happened.
//!
//! A backend may also answer embeddings and moderations (whole JSON
//! answers, routed with the same retries and failover); one that does not
//! says [`FailureKind::Unsupported`], and the router tries the next.

use std::pin::Pin;

use api::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, EmbeddingList, EmbeddingRequest,
    Moderation, ModerationRequest,
};
use futures_util::future::BoxFuture;
use futures_util::Stream;

use crate::error::{BackendError, FailureKind};

/// A stream of chunks from one backend. It ends after the final chunk; an
/// `Err` item is the last item.
pub type ChunkStream =
    Pin<Box<dyn Stream<Item = Result<ChatCompletionChunk, BackendError>> + Send + 'static>>;

/// What a backend answers.
pub enum ChatReply {
    /// A whole answer (the request had `stream` off).
    Whole(ChatCompletion),
    /// A stream of chunks (the request had `stream` on).
    Stream(ChunkStream),
}

impl std::fmt::Debug for ChatReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatReply::Whole(whole) => f.debug_tuple("Whole").field(whole).finish(),
            ChatReply::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// One place that can answer chat requests.
///
/// The request given is already addressed to this backend: its `model` is
/// the backend's own name for the model, and for streamed requests
/// `stream_options.include_usage` is on, so the stream ends with usage.
/// Implementations must be cheap to call concurrently (`&self`).
pub trait Backend: Send + Sync + 'static {
    /// A short name of the kind (`openai`, `anthropic`, `local`), for logs
    /// and the status page.
    fn kind(&self) -> &'static str;

    /// Answers one chat request, whole or streamed as `request.stream` says.
    /// The future resolves when the answer (whole) or the response head
    /// (streamed) is there.
    fn chat(
        &self,
        request: ChatCompletionRequest,
    ) -> BoxFuture<'static, Result<ChatReply, BackendError>>;

    /// Answers one embeddings request (its `model` is the backend's own
    /// name). The default: this backend does not serve embeddings.
    fn embeddings(
        &self,
        _request: EmbeddingRequest,
    ) -> BoxFuture<'static, Result<EmbeddingList, BackendError>> {
        unsupported(self.kind(), "embeddings")
    }

    /// Answers one moderation request (its `model` is the backend's own
    /// name). The default: this backend does not serve moderation.
    fn moderations(
        &self,
        _request: ModerationRequest,
    ) -> BoxFuture<'static, Result<Moderation, BackendError>> {
        unsupported(self.kind(), "moderations")
    }

    /// An active health check (e.g. `GET /v1/models`); `Ok` when healthy.
    /// The default says healthy, for backends that cannot be probed.
    fn health(&self) -> BoxFuture<'static, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The failure of a backend kind that does not serve `what`.
fn unsupported<T: Send + 'static>(
    kind: &'static str,
    what: &'static str,
) -> BoxFuture<'static, Result<T, BackendError>> {
    Box::pin(async move {
        Err(BackendError::new(
            FailureKind::Unsupported,
            format!("a `{kind}` backend does not serve {what}"),
        ))
    })
}
