//! [`GatewayStream`]: a backend's chunk stream as the caller receives it
//! once routing has committed to that backend (the first token is in).
//!
//! It enforces the idle-stream timeout, rewrites `model` to the name that
//! served, keeps usage off the content chunks (`"usage": null` there when
//! the client asked for usage) and forwards or drops the final usage chunk
//! as the client asked. It tracks what was delivered, so that a failure
//! after output ends the stream with [`GatewayError::Interrupted`] carrying
//! the usage to bill (completion tokens counted from the chunks and prompt
//! tokens estimated when the upstream never said). At the end it reports
//! the outcome to the backend's breaker and stats.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use api::{ChatCompletionChunk, ChatCompletionRequest, Usage};
use futures_util::{Future, Stream};
use tokio::time::Sleep;

use crate::backend::ChunkStream;
use crate::error::{BackendError, FailureKind, GatewayError};
use crate::pool::InFlight;

/// Roughly how many characters make a token, for estimating prompt tokens
/// when an upstream failed before saying.
const CHARS_PER_TOKEN: usize = 4;

/// A prompt-token estimate for a request (characters / 4, at least 1).
pub fn estimate_prompt_tokens(request: &ChatCompletionRequest) -> u32 {
    let chars: usize = request
        .messages
        .iter()
        .filter_map(|m| m.content())
        .map(|c| c.text().chars().count())
        .sum();
    u32::try_from(chars / CHARS_PER_TOKEN + 1).unwrap_or(u32::MAX)
}

/// Settings of one delivered stream.
pub(crate) struct StreamSetup {
    /// The model name to report.
    pub model: String,
    /// Whether the client asked for the usage chunk.
    pub include_usage: bool,
    /// The idle timeout.
    pub idle: Duration,
    /// Prompt tokens to assume if the upstream never says.
    pub prompt_estimate: u32,
    /// Whether this call is the breaker's probe.
    pub probe: bool,
    /// When the call started (for the latency sample).
    pub started: Instant,
}

/// The caller's view of a committed stream. Items are chunks; an `Err` is
/// the last item.
pub struct GatewayStream {
    inner: ChunkStream,
    buffered: VecDeque<ChatCompletionChunk>,
    setup: StreamSetup,
    idle: Pin<Box<Sleep>>,
    call: Option<InFlight>,
    upstream_usage: Option<Usage>,
    counted_tokens: u32,
    /// The id/created of the answer, for a synthesised usage chunk.
    head: Option<(String, u64)>,
    saw_usage_chunk: bool,
    done: bool,
}

impl GatewayStream {
    pub(crate) fn new(
        inner: ChunkStream,
        buffered: VecDeque<ChatCompletionChunk>,
        setup: StreamSetup,
        call: InFlight,
    ) -> Self {
        let idle = Box::pin(tokio::time::sleep(setup.idle));
        let mut stream = GatewayStream {
            inner,
            buffered: VecDeque::new(),
            setup,
            idle,
            call: Some(call),
            upstream_usage: None,
            counted_tokens: 0,
            head: None,
            saw_usage_chunk: false,
            done: false,
        };
        // The latency sample is the time to the first token, which has come.
        if let Some(call) = &stream.call {
            call.slot().on_first_token(stream.setup.started.elapsed());
        }
        stream.buffered = buffered;
        stream
    }

    /// The model that serves this stream.
    pub fn model(&self) -> &str {
        &self.setup.model
    }

    /// The backend that serves this stream.
    pub fn backend_id(&self) -> Option<&str> {
        self.call.as_ref().map(|c| c.slot().id.as_str())
    }

    /// Usage delivered so far: the upstream's counts where it gave them,
    /// else completion tokens counted from content chunks and the prompt
    /// estimate.
    pub fn usage(&self) -> Usage {
        let upstream = self.upstream_usage.clone().unwrap_or_default();
        let prompt = if upstream.prompt_tokens > 0 {
            upstream.prompt_tokens
        } else {
            self.setup.prompt_estimate
        };
        let completion = upstream.completion_tokens.max(self.counted_tokens);
        let cached = upstream
            .prompt_tokens_details
            .as_ref()
            .map_or(0, |d| d.cached_tokens);
        Usage::new(prompt, completion, cached)
    }

    /// One upstream chunk → what the caller gets (if anything).
    fn process(&mut self, mut chunk: ChatCompletionChunk) -> Option<ChatCompletionChunk> {
        if self.head.is_none() {
            self.head = Some((chunk.id.clone(), chunk.created));
        }
        if let Some(usage) = chunk.usage.take() {
            self.upstream_usage = Some(usage);
        }
        chunk.model = self.setup.model.clone();
        if chunk.choices.is_empty() {
            // The usage chunk: forward it (with the full usage) if asked.
            self.saw_usage_chunk = true;
            return self.setup.include_usage.then(|| {
                chunk.usage = Some(self.usage());
                chunk.null_usage = true;
                chunk
            });
        }
        for choice in &chunk.choices {
            let delta = &choice.delta;
            if delta.content.as_ref().is_some_and(|c| !c.is_empty())
                || delta.tool_calls.as_ref().is_some_and(|t| !t.is_empty())
            {
                self.counted_tokens = self.counted_tokens.saturating_add(1);
            }
        }
        chunk.null_usage = self.setup.include_usage;
        Some(chunk)
    }

    fn finish_ok(&mut self) -> Option<ChatCompletionChunk> {
        self.done = true;
        if let Some(call) = self.call.take() {
            call.slot().on_stream_end(None, self.setup.probe);
        }
        if self.saw_usage_chunk || !self.setup.include_usage {
            return None;
        }
        let (id, created) = self.head.clone().unwrap_or_default();
        Some(ChatCompletionChunk::usage_only(
            id,
            created,
            self.setup.model.clone(),
            self.usage(),
        ))
    }

    fn fail(&mut self, err: BackendError) -> GatewayError {
        self.done = true;
        tracing::warn!(kind = err.kind.name(), detail = %err.detail, "stream failed after output");
        if let Some(call) = self.call.take() {
            call.slot().on_stream_end(Some(&err.kind), self.setup.probe);
        }
        GatewayError::Interrupted {
            detail: err.detail,
            kind: err.kind,
            usage: self.usage(),
        }
    }
}

impl Stream for GatewayStream {
    type Item = Result<ChatCompletionChunk, GatewayError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(chunk) = this.buffered.pop_front() {
                if let Some(out) = this.process(chunk) {
                    return Poll::Ready(Some(Ok(out)));
                }
                continue;
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let deadline = tokio::time::Instant::now() + this.setup.idle;
                    this.idle.as_mut().reset(deadline);
                    if let Some(out) = this.process(chunk) {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    return Poll::Ready(Some(Err(this.fail(err.after_output()))));
                }
                Poll::Ready(None) => {
                    if let Some(usage) = this.finish_ok() {
                        return Poll::Ready(Some(Ok(usage)));
                    }
                }
                Poll::Pending => {
                    if this.idle.as_mut().poll(cx).is_ready() {
                        let err = BackendError::new(
                            FailureKind::IdleTimeout,
                            format!("no chunk for {} ms", this.setup.idle.as_millis()),
                        );
                        return Poll::Ready(Some(Err(this.fail(err.after_output()))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for GatewayStream {
    fn drop(&mut self) {
        // The caller left before the end: nothing is known about health.
        if let Some(call) = self.call.take() {
            call.slot().on_abandoned(self.setup.probe);
        }
    }
}
