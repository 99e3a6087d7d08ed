//! The `anthropic` backend: Anthropic's Messages API (`POST /v1/messages`
//! with `x-api-key` and `anthropic-version`), translated both ways.
//!
//! Requests: `system` and `developer` messages become the top-level
//! `system` text; `user`/`assistant` turns are kept in order (consecutive
//! turns of one role merged); `max_tokens` (required there) defaults to the
//! configured value; `temperature` is clamped to Anthropic's 0–1; `top_p`,
//! `stop` (→ `stop_sequences`) and `user` (→ `metadata.user_id`) carry
//! over. Function tools become Anthropic `tools` (`parameters` →
//! `input_schema`), `tool_choice` `auto`/`required`/named/`none` →
//! `auto`/`any`/`tool`/`none` (`parallel_tool_calls: false` →
//! `disable_parallel_tool_use`), an assistant's `tool_calls` → `tool_use`
//! blocks and `tool` messages → `tool_result` blocks in a user turn.
//! `n` > 1 and a `json_object`/`json_schema` `response_format` are refused
//! (Anthropic has no such mode), never silently ignored.
//!
//! Answers: text content blocks are joined into the message, `tool_use`
//! blocks become `tool_calls` (`input` as the JSON `arguments`); `stop_reason`
//! maps to `finish_reason` (`end_turn`/`stop_sequence` → `stop`,
//! `max_tokens` → `length`, `tool_use` → `tool_calls`, `refusal` →
//! `content_filter`); `input_tokens` (plus cache reads and writes) →
//! `prompt_tokens`, cache reads → `cached_tokens`, `output_tokens` →
//! `completion_tokens`. Streams map `message_start` → the opening chunk
//! (carrying the prompt tokens as partial usage), `content_block_delta`
//! text → content chunks, a `tool_use` block's start → a tool call's first
//! delta (index, id, name) and its `input_json_delta`s → argument
//! fragments, `message_delta` → the finishing chunk,
//! `message_stop` → the usage chunk and the end; `ping` is skipped and an
//! `error` event is an upstream failure (`overloaded_error` as a 529).

use api::{
    ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionMessage, ChatCompletionRequest,
    ChatMessage, ChunkChoice, ChunkDelta, FinishReason, FunctionCall, FunctionCallDelta,
    ResponseFormat, ToolCall, ToolCallDelta, ToolChoice, ToolChoiceMode, ToolType, Usage,
};
use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use reqwest::Client;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::backend::{Backend, ChatReply, ChunkStream};
use crate::error::{BackendError, FailureKind};
use crate::http;
use crate::openai::HttpTimeouts;

/// The `anthropic-version` header sent.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// An Anthropic Messages API upstream.
#[derive(Debug, Clone)]
pub struct AnthropicBackend {
    client: Client,
    base_url: String,
    api_key: Option<String>,
    default_max_tokens: u32,
    health_path: String,
    timeouts: HttpTimeouts,
}

impl AnthropicBackend {
    /// A backend for `base_url` (e.g. `https://api.anthropic.com/v1`).
    pub fn new(
        base_url: impl Into<String>,
        api_key: Option<String>,
        default_max_tokens: u32,
        health_path: impl Into<String>,
        timeouts: HttpTimeouts,
    ) -> Result<Self, String> {
        Ok(AnthropicBackend {
            client: http::client(timeouts.connect)?,
            base_url: base_url.into(),
            api_key,
            default_max_tokens,
            health_path: health_path.into(),
            timeouts,
        })
    }

    fn with_headers(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let builder = builder.header("anthropic-version", ANTHROPIC_VERSION);
        match &self.api_key {
            Some(key) => builder.header("x-api-key", key),
            None => builder,
        }
    }
}

