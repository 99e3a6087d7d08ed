//! The Phi-3 family (Phi-3, Phi-3.5 and Phi-4 mini): llama's decoder with
//! the query, key and value projections fused into one `attn_qkv` matrix,
//! the feed-forward's gate and up projections fused into one `ffn_up` (gate
//! rows first), rotary embeddings in GGML's "neox" (halves) mode with
//! LongRoPE's per-frequency factors and magnitude (`rope_factors_short`,
//! `phi3.rope.scaling.attn_factor`), and queries scaled by 1/sqrt(head size)
//! before attention, as llama.cpp's graph does.
//!
//! Abdin et al., "Phi-3 Technical Report" (2024).

use std::sync::Arc;

use gguf::GgufFile;

use super::llama::{Llama, Variant};
use crate::error::EngineError;
use crate::model::ModelConfig;
use crate::ops::RopeStyle;

pub fn load(file: Arc<GgufFile>, cfg: ModelConfig) -> Result<Llama, EngineError> {
    // llama.cpp ignores Phi's sliding window (the converters' metadata for
    // it is unreliable) and attends to the whole context.
    let cfg = ModelConfig {
        sliding_window: None,
        ..cfg
    };
    let variant = Variant {
        rope: RopeStyle::Halves,
        fused_gate_up: true,
        prescale_q: true,
        ..Variant::LLAMA
    };
    Llama::load_variant(file, cfg, variant)
}
