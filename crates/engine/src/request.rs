//! What a caller asks of the engine and what streams back.

use sampling::{Constraint, SamplingParams, TokenLogprobs};

/// One generation: a tokenized prompt and how to continue it.
#[derive(Debug, Clone, Default)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    /// Most tokens to generate; `None` runs to the end of the context.
    pub max_tokens: Option<usize>,
    /// Strings that end generation; the stop text itself is never emitted.
    pub stop: Vec<String>,
    /// `Some(n)`: report each token's log probability and the `n` most likely alternatives.
    pub logprobs: Option<usize>,
    /// Never pick end-of-generation tokens (benchmarks, reference comparisons).
    pub ignore_eos: bool,
    /// Constrained decoding: each step samples only tokens the constraint
    /// allows (end-of-generation where it accepts); `None`: unconstrained.
    pub constraint: Option<Constraint>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the context length.
    Length,
}

impl FinishReason {
    /// The OpenAI `finish_reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Token counts of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Of `prompt_tokens`, those whose keys and values came from the prefix
    /// cache instead of being computed (OpenAI's
    /// `usage.prompt_tokens_details.cached_tokens`; billed at the cached price).
    pub cached_tokens: usize,
}

/// What a generation streams back, in order: zero or more `Token`s, then
/// exactly one `Done` or `Failed`.
#[derive(Debug, Clone)]
pub enum Event {
    /// A sampled token and the text it released (empty while a partial
    /// character or a possible stop-string prefix is held back).
    Token {
        id: u32,
        text: String,
        logprobs: Option<TokenLogprobs>,
    },
    /// The end: any text still held back, the reason, the usage, and the
    /// stop string that ended it (if one did: `reason` is then `Stop`).
    Done {
        text: String,
        reason: FinishReason,
        usage: Usage,
        stop: Option<String>,
    },
    /// The generation failed after it was accepted.
    Failed { message: String },
}
