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
use api::{FunctionCallDelta, ToolCallDelta};
use engine::{EngineError, EngineHandle, Tokenizer};

use super::{
    chat_logprobs, AnswerDefaults, AnswerEvent, AnswerFormat, Settings, TokenOut, Whole,
    WholeChoice,
};
use crate::stored_completions::Keeper;
use crate::{Error, Result};

use super::reasoning::{Part, ReasoningField, Splitter, Thinking};
use super::tools;

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
/// the model's template (`model` names it in the error when it has none),
/// in the generic tool scheme when it offers tools ([`tools`]), and
/// tokenized, off the async executor.
pub async fn prompt(
    engine: &EngineHandle,
    model: &str,
    request: &ChatCompletionRequest,
) -> Result<Vec<u32>> {
    Ok(prompt_thinking(engine, model, request).await?.0)
}

/// [`prompt`], rendered with the template's `enable_thinking` from
/// `reasoning_effort`, and how its answer is read for reasoning
/// ([`Thinking::of`]: `None` when the template does not think).
pub async fn prompt_thinking(
    engine: &EngineHandle,
    model: &str,
    request: &ChatCompletionRequest,
) -> Result<(Vec<u32>, Option<Thinking>)> {
    let enable_thinking = request.enable_thinking()?;
    if !engine.info().has_chat_template {
        return Err(ApiError::invalid(
            PARAM,
            InvalidCode::InvalidValue,
            format!("The model `{model}` has no chat template; use /v1/completions instead."),
        )
        .into());
    }
    let mode = tools::tool_mode(request.tools.as_deref(), request.tool_choice.as_ref());
    let rendering = tools::render(
        engine.chat_template_source(),
        &request.messages,
        request.tools.as_deref().unwrap_or_default(),
        &mode,
    );
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        let text = match &rendering {
            tools::Rendering::Plain(messages) => {
                engine.render_chat_thinking(messages, true, enable_thinking)?
            }
            tools::Rendering::Template { messages, tools } => engine
                .chat_template()
                .ok_or_else(|| {
                    EngineError::NoChatTemplate("this model has no chat template".into())
                })?
                .render_with(messages, tools.as_ref(), true, enable_thinking)
                .map_err(|e| EngineError::Template(e.to_string()))?,
        };
        let thinking = Thinking::of(engine.chat_template_source(), &text);
        Ok((engine.encode_prompt(&text), thinking))
    })
    .await?
    .map_err(|err| Error::engine(err, PARAM))
}

