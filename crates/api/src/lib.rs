//! The OpenAI wire format, and nothing else: no I/O, no runtime, no engine.
//!
//! - Requests, as OpenAI names them: [`ChatCompletionRequest`],
//!   [`CompletionRequest`], and llama.cpp's [`TokenizeRequest`] /
//!   [`DetokenizeRequest`]. Unknown fields are accepted and ignored.
//! - Responses: [`ChatCompletion`], the streamed [`ChatCompletionChunk`]
//!   (whose `"usage": null` is under the caller's control), [`Completion`],
//!   [`ModelList`], [`TokenizeResponse`], [`DetokenizeResponse`].
//! - [`parse_request`]: body bytes → a validated request, or an
//!   [`ApiError`] naming the `param` as OpenAI does (`temperature`,
//!   `messages[0].role`, …).
//! - [`ApiError`]: every error a client can see, with its OpenAI `type`,
//!   `code` and coarse [`ErrorKind`]; [`ErrorResponse`] is the
//!   `{"error": {message, type, param, code}}` body. Mapping kinds to HTTP
//!   statuses is the `server` crate's job.
//! - [`tools`]: the rules on tools, tool choice, tool turns and
//!   `response_format` that every API taking function tools shares.
//! - The Responses API: [`CreateResponseRequest`] (its input items checked
//!   one by one), [`ResponseObject`], its [`Item`]s and streamed
//!   [`ResponseEvent`]s.
//! - [`stored`]: the `metadata` rules (stored chat completions and
//!   responses alike), stored chat completions' list queries,
//!   pages and deletion objects.
//! - Anthropic's Messages API on the way in: [`MessagesRequest`],
//!   [`AnthropicMessage`], its [`AnthropicEvent`]s and [`AnthropicError`].
//! - [`sse`]: `data: …` framing, the `[DONE]` terminator, error events.
//!
//! The shapes follow the OpenAI API reference and what the `openai` Python
//! SDK accepts under strict response validation (its own generated tests
//! run against `parlance serve`: `crates/cli/tests/`).

mod anthropic;
mod chat;
mod chat_response;
mod common;
mod completion;
mod embeddings;
mod error;
mod models;
mod moderations;
mod parse;
mod responses;
mod responses_object;
pub mod sse;
pub mod stored;
mod tokenize;
pub mod tools;
mod unserved;
mod validate;

pub use anthropic::{
    anthropic_error_type, AnswerBlock, AnthropicError, AnthropicErrorBody, AnthropicEvent,
    AnthropicMessage, AnthropicMetadata, AnthropicTool, AnthropicToolChoice, AnthropicUsage, Block,
    BlockDelta, MessageDelta, MessagesRequest, TokenCount, Turn,
};
pub use chat::{
    ChatCompletionRequest, ChatMessage, ContentPart, FunctionCall, FunctionDefinition,
    FunctionName, JsonSchemaFormat, MessageContent, NamedToolChoice, ResponseFormat, Tool,
    ToolCall, ToolChoice, ToolChoiceMode, ToolType,
};
pub use chat_response::{
    ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionMessage, ChunkChoice,
    ChunkDelta, FunctionCallDelta, ToolCallDelta,
};
pub use common::{
    ChoiceLogprobs, CompletionTokensDetails, FinishReason, PromptTokensDetails, Role, Stop,
    StreamOptions, TokenLogprob, TopLogprob, Usage,
};
pub use completion::{
    Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, Prompt, PromptInput,
};
pub use embeddings::{
    EmbeddingInput, EmbeddingItem, EmbeddingList, EmbeddingRequest, EmbeddingUsage,
    EmbeddingVector, EncodingFormat, MAX_EMBEDDING_INPUTS,
};
pub use error::{
    ApiError, ErrorKind, ErrorObject, ErrorResponse, InvalidCode, RateLimitResource,
    INTERNAL_ERROR_MESSAGE,
};
pub use models::{Model, ModelDeleted, ModelList};
pub use moderations::{
    Moderation, ModerationInput, ModerationRequest, ModerationResult, MAX_MODERATION_INPUTS,
    MODERATION_CATEGORIES, MODERATION_MODELS,
};
pub use parse::{from_json_error, parse_json, parse_request, Field, RequestBody};
pub use responses::{
    check_call_ids, content_text, include_refusal, CreateResponseRequest, ResponseInput,
    ResponseTool, ResponseToolChoice, TextConfig, TextFormat, Truncation, MIN_OUTPUT_TOKENS,
};
pub use responses_object::{
    DeletedResponse, EventBody, IncompleteDetails, InputTokenCount, InputTokensDetails, Item,
    ItemContent, ItemList, OutputTokensDetails, ReasoningText, ResponseError, ResponseEvent,
    ResponseObject, ResponseUsage,
};
pub use sse::{sse_data, sse_done, sse_error, SSE_DONE};
pub use stored::{ChatCompletionDeleted, ChatCompletionUpdate, ListPage};
pub use tokenize::{
    DetokenizeRequest, DetokenizeResponse, Piece, TokenizeRequest, TokenizeResponse, TokenizeToken,
};
pub use validate::{MAX_BEST_OF, MAX_COMPLETION_LOGPROBS, MAX_LOGIT_BIAS, MAX_N, MAX_TOP_LOGPROBS};
