//! The `anthropic` backend: Anthropic's Messages API (`POST /v1/messages`
//! with `x-api-key` and `anthropic-version`), translated both ways.
//!
//! Requests: `system` and `developer` messages become the top-level
//! `system` text; `user`/`assistant` turns are kept in order (consecutive
//! turns of one role merged); `max_tokens` (required there) defaults to the
//! configured value; `temperature` is clamped to Anthropic's 0–1; `top_p`,
//! `stop` (→ `stop_sequences`) and `user` (→ `metadata.user_id`) carry
//! over. Tools, tool messages and `n` > 1 are refused (tool-free backend).
//!
//! Answers: text content blocks are joined into the message; `stop_reason`
//! maps to `finish_reason` (`end_turn`/`stop_sequence` → `stop`,
//! `max_tokens` → `length`, `tool_use` → `tool_calls`, `refusal` →
//! `content_filter`); `input_tokens` (plus cache reads and writes) →
//! `prompt_tokens`, cache reads → `cached_tokens`, `output_tokens` →
//! `completion_tokens`. Streams map `message_start` → the opening chunk
//! (carrying the prompt tokens as partial usage), `content_block_delta`
//! text → content chunks, `message_delta` → the finishing chunk,
//! `message_stop` → the usage chunk and the end; `ping` is skipped and an
//! `error` event is an upstream failure (`overloaded_error` as a 529).

use api::{
    ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionMessage, ChatCompletionRequest,
    ChatMessage, ChunkChoice, ChunkDelta, FinishReason, Usage,
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
    if request
        .tools
        .as_ref()
        .is_some_and(|tools| !tools.is_empty())
    {
        return Err(unsupported("the anthropic backend does not support tools"));
    }
    if request.choice_count() > 1 {
        return Err(unsupported(
            "the anthropic backend answers one choice (n = 1)",
        ));
    }
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(&'static str, String)> = Vec::new();
    for message in &request.messages {
        let role = match message {
            ChatMessage::System { .. } | ChatMessage::Developer { .. } => {
                system.push(message.content().map(|c| c.text()).unwrap_or_default());
                continue;
            }
            ChatMessage::User { .. } => "user",
            ChatMessage::Assistant { tool_calls, .. } => {
                if tool_calls.as_ref().is_some_and(|calls| !calls.is_empty()) {
                    return Err(unsupported(
                        "the anthropic backend does not support tool calls",
                    ));
                }
                "assistant"
            }
            ChatMessage::Tool { .. } => {
                return Err(unsupported(
                    "the anthropic backend does not support tool messages",
                ))
            }
        };
        let text = message.content().map(|c| c.text()).unwrap_or_default();
        match turns.last_mut() {
            Some((last, joined)) if *last == role => {
                joined.push_str("\n\n");
                joined.push_str(&text);
            }
            _ => turns.push((role, text)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
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
    let choice = ChatChoice {
        index: 0,
        message: ChatCompletionMessage::assistant(text),
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
            "content_block_start" => match value["content_block"]["text"].as_str() {
                Some(text) if !text.is_empty() => {
                    Translated::Chunk(Box::new(self.chunk(ChunkDelta::text(text), None)))
                }
                _ => Translated::Skip,
            },
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
    fn tool_messages_and_several_choices_are_refused() {
        let request: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "m",
            "messages": [{"role": "tool", "content": "42", "tool_call_id": "c1"}]
        }))
        .unwrap();
        let err = to_messages_request(&request, 16).unwrap_err();
        assert_eq!(err.kind, FailureKind::Unsupported);
        let request: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]
        }))
        .unwrap();
        assert!(to_messages_request(&request, 16).is_err());
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