impl Backend for AnthropicBackend {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    fn chat(
        &self,
        request: ChatCompletionRequest,
    ) -> BoxFuture<'static, Result<ChatReply, BackendError>> {
        let body = to_messages_request(&request, self.default_max_tokens);
        let builder = self.with_headers(
            self.client
                .post(http::join(&self.base_url, "messages"))
                .header(reqwest::header::CONTENT_TYPE, "application/json"),
        );
        let timeouts = self.timeouts;
        Box::pin(async move {
            let body = body?;
            let response = http::send(builder.body(body.to_string()), timeouts.headers).await?;
            if request.is_stream() {
                Ok(ChatReply::Stream(chunk_stream(response)))
            } else {
                let message: Message = http::read_json(response, timeouts.request).await?;
                Ok(ChatReply::Whole(from_message(message)))
            }
        })
    }

    fn health(&self) -> BoxFuture<'static, Result<(), BackendError>> {
        let builder = self.with_headers(
            self.client
                .get(http::join(&self.base_url, &self.health_path)),
        );
        let headers = self.timeouts.headers;
        Box::pin(async move { http::send(builder, headers).await.map(drop) })
    }
}

fn unsupported(detail: &str) -> BackendError {
    BackendError::new(FailureKind::Unsupported, detail)
}

/// The Messages API body for an OpenAI chat request.
pub fn to_messages_request(
    request: &ChatCompletionRequest,
    default_max_tokens: u32,
) -> Result<Value, BackendError> {
    if request.choice_count() > 1 {
        return Err(unsupported(
            "the anthropic backend answers one choice (n = 1)",
        ));
    }
    if matches!(
        request.response_format,
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    ) {
        return Err(unsupported(
            "the anthropic backend has no response_format json_object or json_schema",
        ));
    }
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        let text = message.content().map(|c| c.text()).unwrap_or_default();
        let mut blocks = Vec::new();
        if !text.is_empty() && !matches!(message, ChatMessage::Tool { .. }) {
            blocks.push(json!({"type": "text", "text": text}));
        }
        let role = match message {
            ChatMessage::System { .. } | ChatMessage::Developer { .. } => {
                system.push(text);
                continue;
            }
            ChatMessage::User { .. } => "user",
            ChatMessage::Assistant { tool_calls, .. } => {
                for call in tool_calls.iter().flatten() {
                    let input: Value = serde_json::from_str(&call.function.arguments)
                        .unwrap_or_else(|_| json!({}));
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.function.name,
                        "input": input,
                    }));
                }
                "assistant"
            }
            ChatMessage::Tool { tool_call_id, .. } => {
                blocks.push(json!({
                    "type": "tool_result",
                    "tool_use_id": tool_call_id,
                    "content": text,
                }));
                "user"
            }
        };
        match turns.last_mut() {
            Some((last, joined)) if *last == role => joined.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, blocks)| {
            // A text-only turn stays one string (its parts joined).
            let texts: Option<Vec<&str>> = blocks
                .iter()
                .map(|b| (b["type"] == "text").then(|| b["text"].as_str()).flatten())
                .collect();
            match texts {
                Some(texts) => json!({ "role": role, "content": texts.join("\n\n") }),
                None => json!({ "role": role, "content": blocks }),
            }
        })
        .collect();
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_output_tokens().unwrap_or(default_max_tokens),
    });
    let fields = body
        .as_object_mut()
        .expect("the body was built as a JSON object just above");
    if !system.is_empty() {
        fields.insert("system".into(), json!(system.join("\n\n")));
    }
    if let Some(temperature) = request.temperature {
        fields.insert("temperature".into(), json!(temperature.clamp(0.0, 1.0)));
    }
    if let Some(top_p) = request.top_p {
        fields.insert("top_p".into(), json!(top_p));
    }
    let stops = request.stop_sequences();
    if !stops.is_empty() {
        fields.insert("stop_sequences".into(), json!(stops));
    }
    if let Some(user) = &request.user {
        fields.insert("metadata".into(), json!({ "user_id": user }));
    }
    if request.is_stream() {
        fields.insert("stream".into(), json!(true));
    }
    let tools = request.tools.as_deref().unwrap_or_default();
    if !tools.is_empty() {
        let tools: Vec<Value> = tools
            .iter()
            .map(|tool| {
                let mut entry = json!({
                    "name": tool.function.name,
                    "input_schema": tool
                        .function
                        .parameters
                        .clone()
                        .unwrap_or_else(|| json!({"type": "object"})),
                });
                if let Some(description) = &tool.function.description {
                    entry["description"] = json!(description);
                }
                entry
            })
            .collect();
        fields.insert("tools".into(), json!(tools));
        let mut choice = match &request.tool_choice {
            None | Some(ToolChoice::Mode(ToolChoiceMode::Auto)) => json!({"type": "auto"}),
            Some(ToolChoice::Mode(ToolChoiceMode::Required)) => json!({"type": "any"}),
            Some(ToolChoice::Mode(ToolChoiceMode::None)) => json!({"type": "none"}),
            Some(ToolChoice::Named(named)) => {
                json!({"type": "tool", "name": named.function.name})
            }
        };
        if request.parallel_tool_calls == Some(false) && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        fields.insert("tool_choice".into(), choice);
    }
    Ok(body)
}

