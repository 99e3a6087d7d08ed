//! Anthropic's Messages API on the way in (`POST /v1/messages`,
//! `POST /v1/messages/count_tokens`): the request ([`MessagesRequest`]) with
//! its content blocks checked one by one (`messages[1].content[0].type`),
//! the answer ([`AnthropicMessage`]), the streamed events
//! ([`AnthropicEvent`]: `message_start`, `content_block_start`,
//! `content_block_delta`, `content_block_stop`, `message_delta`,
//! `message_stop`), and Anthropic's error body ([`AnthropicError`]).
//!
//! Requests become chat requests (the service's one path; extended
//! `thinking` is chat's `reasoning_effort`); what cannot be served (images,
//! documents, server tools, `top_k`) is refused with a 400 naming it, never
//! ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiError, ErrorKind, InvalidCode};
use crate::parse::{field, typed, Field, RequestBody};

/// The body of `POST /v1/messages` (and, without `max_tokens`, of
/// `/v1/messages/count_tokens`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// The model id.
    pub model: String,
    /// The most tokens to generate (required on `/v1/messages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// The conversation: alternating `user` and `assistant` turns.
    pub messages: Vec<Value>,
    /// A system prompt: a string or text blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Value>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<AnthropicTool>>,
    /// `{"type": "auto" | "any" | "none" | "tool", "name"?: …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<AnthropicToolChoice>,
    /// Strings that end generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Not supported: refused when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    /// Stream the answer as Anthropic's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// `{"user_id": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<AnthropicMetadata>,
    /// Extended thinking: `{"type": "enabled", "budget_tokens"}` or
    /// `{"type": "disabled"}` ([`MessagesRequest::thinking_effort`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
}

/// `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnthropicMetadata {
    /// An end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// One entry of `tools` (a client tool; server tools carry a `type` and are
/// refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnthropicTool {
    /// The tool's name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema of its input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// `custom` or absent for a client tool.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AnthropicToolChoice {
    /// The model decides.
    Auto {
        /// Whether only one tool may be called.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// Some tool must be called.
    Any {
        /// Whether only one tool may be called.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// This tool must be called.
    Tool {
        /// The tool.
        name: String,
        /// Whether only one tool may be called.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// No tool may be called.
    None,
}

/// A content block of a request message, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Text.
    Text(String),
    /// A call the model made earlier.
    ToolUse {
        /// `toolu_…`.
        id: String,
        /// The tool.
        name: String,
        /// Its input, a JSON object.
        input: Value,
    },
    /// A tool's result, sent by the client.
    ToolResult {
        /// The call it answers.
        tool_use_id: String,
        /// The result's text.
        content: String,
        /// Whether the tool failed.
        is_error: bool,
    },
    /// An earlier answer's thinking (`thinking` or `redacted_thinking`),
    /// sent back: accepted and left out of the prompt.
    Thinking,
}

/// A request message, checked: its role and blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// `user` or `assistant`.
    pub role: String,
    /// Its blocks.
    pub blocks: Vec<Block>,
}

