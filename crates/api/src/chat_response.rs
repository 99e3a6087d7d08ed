//! What `POST /v1/chat/completions` answers: a whole [`ChatCompletion`],
//! or a stream of [`ChatCompletionChunk`]s.
//!
//! Streaming rules the types help keep: every chunk of one answer shares
//! `id`, `created` and `model`; the first delta of each choice carries
//! `role: "assistant"`; with `include_usage`, every chunk but the last
//! carries `"usage": null` and the last has `choices: []` and the usage.

use serde::{Deserialize, Serialize};

use crate::chat::{FunctionCall, ToolCall, ToolType};
use crate::common::{ChoiceLogprobs, FinishReason, Role, Usage};

/// A whole chat answer (`object: "chat.completion"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// The answer's id, `chatcmpl-…`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix time in seconds when the answer was started.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// One choice per `n`.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Identifies the backend configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

impl ChatCompletion {
    /// The `object` value.
    pub const OBJECT: &'static str = "chat.completion";

    /// A completion with the right `object`.
    pub fn new(
        id: impl Into<String>,
        created: u64,
        model: impl Into<String>,
        choices: Vec<ChatChoice>,
        usage: Usage,
    ) -> Self {
        ChatCompletion {
            id: id.into(),
            object: Self::OBJECT.to_owned(),
            created,
            model: model.into(),
            choices,
            usage: Some(usage),
            system_fingerprint: None,
        }
    }
}

/// One choice of a whole answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    /// The choice's position, 0-based.
    pub index: u32,
    /// The generated message.
    pub message: ChatCompletionMessage,
    /// Per-token log probabilities, or `null` when not requested.
    pub logprobs: Option<ChoiceLogprobs>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
}

/// The message the model generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionMessage {
    /// Always `assistant`.
    pub role: Role,
    /// The text, or `null` when the model only called tools.
    pub content: Option<String>,
    /// A refusal, or `null`.
    pub refusal: Option<String>,
    /// Tool calls the model made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A thinking model's reasoning, apart from `content` (llama-server's
    /// name, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// The same under vLLM's name, when the server is set to use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

impl ChatCompletionMessage {
    /// An assistant message holding `content`.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatCompletionMessage {
            role: Role::Assistant,
            content: Some(content.into()),
            refusal: None,
            tool_calls: None,
            reasoning_content: None,
            reasoning: None,
        }
    }
}

/// One event of a streamed answer (`object: "chat.completion.chunk"`).
///
/// `usage` is written as `"usage": null` when absent if
/// [`ChatCompletionChunk::null_usage`] is set (as it must be on every
/// non-final chunk when `stream_options.include_usage` is on), and left out
/// otherwise.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChatCompletionChunk {
    /// The answer's id; the same on every chunk.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix time in seconds; the same on every chunk.
    pub created: u64,
    /// The model; the same on every chunk.
    pub model: String,
    /// Identifies the backend configuration.
    #[serde(default)]
    pub system_fingerprint: Option<String>,
    /// The deltas in this event; empty on the final usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Token counts; only on the final chunk.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Write `"usage": null` when `usage` is `None` (instead of omitting it).
    #[serde(skip)]
    pub null_usage: bool,
}

impl ChatCompletionChunk {
    /// The `object` value.
    pub const OBJECT: &'static str = "chat.completion.chunk";

    /// A chunk carrying `choices`; `include_usage` decides whether it
    /// writes `"usage": null`.
    pub fn new(
        id: impl Into<String>,
        created: u64,
        model: impl Into<String>,
        choices: Vec<ChunkChoice>,
        include_usage: bool,
    ) -> Self {
        ChatCompletionChunk {
            id: id.into(),
            object: Self::OBJECT.to_owned(),
            created,
            model: model.into(),
            system_fingerprint: None,
            choices,
            usage: None,
            null_usage: include_usage,
        }
    }

    /// The final chunk under `include_usage`: no choices, the usage.
    pub fn usage_only(
        id: impl Into<String>,
        created: u64,
        model: impl Into<String>,
        usage: Usage,
    ) -> Self {
        let mut chunk = Self::new(id, created, model, Vec::new(), true);
        chunk.usage = Some(usage);
        chunk
    }
}

impl Serialize for ChatCompletionChunk {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            id: &'a str,
            object: &'a str,
            created: u64,
            model: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            system_fingerprint: Option<&'a str>,
            choices: &'a [ChunkChoice],
            // Outer None: key left out; Some(None): `"usage": null`.
            #[serde(skip_serializing_if = "Option::is_none")]
            usage: Option<Option<&'a Usage>>,
        }
        let usage = match (&self.usage, self.null_usage) {
            (Some(usage), _) => Some(Some(usage)),
            (None, true) => Some(None),
            (None, false) => None,
        };
        Wire {
            id: &self.id,
            object: &self.object,
            created: self.created,
            model: &self.model,
            system_fingerprint: self.system_fingerprint.as_deref(),
            choices: &self.choices,
            usage,
        }
        .serialize(serializer)
    }
}

/// One choice's delta in a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// The choice's position, 0-based.
    pub index: u32,
    /// What this event adds.
    pub delta: ChunkDelta,
    /// Log probabilities of the tokens in this delta, or `null`.
    pub logprobs: Option<ChoiceLogprobs>,
    /// Set on exactly one chunk per choice: the last one.
    pub finish_reason: Option<FinishReason>,
}

/// The new part of a streamed message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkDelta {
    /// `assistant` on the first delta of a choice only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// New text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// New refusal text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// New or continued tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// New reasoning text of a thinking model (llama-server's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// The same under vLLM's name, when the server is set to use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

impl ChunkDelta {
    /// The opening delta of a choice: `role: "assistant"` and `content: ""`.
    pub fn opening() -> Self {
        ChunkDelta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..ChunkDelta::default()
        }
    }

    /// A delta adding `text`.
    pub fn text(text: impl Into<String>) -> Self {
        ChunkDelta {
            content: Some(text.into()),
            ..ChunkDelta::default()
        }
    }
}

/// A piece of a streamed tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which tool call of the choice this continues.
    pub index: u32,
    /// The call's id, on its first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, on its first piece.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ToolType>,
    /// The name (first piece) and more argument text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

/// A piece of a streamed function call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    /// The function's name, on the first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// More of the JSON-encoded arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

impl From<FunctionCall> for FunctionCallDelta {
    fn from(call: FunctionCall) -> Self {
        FunctionCallDelta {
            name: Some(call.name),
            arguments: Some(call.arguments),
        }
    }
}
