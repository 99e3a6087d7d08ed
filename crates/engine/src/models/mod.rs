//! One file per model family, each a `Forward` implementation (the
//! llama-shaped ones build [`llama::Llama`] with their [`llama`] variant;
//! [`rope`] reads their rotary embeddings from the file).

pub mod gemma3;
pub mod gemma4;
pub mod granite;
pub mod llama;
pub mod mistral3;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
pub mod qwen35;
pub(crate) mod rope;
pub mod smollm3;
