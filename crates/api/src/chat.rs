//! The `POST /v1/chat/completions` request: [`ChatCompletionRequest`], its
//! messages, content parts, tools and response format.
//!
//! `store` and `metadata` keep the answer (see [`crate::stored`]); what no
//! model here can do (`audio`, `functions`, …) is refused by name
//! ([`crate::unserved`]). Other unknown fields (`service_tier`,
//! `prompt_cache_key`, …) change nothing here and are accepted and
//! ignored, as OpenAI-compatible clients send them freely. Range checks
//! live in [`crate::validate`]; turning a body into a request with errors
//! that name the parameter lives in [`crate::parse`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::{Stop, StreamOptions};

/// The body of `POST /v1/chat/completions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model id, as listed by `/v1/models`.
    pub model: String,
    /// The conversation so far; at least one message.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature, 0–2 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, 0–1 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// How many choices to generate, 1–128 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<i64>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Options for streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Up to four sequences that end generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Output token limit (deprecated name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// Output token limit (current name; wins over `max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<i64>,
    /// Penalty for tokens already present, −2..2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Penalty proportional to a token's count so far, −2..2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Token id (as a decimal string) → bias −100..100 added to its logit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<BTreeMap<String, f64>>,
    /// Return the log probability of each output token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// How many alternatives to return per position, 0–20; needs `logprobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<i64>,
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Plain text, any JSON object, or JSON matching a schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Whether and which tool the model must call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// An end-user id, for abuse monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Whether the answer is stored for `GET /v1/chat/completions` (and
    /// its id, messages, update and delete routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// Pairs stored with the answer (at most 16; keys of at most 64
    /// characters, values of at most 512), for filtering the stored list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Audio output (refused: see [`crate::unserved`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Value>,
    /// Output modalities; only `text` is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modalities: Option<Value>,
    /// Web search (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_search_options: Option<Value>,
    /// Moderation of the exchange (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderation: Option<Value>,
    /// How hard a thinking model reasons: `none` turns its template's
    /// thinking off (`enable_thinking: false`), `minimal`, `low`, `medium`
    /// or `high` turn it on; models that do not think ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// The deprecated function definitions (refused; use `tools`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<Value>,
    /// The deprecated function choice (`none`/`auto` pass; use
    /// `tool_choice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<Value>,
}

/// The `reasoning_effort` values.
pub const REASONING_EFFORTS: &[&str] = &["none", "minimal", "low", "medium", "high"];

impl ChatCompletionRequest {
    /// The template's `enable_thinking` for `reasoning_effort`: `None` when
    /// not given, `false` for `none`, `true` otherwise; an unknown value is
    /// a 400 naming the parameter.
    pub fn enable_thinking(&self) -> Result<Option<bool>, crate::ApiError> {
        match self.reasoning_effort.as_deref() {
            None => Ok(None),
            Some(effort) if REASONING_EFFORTS.contains(&effort) => Ok(Some(effort != "none")),
            Some(other) => Err(crate::ApiError::invalid(
                "reasoning_effort",
                crate::InvalidCode::InvalidValue,
                format!(
                    "reasoning_effort must be one of {}; got `{other}`.",
                    REASONING_EFFORTS.join(", ")
                ),
            )),
        }
    }

    /// The output token limit: `max_completion_tokens` if given, else
    /// `max_tokens`. `None` means "up to the context". Values out of `u32`
    /// range are clamped (validation has already rejected values below 1).
    pub fn max_output_tokens(&self) -> Option<u32> {
        self.max_completion_tokens
            .or(self.max_tokens)
            .map(|limit| u32::try_from(limit.max(0)).unwrap_or(u32::MAX))
    }

    /// How many choices to generate (default 1).
    pub fn choice_count(&self) -> u32 {
        self.n
            .map_or(1, |n| u32::try_from(n.max(1)).unwrap_or(u32::MAX))
    }

    /// Whether the answer is streamed.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a streamed answer ends with a usage chunk (and every other
    /// chunk carries `"usage": null`).
    pub fn include_usage(&self) -> bool {
        self.is_stream()
            && self
                .stream_options
                .as_ref()
                .and_then(|options| options.include_usage)
                .unwrap_or(false)
    }

