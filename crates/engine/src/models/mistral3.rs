//! The Ministral 3 / Mistral 3 text decoder (`mistral3` GGUFs in llama's
//! tensor layout): llama's decoder with YaRN rotary scaling
//! (`mistral3.rope.scaling.*`) and, when the file names
//! `mistral3.attention.temperature_scale`, queries multiplied per position by
//! `ln(floor(pos / original_context) + 1) * scale + 1` (Llama 4's attention
//! temperature). Mixture-of-experts files are refused.
//!
//! Mistral AI, "Ministral 3" (2025).

use std::sync::Arc;

use gguf::GgufFile;

use super::llama::{Llama, Variant};
use crate::error::EngineError;
use crate::model::ModelConfig;

pub fn load(file: Arc<GgufFile>, cfg: ModelConfig) -> Result<Llama, EngineError> {
    if file.get_u32("mistral3.expert_count").unwrap_or(0) > 0 {
        return Err(EngineError::Model(
            "mistral3 with experts (mixture of experts) is not supported".into(),
        ));
    }
    Llama::load_variant(file, cfg, Variant::LLAMA)
}
