//! [`EngineBackend`]: the local engine behind the gateway's [`Backend`]
//! trait, so that a model may mix the engine with remote upstreams (or fall
//! back to it). It does what `routes/chat.rs` does for a local request:
//! renders the conversation with the model's template and tokenizes it on
//! the blocking pool, submits one generation per choice, and answers whole
//! or as chunks built from the engine's events.
//!
//! Errors are mapped for the router: the engine being full is a retryable
//! 503-like failure (another backend may answer), a request the engine
//! cannot take (context too long, bad logit bias) is the client's fault
//! (`Rejected` 400, with the engine's message), and a generation that fails
//! after output ends the chunk stream with `Dropped`.
//!
//! A model served by exactly one local backend does not come here: the
//! chat route keeps its direct engine path for it (logprobs, `n`, exact
//! prompt counts), see [`crate::routes::chat`].

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use api::{
    ApiError, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionMessage,
    ChatCompletionRequest, ChunkChoice, ChunkDelta, ErrorKind, Usage,
};
use engine::{EngineHandle, Event};
use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use gateway::{Backend, BackendError, ChatReply, ChunkStream, FailureKind};

use crate::generation::{collect, finish_reason, saturate, submit_all, Tracked};
use crate::routes::chat::{settings, template_messages};

/// The engine as a gateway backend.
#[derive(Clone)]
pub struct EngineBackend {
    engine: EngineHandle,
    live: Arc<AtomicUsize>,
}

impl EngineBackend {
    /// The backend over `engine`, counting its generations in `live`.
    pub fn new(engine: EngineHandle, live: Arc<AtomicUsize>) -> Self {
        EngineBackend { engine, live }
    }
}

/// An API error from preparing or submitting, as the router reads it.
fn backend_error(err: ApiError) -> BackendError {
    let kind = match err.kind() {
        ErrorKind::InvalidRequest | ErrorKind::PayloadTooLarge => {
            FailureKind::Rejected { status: 400 }
        }
        ErrorKind::Overloaded => FailureKind::Status { status: 503 },
        _ => FailureKind::Status { status: 500 },
    };
    let detail = match &kind {
        FailureKind::Rejected { .. } => err.to_response().error.message,
        _ => err.to_string(),
    };
    BackendError::new(kind, detail)
}

impl Backend for EngineBackend {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn chat(
        &self,
        request: ChatCompletionRequest,
    ) -> BoxFuture<'static, Result<ChatReply, BackendError>> {
        let this = self.clone();
        Box::pin(async move { this.answer(request).await })
    }
}

impl EngineBackend {
    async fn answer(&self, request: ChatCompletionRequest) -> Result<ChatReply, BackendError> {
        if !self.engine.info().has_chat_template {
            return Err(BackendError::new(
                FailureKind::Rejected { status: 400 },
                "The model has no chat template; use /v1/completions instead.",
            ));
        }
        let messages = template_messages(&request.messages);
        let engine = self.engine.clone();
        let prompt = tokio::task::spawn_blocking(move || {
            let text = engine.render_chat(&messages, true)?;
            Ok::<_, engine::EngineError>(engine.encode_prompt(&text))
        })
        .await
        .map_err(|err| BackendError::new(FailureKind::Status { status: 500 }, err.to_string()))?
        .map_err(|err| backend_error(crate::error::from_engine(err, "messages")))?;
        let settings = settings(&request).map_err(backend_error)?;
        let prompt_tokens = saturate(prompt.len());
        let generations = submit_all(
            &self.live,
            &self.engine,
            &[prompt],
            request.choice_count(),
            &settings,
            "messages",
        )
        .map_err(backend_error)?;
        let id = format!("chatcmpl-{}", crate::random_hex());
        let created = crate::unix_now();
        if request.is_stream() {
            return Ok(ChatReply::Stream(chunks(
                generations,
                id,
                created,
                request.model,
                prompt_tokens,
            )));
        }
        let mut choices = Vec::with_capacity(generations.len());
        let mut completion_tokens = 0u32;
        for (index, generation) in generations.into_iter().enumerate() {
            let done = collect(generation).await.map_err(|err| {
                BackendError::new(FailureKind::Status { status: 500 }, err.to_string())
            })?;
            completion_tokens = completion_tokens.saturating_add(done.completion_tokens);
            choices.push(ChatChoice {
                index: index as u32,
                logprobs: None,
                message: ChatCompletionMessage::assistant(done.text),
                finish_reason: done.finish_reason,
            });
        }
        let usage = Usage::new(prompt_tokens, completion_tokens, 0);
        Ok(ChatReply::Whole(ChatCompletion::new(
            id,
            created,
            request.model,
            choices,
            usage,
        )))
    }
}

/// The chunks of `generations` merged: an opening delta per choice, text
/// deltas, a finishing chunk per choice, then the usage chunk.
fn chunks(
    generations: Vec<Tracked>,
    id: String,
    created: u64,
    model: String,
    prompt_tokens: u32,
) -> ChunkStream {
    let count = generations.len();
    let chunk = {
        let (id, model) = (id.clone(), model.clone());
        move |choice: ChunkChoice| {
            ChatCompletionChunk::new(id.clone(), created, model.clone(), vec![choice], false)
        }
    };
    let openings: Vec<Result<ChatCompletionChunk, BackendError>> = (0..count)
        .map(|index| {
            Ok(chunk(ChunkChoice {
                index: index as u32,
                delta: ChunkDelta::opening(),
                logprobs: None,
                finish_reason: None,
            }))
        })
        .collect();
    let events = stream::select_all(generations.into_iter().enumerate().map(
        |(index, generation)| {
            Box::pin(stream::unfold(
                generation,
                move |mut generation| async move {
                    let event = generation.next().await?;
                    Some(((index as u32, event), generation))
                },
            ))
        },
    ));
    struct Merge {
        remaining: usize,
        completion: u32,
        over: bool,
    }
    let merge = Merge {
        remaining: count,
        completion: 0,
        over: false,
    };
    let body = events
        .scan(merge, move |merge, (index, event)| {
            if merge.over {
                return futures_util::future::ready(None);
            }
            let item = match event {
                Event::Token { text, .. } => Some(Ok(chunk(ChunkChoice {
                    index,
                    delta: ChunkDelta::text(text),
                    logprobs: None,
                    finish_reason: None,
                }))),
                Event::Done {
                    text,
                    reason,
                    usage,
                } => {
                    merge.remaining = merge.remaining.saturating_sub(1);
                    merge.completion = merge
                        .completion
                        .saturating_add(saturate(usage.completion_tokens));
                    let delta = if text.is_empty() {
                        ChunkDelta::default()
                    } else {
                        ChunkDelta::text(text)
                    };
                    let mut out = vec![Ok(chunk(ChunkChoice {
                        index,
                        delta,
                        logprobs: None,
                        finish_reason: Some(finish_reason(reason)),
                    }))];
                    if merge.remaining == 0 {
                        merge.over = true;
                        out.push(Ok(ChatCompletionChunk::usage_only(
                            id.clone(),
                            created,
                            model.clone(),
                            Usage::new(prompt_tokens, merge.completion, 0),
                        )));
                    }
                    return futures_util::future::ready(Some(out));
                }
                Event::Failed { message } => {
                    merge.over = true;
                    Some(Err(BackendError::new(FailureKind::Dropped, message)))
                }
            };
            futures_util::future::ready(Some(item.into_iter().collect()))
        })
        .flat_map(stream::iter);
    stream::iter(openings).chain(body).boxed()
}
