//! [`EngineBackend`]: the local engine behind the gateway's [`Backend`]
//! trait, so that a model may mix the engine with remote upstreams (or fall
//! back to it). It takes the same path as the direct chat route: the
//! prompt prepared by [`super::chat`], one generation per choice, the
//! events merged by [`Answer`] and written as [`ChatChunks`].
//!
//! Failures reach the router as [`BackendError`]s: a request the engine
//! cannot take (context too long, bad logit bias) is rejected with the
//! error meant for the client, never retried; the engine being full is a
//! retryable failure another backend may answer; a generation that fails
//! after output ends the chunk stream with `Dropped`.
//!
//! The request is metered by the gateway route, not here: this backend
//! holds no charge.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use api::{ApiError, ChatCompletionRequest};
use engine::EngineHandle;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use gateway::{Backend, BackendError, ChatReply, ChunkStream, FailureKind};

use super::chat::{self, ChatChunks};
use super::{saturate, submit_all, Answer, AnswerDefaults, AnswerEvent, AnswerFormat};

/// The engine as a gateway backend.
#[derive(Clone)]
pub struct EngineBackend {
    engine: EngineHandle,
    live: Arc<AtomicUsize>,
    answer_defaults: Arc<AnswerDefaults>,
}

impl EngineBackend {
    /// The backend over `engine`, counting its generations in `live`, with
    /// `answer_defaults` for requests that set none.
    pub fn new(
        engine: EngineHandle,
        live: Arc<AtomicUsize>,
        answer_defaults: Arc<AnswerDefaults>,
    ) -> Self {
        EngineBackend {
            engine,
            live,
            answer_defaults,
        }
    }
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

/// A failure before any output, as the router reads it: the client's own
/// fault is rejected with the error meant for it; an overloaded engine may
/// be answered by another backend; anything else counts against this one.
fn refused(err: ApiError) -> BackendError {
    match err.kind() {
        api::ErrorKind::Overloaded => {
            BackendError::new(FailureKind::Status { status: 503 }, err.to_string())
        }
        api::ErrorKind::Internal => {
            BackendError::new(FailureKind::Status { status: 500 }, err.to_string())
        }
        _ => BackendError::rejected(err),
    }
}

impl EngineBackend {
    async fn answer(&self, request: ChatCompletionRequest) -> Result<ChatReply, BackendError> {
        let started = async {
            let (prompt, thinking) =
                chat::prompt_thinking(&self.engine, &request.model, &request).await?;
            let mut settings = chat::settings(&request, &self.answer_defaults)?;
            let plan = super::tools::plan(&self.engine, &request).await?;
            settings.constraint = plan.constraint();
            let prompt_tokens = saturate(prompt.len());
            let n = request.choice_count();
            let generations = submit_all(
                &self.live,
                &self.engine,
                &[prompt],
                n,
                &settings,
                chat::PARAM,
            )?;
            let format = ChatChunks::new(
                request.model.clone(),
                true,
                settings.logprobs.is_some(),
                self.engine.tokenizer().clone(),
            )
            .reading_tools(plan.tools)
            .reasoning(thinking, self.answer_defaults.reasoning_field());
            Ok::<_, crate::Error>((Answer::new(generations, prompt_tokens, n, None), format))
        };
        let (answer, format) = started.await.map_err(|err| refused(err.into()))?;
        if request.is_stream() {
            return Ok(ChatReply::Stream(chunks(answer, format)));
        }
        let whole = answer.collect().await.map_err(|err| {
            BackendError::new(FailureKind::Status { status: 500 }, err.to_string())
        })?;
        Ok(ChatReply::Whole(format.completion(whole)))
    }
}

/// The answer's chunks: openings, text deltas, a finishing chunk per
/// choice, then the usage chunk; a failure ends the stream `Dropped`.
fn chunks(answer: Answer, mut format: ChatChunks) -> ChunkStream {
    let openings = format.opening(answer.choices());
    let events = stream::unfold((answer, format), |(mut answer, mut format)| async move {
        let items: Vec<Result<_, BackendError>> = match answer.next().await? {
            AnswerEvent::Failed(err) => {
                vec![Err(BackendError::new(
                    FailureKind::Dropped,
                    err.to_string(),
                ))]
            }
            event => format.event(event).into_iter().map(Ok).collect(),
        };
        Some((stream::iter(items), (answer, format)))
    })
    .flatten();
    stream::iter(openings.into_iter().map(Ok))
        .chain(events)
        .boxed()
}