/// How the choices of `request` are sampled; a request without
/// `max_tokens` gets `answer_defaults`, if the server sets one.
pub fn settings(
    request: &ChatCompletionRequest,
    answer_defaults: &AnswerDefaults,
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
        max_tokens: answer_defaults.max_tokens(request.max_output_tokens()),
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
    /// One tool-call reader per choice when the output may hold tool
    /// calls ([`ChatChunks::reading_tools`]).
    readers: Option<Vec<tools::CallReader>>,
    /// The syntax the readers read calls in.
    syntax: tools::Syntax,
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
    /// A streamed answer to store before its last chunks are written.
    kept: Option<Box<(Keeper, ChatCompletion)>>,
    /// How a thinking model's answer is read for reasoning, the field it
    /// is written under, and one reader per streamed choice.
    /// (Boxed: the format rides in every answer's start.)
    reasoning: Option<Box<(Thinking, ReasoningField, Vec<Splitter>)>>,
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
            readers: None,
            syntax: tools::Syntax::GENERIC,
            id: format!("chatcmpl-{}", crate::random_hex()),
            created: crate::unix_now(),
            model,
            include_usage,
            logprobs,
            tokenizer,
            keep: None,
            kept: None,
            reasoning: None,
        }
    }

    /// Splits a thinking model's reasoning out of each choice's content
    /// (`thinking` from [`prompt_thinking`]), written under `field`.
    pub fn reasoning(mut self, thinking: Option<Thinking>, field: ReasoningField) -> Self {
        self.reasoning = thinking.map(|thinking| Box::new((thinking, field, Vec::new())));
        self
    }

    /// A whole choice's reasoning, if its model thinks, and its content.
    fn split(&self, text: String) -> (Option<String>, String) {
        match self.reasoning.as_deref() {
            Some((thinking, _, _)) => Splitter::split(*thinking, &text),
            None => (None, text),
        }
    }

    /// `reasoning` under the configured field.
    fn with_reasoning(&self, reasoning: Option<String>, message: &mut ChatCompletionMessage) {
        match self.reasoning.as_deref().map(|(_, field, _)| *field) {
            Some(ReasoningField::Reasoning) => message.reasoning = reasoning,
            _ => message.reasoning_content = reasoning,
        }
    }

    /// Stores the answer with `keeper` once it is complete: a whole one in
    /// [`ChatChunks::finish`], a stream before its last chunks (and
    /// `[DONE]`) are written, so a client that has read them can retrieve
    /// it.
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

    /// Gathers a streamed answer's events for its keeper; the last event
    /// leaves the whole answer to store in [`AnswerFormat::before_last`].
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
                ..
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
                    self.kept = Some(Box::new((keeper, completion)));
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

    /// Reads each choice's output for tool calls written in `syntax`
    /// (`Some` when the request offered tools: `OutputPlan::tools`).
    pub fn reading_tools(mut self, syntax: Option<tools::Syntax>) -> Self {
        self.readers = syntax.as_ref().map(|_| Vec::new());
        self.syntax = syntax.unwrap_or(tools::Syntax::GENERIC);
        self
    }

    /// A whole choice's message: its text, or its tool calls.
    fn message_of(&self, text: String) -> ChatCompletionMessage {
        let (reasoning, text) = self.split(text);
        let mut message = if self.readers.is_none() {
            ChatCompletionMessage::assistant(text)
        } else {
            let (content, calls) = tools::read_whole_in(&self.syntax, &text);
            ChatCompletionMessage {
                content,
                tool_calls: (!calls.is_empty()).then_some(calls),
                ..ChatCompletionMessage::assistant(String::new())
            }
        };
        self.with_reasoning(reasoning, &mut message);
        message
    }

    /// A whole choice's finish reason: `tool_calls` when it ended calling tools.
    fn finish_of(&self, choice: &super::WholeChoice) -> api::FinishReason {
        let reason = choice.finish_reason.unwrap_or(api::FinishReason::Stop);
        if self.readers.is_some()
            && reason == api::FinishReason::Stop
            && !tools::read_whole_in(&self.syntax, &self.split(choice.text.clone()).1)
                .1
                .is_empty()
        {
            return api::FinishReason::ToolCalls;
        }
        reason
    }

    /// A streamed choice's text as deltas: plain, or read for tool calls.
    fn deltas(&mut self, index: u32, text: String, end: bool) -> (Vec<ChunkDelta>, bool) {
        let Some((thinking, field, splitters)) = self.reasoning.as_deref_mut() else {
            return self.content_deltas(index, text, end);
        };
        let (thinking, field) = (*thinking, *field);
        let i = index as usize;
        if splitters.len() <= i {
            splitters.resize_with(i + 1, || Splitter::new(thinking));
        }
        let splitter = &mut splitters[i];
        let mut parts = splitter.push(&text);
        if end {
            parts.extend(splitter.finish());
        }
        let mut deltas = Vec::new();
        let mut content = String::new();
        for part in parts {
            match part {
                Part::Reasoning(text) => deltas.push(match field {
                    ReasoningField::Reasoning => ChunkDelta {
                        reasoning: Some(text),
                        ..ChunkDelta::default()
                    },
                    ReasoningField::ReasoningContent => ChunkDelta {
                        reasoning_content: Some(text),
                        ..ChunkDelta::default()
                    },
                }),
                Part::Content(text) => content.push_str(&text),
            }
        }
        if content.is_empty() && !end {
            return (deltas, false);
        }
        let (more, called) = self.content_deltas(index, content, end);
        deltas.extend(more);
        (deltas, called)
    }

    /// A streamed choice's content as deltas: plain, or read for tool calls.
    fn content_deltas(&mut self, index: u32, text: String, end: bool) -> (Vec<ChunkDelta>, bool) {
        let Some(readers) = &mut self.readers else {
            let delta = (!text.is_empty() || !end).then(|| ChunkDelta::text(text));
            return (delta.into_iter().collect(), false);
        };
        let i = index as usize;
        if readers.len() <= i {
            let syntax = &self.syntax;
            readers.resize_with(i + 1, || tools::CallReader::new(syntax.clone()));
        }
        let reader = &mut readers[i];
        let mut pieces = reader.push(&text);
        if end {
            pieces.extend(reader.finish());
        }
        let deltas = pieces.into_iter().map(tool_delta).collect();
        (deltas, reader.calls() > 0)
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
                finish_reason: self.finish_of(&choice),
                message: self.message_of(choice.text),
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

    fn before_last(
        &mut self,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        let (keeper, completion) = *self.kept.take()?;
        Some(Box::pin(async move { keeper.keep(&completion).await }))
    }

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
            } => {
                let mut logprobs = self.logprobs_of(&tokens);
                let (deltas, _) = self.deltas(index, text, false);
                deltas
                    .into_iter()
                    .map(|delta| {
                        self.chunk(ChunkChoice {
                            index,
                            delta,
                            logprobs: logprobs.take(),
                            finish_reason: None,
                        })
                    })
                    .collect()
            }
            AnswerEvent::Finished {
                index,
                text,
                tokens,
                reason,
                ..
            } => {
                let mut logprobs = self.logprobs_of(&tokens);
                let (deltas, called) = self.deltas(index, text, true);
                let mut chunks: Vec<_> = deltas
                    .into_iter()
                    .map(|delta| {
                        self.chunk(ChunkChoice {
                            index,
                            delta,
                            logprobs: logprobs.take(),
                            finish_reason: None,
                        })
                    })
                    .collect();
                let reason = if called && reason == api::FinishReason::Stop {
                    api::FinishReason::ToolCalls
                } else {
                    reason
                };
                chunks.push(self.chunk(ChunkChoice {
                    index,
                    delta: ChunkDelta::default(),
                    logprobs,
                    finish_reason: Some(reason),
                }));
                chunks
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

/// A piece of a tool-reading stream as OpenAI's delta: text, a call's
/// first piece (index, id, type, name and empty arguments), or more of its
/// arguments (index only).
fn tool_delta(piece: tools::Piece) -> ChunkDelta {
    match piece {
        tools::Piece::Text(text) => ChunkDelta::text(text),
        tools::Piece::CallStart { index, id, name } => ChunkDelta {
            tool_calls: Some(vec![ToolCallDelta {
                index,
                id: Some(id),
                kind: Some(api::ToolType::Function),
                function: Some(FunctionCallDelta {
                    name: Some(name),
                    arguments: Some(String::new()),
                }),
            }]),
            ..ChunkDelta::default()
        },
        tools::Piece::Arguments { index, text } => ChunkDelta {
            tool_calls: Some(vec![ToolCallDelta {
                index,
                id: None,
                kind: None,
                function: Some(FunctionCallDelta {
                    name: None,
                    arguments: Some(text),
                }),
            }]),
            ..ChunkDelta::default()
        },
    }
}
