//! Wire types shared by the chat and legacy completion endpoints: stop
//! sequences, stream options, finish reasons, token usage and logprobs.

use serde::{Deserialize, Serialize};

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions from the application developer (newer name for system).
    Developer,
    /// Instructions from the application (older name).
    System,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

impl Role {
    /// Every role a request may use, as spelled on the wire.
    pub const ALL: [&'static str; 5] = ["developer", "system", "user", "assistant", "tool"];

    /// The role as spelled on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Developer => "developer",
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// Why a choice stopped generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop sequence or the end-of-turn token.
    Stop,
    /// The token limit (`max_tokens` or the context) was reached.
    Length,
    /// The model called a tool.
    ToolCalls,
    /// Output was withheld by a content filter.
    ContentFilter,
}

/// `stop`: one string or a list of up to four.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// A single stop sequence.
    One(String),
    /// Several stop sequences.
    Many(Vec<String>),
}

impl Stop {
    /// The most stop sequences a request may give.
    pub const MAX: usize = 4;

    /// The stop sequences as a list, whichever form was sent.
    pub fn sequences(&self) -> Vec<&str> {
        match self {
            Stop::One(one) => vec![one.as_str()],
            Stop::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a final chunk with `choices: []` and the usage, and
    /// `"usage": null` on every other chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// Token counts for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated, over all choices.
    pub completion_tokens: u32,
    /// The sum of the two.
    pub total_tokens: u32,
    /// Breakdown of the prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Breakdown of the completion tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

impl Usage {
    /// Usage with the total computed and both detail objects present.
    pub fn new(prompt_tokens: u32, completion_tokens: u32, cached_tokens: u32) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens }),
            completion_tokens_details: Some(CompletionTokensDetails {
                reasoning_tokens: 0,
            }),
        }
    }
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u32,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    /// Tokens spent on hidden reasoning.
    pub reasoning_tokens: u32,
}

/// A chat choice's `logprobs` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChoiceLogprobs {
    /// One entry per generated content token.
    pub content: Option<Vec<TokenLogprob>>,
    /// One entry per refusal token (always `null` here).
    #[serde(default)]
    pub refusal: Option<Vec<TokenLogprob>>,
}

/// One generated token with its log probability and the alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text (lossy UTF-8 when the token is a partial character).
    pub token: String,
    /// Natural log of the token's probability.
    pub logprob: f32,
    /// The token's exact bytes, since `token` may not be valid UTF-8 alone.
    pub bytes: Option<Vec<u8>>,
    /// The most likely tokens at this position, most likely first.
    pub top_logprobs: Vec<TopLogprob>,
}

/// One of the most likely tokens at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Natural log of the token's probability.
    pub logprob: f32,
    /// The token's exact bytes.
    pub bytes: Option<Vec<u8>>,
}
