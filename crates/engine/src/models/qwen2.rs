//! The Qwen 2 family (Qwen2, Qwen2.5, DeepSeek-R1 distills of Qwen): llama's
//! decoder with biases on the query, key and value projections and rotary
//! embeddings in GGML's "neox" (halves) mode; the output tied or not.
//!
//! Yang et al., "Qwen2 Technical Report" (2024).

use std::sync::Arc;

use gguf::GgufFile;

use super::llama::{Llama, Variant};
use crate::error::EngineError;
use crate::model::ModelConfig;
use crate::ops::RopeStyle;

pub fn load(file: Arc<GgufFile>, cfg: ModelConfig) -> Result<Llama, EngineError> {
    let variant = Variant {
        rope: RopeStyle::Halves,
        qkv_bias: true,
        qk_norm: false,
        ..Variant::LLAMA
    };
    Llama::load_variant(file, cfg, variant)
}
