//! Server-sent events for streamed answers: a local [`Answer`] written in
//! its endpoint's [`AnswerFormat`], or a gateway stream relayed, chunk by
//! chunk, as chat chunks or as another API's events ([`BlockFormat`]).
//!
//! The response body owns what it streams: when the client disconnects,
//! hyper drops the body, which drops the answer (cancelling its
//! generations in the engine at once, and settling its charge `cancelled`)
//! or the gateway stream (settling its charge the same way). A failure
//! after the stream began becomes an SSE `error` event and the stream
//! ends; the error's 5xx details stay in the logs.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use api::{ChatCompletionChunk, FinishReason};
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use gateway::{GatewayError, GatewayStream};
use service::chat_blocks::{BlockFormat, RoutedBlocks};
use service::generation::{Answer, AnswerEvent, AnswerFormat};
use service::metering::billed;
use service::stored_completions::ChunkKeeper;
use service::{Charge, Outcome};

/// A local answer's frames: the format's openings, each event's chunks,
/// then `[DONE]` (or an error event).
struct Frames<F> {
    answer: Answer,
    format: F,
    queued: VecDeque<String>,
    over: bool,
}

impl<F: AnswerFormat> Frames<F> {
    async fn next_frame(&mut self) -> Option<String> {
        loop {
            if let Some(frame) = self.queued.pop_front() {
                return Some(frame);
            }
            if self.over {
                return None;
            }
            match self.answer.next().await {
                Some(AnswerEvent::Failed(err)) => {
                    self.over = true;
                    match self.format.failure(&err) {
                        Some(chunks) => self.queued.extend(chunks.iter().map(frame::<F>)),
                        None => self.queued.push_back(api::sse_error(&err)),
                    }
                }
                Some(event) => {
                    let done = matches!(event, AnswerEvent::Done(_));
                    let chunks = self.format.event(event);
                    if done {
                        if let Some(work) = self.format.before_last() {
                            work.await;
                        }
                    }
                    self.queued.extend(chunks.iter().map(frame::<F>));
                    if done {
                        self.over = true;
                        if self.format.ends_with_done() {
                            self.queued.push_back(api::sse_done().to_owned());
                        }
                    }
                }
                None => self.over = true,
            }
        }
    }
}

/// One chunk's SSE frame: `data: …`, after `event: <name>` for formats
/// whose clients read the name.
fn frame<F: AnswerFormat>(chunk: &F::Chunk) -> String {
    match F::event_name(chunk) {
        Some(name) => format!("event: {name}\n{}", api::sse_data(chunk)),
        None => api::sse_data(chunk),
    }
}

/// The `text/event-stream` response streaming `answer` through `format`.
pub fn sse_response<F: AnswerFormat>(answer: Answer, mut format: F) -> Response {
    let queued = format
        .opening(answer.choices())
        .iter()
        .map(frame::<F>)
        .collect();
    let frames = Frames {
        answer,
        format,
        queued,
        over: false,
    };
    let frames = stream::unfold(frames, |mut frames| async move {
        let frame = frames.next_frame().await?;
        Some((Ok::<_, Infallible>(frame), frames))
    });
    event_stream(Body::from_stream(frames))
}

/// How a relayed gateway stream is written: chat's chunks as they are
/// (`/v1/chat/completions`), or rewritten as another API's events.
trait RelayFormat: Send + 'static {
    /// The frames before the first chunk.
    fn opening(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// The frames of one chunk.
    fn chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<String>;
    /// The frames of a failure mid-stream.
    fn failure(&mut self, err: &api::ApiError) -> Vec<String>;
    /// The last frames, once the stream ended with `usage` (work such as
    /// storing the answer is done before they are written).
    fn end(&mut self, usage: api::Usage) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + '_>>;
}

/// Chat's own chunks, stored with the keeper (`store: true`) before
/// `[DONE]`.
struct ChatRelay {
    keeper: Option<ChunkKeeper>,
}

impl RelayFormat for ChatRelay {
    fn chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<String> {
        if let Some(keeper) = self.keeper.as_mut() {
            keeper.observe(chunk);
        }
        vec![api::sse_data(chunk)]
    }

    fn failure(&mut self, err: &api::ApiError) -> Vec<String> {
        vec![api::sse_error(err)]
    }

    fn end(&mut self, usage: api::Usage) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + '_>> {
        Box::pin(async move {
            if let Some(keeper) = self.keeper.take() {
                keeper.finish(usage).await;
            }
            vec![api::sse_done().to_owned()]
        })
    }
}

/// Chat's chunks rewritten by a block format (the Responses API's or
/// Anthropic's events), each frame named.
struct BlockRelay<W> {
    writer: W,
}