/// A Messages API answer (`type: "message"`).
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `msg_…`.
    pub id: String,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// Content blocks; only `text` ones are read.
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    /// Why it stopped.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// Token counts.
    #[serde(default)]
    pub usage: MessageUsage,
}

/// One content block of a message.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentBlock {
    /// `text`, `tool_use`, `thinking`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` block.
    #[serde(default)]
    pub text: Option<String>,
    /// A `tool_use` block's id.
    #[serde(default)]
    pub id: Option<String>,
    /// A `tool_use` block's tool name.
    #[serde(default)]
    pub name: Option<String>,
    /// A `tool_use` block's arguments.
    #[serde(default)]
    pub input: Option<Value>,
}

/// Anthropic's `usage`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct MessageUsage {
    /// Uncached input tokens.
    #[serde(default)]
    pub input_tokens: Option<u32>,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: Option<u32>,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u32>,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u32>,
}

impl MessageUsage {
    /// All input tokens (uncached, cache reads and cache writes).
    fn prompt_tokens(&self) -> u32 {
        self.input_tokens
            .unwrap_or(0)
            .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
    }

    fn to_usage(self) -> Usage {
        Usage::new(
            self.prompt_tokens(),
            self.output_tokens.unwrap_or(0),
            self.cache_read_input_tokens.unwrap_or(0),
        )
    }
}

/// `stop_reason` → `finish_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> FinishReason {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// A whole Messages API answer as an OpenAI chat completion.
pub fn from_message(message: Message) -> ChatCompletion {
    let text: String = message
        .content
        .iter()
        .filter(|block| block.kind == "text")
        .filter_map(|block| block.text.as_deref())
        .collect();
    let calls: Vec<ToolCall> = message
        .content
        .iter()
        .filter(|block| block.kind == "tool_use")
        .map(|block| ToolCall {
            id: block.id.clone().unwrap_or_default(),
            kind: ToolType::Function,
            function: FunctionCall {
                name: block.name.clone().unwrap_or_default(),
                arguments: block
                    .input
                    .as_ref()
                    .map_or_else(|| "{}".to_owned(), Value::to_string),
            },
        })
        .collect();
    let mut reply = ChatCompletionMessage::assistant(text);
    if !calls.is_empty() {
        if reply.content.as_deref() == Some("") {
            reply.content = None;
        }
        reply.tool_calls = Some(calls);
    }
    let choice = ChatChoice {
        index: 0,
        message: reply,
        logprobs: None,
        finish_reason: finish_reason(message.stop_reason.as_deref()),
    };
    ChatCompletion::new(
        message.id,
        crate::unix_now(),
        message.model,
        vec![choice],
        message.usage.to_usage(),
    )
}