impl MessagesRequest {
    /// Whether the answer is streamed.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// The system prompt's text, if any.
    pub fn system_text(&self) -> Result<Option<String>, ApiError> {
        match &self.system {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Array(blocks)) => {
                let mut text = String::new();
                for (index, block) in blocks.iter().enumerate() {
                    match block_of(block, &format!("system[{index}]"))? {
                        Block::Text(part) => {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(&part);
                        }
                        _ => {
                            return Err(ApiError::invalid(
                                format!("system[{index}].type"),
                                InvalidCode::InvalidValue,
                                "The system prompt takes only text blocks.",
                            ))
                        }
                    }
                }
                Ok(Some(text))
            }
            Some(_) => Err(ApiError::invalid(
                "system",
                InvalidCode::InvalidType,
                "Invalid type for 'system': expected a string or an array of text blocks.",
            )),
        }
    }

    /// Extended `thinking` as chat's `reasoning_effort`: `enabled` turns a
    /// thinking model's thinking on (`high`), `disabled` off (`none`);
    /// absent leaves the template's default. `budget_tokens` is checked as
    /// Anthropic does (at least 1024, below `max_tokens`) and, as there, is
    /// a target: `max_tokens` bounds the whole answer.
    pub fn thinking_effort(&self) -> Result<Option<&'static str>, ApiError> {
        let Some(thinking) = &self.thinking else {
            return Ok(None);
        };
        match thinking.get("type").and_then(Value::as_str) {
            Some("disabled") => Ok(Some("none")),
            Some("enabled") => {
                let budget = thinking.get("budget_tokens").and_then(Value::as_i64);
                let Some(budget) = budget else {
                    return Err(missing("thinking.budget_tokens"));
                };
                if budget < MIN_THINKING_BUDGET {
                    return Err(ApiError::invalid(
                        "thinking.budget_tokens",
                        InvalidCode::IntegerBelowMinValue,
                        format!(
                            "thinking.budget_tokens: Input should be greater than or equal to \
                             {MIN_THINKING_BUDGET}, got {budget}."
                        ),
                    ));
                }
                if self.max_tokens.is_some_and(|max| budget >= max) {
                    return Err(ApiError::invalid(
                        "thinking.budget_tokens",
                        InvalidCode::InvalidValue,
                        "`max_tokens` must be greater than `thinking.budget_tokens`.",
                    ));
                }
                Ok(Some("high"))
            }
            _ => Err(ApiError::invalid(
                "thinking.type",
                InvalidCode::InvalidValue,
                "thinking.type: Input should be 'enabled' or 'disabled'.",
            )),
        }
    }

    /// Whether the answer writes `thinking` blocks (`thinking.type:
    /// "enabled"`).
    pub fn wants_thinking(&self) -> bool {
        matches!(self.thinking_effort(), Ok(Some("high")))
    }

    /// The messages, checked block by block.
    pub fn turns(&self) -> Result<Vec<Turn>, ApiError> {
        self.messages
            .iter()
            .enumerate()
            .map(|(index, message)| {
                let param = format!("messages[{index}]");
                let role = match message.get("role").and_then(Value::as_str) {
                    Some(role @ ("user" | "assistant")) => role.to_owned(),
                    Some(other) => {
                        return Err(ApiError::invalid(
                            format!("{param}.role"),
                            InvalidCode::InvalidValue,
                            format!(
                                "{param}.role: Input should be 'user' or 'assistant', got \
                                 '{other}'."
                            ),
                        ))
                    }
                    None => return Err(missing(&format!("{param}.role"))),
                };
                let blocks = match message.get("content") {
                    Some(Value::String(text)) => vec![Block::Text(text.clone())],
                    Some(Value::Array(blocks)) => blocks
                        .iter()
                        .enumerate()
                        .map(|(i, block)| block_of(block, &format!("{param}.content[{i}]")))
                        .collect::<Result<_, _>>()?,
                    None => return Err(missing(&format!("{param}.content"))),
                    Some(_) => {
                        return Err(ApiError::invalid(
                            format!("{param}.content"),
                            InvalidCode::InvalidType,
                            format!(
                                "Invalid type for '{param}.content': expected a string or an \
                                 array of content blocks."
                            ),
                        ))
                    }
                };
                Ok(Turn { role, blocks })
            })
            .collect()
    }

    /// The checks of `/v1/messages` (`needs_max_tokens`) and of
    /// `/v1/messages/count_tokens` (without).
    pub fn validate(&self, needs_max_tokens: bool) -> Result<(), ApiError> {
        if self.model.is_empty() {
            return Err(missing("model"));
        }
        match self.max_tokens {
            None if needs_max_tokens => return Err(missing("max_tokens")),
            Some(limit) if limit < 1 => {
                return Err(ApiError::invalid(
                    "max_tokens",
                    InvalidCode::IntegerBelowMinValue,
                    format!("max_tokens: Input should be greater than or equal to 1, got {limit}."),
                ))
            }
            _ => {}
        }
        if self.messages.is_empty() {
            return Err(ApiError::invalid(
                "messages",
                InvalidCode::EmptyArray,
                "messages: at least one message is required.",
            ));
        }
        crate::validate::check_decimal("temperature", self.temperature, 0.0, 1.0)?;
        crate::validate::check_decimal("top_p", self.top_p, 0.0, 1.0)?;
        if self.top_k.is_some() {
            return Err(ApiError::invalid(
                "top_k",
                InvalidCode::InvalidValue,
                "top_k is not supported by this server.",
            ));
        }
        self.thinking_effort()?;
        for (index, tool) in self.tools.iter().flatten().enumerate() {
            if tool.kind.as_deref().is_some_and(|kind| kind != "custom") {
                return Err(ApiError::invalid(
                    format!("tools[{index}].type"),
                    InvalidCode::InvalidValue,
                    format!(
                        "Server tools ('{}') are not supported here; only client tools are.",
                        tool.kind.as_deref().unwrap_or_default()
                    ),
                ));
            }
        }
        if let Some(AnthropicToolChoice::Tool { name, .. }) = &self.tool_choice {
            if !self.tools.iter().flatten().any(|tool| &tool.name == name) {
                return Err(ApiError::invalid(
                    "tool_choice.name",
                    InvalidCode::InvalidValue,
                    format!("tool_choice names '{name}', which is not in 'tools'."),
                ));
            }
        }
        self.system_text()?;
        let turns = self.turns()?;
        // Each tool_result answers a tool_use made before it.
        let mut calls = Vec::new();
        for (index, turn) in turns.iter().enumerate() {
            for (i, block) in turn.blocks.iter().enumerate() {
                match block {
                    Block::ToolUse { id, .. } => calls.push(id.clone()),
                    Block::ToolResult { tool_use_id, .. } if !calls.contains(tool_use_id) => {
                        return Err(ApiError::invalid(
                            format!("messages[{index}].content[{i}].tool_use_id"),
                            InvalidCode::InvalidValue,
                            format!(
                                "tool_result block(s) provided with tool_use_id {tool_use_id} \
                                 which has no corresponding tool_use block before it."
                            ),
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn missing(param: &str) -> ApiError {
    ApiError::invalid(
        param,
        InvalidCode::MissingRequiredParameter,
        format!("{param}: Field required."),
    )
}

/// One request content block; `param` is its place.
fn block_of(value: &Value, param: &str) -> Result<Block, ApiError> {
    let text_of = |name: &str| match value.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        _ => Err(missing(&format!("{param}.{name}"))),
    };
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Block::Text(text_of("text")?)),
        Some("thinking" | "redacted_thinking") => Ok(Block::Thinking),
        Some("tool_use") => {
            let input = value.get("input").cloned().unwrap_or(Value::Null);
            if !input.is_object() {
                return Err(ApiError::invalid(
                    format!("{param}.input"),
                    InvalidCode::InvalidType,
                    format!("{param}.input: Input should be an object."),
                ));
            }
            Ok(Block::ToolUse {
                id: text_of("id")?,
                name: text_of("name")?,
                input,
            })
        }
        Some("tool_result") => {
            let content = match value.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(blocks)) => {
                    let mut text = String::new();
                    for (i, block) in blocks.iter().enumerate() {
                        match block_of(block, &format!("{param}.content[{i}]"))? {
                            Block::Text(part) => text.push_str(&part),
                            _ => {
                                return Err(ApiError::invalid(
                                    format!("{param}.content[{i}].type"),
                                    InvalidCode::InvalidValue,
                                    "A tool_result holds only text blocks here.",
                                ))
                            }
                        }
                    }
                    text
                }
                Some(_) => {
                    return Err(ApiError::invalid(
                        format!("{param}.content"),
                        InvalidCode::InvalidType,
                        format!("{param}.content: expected a string or text blocks."),
                    ))
                }
            };
            Ok(Block::ToolResult {
                tool_use_id: text_of("tool_use_id")?,
                content,
                is_error: value
                    .get("is_error")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        }
        Some(other) => Err(ApiError::invalid(
            format!("{param}.type"),
            InvalidCode::InvalidValue,
            format!(
                "{param}.type: '{other}' blocks are not supported here; expected 'text', \
                 'tool_use', 'tool_result' or 'thinking'."
            ),
        )),
        None => Err(missing(&format!("{param}.type"))),
    }
}

static MESSAGES_FIELDS: &[Field] = &[
    field("model", "a string", typed::<String>),
    field("max_tokens", "an integer", typed::<Option<i64>>),
    field("messages", "an array of messages", typed::<Vec<Value>>),
    field(
        "tools",
        "an array of tools, each with a 'name'",
        typed::<Option<Vec<AnthropicTool>>>,
    ),
    field(
        "tool_choice",
        "an object with type 'auto', 'any', 'tool' or 'none'",
        typed::<Option<AnthropicToolChoice>>,
    ),
    field(
        "stop_sequences",
        "an array of strings",
        typed::<Option<Vec<String>>>,
    ),
    field("temperature", "a decimal", typed::<Option<f64>>),
    field("top_p", "a decimal", typed::<Option<f64>>),
    field("top_k", "an integer", typed::<Option<i64>>),
    field("stream", "a boolean", typed::<Option<bool>>),
    field("metadata", "an object", typed::<Option<AnthropicMetadata>>),
];

impl RequestBody for MessagesRequest {
    fn fields() -> &'static [Field] {
        MESSAGES_FIELDS
    }
}

/// A block of the model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnswerBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A tool call.
    ToolUse {
        /// `toolu_…`.
        id: String,
        /// The tool.
        name: String,
        /// Its input.
        input: Value,
    },
    /// A thinking model's reasoning (`thinking` enabled).
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// Always empty: the thinking is not signed here (sent back, it is
        /// accepted unchecked and left out of the prompt).
        signature: String,
    },
}

/// Token counts as Anthropic reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnthropicUsage {
    /// Prompt tokens not read from the cache.
    pub input_tokens: u32,
    /// Generated tokens.
    pub output_tokens: u32,
    /// Prompt tokens read from the prefix cache.
    pub cache_read_input_tokens: u32,
    /// Always 0 (the prefix cache fills itself).
    pub cache_creation_input_tokens: u32,
}

