//! Anthropic's Messages API on the way in: `POST /v1/messages` and
//! `POST /v1/messages/count_tokens`.
//!
//! A Messages request is run as the chat request it means ([`chat_request`]:
//! the system prompt, the turns with their `tool_use` and `tool_result`
//! blocks, tools and `tool_choice` on chat's own types) through
//! [`Service::chat`] — the one request path, metered and limited like chat.
//! Its answer is written as Anthropic's message or its event sequence
//! ([`AnthropicWriter`]: `message_start`, per block `content_block_start`,
//! `content_block_delta` …, `content_block_stop`, then `message_delta` with
//! the stop reason and usage, `message_stop`), from chat's answer read as
//! blocks ([`crate::chat_blocks`]).

use std::time::Duration;

use api::{
    AnswerBlock, AnthropicError, AnthropicEvent, AnthropicMessage, AnthropicToolChoice,
    AnthropicUsage, ApiError, Block, BlockDelta, ChatCompletion, ChatCompletionChunk,
    ChatCompletionRequest, ChatMessage, FinishReason, FunctionCall, FunctionDefinition,
    FunctionName, MessageContent, MessageDelta, MessagesRequest, NamedToolChoice, Stop, TokenCount,
    Tool, ToolCall, ToolChoice, ToolChoiceMode, ToolType, Usage,
};
use serde_json::Value;

use crate::chat_blocks::{BlockFormat, BlockReader, Blocks, ChunkWriter, Piece, RoutedBlocks};
use crate::generation::chat as local_chat;
use crate::generation::Answer;
use crate::requests::{ChatStart, RequestContext, Service};
use crate::Result;

/// How a Messages request started.
pub enum MessagesStart {
    /// Streamed from the local engine: the answer and its event writer
    /// (boxed: the other variants are small).
    Stream(Box<(Answer, AnthropicEvents)>),
    /// Streamed from a routed model: the gateway's stream and its writer.
    Routed(Box<RoutedBlocks<AnthropicWriter>>),
    /// Streamed, but the answer came whole: every event.
    Events(Vec<AnthropicEvent>),
    /// The whole message.
    Whole(AnthropicMessage),
}

/// The chat request a Messages request means.
pub fn chat_request(request: &MessagesRequest) -> Result<ChatCompletionRequest> {
    let mut messages = Vec::new();
    if let Some(system) = request.system_text()? {
        messages.push(ChatMessage::System {
            content: MessageContent::Text(system),
            name: None,
        });
    }
    for turn in request.turns()? {
        if turn.role == "assistant" {
            let mut text = String::new();
            let mut calls = Vec::new();
            for block in turn.blocks {
                match block {
                    Block::Text(part) => text.push_str(&part),
                    Block::ToolUse { id, name, input } => calls.push(ToolCall {
                        id,
                        kind: ToolType::Function,
                        function: FunctionCall {
                            name,
                            arguments: input.to_string(),
                        },
                    }),
                    // Validation keeps results out of the model's turns;
                    // earlier thinking is not shown to the model again.
                    Block::ToolResult { .. } | Block::Thinking => {}
                }
            }
            messages.push(ChatMessage::Assistant {
                content: (!text.is_empty() || calls.is_empty())
                    .then_some(MessageContent::Text(text)),
                name: None,
                refusal: None,
                tool_calls: (!calls.is_empty()).then_some(calls),
            });
        } else {
            let mut text = String::new();
            for block in turn.blocks {
                match block {
                    Block::Text(part) => text.push_str(&part),
                    Block::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } => messages.push(ChatMessage::Tool {
                        content: MessageContent::Text(if is_error {
                            format!("Error: {content}")
                        } else {
                            content
                        }),
                        tool_call_id: tool_use_id,
                    }),
                    Block::ToolUse { .. } | Block::Thinking => {}
                }
            }
            if !text.is_empty() {
                messages.push(ChatMessage::User {
                    content: MessageContent::Text(text),
                    name: None,
                });
            }
        }
    }
    let tools = request.tools.as_ref().map(|tools| {
        tools
            .iter()
            .map(|tool| Tool {
                kind: ToolType::Function,
                function: FunctionDefinition {
                    name: tool.name.clone(),
                    description: tool.description.clone(),
                    parameters: tool.input_schema.clone(),
                    strict: None,
                },
            })
            .collect()
    });
    let (tool_choice, single) = match &request.tool_choice {
        None => (None, None),
        Some(AnthropicToolChoice::Auto {
            disable_parallel_tool_use,
        }) => (
            Some(ToolChoice::Mode(ToolChoiceMode::Auto)),
            *disable_parallel_tool_use,
        ),
        Some(AnthropicToolChoice::Any {
            disable_parallel_tool_use,
        }) => (
            Some(ToolChoice::Mode(ToolChoiceMode::Required)),
            *disable_parallel_tool_use,
        ),
        Some(AnthropicToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        }) => (
            Some(ToolChoice::Named(NamedToolChoice {
                kind: ToolType::Function,
                function: FunctionName { name: name.clone() },
            })),
            *disable_parallel_tool_use,
        ),
        Some(AnthropicToolChoice::None) => (Some(ToolChoice::Mode(ToolChoiceMode::None)), None),
    };
    let chat = ChatCompletionRequest {
        model: request.model.clone(),
        messages,
        temperature: request.temperature,
        top_p: request.top_p,
        max_completion_tokens: request.max_tokens,
        stop: request.stop_sequences.clone().map(Stop::Many),
        reasoning_effort: request.thinking_effort()?.map(str::to_owned),
        stream: request.stream,
        tools,
        tool_choice,
        parallel_tool_calls: single.map(|single| !single),
        user: request
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.user_id.clone()),
        ..ChatCompletionRequest::default()
    };
    chat.validate()?;
    Ok(chat)
}

