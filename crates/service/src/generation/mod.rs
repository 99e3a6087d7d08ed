//! The one local-generation path, for every endpoint: **prepare** (the
//! endpoint's sampling [`Settings`]; a chat's messages rendered with the
//! model's own template and tokenized, off the executor: [`chat`]),
//! **submit** one generation per choice ([`submit_all`]), and **merge**
//! their engine events into one answer ([`Answer`], the only merger) that
//! each endpoint writes in its own wire format ([`AnswerFormat`]): chat
//! chunks and answers ([`chat::ChatChunks`]), legacy completions
//! ([`completion::CompletionChunks`]), and the gateway's chunk stream for
//! the local backend ([`engine_backend`]).

pub mod chat;
pub mod completion;
pub mod engine_backend;
mod merge;
pub mod reasoning;
mod tool_reader;
pub mod tool_syntax;
pub mod tools;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use api::{ApiError, InvalidCode, TokenLogprob, TopLogprob};
use engine::{EngineHandle, Event, GenerateRequest, Generation, SamplingParams, Tokenizer};

pub use merge::{Answer, AnswerEvent, Whole, WholeChoice};

use crate::Error;

/// The server's per-answer defaults, shared by the direct path and the
/// gateway's local backends and changeable while they run: the most tokens
/// a choice generates when its request sets no `max_tokens` (`parlance
/// serve`'s `default_max_tokens`; 0: until the context is full), and the
/// field a thinking model's reasoning is written under (`reasoning_field`).
#[derive(Debug, Default)]
pub struct AnswerDefaults {
    max_tokens: AtomicU32,
    /// Reasoning under vLLM's `reasoning` rather than `reasoning_content`.
    reasoning_as_vllm: AtomicBool,
}

impl AnswerDefaults {
    /// Writes reasoning under `field` (`reasoning_content` by default).
    pub fn set_reasoning_field(&self, field: reasoning::ReasoningField) {
        self.reasoning_as_vllm.store(
            field == reasoning::ReasoningField::Reasoning,
            Ordering::Relaxed,
        );
    }

    /// The field reasoning is written under.
    pub fn reasoning_field(&self) -> reasoning::ReasoningField {
        if self.reasoning_as_vllm.load(Ordering::Relaxed) {
            reasoning::ReasoningField::Reasoning
        } else {
            reasoning::ReasoningField::ReasoningContent
        }
    }

    /// Sets the default `max_tokens` (`0`: none).
    pub fn set_max_tokens(&self, tokens: u32) {
        self.max_tokens.store(tokens, Ordering::Relaxed);
    }

    /// `max_tokens` as asked, else the default, if any.
    pub fn max_tokens(&self, asked: Option<u32>) -> Option<u32> {
        asked.or(match self.max_tokens.load(Ordering::Relaxed) {
            0 => None,
            tokens => Some(tokens),
        })
    }
}

/// How an endpoint writes a local answer as its wire objects (chunks of a
/// stream; the same objects feed the whole answer's assembly where the
/// endpoint needs it).
pub trait AnswerFormat: Send + 'static {
    /// One wire object.
    type Chunk: serde::Serialize + Send + 'static;
    /// The objects opening an answer of `choices` choices, if any.
    fn opening(&mut self, choices: usize) -> Vec<Self::Chunk>;
    /// The objects of one event; never called with [`AnswerEvent::Failed`].
    fn event(&mut self, event: AnswerEvent) -> Vec<Self::Chunk>;
    /// The SSE `event:` name of a chunk, for formats whose clients read it
    /// (the Responses API's and Anthropic's typed events); none by default.
    fn event_name(_chunk: &Self::Chunk) -> Option<&'static str> {
        None
    }
    /// Whether the stream ends with `data: [DONE]` (chat and completions).
    fn ends_with_done(&self) -> bool {
        true
    }
    /// The format's own objects for a failure mid-stream (`None`: the
    /// standard error event).
    fn failure(&mut self, _err: &ApiError) -> Option<Vec<Self::Chunk>> {
        None
    }
    /// Work the stream awaits after the last event's objects are made and
    /// before they are written (a stored response written first, so that a
    /// client reading the last event can already retrieve it); none by
    /// default.
    fn before_last(
        &mut self,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        None
    }
}

/// The logprob sent for a token the engine scored `-inf` (JSON has no
/// infinity, and clients expect a number).
const MIN_LOGPROB: f32 = -9999.0;

/// How every choice of one request is sampled.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `temperature` (default 1).
    pub temperature: Option<f64>,
    /// `top_p` (default 1).
    pub top_p: Option<f64>,
    /// `presence_penalty` (default 0).
    pub presence_penalty: Option<f64>,
    /// `frequency_penalty` (default 0).
    pub frequency_penalty: Option<f64>,
    /// `logit_bias`, as token ids.
    pub logit_bias: Vec<(u32, f32)>,
    /// `seed`: choice `i` uses `seed + i`.
    pub seed: Option<i64>,
    /// The most tokens each choice may generate (`None`: the context's room).
    pub max_tokens: Option<u32>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// `Some(k)`: report each token's logprob and its `k` best alternatives.
    pub logprobs: Option<usize>,
    /// The grammar every choice's output must follow (`response_format`,
    /// tools), if any.
    pub constraint: Option<engine::Constraint>,
}