impl AnthropicUsage {
    /// The Anthropic form of a chat usage: cached prompt tokens are counted
    /// apart from `input_tokens`, as Anthropic does.
    pub fn from_chat(usage: &crate::Usage) -> Self {
        let cached = usage
            .prompt_tokens_details
            .as_ref()
            .map_or(0, |details| details.cached_tokens);
        AnthropicUsage {
            input_tokens: usage.prompt_tokens.saturating_sub(cached),
            output_tokens: usage.completion_tokens,
            cache_read_input_tokens: cached,
            cache_creation_input_tokens: 0,
        }
    }
}

/// The answer of `POST /v1/messages` (`type: "message"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnthropicMessage {
    /// `msg_…`.
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `assistant`.
    pub role: String,
    /// The model that answered.
    pub model: String,
    /// The answer's blocks.
    pub content: Vec<AnswerBlock>,
    /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`; null while
    /// streaming.
    pub stop_reason: Option<String>,
    /// The stop sequence met, if any.
    pub stop_sequence: Option<String>,
    /// Token counts.
    pub usage: AnthropicUsage,
}

/// `message_delta.delta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDelta {
    /// Why it stopped.
    pub stop_reason: Option<String>,
    /// The stop sequence met, if any.
    pub stop_sequence: Option<String>,
}

