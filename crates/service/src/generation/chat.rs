//! A chat request on the local engine: its messages rendered with the
//! model's own template and tokenized (on the blocking pool), its sampling
//! settings, and its answer as chat chunks ([`ChatChunks`]) or a whole
//! [`ChatCompletion`] ([`ChatChunks::completion`]; [`ChatChunks::finish`]
//! also stores it when the request set `store: true`). The direct chat route
//! and the gateway's local backend both use these.

use std::sync::Arc;

use api::{
    ApiError, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionMessage,
    ChatCompletionRequest, ChatMessage, ChoiceLogprobs, ChunkChoice, ChunkDelta, InvalidCode,
};
use engine::{EngineHandle, Tokenizer};

use super::{
    chat_logprobs, AnswerEvent, AnswerFormat, DefaultMaxTokens, Settings, TokenOut, Whole,
    WholeChoice,
};
use crate::stored_completions::Keeper;
use crate::{Error, Result};

/// The request field a chat's engine errors are about.
pub const PARAM: &str = "messages";

/// The request's messages as the chat template takes them: `developer`
/// becomes `system` (templates know only the older name); array contents
/// are joined.
pub fn template_messages(messages: &[ChatMessage]) -> Vec<engine::ChatMessage> {
    messages
        .iter()
        .map(|message| {
            let role = match message {
                ChatMessage::Developer { .. } => "system",
                other => other.role(),
            };
            let content = message.content().map(|c| c.text()).unwrap_or_default();
            engine::ChatMessage::new(role, content)
        })
        .collect()
}

/// The prompt tokens of `request` on `engine`: its messages rendered with
/// the model's template (`model` names it in the error when it has none)
/// and tokenized, off the async executor.
pub async fn prompt(
    engine: &EngineHandle,
    model: &str,
    request: &ChatCompletionRequest,
) -> Result<Vec<u32>> {
    if !engine.info().has_chat_template {
        return Err(ApiError::invalid(
            PARAM,
            InvalidCode::InvalidValue,
            format!("The model `{model}` has no chat template; use /v1/completions instead."),
        )
        .into());
    }
    let messages = template_messages(&request.messages);
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        let text = engine.render_chat(&messages, true)?;
        Ok(engine.encode_prompt(&text))
    })
    .await?
    .map_err(|err| Error::engine(err, PARAM))
}

/// How the choices of `request` are sampled; a request without
/// `max_tokens` gets `default_max_tokens`, if the server sets one.
pub fn settings(
    request: &ChatCompletionRequest,
    default_max_tokens: &DefaultMaxTokens,
) -> Result<Settings> {
    let logprobs = (request.logprobs == Some(true)).then(|| {
        request
            .top_logprobs
            .unwrap_or(0)
            .clamp(0, api::MAX_TOP_LOGPROBS) as usize
    });
    Ok(Settings {
        temperature: request.temperature,
        top_p: request.top_p,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        logit_bias: super::logit_bias(request.logit_bias.as_ref())?,
        seed: request.seed,
        max_tokens: default_max_tokens.apply(request.max_output_tokens()),
        stop: request
            .stop_sequences()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        logprobs,
        constraint: None,
    })
}

/// Chat chunks: an opening `role: assistant` delta per choice, text
/// deltas, one finishing chunk per choice, and the usage chunk when asked
/// for.
pub struct ChatChunks {
    /// The `chatcmpl-…` id.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model the answer names.
    pub model: String,
    /// Whether the stream ends with a usage chunk (and every chunk carries
    /// `usage: null`).
    pub include_usage: bool,
    /// Whether chunks carry logprobs.
    pub logprobs: bool,
    /// The model's tokenizer, for the logprobs' token text.
    pub tokenizer: Arc<Tokenizer>,
    /// Stores the answer once complete (`store: true`), with the choices
    /// gathered so far from a stream.
    keep: Option<(Keeper, Vec<WholeChoice>)>,
}

impl ChatChunks {
    /// A fresh `chatcmpl-…` answer of `model`.
    pub fn new(
        model: String,
        include_usage: bool,
        logprobs: bool,
        tokenizer: Arc<Tokenizer>,
    ) -> Self {
        ChatChunks {
            id: format!("chatcmpl-{}", crate::random_hex()),
            created: crate::unix_now(),
            model,
            include_usage,
            logprobs,
            tokenizer,
            keep: None,
        }
    }

    /// Stores the answer with `keeper` once it is complete: a whole one in
    /// [`ChatChunks::finish`], a stream when its last choice has finished.
    pub fn keeping(mut self, keeper: Option<Keeper>) -> Self {
        self.keep = keeper.map(|keeper| (keeper, Vec::new()));
        self
    }