impl Settings {
    /// The engine request of choice `index` for `prompt`. With a seed,
    /// choice `i` uses `seed + i`, so that choices differ yet repeat.
    fn request(&self, prompt: Vec<u32>, index: u64) -> GenerateRequest {
        let params = SamplingParams {
            temperature: self.temperature.map_or(1.0, |t| t as f32),
            top_p: self.top_p.map_or(1.0, |p| p as f32),
            top_k: 0,
            min_p: 0.0,
            // Wrapping: any i64 seed is a valid seed.
            seed: self.seed.map(|seed| (seed as u64).wrapping_add(index)),
            presence_penalty: self.presence_penalty.unwrap_or(0.0) as f32,
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0) as f32,
            repetition_penalty: 1.0,
            penalty_last_n: usize::MAX,
            logit_bias: self.logit_bias.clone(),
        };
        GenerateRequest {
            prompt,
            params,
            max_tokens: self.max_tokens.map(|limit| limit as usize),
            stop: self.stop.clone(),
            logprobs: self.logprobs,
            ignore_eos: false,
            constraint: self.constraint.clone(),
        }
    }
}

/// `logit_bias` as the engine takes it (validation has checked the keys).
pub fn logit_bias(bias: Option<&BTreeMap<String, f64>>) -> Result<Vec<(u32, f32)>, ApiError> {
    bias.into_iter()
        .flatten()
        .map(|(key, value)| {
            key.parse::<u32>()
                .map(|id| (id, *value as f32))
                .map_err(|_| {
                    ApiError::invalid(
                        "logit_bias",
                        InvalidCode::InvalidValue,
                        format!("Invalid key in 'logit_bias': {key}."),
                    )
                })
        })
        .collect()
}

/// A running generation the server holds, counted in the state's live
/// generations until it is dropped (which cancels it in the engine).
pub struct Tracked {
    generation: Generation,
    live: Arc<AtomicUsize>,
}

impl Tracked {
    fn new(generation: Generation, live: Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Tracked { generation, live }
    }

    /// The next event, or `None` once the generation is over.
    pub async fn next(&mut self) -> Option<Event> {
        self.generation.next().await
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Submits `n` generations per prompt, in choice order (`prompt * n +
/// choice`). If any is refused, the ones already started are dropped
/// (which cancels them) and the refusal is returned; `param` names the
/// field an invalid prompt is about.
pub fn submit_all(
    live: &Arc<AtomicUsize>,
    engine: &EngineHandle,
    prompts: &[Vec<u32>],
    n: u32,
    settings: &Settings,
    param: &'static str,
) -> Result<Vec<Tracked>, Error> {
    let mut generations = Vec::with_capacity(prompts.len() * n as usize);
    for prompt in prompts {
        for _ in 0..n {
            let index = generations.len() as u64;
            let generation = engine
                .submit(settings.request(prompt.clone(), index))
                .map_err(|err| Error::engine(err, param))?;
            generations.push(Tracked::new(generation, live.clone()));
        }
    }
    Ok(generations)
}

/// One generated token, as reported by the engine.
#[derive(Debug, Clone)]
pub struct TokenOut {
    /// The token id.
    pub id: u32,
    /// Its logprob and best alternatives, when asked for.
    pub logprobs: Option<engine::TokenLogprobs>,
}

/// The wire finish reason of an engine one.
pub fn finish_reason(reason: engine::FinishReason) -> api::FinishReason {
    match reason {
        engine::FinishReason::Stop => api::FinishReason::Stop,
        engine::FinishReason::Length => api::FinishReason::Length,
    }
}

/// A token's text as clients see it: its bytes, lossy UTF-8.
pub fn token_text(tokenizer: &Tokenizer, id: u32) -> String {
    String::from_utf8_lossy(tokenizer.token_bytes(id)).into_owned()
}

/// A finite logprob (clients expect a number).
pub fn finite(logprob: f32) -> f32 {
    if logprob.is_finite() {
        logprob
    } else {
        MIN_LOGPROB
    }
}

/// The chat `logprobs.content` entries of `tokens` (those that carry logprobs).
pub fn chat_logprobs(tokenizer: &Tokenizer, tokens: &[TokenOut]) -> Vec<TokenLogprob> {
    tokens
        .iter()
        .filter_map(|token| {
            let logprobs = token.logprobs.as_ref()?;
            let bytes = tokenizer.token_bytes(token.id).to_vec();
            Some(TokenLogprob {
                token: String::from_utf8_lossy(&bytes).into_owned(),
                logprob: finite(logprobs.chosen_logprob),
                bytes: Some(bytes),
                top_logprobs: logprobs
                    .top
                    .iter()
                    .map(|&(id, logprob)| {
                        let bytes = tokenizer.token_bytes(id).to_vec();
                        TopLogprob {
                            token: String::from_utf8_lossy(&bytes).into_owned(),
                            logprob: finite(logprob),
                            bytes: Some(bytes),
                        }
                    })
                    .collect(),
            })
        })
        .collect()
}

/// Saturating `usize` → `u32` for token counts.
pub fn saturate(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}
