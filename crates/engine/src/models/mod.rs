//! One file per model family, each a `Forward` implementation.

pub mod gemma3;
pub mod llama;