/// Anthropic's stop reason for a chat finish reason, `stopped` when a
/// stop sequence ended the answer.
fn stop_reason(reason: Option<FinishReason>, stopped: bool) -> &'static str {
    match reason {
        Some(FinishReason::Length) => "max_tokens",
        Some(FinishReason::ToolCalls) => "tool_use",
        // Withheld by the project's output guardrails.
        Some(FinishReason::ContentFilter) => "refusal",
        Some(FinishReason::Stop) if stopped => "stop_sequence",
        _ => "end_turn",
    }
}

/// Writes one message's events and keeps the message up to date.
pub struct AnthropicWriter {
    message: AnthropicMessage,
    reader: BlockReader,
    /// The open block's place.
    index: u32,
    /// The stop sequence that ended the answer, when the engine said.
    stop_sequence: Option<String>,
    /// Whether reasoning is written as `thinking` blocks.
    thinking: bool,
}

impl AnthropicWriter {
    /// A writer for a message of `model` whose prompt has `input_tokens`.
    pub fn new(model: &str, usage: AnthropicUsage) -> Self {
        AnthropicWriter {
            message: AnthropicMessage {
                id: format!("msg_{}", crate::random_hex()),
                kind: "message".into(),
                role: "assistant".into(),
                model: model.to_owned(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage,
            },
            reader: BlockReader::default(),
            index: 0,
            stop_sequence: None,
            thinking: false,
        }
    }

    /// Writes a thinking model's reasoning as `thinking` blocks (the
    /// request enabled `thinking`).
    pub fn thinking(mut self, thinking: bool) -> Self {
        self.thinking = thinking;
        self
    }

    /// The message as it stands.
    pub fn message(&self) -> &AnthropicMessage {
        &self.message
    }

    /// `message_start`.
    pub fn opening(&mut self) -> Vec<AnthropicEvent> {
        vec![AnthropicEvent::MessageStart {
            message: self.message.clone(),
        }]
    }

    /// The events of one chat chunk.
    pub fn chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<AnthropicEvent> {
        let pieces = self.reader.chunk(chunk);
        self.pieces(pieces)
    }

    /// The events of a whole chat answer, then its end.
    pub fn whole(&mut self, completion: &ChatCompletion) -> Vec<AnthropicEvent> {
        let pieces = self.reader.whole(completion);
        let mut events = self.pieces(pieces);
        let usage = completion
            .usage
            .clone()
            .unwrap_or_else(|| Usage::new(0, 0, 0));
        events.extend(self.done(&usage));
        events
    }

    /// The answer ended: `message_delta` with the stop reason and usage,
    /// then `message_stop`.
    pub fn done(&mut self, usage: &Usage) -> Vec<AnthropicEvent> {
        let pieces = self.reader.finish();
        let mut events = self.pieces(pieces);
        let reason = stop_reason(self.reader.finish_reason(), self.stop_sequence.is_some());
        let stop_sequence = self
            .stop_sequence
            .clone()
            .filter(|_| reason == "stop_sequence");
        self.message.stop_reason = Some(reason.into());
        self.message.stop_sequence.clone_from(&stop_sequence);
        self.message.usage = AnthropicUsage::from_chat(usage);
        events.push(AnthropicEvent::MessageDelta {
            delta: MessageDelta {
                stop_reason: Some(reason.into()),
                stop_sequence,
            },
            usage: self.message.usage,
        });
        events.push(AnthropicEvent::MessageStop);
        events
    }

    fn pieces(&mut self, pieces: Vec<Piece>) -> Vec<AnthropicEvent> {
        let mut events = Vec::new();
        for piece in pieces {
            let index = self.index;
            match piece {
                // Reasoning the client did not ask for (`thinking`
                // enabled) stays out of the message.
                Piece::ReasoningStart | Piece::Reasoning(_) | Piece::ReasoningEnd(_)
                    if !self.thinking => {}
                Piece::ReasoningStart => {
                    let block = AnswerBlock::Thinking {
                        thinking: String::new(),
                        signature: String::new(),
                    };
                    self.message.content.push(block.clone());
                    events.push(AnthropicEvent::ContentBlockStart {
                        index,
                        content_block: block,
                    });
                }
                Piece::Reasoning(thinking) => events.push(AnthropicEvent::ContentBlockDelta {
                    index,
                    delta: BlockDelta::ThinkingDelta { thinking },
                }),
                Piece::ReasoningEnd(thinking) => {
                    if let Some(AnswerBlock::Thinking { thinking: kept, .. }) =
                        self.message.content.last_mut()
                    {
                        *kept = thinking;
                    }
                    events.push(AnthropicEvent::ContentBlockStop { index });
                    self.index += 1;
                }
                Piece::TextStart => {
                    self.message.content.push(AnswerBlock::Text {
                        text: String::new(),
                    });
                    events.push(AnthropicEvent::ContentBlockStart {
                        index,
                        content_block: AnswerBlock::Text {
                            text: String::new(),
                        },
                    });
                }
                Piece::Text(text) => events.push(AnthropicEvent::ContentBlockDelta {
                    index,
                    delta: BlockDelta::TextDelta { text },
                }),
                Piece::TextEnd(text) => {
                    if let Some(last) = self.message.content.last_mut() {
                        *last = AnswerBlock::Text { text };
                    }
                    events.push(AnthropicEvent::ContentBlockStop { index });
                    self.index += 1;
                }
                Piece::CallStart { id, name } => {
                    let id = if id.is_empty() {
                        format!("toolu_{}", crate::random_hex())
                    } else {
                        id
                    };
                    let block = AnswerBlock::ToolUse {
                        id,
                        name,
                        input: Value::Object(Default::default()),
                    };
                    self.message.content.push(block.clone());
                    events.push(AnthropicEvent::ContentBlockStart {
                        index,
                        content_block: block,
                    });
                }
                Piece::Arguments(partial_json) => events.push(AnthropicEvent::ContentBlockDelta {
                    index,
                    delta: BlockDelta::InputJsonDelta { partial_json },
                }),
                Piece::CallEnd { arguments, .. } => {
                    if let Some(AnswerBlock::ToolUse { input, .. }) =
                        self.message.content.last_mut()
                    {
                        *input = serde_json::from_str(&arguments)
                            .unwrap_or_else(|_| Value::Object(Default::default()));
                    }
                    events.push(AnthropicEvent::ContentBlockStop { index });
                    self.index += 1;
                }
            }
        }
        events
    }
}

/// The local answer of a streamed Messages request: chat's chunks rewritten
/// as Anthropic's events.
pub type AnthropicEvents = Blocks<AnthropicWriter>;

impl ChunkWriter for AnthropicWriter {
    type Event = AnthropicEvent;

