//! Server-sent events for streamed answers.
//!
//! The response body owns the generations: when the client disconnects,
//! hyper drops the body, which drops every [`Generation`] and so cancels
//! them in the engine at once. Events of the `n` choices are merged as
//! they come; a [`StreamFormat`] turns them into the endpoint's chunks.
//! Every choice gets exactly one finishing event; an engine failure after
//! the stream began becomes an SSE error event and the stream ends.
//!
//! A metered stream also owns its [`Charge`]: it is settled `ok` when every
//! choice is done, `error` on a failure, and — the body being dropped when
//! the client leaves — `cancelled` with the tokens generated until then.
//!
//! A stream routed through the gateway ([`gateway_sse_response`]) relays
//! the upstream's chunks as they come; one that dies after output ends with
//! an SSE error event and is settled `error` for what was delivered.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;

use api::{ApiError, FinishReason, Usage};
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use engine::Event;
use futures_util::stream::{self, SelectAll, Stream, StreamExt};

use gateway::{GatewayError, GatewayStream};

use crate::generation::{finish_reason, saturate, TokenOut, Tracked};
use crate::metering::{Charge, Outcome};

/// How one endpoint writes its stream events.
pub trait StreamFormat: Send + 'static {
    /// The event opening choice `index`, if the format has one.
    fn opening(&mut self, index: u32) -> Option<String>;
    /// New text (and the tokens that made it) for choice `index`.
    fn delta(&mut self, index: u32, text: String, tokens: Vec<TokenOut>) -> String;
    /// The last event of choice `index`: remaining text and the reason.
    fn finish(
        &mut self,
        index: u32,
        text: String,
        tokens: Vec<TokenOut>,
        reason: FinishReason,
    ) -> String;
    /// The final usage event, if the client asked for one.
    fn usage(&mut self, usage: Usage) -> Option<String>;
}

type EventStream = Pin<Box<dyn Stream<Item = (u32, Event)> + Send>>;

/// The events of one choice, owning its generation.
fn events_of(index: u32, generation: Tracked) -> EventStream {
    Box::pin(stream::unfold(
        generation,
        move |mut generation| async move {
            let event = generation.next().await?;
            Some(((index, event), generation))
        },
    ))
}

struct ChoiceState {
    /// Tokens whose text is still held back by the engine.
    tokens: Vec<TokenOut>,
    /// Tokens generated so far (the engine's count once done).
    generated: u32,
    done: bool,
}

/// The state of one streamed answer.
struct SseStream<F> {
    events: SelectAll<EventStream>,
    format: F,
    choices: Vec<ChoiceState>,
    remaining: usize,
    prompt_tokens: u32,
    /// Generations per prompt (`n`): the first of each reports the
    /// prompt's cached tokens.
    choices_per_prompt: u32,
    completion_tokens: u32,
    cached_tokens: u32,
    queued: VecDeque<String>,
    finished: bool,
    /// The reservation to settle, when metered; settled on drop if the
    /// stream did not end.
    charge: Option<Charge>,
    /// The first finish reason, for the ledger.
    first_reason: Option<FinishReason>,
}

impl<F: StreamFormat> SseStream<F> {
    fn new(
        generations: Vec<Tracked>,
        mut format: F,
        (prompt_tokens, choices_per_prompt): (u32, u32),
        charge: Option<Charge>,
    ) -> Self {
        let count = generations.len();
        let mut queued = VecDeque::new();
        for index in 0..count {
            if let Some(event) = format.opening(index as u32) {
                queued.push_back(event);
            }
        }
        let events = stream::select_all(
            generations
                .into_iter()
                .enumerate()
                .map(|(index, generation)| events_of(index as u32, generation)),
        );
        let mut state = SseStream {
            events,
            format,
            choices: (0..count)
                .map(|_| ChoiceState {
                    tokens: Vec::new(),
                    generated: 0,
                    done: false,
                })
                .collect(),
            remaining: count,
            prompt_tokens,
            choices_per_prompt,
            completion_tokens: 0,
            cached_tokens: 0,
            queued,
            finished: false,
            charge,
            first_reason: None,
        };
        if count == 0 {
            state.end();
        }
        state
    }

    /// The next SSE frame, or `None` when the stream is over.
    async fn next_frame(&mut self) -> Option<String> {
        loop {
            if let Some(frame) = self.queued.pop_front() {
                return Some(frame);
            }
            if self.finished {
                return None;
            }
            match self.events.next().await {
                Some((index, event)) => self.handle(index, event),
                None => self.fail("a generation ended without a result".into()),
            }
        }
    }