/// Anthropic's smallest `thinking.budget_tokens`.
pub const MIN_THINKING_BUDGET: i64 = 1024;

/// `content_block_delta.delta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    /// More text.
    TextDelta {
        /// The text.
        text: String,
    },
    /// More of a tool call's input, JSON text.
    InputJsonDelta {
        /// The piece.
        partial_json: String,
    },
    /// More thinking.
    ThinkingDelta {
        /// The piece.
        thinking: String,
    },
}

/// One streamed event, its SSE `event:` name equal to its `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicEvent {
    /// The message, empty, with the input usage.
    MessageStart {
        /// The message so far.
        message: AnthropicMessage,
    },
    /// A block begins.
    ContentBlockStart {
        /// Its place.
        index: u32,
        /// The block, empty.
        content_block: AnswerBlock,
    },
    /// More of a block.
    ContentBlockDelta {
        /// Its place.
        index: u32,
        /// The piece.
        delta: BlockDelta,
    },
    /// A block ends.
    ContentBlockStop {
        /// Its place.
        index: u32,
    },
    /// The stop reason and the final usage.
    MessageDelta {
        /// Why it stopped.
        delta: MessageDelta,
        /// The final counts.
        usage: AnthropicUsage,
    },
    /// The end.
    MessageStop,
    /// A failure mid-stream.
    Error {
        /// The error.
        error: AnthropicErrorBody,
    },
}

impl AnthropicEvent {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            AnthropicEvent::MessageStart { .. } => "message_start",
            AnthropicEvent::ContentBlockStart { .. } => "content_block_start",
            AnthropicEvent::ContentBlockDelta { .. } => "content_block_delta",
            AnthropicEvent::ContentBlockStop { .. } => "content_block_stop",
            AnthropicEvent::MessageDelta { .. } => "message_delta",
            AnthropicEvent::MessageStop => "message_stop",
            AnthropicEvent::Error { .. } => "error",
        }
    }
}

/// `POST /v1/messages/count_tokens`' answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCount {
    /// The prompt's tokens.
    pub input_tokens: u32,
}

