//! The inference engine: loads a GGUF model, runs its forward pass on the CPU
//! with our own kernels, and serves generations from its own thread.
//!
//! It owns model loading, the model families (`models/`), the block KV cache,
//! the scheduler and the `EngineHandle` callers talk to. It knows nothing of
//! HTTP, accounts or money. Tokenization and chat templates come from the
//! `tokenizer` crate, sampling and stop strings from `sampling`, matmul kernels
//! from `kernels`.

pub mod attention;
mod error;
mod handle;
pub mod kv;
pub mod latency;
pub mod layers;
pub mod model;
mod models;
pub mod ops;
mod pacing;
pub mod perplexity;
mod request;
mod scheduler;
mod sequence;
mod stats;

pub use error::{EngineError, ErrorKind};
pub use handle::{EngineConfig, EngineHandle, Generation, ModelInfo};
pub use kernels::ThreadPool;
pub use latency::{Histogram, BUCKET_BOUNDS_SECONDS};
pub use model::{Model, ModelConfig};
pub use request::{Event, FinishReason, GenerateRequest, Usage};
pub use sampling::{Constraint, ConstraintFactory, SamplingParams, TokenConstraint, TokenLogprobs};
pub use stats::EngineStats;
pub use tokenizer::{ChatMessage, ChatTemplate, Tokenizer};