    fn handle(&mut self, index: u32, event: Event) {
        let Some(choice) = self.choices.get_mut(index as usize) else {
            return;
        };
        if choice.done {
            return;
        }
        match event {
            Event::Token { id, text, logprobs } => {
                choice.generated = choice.generated.saturating_add(1);
                choice.tokens.push(TokenOut { id, logprobs });
                if !text.is_empty() {
                    let tokens = std::mem::take(&mut choice.tokens);
                    self.queued
                        .push_back(self.format.delta(index, text, tokens));
                }
            }
            Event::Done {
                text,
                reason,
                usage,
            } => {
                choice.done = true;
                choice.generated = saturate(usage.completion_tokens);
                let tokens = std::mem::take(&mut choice.tokens);
                self.completion_tokens = self
                    .completion_tokens
                    .saturating_add(saturate(usage.completion_tokens));
                self.cached_tokens =
                    self.cached_tokens
                        .saturating_add(crate::generation::cached_of_prompts(
                            index as usize,
                            self.choices_per_prompt,
                            saturate(usage.cached_tokens),
                        ));
                if let Some(charge) = self.charge.as_mut() {
                    charge.set_cached_tokens(self.cached_tokens);
                }
                let reason = finish_reason(reason);
                self.first_reason.get_or_insert(reason);
                self.queued
                    .push_back(self.format.finish(index, text, tokens, reason));
                self.remaining -= 1;
                if self.remaining == 0 {
                    self.end();
                }
            }
            Event::Failed { message } => self.fail(message),
        }
        let generated = self.generated();
        if let Some(charge) = self.charge.as_mut() {
            charge.set_completion_tokens(generated);
        }
    }

    /// Tokens generated so far, every choice together.
    fn generated(&self) -> u32 {
        self.choices
            .iter()
            .fold(0u32, |sum, choice| sum.saturating_add(choice.generated))
    }

    /// All choices are done: the usage event if asked for, then `[DONE]`.
    fn end(&mut self) {
        self.events = SelectAll::new();
        let usage = Usage::new(
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
        );
        if let Some(event) = self.format.usage(usage) {
            self.queued.push_back(event);
        }
        self.queued.push_back(api::sse_done().to_owned());
        self.finished = true;
        if let Some(charge) = self.charge.take() {
            charge.finish_detached(Outcome::Ok, self.generated(), self.first_reason);
        }
    }

    /// A failure after the stream began: an error event, then the end.
    /// The other choices' generations are dropped (cancelled).
    fn fail(&mut self, detail: String) {
        tracing::error!(%detail, "generation failed mid-stream");
        self.events = SelectAll::new();
        self.queued
            .push_back(api::sse_error(&ApiError::Internal { detail }));
        self.finished = true;
        if let Some(charge) = self.charge.take() {
            charge.finish_detached(Outcome::Error, self.generated(), None);
        }
    }
}

impl<F> Drop for SseStream<F> {
    fn drop(&mut self) {
        if !self.finished {
            tracing::info!(
                unfinished = self.remaining,
                "client left mid-stream; cancelling its generations"
            );
        }
    }
}

/// The `text/event-stream` response streaming `generations` through
/// `format`, settling `charge` (if metered) when the stream ends or is
/// dropped.
/// `prompts` is (prompt tokens, generations per prompt).
pub fn sse_response<F: StreamFormat>(
    generations: Vec<Tracked>,
    format: F,
    prompts: (u32, u32),
    charge: Option<Charge>,
) -> Response {
    let state = SseStream::new(generations, format, prompts, charge);
    let frames = stream::unfold(state, |mut state| async move {
        let frame = state.next_frame().await?;
        Some((Ok::<_, Infallible>(frame), state))
    });
    event_stream(Body::from_stream(frames))
}

/// A gateway stream relayed to the client, owning its charge.
struct Relay {
    stream: GatewayStream,
    charge: Option<Charge>,
    finished: bool,
    first_reason: Option<FinishReason>,
}

impl Relay {
    async fn next_frame(&mut self) -> Option<String> {
        if self.finished {
            return None;
        }
        match self.stream.next().await {
            Some(Ok(chunk)) => {
                if let Some(reason) = chunk.choices.iter().find_map(|c| c.finish_reason) {
                    self.first_reason.get_or_insert(reason);
                }
                let usage = self.stream.usage();
                if let Some(charge) = self.charge.as_mut() {
                    charge.set_prompt_tokens(usage.prompt_tokens);
                    charge.set_completion_tokens(usage.completion_tokens);
                }
                Some(api::sse_data(&chunk))
            }
            Some(Err(err)) => {
                self.finished = true;
                let usage = match &err {
                    GatewayError::Interrupted { usage, .. } => usage.clone(),
                    _ => self.stream.usage(),
                };
                tracing::warn!(error = %err, "upstream stream failed after output");
                self.settle(Outcome::Error, usage, None);
                Some(api::sse_error(&err.to_api_error()))
            }
            None => {
                self.finished = true;
                let usage = self.stream.usage();
                let reason = self.first_reason;
                self.settle(Outcome::Ok, usage, reason);
                Some(api::sse_done().to_owned())
            }
        }
    }

    fn settle(&mut self, outcome: Outcome, usage: Usage, reason: Option<FinishReason>) {
        if let Some(mut charge) = self.charge.take() {
            charge.set_prompt_tokens(usage.prompt_tokens);
            charge.set_cached_tokens(
                usage
                    .prompt_tokens_details
                    .as_ref()
                    .map_or(0, |d| d.cached_tokens),
            );
            charge.finish_detached(outcome, usage.completion_tokens, reason);
        }
    }
}

/// The `text/event-stream` response relaying a committed gateway stream,
/// settling `charge` (if metered) when it ends, fails or is dropped.
pub fn gateway_sse_response(stream: GatewayStream, charge: Option<Charge>) -> Response {
    let relay = Relay {
        stream,
        charge,
        finished: false,
        first_reason: None,
    };
    let frames = stream::unfold(relay, |mut relay| async move {
        let frame = relay.next_frame().await?;
        Some((Ok::<_, Infallible>(frame), relay))
    });
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