    fn chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<AnthropicEvent> {
        AnthropicWriter::chunk(self, chunk)
    }

    fn done(&mut self, usage: &Usage) -> Vec<AnthropicEvent> {
        AnthropicWriter::done(self, usage)
    }

    fn stopped_by(&mut self, stop: &str) {
        self.stop_sequence = Some(stop.to_owned());
    }
}

impl BlockFormat for AnthropicWriter {
    fn opening(&mut self) -> Vec<AnthropicEvent> {
        AnthropicWriter::opening(self)
    }

    fn failure(&mut self, err: &ApiError) -> Vec<AnthropicEvent> {
        vec![AnthropicEvent::Error {
            error: AnthropicError::of(err).error,
        }]
    }

    fn event_name(event: &AnthropicEvent) -> &'static str {
        event.name()
    }
}

impl Service {
    /// `POST /v1/messages`.
    pub async fn anthropic_messages(
        &self,
        context: &RequestContext,
        request: MessagesRequest,
        timeout: Duration,
    ) -> Result<MessagesStart> {
        request.validate(true)?;
        let chat = chat_request(&request)?;
        let prompt_estimate = gateway::estimate_prompt_tokens(&chat);
        match self.chat(context, chat, None, timeout).await? {
            ChatStart::Local(answer, chunks) if request.is_stream() => {
                let usage = AnthropicUsage {
                    input_tokens: answer.prompt_tokens(),
                    ..AnthropicUsage::default()
                };
                let writer =
                    AnthropicWriter::new(&chunks.model, usage).thinking(request.wants_thinking());
                Ok(MessagesStart::Stream(Box::new((
                    answer,
                    Blocks::new(chunks, writer),
                ))))
            }
            ChatStart::Local(answer, chunks) => {
                let whole = answer.collect_within(timeout).await?;
                let stop = whole.choices.first().and_then(|choice| choice.stop.clone());
                let completion = chunks.completion(whole);
                let mut writer = AnthropicWriter::new(&completion.model, AnthropicUsage::default())
                    .thinking(request.wants_thinking());
                if let Some(stop) = stop {
                    writer.stopped_by(&stop);
                }
                writer.whole(&completion);
                Ok(MessagesStart::Whole(writer.message().clone()))
            }
            ChatStart::RoutedWhole(completion) => {
                let usage = completion
                    .usage
                    .as_ref()
                    .map(AnthropicUsage::from_chat)
                    .unwrap_or_default();
                let mut writer = AnthropicWriter::new(&completion.model, usage)
                    .thinking(request.wants_thinking());
                let mut events = writer.opening();
                events.extend(writer.whole(&completion));
                if request.is_stream() {
                    Ok(MessagesStart::Events(events))
                } else {
                    Ok(MessagesStart::Whole(writer.message().clone()))
                }
            }
            ChatStart::Routed(stream, charge, _) => {
                // The prompt's size is the gateway's estimate until the
                // upstream's usage comes with the last event.
                let usage = AnthropicUsage {
                    input_tokens: prompt_estimate,
                    ..AnthropicUsage::default()
                };
                let writer =
                    AnthropicWriter::new(stream.model(), usage).thinking(request.wants_thinking());
                Ok(MessagesStart::Routed(Box::new(RoutedBlocks {
                    stream,
                    charge,
                    writer,
                })))
            }
        }
    }