    /// The whole answer gathered in `whole`, stored first when the request
    /// asked for it.
    pub async fn finish(&self, whole: Whole) -> ChatCompletion {
        let completion = self.completion(whole);
        if let Some((keeper, _)) = &self.keep {
            keeper.keep(&completion).await;
        }
        completion
    }

    /// Gathers a streamed answer's events for its keeper, and stores the
    /// answer (on a task of its own) when the last event says it is whole.
    fn remember(&mut self, event: &AnswerEvent) {
        let Some((_, choices)) = &mut self.keep else {
            return;
        };
        match event {
            AnswerEvent::Text {
                index,
                text,
                tokens,
            } => {
                let choice = slot(choices, *index);
                choice.text.push_str(text);
                choice.tokens.extend_from_slice(tokens);
            }
            AnswerEvent::Finished {
                index,
                text,
                tokens,
                reason,
            } => {
                let choice = slot(choices, *index);
                choice.text.push_str(text);
                choice.tokens.extend_from_slice(tokens);
                choice.finish_reason = Some(*reason);
            }
            AnswerEvent::Done(usage) => {
                if let Some((keeper, choices)) = self.keep.take() {
                    let completion = self.completion(Whole {
                        choices,
                        usage: usage.clone(),
                    });
                    tokio::spawn(async move { keeper.keep(&completion).await });
                }
            }
            AnswerEvent::Failed(_) => self.keep = None,
        }
    }

    fn chunk(&self, choice: ChunkChoice) -> ChatCompletionChunk {
        ChatCompletionChunk::new(
            self.id.clone(),
            self.created,
            self.model.clone(),
            vec![choice],
            self.include_usage,
        )
    }

    fn logprobs_of(&self, tokens: &[TokenOut]) -> Option<ChoiceLogprobs> {
        (self.logprobs && !tokens.is_empty()).then(|| ChoiceLogprobs {
            content: Some(chat_logprobs(&self.tokenizer, tokens)),
            refusal: None,
        })
    }

    /// The whole answer gathered in `whole`.
    pub fn completion(&self, whole: Whole) -> ChatCompletion {
        let choices = whole
            .choices
            .into_iter()
            .enumerate()
            .map(|(index, choice)| ChatChoice {
                index: index as u32,
                logprobs: self.logprobs.then(|| ChoiceLogprobs {
                    content: Some(chat_logprobs(&self.tokenizer, &choice.tokens)),
                    refusal: None,
                }),
                message: ChatCompletionMessage::assistant(choice.text),
                finish_reason: choice.finish_reason.unwrap_or(api::FinishReason::Stop),
            })
            .collect();
        ChatCompletion::new(
            self.id.clone(),
            self.created,
            self.model.clone(),
            choices,
            whole.usage,
        )
    }
}

/// Choice `index` of `choices`, added if new.
fn slot(choices: &mut Vec<WholeChoice>, index: u32) -> &mut WholeChoice {
    let index = index as usize;
    if choices.len() <= index {
        choices.resize_with(index + 1, WholeChoice::default);
    }
    &mut choices[index]
}

impl AnswerFormat for ChatChunks {
    type Chunk = ChatCompletionChunk;

    fn opening(&mut self, choices: usize) -> Vec<ChatCompletionChunk> {
        (0..choices)
            .map(|index| {
                self.chunk(ChunkChoice {
                    index: index as u32,
                    delta: ChunkDelta::opening(),
                    logprobs: None,
                    finish_reason: None,
                })
            })
            .collect()
    }

    fn event(&mut self, event: AnswerEvent) -> Vec<ChatCompletionChunk> {
        self.remember(&event);
        match event {
            AnswerEvent::Text {
                index,
                text,
                tokens,
            } => vec![self.chunk(ChunkChoice {
                index,
                delta: ChunkDelta::text(text),
                logprobs: self.logprobs_of(&tokens),
                finish_reason: None,
            })],
            AnswerEvent::Finished {
                index,
                text,
                tokens,
                reason,
            } => {
                let delta = if text.is_empty() {
                    ChunkDelta::default()
                } else {
                    ChunkDelta::text(text)
                };
                vec![self.chunk(ChunkChoice {
                    index,
                    delta,
                    logprobs: self.logprobs_of(&tokens),
                    finish_reason: Some(reason),
                })]
            }
            AnswerEvent::Done(usage) if self.include_usage => {
                vec![ChatCompletionChunk::usage_only(
                    self.id.clone(),
                    self.created,
                    self.model.clone(),
                    usage,
                )]
            }
            AnswerEvent::Done(_) | AnswerEvent::Failed(_) => Vec::new(),
        }
    }
}
