//! One file per model family, each a `Forward` implementation.

pub mod gemma3;
pub mod llama;
pub mod qwen2;
pub mod qwen3;