/// The translation state of one stream.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    usage: MessageUsage,
    stopped: bool,
    /// Content block index → tool call index, for `tool_use` blocks.
    tool_blocks: Vec<(u64, u32)>,
}

/// What one Anthropic stream event becomes.
#[derive(Debug)]
pub enum Translated {
    /// Nothing to send (ping, block start/stop, unknown events).
    Skip,
    /// A chunk to send.
    Chunk(Box<ChatCompletionChunk>),
    /// The final usage chunk; the stream is complete.
    End(Box<ChatCompletionChunk>),
    /// The upstream failed.
    Failed(BackendError),
}

impl StreamTranslator {
    /// A translator with nothing seen yet.
    pub fn new() -> Self {
        StreamTranslator::default()
    }

    fn chunk(&self, delta: ChunkDelta, finish: Option<FinishReason>) -> ChatCompletionChunk {
        let choice = ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish,
        };
        ChatCompletionChunk::new(&self.id, self.created, &self.model, vec![choice], true)
    }

    /// Translates one event's `data` (its `type` field names the event).
    pub fn translate(&mut self, data: &str) -> Translated {
        let value: Value = match serde_json::from_str(data) {
            Ok(value) => value,
            Err(err) => {
                return Translated::Failed(BackendError::new(
                    FailureKind::Decode,
                    format!("undecodable stream event ({err})"),
                ))
            }
        };
        let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "message_start" => {
                let message = &value["message"];
                self.id = message["id"].as_str().unwrap_or_default().to_owned();
                self.model = message["model"].as_str().unwrap_or_default().to_owned();
                self.created = crate::unix_now();
                self.merge_usage(&message["usage"]);
                let mut chunk = self.chunk(ChunkDelta::opening(), None);
                chunk.usage = Some(self.usage.to_usage());
                Translated::Chunk(Box::new(chunk))
            }
            "content_block_start" if value["content_block"]["type"] == "tool_use" => {
                let block = &value["content_block"];
                let index = self.tool_blocks.len() as u32;
                self.tool_blocks
                    .push((value["index"].as_u64().unwrap_or(0), index));
                let delta = ToolCallDelta {
                    index,
                    id: block["id"].as_str().map(str::to_owned),
                    kind: Some(ToolType::Function),
                    function: Some(FunctionCallDelta {
                        name: block["name"].as_str().map(str::to_owned),
                        arguments: Some(String::new()),
                    }),
                };
                Translated::Chunk(Box::new(self.chunk(tool_delta(delta), None)))
            }
            "content_block_start" => match value["content_block"]["text"].as_str() {
                Some(text) if !text.is_empty() => {
                    Translated::Chunk(Box::new(self.chunk(ChunkDelta::text(text), None)))
                }
                _ => Translated::Skip,
            },
            "content_block_delta" if value["delta"]["type"] == "input_json_delta" => {
                let block = value["index"].as_u64().unwrap_or(0);
                let Some(&(_, index)) = self.tool_blocks.iter().find(|(b, _)| *b == block) else {
                    return Translated::Skip;
                };
                let delta = ToolCallDelta {
                    index,
                    id: None,
                    kind: None,
                    function: Some(FunctionCallDelta {
                        name: None,
                        arguments: Some(
                            value["delta"]["partial_json"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        ),
                    }),
                };
                Translated::Chunk(Box::new(self.chunk(tool_delta(delta), None)))
            }
            "content_block_delta" => match value["delta"]["text"].as_str() {
                Some(text) if value["delta"]["type"] == "text_delta" => {
                    Translated::Chunk(Box::new(self.chunk(ChunkDelta::text(text), None)))
                }
                _ => Translated::Skip,
            },
            "message_delta" => {
                self.merge_usage(&value["usage"]);
                match value["delta"]["stop_reason"].as_str() {
                    Some(reason) => {
                        self.stopped = true;
                        let reason = finish_reason(Some(reason));
                        Translated::Chunk(Box::new(self.chunk(ChunkDelta::default(), Some(reason))))
                    }
                    None => Translated::Skip,
                }
            }
            "message_stop" => {
                let usage = self.usage.to_usage();
                let mut end =
                    ChatCompletionChunk::usage_only(&self.id, self.created, &self.model, usage);
                if !self.stopped {
                    // A stream that never said why it stopped: close the choice.
                    end.choices.push(ChunkChoice {
                        index: 0,
                        delta: ChunkDelta::default(),
                        logprobs: None,
                        finish_reason: Some(FinishReason::Stop),
                    });
                }
                Translated::End(Box::new(end))
            }
            "error" => {
                let error = &value["error"];
                let kind_name = error["type"].as_str().unwrap_or("error");
                let message = error["message"].as_str().unwrap_or("an error event");
                let status = match kind_name {
                    "overloaded_error" => 529,
                    "rate_limit_error" => 429,
                    "api_error" => 500,
                    _ => 0,
                };
                Translated::Failed(BackendError::new(
                    FailureKind::Status { status },
                    format!("upstream {kind_name}: {message}"),
                ))
            }
            _ => Translated::Skip,
        }
    }

    /// Takes the counts present in a `usage` object (later events repeat
    /// or update them).
    fn merge_usage(&mut self, usage: &Value) {
        let read = |name: &str| usage.get(name).and_then(Value::as_u64).map(saturate);
        if let Some(n) = read("input_tokens") {
            self.usage.input_tokens = Some(n);
        }
        if let Some(n) = read("output_tokens") {
            self.usage.output_tokens = Some(n);
        }
        if let Some(n) = read("cache_read_input_tokens") {
            self.usage.cache_read_input_tokens = Some(n);
        }
        if let Some(n) = read("cache_creation_input_tokens") {
            self.usage.cache_creation_input_tokens = Some(n);
        }
    }
}