impl<W: BlockFormat> BlockRelay<W> {
    fn frames(events: Vec<W::Event>) -> Vec<String> {
        events
            .iter()
            .map(|event| format!("event: {}\n{}", W::event_name(event), api::sse_data(event)))
            .collect()
    }
}

impl<W: BlockFormat> RelayFormat for BlockRelay<W> {
    fn opening(&mut self) -> Vec<String> {
        Self::frames(self.writer.opening())
    }

    fn chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<String> {
        Self::frames(self.writer.chunk(chunk))
    }

    fn failure(&mut self, err: &api::ApiError) -> Vec<String> {
        Self::frames(self.writer.failure(err))
    }

    fn end(&mut self, usage: api::Usage) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + '_>> {
        Box::pin(async move {
            let events = self.writer.done(&usage);
            if let Some(work) = self.writer.before_last() {
                work.await;
            }
            Self::frames(events)
        })
    }
}

/// A gateway stream relayed to the client, owning its charge.
struct Relay<F> {
    stream: GatewayStream,
    charge: Option<Charge>,
    format: F,
    queued: VecDeque<String>,
    finished: bool,
    first_reason: Option<FinishReason>,
}

impl<F: RelayFormat> Relay<F> {
    async fn next_frame(&mut self) -> Option<String> {
        loop {
            if let Some(frame) = self.queued.pop_front() {
                return Some(frame);
            }
            if self.finished {
                return None;
            }
            let frames = self.next_frames().await;
            self.queued.extend(frames);
        }
    }

    async fn next_frames(&mut self) -> Vec<String> {
        match self.stream.next().await {
            Some(Ok(chunk)) => {
                if let Some(reason) = chunk.choices.iter().find_map(|c| c.finish_reason) {
                    self.first_reason.get_or_insert(reason);
                }
                if let Some(charge) = self.charge.as_mut() {
                    charge.record(billed(&self.stream.usage()));
                }
                self.format.chunk(&chunk)
            }
            Some(Err(err)) => {
                self.finished = true;
                let usage = match &err {
                    GatewayError::Interrupted { usage, .. } => usage.clone(),
                    _ => self.stream.usage(),
                };
                tracing::warn!(error = %err, "upstream stream failed after output");
                self.settle(Outcome::Failed, &usage);
                let err = service::Error::from(err);
                self.format.failure(&err.into())
            }
            None => {
                self.finished = true;
                let usage = self.stream.usage();
                self.settle(Outcome::Finished(self.first_reason), &usage);
                self.format.end(usage).await
            }
        }
    }

    fn settle(&mut self, outcome: Outcome, usage: &api::Usage) {
        if let Some(charge) = self.charge.take() {
            drop(charge.settle(outcome, billed(usage)));
        }
    }
}

/// The `text/event-stream` response of `relay`.
fn relay_response<F: RelayFormat>(
    stream: GatewayStream,
    charge: Option<Charge>,
    mut format: F,
) -> Response {
    let relay = Relay {
        stream,
        charge,
        queued: format.opening().into(),
        format,
        finished: false,
        first_reason: None,
    };
    let frames = stream::unfold(relay, |mut relay| async move {
        let frame = relay.next_frame().await?;
        Some((Ok::<_, Infallible>(frame), relay))
    });
    event_stream(Body::from_stream(frames))
}

/// The `text/event-stream` response relaying a committed gateway stream,
/// settling `charge` (if metered) when it ends, fails or is dropped, and
/// storing the answer with `keeper` (if `store: true`) before `[DONE]`.
pub fn gateway_sse_response(
    stream: GatewayStream,
    charge: Option<Charge>,
    keeper: Option<ChunkKeeper>,
) -> Response {
    relay_response(stream, charge, ChatRelay { keeper })
}

/// The `text/event-stream` response relaying a routed model's stream as
/// the events of `routed.writer` (the Responses API's, Anthropic's), chunk
/// by chunk as the upstream sends them; settled as
/// [`gateway_sse_response`] is.
pub fn gateway_blocks_response<W: BlockFormat>(routed: RoutedBlocks<W>) -> Response {
    let RoutedBlocks {
        stream,
        charge,
        writer,
    } = routed;
    relay_response(stream, charge, BlockRelay { writer })
}

/// `frames`, already written, as a `text/event-stream` response (an
/// answer that came whole, replayed as its events).
pub fn sse_frames(frames: Vec<String>) -> Response {
    let frames = stream::iter(frames.into_iter().map(Ok::<_, Infallible>));
    event_stream(Body::from_stream(frames))
}

/// `body` as a `text/event-stream` response, unbuffered.
fn event_stream(body: Body) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