    /// `POST /v1/messages/count_tokens`: the prompt's tokens with the
    /// model's own template and tokenizer (an estimate for a routed model).
    pub async fn anthropic_count_tokens(
        &self,
        context: &RequestContext,
        request: MessagesRequest,
    ) -> Result<TokenCount> {
        request.validate(false)?;
        let chat = chat_request(&request)?;
        let resolved = self.resolve(context.tenant.as_ref(), &request.model)?;
        let input_tokens = match resolved.direct() {
            Some(model) => {
                let prompt = local_chat::prompt(&model.engine, &resolved.model, &chat).await?;
                u32::try_from(prompt.len()).unwrap_or(u32::MAX)
            }
            None => gateway::estimate_prompt_tokens(&chat),
        };
        Ok(TokenCount { input_tokens })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finish_reason_has_anthropics_stop_reason() {
        assert_eq!(stop_reason(Some(FinishReason::Length), false), "max_tokens");
        assert_eq!(
            stop_reason(Some(FinishReason::ToolCalls), false),
            "tool_use"
        );
        assert_eq!(
            stop_reason(Some(FinishReason::ContentFilter), false),
            "refusal"
        );
        assert_eq!(stop_reason(Some(FinishReason::Stop), true), "stop_sequence");
        assert_eq!(stop_reason(Some(FinishReason::Stop), false), "end_turn");
        assert_eq!(stop_reason(None, false), "end_turn");
    }

    #[test]
    fn turns_become_chat_messages_with_calls_and_results() {
        let request: MessagesRequest = api::parse_request(
            br#"{"model":"m","max_tokens":32,"system":"be brief",
                "tools":[{"name":"add","input_schema":{"type":"object"}}],
                "tool_choice":{"type":"any"},
                "messages":[{"role":"user","content":"2+2?"},
                {"role":"assistant","content":[{"type":"text","text":"Adding."},
                  {"type":"tool_use","id":"t1","name":"add","input":{"a":2,"b":2}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"4"}]}]}"#,
        )
        .unwrap();
        let chat = chat_request(&request).unwrap();
        let roles: Vec<_> = chat.messages.iter().map(ChatMessage::role).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool"]);
        assert_eq!(
            chat.tool_choice,
            Some(ToolChoice::Mode(ToolChoiceMode::Required))
        );
        match &chat.messages[2] {
            ChatMessage::Assistant { tool_calls, .. } => {
                let call = &tool_calls.as_ref().unwrap()[0];
                assert_eq!(call.function.arguments, r#"{"a":2,"b":2}"#);
            }
            other => panic!("expected the assistant turn, got {other:?}"),
        }
    }
}
