//! The SmolLM3 family: llama's decoder in which every fourth layer (layers
//! 3, 7, 11, … counting from 0) attends without rotary embeddings ("NoPE"
//! layers; llama.cpp fixes the interval at 4, the GGUF does not carry it).
//!
//! Hugging Face, "SmolLM3: smol, multilingual, long-context reasoner" (2025).

use std::sync::Arc;

use gguf::GgufFile;

use super::llama::{Llama, Variant};
use crate::error::EngineError;
use crate::model::ModelConfig;

/// Layer `i` has no rotary embeddings when `(i + 1) % NO_ROPE_LAYER_STEP == 0`.
const NO_ROPE_LAYER_STEP: usize = 4;

pub fn load(file: Arc<GgufFile>, cfg: ModelConfig) -> Result<Llama, EngineError> {
    let variant = Variant {
        no_rope_step: Some(NO_ROPE_LAYER_STEP),
        ..Variant::LLAMA
    };
    Llama::load_variant(file, cfg, variant)
}
