//! The Qwen 3 family (dense models): llama's decoder with per-head RMSNorm
//! of queries and keys before rotary embeddings in GGML's "neox" (halves)
//! mode, and no projection biases; the head size is the file's
//! `qwen3.attention.key_length`, not necessarily width / heads.
//!
//! Qwen Team, "Qwen3 Technical Report" (2025).

use std::sync::Arc;

use gguf::GgufFile;

use super::llama::{Llama, Variant};
use crate::error::EngineError;
use crate::model::ModelConfig;
use crate::ops::RopeStyle;

pub fn load(file: Arc<GgufFile>, cfg: ModelConfig) -> Result<Llama, EngineError> {
    let variant = Variant {
        rope: RopeStyle::Halves,
        qkv_bias: false,
        qk_norm: true,
        ..Variant::LLAMA
    };
    Llama::load_variant(file, cfg, variant)
}
