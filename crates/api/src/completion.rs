//! The legacy `POST /v1/completions` endpoint: [`CompletionRequest`] with
//! its four prompt shapes, and the [`Completion`] it answers (also the
//! shape of each streamed event, with `finish_reason: null` until the end).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::common::{FinishReason, Stop, StreamOptions, Usage};

/// The body of `POST /v1/completions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// The model id.
    pub model: String,
    /// The prompt: text, texts, token ids, or lists of token ids.
    pub prompt: Prompt,
    /// Generate this many server-side and return the best `n` (1–20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<i64>,
    /// Repeat the prompt before the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    /// Penalty proportional to a token's count so far, −2..2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Token id (as a decimal string) → bias −100..100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<BTreeMap<String, f64>>,
    /// Return this many alternatives per position, 0–5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<i64>,
    /// Output token limit (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// How many choices per prompt, 1–128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<i64>,
    /// Penalty for tokens already present, −2..2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Up to four sequences that end generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Options for streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Text that comes after the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Sampling temperature, 0–2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// An end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl CompletionRequest {
    /// The default output limit of the legacy endpoint.
    pub const DEFAULT_MAX_TOKENS: u32 = 16;

    /// The output token limit (16 when not given).
    pub fn max_output_tokens(&self) -> u32 {
        self.max_tokens.map_or(Self::DEFAULT_MAX_TOKENS, |limit| {
            u32::try_from(limit.max(0)).unwrap_or(u32::MAX)
        })
    }

    /// How many choices per prompt (default 1).
    pub fn choice_count(&self) -> u32 {
        self.n
            .map_or(1, |n| u32::try_from(n.max(1)).unwrap_or(u32::MAX))
    }

    /// Whether the answer is streamed.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a streamed answer ends with a usage event.
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

/// `prompt`: a string, strings, token ids, or lists of token ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// One text prompt.
    Text(String),
    /// Several text prompts (an empty list parses as this).
    Texts(Vec<String>),
    /// One prompt as token ids.
    Tokens(Vec<u32>),
    /// Several prompts as token ids.
    TokenLists(Vec<Vec<u32>>),
}

impl Default for Prompt {
    fn default() -> Self {
        Prompt::Text(String::new())
    }
}

/// One prompt after the shapes are flattened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptInput<'a> {
    /// Text to tokenize.
    Text(&'a str),
    /// Token ids to use as they are.
    Tokens(&'a [u32]),
}

impl Prompt {
    /// Each prompt in order; a choice's `index` is
    /// `prompt_position * n + choice_position`.
    pub fn inputs(&self) -> Vec<PromptInput<'_>> {
        match self {
            Prompt::Text(text) => vec![PromptInput::Text(text)],
            Prompt::Texts(texts) => texts.iter().map(|t| PromptInput::Text(t)).collect(),
            Prompt::Tokens(tokens) => vec![PromptInput::Tokens(tokens)],
            Prompt::TokenLists(lists) => lists.iter().map(|l| PromptInput::Tokens(l)).collect(),
        }
    }
}

/// A legacy completion (`object: "text_completion"`), whole or one
/// streamed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The answer's id, `cmpl-…`.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix time in seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// One per prompt × `n`.
    pub choices: Vec<CompletionChoice>,
    /// Token counts (whole answers, and the final streamed event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Identifies the backend configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

impl Completion {
    /// The `object` value.
    pub const OBJECT: &'static str = "text_completion";

    /// A completion with the right `object` and no usage.
    pub fn new(
        id: impl Into<String>,
        created: u64,
        model: impl Into<String>,
        choices: Vec<CompletionChoice>,
    ) -> Self {
        Completion {
            id: id.into(),
            object: Self::OBJECT.to_owned(),
            created,
            model: model.into(),
            choices,
            usage: None,
            system_fingerprint: None,
        }
    }
}

/// One choice of a legacy completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChoice {
    /// The generated text (or new text, when streamed).
    pub text: String,
    /// The choice's position.
    pub index: u32,
    /// Legacy logprobs, or `null`.
    pub logprobs: Option<CompletionLogprobs>,
    /// Why generation stopped; `null` on streamed events before the last.
    pub finish_reason: Option<FinishReason>,
}

/// The legacy `logprobs` shape: parallel arrays.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionLogprobs {
    /// Each token's text.
    pub tokens: Vec<String>,
    /// Each token's log probability.
    pub token_logprobs: Vec<Option<f32>>,
    /// Per position, the alternatives: token text → log probability.
    pub top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    /// Each token's character offset in the returned text.
    pub text_offset: Vec<u32>,
}