/// Anthropic's error body: `{"type": "error", "error": {type, message}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnthropicError {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The error.
    pub error: AnthropicErrorBody,
}

/// The `error` of [`AnthropicError`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnthropicErrorBody {
    /// `invalid_request_error`, `authentication_error`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// A sentence for the client.
    pub message: String,
}

/// Anthropic's error `type` for an error of `kind`.
pub fn anthropic_error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::Unauthorized => "authentication_error",
        ErrorKind::Forbidden => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::PayloadTooLarge => "request_too_large",
        ErrorKind::RateLimited | ErrorKind::QuotaExceeded => "rate_limit_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::Upstream | ErrorKind::Timeout | ErrorKind::Internal => "api_error",
    }
}

impl AnthropicError {
    /// The Anthropic body of `err` (its client message, its param named).
    pub fn of(err: &ApiError) -> Self {
        AnthropicError::new(err.kind(), err.client_message())
    }

    /// A body of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: String) -> Self {
        AnthropicError {
            kind: "error".into(),
            error: AnthropicErrorBody {
                kind: anthropic_error_type(kind).into(),
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_request;

    fn checked(body: &str) -> Result<MessagesRequest, ApiError> {
        let request: MessagesRequest = parse_request(body.as_bytes())?;
        request.validate(true)?;
        Ok(request)
    }

    #[test]
    fn thinking_is_an_effort_and_its_budget_is_checked() {
        let parse = |thinking: &str| {
            crate::parse_request::<MessagesRequest>(
                format!(
                    r#"{{"model":"m","max_tokens":2048,"thinking":{thinking},
                    "messages":[{{"role":"user","content":"hi"}},
                    {{"role":"assistant","content":[{{"type":"thinking","thinking":"hm","signature":""}},{{"type":"text","text":"yo"}}]}},
                    {{"role":"user","content":"again"}}]}}"#
                )
                .as_bytes(),
            )
        };
        let on = parse(r#"{"type":"enabled","budget_tokens":1024}"#).unwrap();
        on.validate(true).unwrap();
        assert_eq!(on.thinking_effort().unwrap(), Some("high"));
        assert!(on.wants_thinking());
        assert_eq!(on.turns().unwrap()[1].blocks[0], Block::Thinking);
        let off = parse(r#"{"type":"disabled"}"#).unwrap();
        assert_eq!(off.thinking_effort().unwrap(), Some("none"));
        assert!(!off.wants_thinking());
        for (thinking, param) in [
            (
                r#"{"type":"enabled","budget_tokens":1023}"#,
                "thinking.budget_tokens",
            ),
            (
                r#"{"type":"enabled","budget_tokens":2048}"#,
                "thinking.budget_tokens",
            ),
            (r#"{"type":"enabled"}"#, "thinking.budget_tokens"),
            (r#"{"type":"sometimes"}"#, "thinking.type"),
        ] {
            let err = parse(thinking).unwrap().validate(true).unwrap_err();
            assert_eq!(err.param(), Some(param), "{thinking}");
        }
    }

    #[test]
    fn blocks_are_checked_where_they_stand() {
        let ok = checked(
            r#"{"model":"m","max_tokens":8,"system":[{"type":"text","text":"be brief"}],
               "messages":[{"role":"user","content":"hi"},
               {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},
               {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"4"}]}]}"#,
        )
        .unwrap();
        assert_eq!(ok.system_text().unwrap().as_deref(), Some("be brief"));
        assert_eq!(ok.turns().unwrap().len(), 3);
        let image = checked(
            r#"{"model":"m","max_tokens":8,"messages":[{"role":"user","content":[{"type":"image"}]}]}"#,
        );
        assert_eq!(
            image.unwrap_err().param(),
            Some("messages[0].content[0].type")
        );
        let orphan = checked(
            r#"{"model":"m","max_tokens":8,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x"}]}]}"#,
        );
        assert_eq!(
            orphan.unwrap_err().param(),
            Some("messages[0].content[0].tool_use_id")
        );
        let no_max = checked(r#"{"model":"m","messages":[{"role":"user","content":"a"}]}"#);
        assert_eq!(no_max.unwrap_err().param(), Some("max_tokens"));
    }

    #[test]
    fn errors_take_anthropics_shape() {
        let err = ApiError::NotFound {
            message: "nope".into(),
        };
        let body = serde_json::to_value(AnthropicError::of(&err)).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "not_found_error");
    }
}