/// A delta carrying one tool call piece.
fn tool_delta(delta: ToolCallDelta) -> ChunkDelta {
    ChunkDelta {
        tool_calls: Some(vec![delta]),
        ..ChunkDelta::default()
    }
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The chunks of a Messages API SSE body.
fn chunk_stream(response: reqwest::Response) -> ChunkStream {
    let events = http::sse_events(response);
    let state = (events, StreamTranslator::new(), false, false);
    stream::unfold(
        state,
        |(mut events, mut translator, produced, done)| async move {
            if done {
                return None;
            }
            loop {
                let item = match events.next().await {
                    None => Err(BackendError::new(
                        FailureKind::Dropped,
                        "the stream ended without message_stop",
                    )),
                    Some(Err(err)) => Err(err),
                    Some(Ok(event)) => match translator.translate(&event.data) {
                        Translated::Skip => continue,
                        Translated::Chunk(chunk) => Ok((*chunk, false)),
                        Translated::End(chunk) => Ok((*chunk, true)),
                        Translated::Failed(err) => Err(err),
                    },
                };
                return Some(match item {
                    Ok((chunk, end)) => (Ok(chunk), (events, translator, true, end)),
                    Err(mut err) => {
                        err.produced = produced;
                        (Err(err), (events, translator, produced, true))
                    }
                });
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        assert_eq!(finish_reason(Some("end_turn")), FinishReason::Stop);
        assert_eq!(finish_reason(Some("stop_sequence")), FinishReason::Stop);
        assert_eq!(finish_reason(Some("max_tokens")), FinishReason::Length);
        assert_eq!(finish_reason(Some("tool_use")), FinishReason::ToolCalls);
        assert_eq!(finish_reason(Some("refusal")), FinishReason::ContentFilter);
        assert_eq!(finish_reason(None), FinishReason::Stop);
    }

    #[test]
    fn tools_and_tool_turns_become_blocks() {
        let request: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "content": "21C", "tool_call_id": "c1"}
            ],
            "tools": [{"type": "function", "function": {"name": "w", "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false
        }))
        .unwrap();
        let body = to_messages_request(&request, 16).unwrap();
        assert_eq!(body["tools"][0]["name"], "w");
        assert_eq!(
            body["tools"][0]["input_schema"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(
            body["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            body["messages"][1]["content"][0],
            json!({"type": "tool_use", "id": "c1", "name": "w", "input": {"city": "Paris"}})
        );
        assert_eq!(
            body["messages"][2],
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "21C"}]})
        );
    }

    #[test]
    fn several_choices_and_json_modes_are_refused() {
        let request: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]
        }))
        .unwrap();
        assert!(to_messages_request(&request, 16).is_err());
        let request: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_object"}
        }))
        .unwrap();
        let err = to_messages_request(&request, 16).unwrap_err();
        assert_eq!(err.kind, FailureKind::Unsupported);
    }

    #[test]
    fn tool_use_answers_become_tool_calls_whole_and_streamed() {
        let message: Message = serde_json::from_value(json!({
            "id": "m1", "model": "c", "stop_reason": "tool_use",
            "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Paris"}}],
            "usage": {"input_tokens": 3, "output_tokens": 5}
        }))
        .unwrap();
        let answer = from_message(message);
        let choice = &answer.choices[0];
        assert_eq!(choice.finish_reason, FinishReason::ToolCalls);
        assert_eq!(choice.message.content, None);
        let call = &choice.message.tool_calls.as_ref().unwrap()[0];
        assert_eq!((call.id.as_str(), call.function.name.as_str()), ("t1", "w"));
        assert_eq!(call.function.arguments, r#"{"city":"Paris"}"#);

        let mut t = StreamTranslator::new();
        t.translate(r#"{"type":"message_start","message":{"id":"m1","model":"c","usage":{"input_tokens":3}}}"#);
        let Translated::Chunk(first) = t.translate(
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"w","input":{}}}"#,
        ) else {
            panic!("expected a chunk")
        };
        let d = &first.choices[0].delta.tool_calls.as_ref().unwrap()[0];
        assert_eq!((d.index, d.id.as_deref()), (0, Some("t1")));
        let mut args = String::new();
        for part in [r#"{\"city\""#, r#": \"Paris\"}"#] {
            let event = format!(
                r#"{{"type":"content_block_delta","index":1,"delta":{{"type":"input_json_delta","partial_json":"{part}"}}}}"#
            );
            let Translated::Chunk(c) = t.translate(&event) else {
                panic!("expected a chunk")
            };
            let d = &c.choices[0].delta.tool_calls.as_ref().unwrap()[0];
            assert_eq!((d.index, d.id.as_deref()), (0, None));
            args.push_str(d.function.as_ref().unwrap().arguments.as_deref().unwrap());
        }
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"city": "Paris"})
        );
    }

    #[test]
    fn stream_without_stop_reason_still_closes_the_choice() {
        let mut translator = StreamTranslator::new();
        let start = r#"{"type":"message_start","message":{"id":"m1","model":"c","usage":{"input_tokens":3}}}"#;
        assert!(matches!(translator.translate(start), Translated::Chunk(_)));
        let Translated::End(end) = translator.translate(r#"{"type":"message_stop"}"#) else {
            panic!("expected the end");
        };
        assert_eq!(end.choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(end.usage.as_ref().map(|u| u.prompt_tokens), Some(3));
    }

    #[test]
    fn error_events_keep_their_class() {
        let mut translator = StreamTranslator::new();
        let event =
            |kind: &str| format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"x"}}}}"#);
        let Translated::Failed(err) = translator.translate(&event("overloaded_error")) else {
            panic!("expected a failure");
        };
        assert_eq!(err.kind, FailureKind::Status { status: 529 });
        assert!(matches!(
            translator.translate("{oops"),
            Translated::Failed(_)
        ));
        assert!(matches!(
            translator.translate(r#"{"type":"ping"}"#),
            Translated::Skip
        ));
    }
}