    /// The stop sequences, empty when none were given.
    pub fn stop_sequences(&self) -> Vec<&str> {
        self.stop.as_ref().map(Stop::sequences).unwrap_or_default()
    }
}

/// One message of the conversation, tagged by its `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    /// Instructions from the developer.
    Developer {
        /// The text.
        content: MessageContent,
        /// An optional participant name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// Instructions from the application.
    System {
        /// The text.
        content: MessageContent,
        /// An optional participant name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// The end user's turn.
    User {
        /// The text.
        content: MessageContent,
        /// An optional participant name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// An earlier model turn.
    Assistant {
        /// The text; may be absent or null when `tool_calls` is given.
        #[serde(default)]
        content: Option<MessageContent>,
        /// An optional participant name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// A refusal the model gave.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refusal: Option<String>,
        /// Tool calls the model made.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_calls: Option<Vec<ToolCall>>,
    },
    /// The result of a tool call.
    Tool {
        /// The tool's output.
        content: MessageContent,
        /// The id of the call this answers.
        tool_call_id: String,
    },
}

impl ChatMessage {
    /// The message's role as spelled on the wire.
    pub fn role(&self) -> &'static str {
        match self {
            ChatMessage::Developer { .. } => "developer",
            ChatMessage::System { .. } => "system",
            ChatMessage::User { .. } => "user",
            ChatMessage::Assistant { .. } => "assistant",
            ChatMessage::Tool { .. } => "tool",
        }
    }

    /// The message's content, if it has any.
    pub fn content(&self) -> Option<&MessageContent> {
        match self {
            ChatMessage::Developer { content, .. }
            | ChatMessage::System { content, .. }
            | ChatMessage::User { content, .. }
            | ChatMessage::Tool { content, .. } => Some(content),
            ChatMessage::Assistant { content, .. } => content.as_ref(),
        }
    }
}

/// A message's `content`: a string or an array of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// An array of parts; only `text` parts pass validation.
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// The text, with the text parts joined without separator. Parts of
    /// other types (rejected by validation) are skipped.
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(text) => text.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .filter_map(|part| match part {
                    ContentPart::Text { text } => Some(text.as_str()),
                    ContentPart::Other(_) => None,
                })
                .collect(),
        }
    }
}

impl From<&str> for MessageContent {
    fn from(text: &str) -> Self {
        MessageContent::Text(text.to_owned())
    }
}

/// One part of an array `content`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// `{"type": "text", "text": "..."}`.
    Text {
        /// The text.
        text: String,
    },
    /// Any other part (`image_url`, `input_audio`, a malformed text part):
    /// kept as sent so that validation can name it.
    #[serde(untagged)]
    Other(Value),
}

/// `response_format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any valid JSON object.
    JsonObject,
    /// JSON matching the given schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

/// `response_format.json_schema`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    /// The schema's name.
    pub name: String,
    /// What the schema is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Whether the output must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// The `type` of a tool or tool call; only functions exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolType {
    /// A function tool.
    #[default]
    Function,
}

/// One entry of `tools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: ToolType,
    /// The function's definition.
    pub function: FunctionDefinition,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDefinition {
    /// The function's name.
    pub name: String,
    /// What the function does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema for its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Whether arguments must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: a mode, or one named function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `"none"`, `"auto"` or `"required"`.
    Mode(ToolChoiceMode),
    /// `{"type": "function", "function": {"name": "..."}}`.
    Named(NamedToolChoice),
}

/// The string forms of `tool_choice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceMode {
    /// Never call a tool.
    None,
    /// The model decides.
    Auto,
    /// Call at least one tool.
    Required,
}

/// `tool_choice` naming one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedToolChoice {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: ToolType,
    /// The function to call.
    pub function: FunctionName,
}

/// `{"name": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionName {
    /// The function's name.
    pub name: String,
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, echoed by the tool message that answers it.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: ToolType,
    /// The function and its arguments.
    pub function: FunctionCall,
}

/// The function a tool call invokes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// The arguments, as a JSON-encoded string.
    pub arguments: String,
}
