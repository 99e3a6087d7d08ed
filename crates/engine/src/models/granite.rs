//! The Granite family (IBM Granite 3.x dense models): llama's decoder with
//! four multipliers from the file: the embeddings scaled by
//! `granite.embedding_scale`, each block's attention and feed-forward output
//! by `granite.residual_scale` before the residual add, attention scores by
//! `granite.attention.scale` (instead of 1/sqrt(head size)), and the logits
//! divided by `granite.logit_scale`; `granite.rope.scaling.finetuned = false`
//! turns rotary embeddings off.
//!
//! Granite Team, IBM, "Granite 3.0 Language Models" (2024).

use std::sync::Arc;

use gguf::GgufFile;

use super::llama::{Llama, Variant};
use crate::error::EngineError;
use crate::model::ModelConfig;

pub fn load(file: Arc<GgufFile>, cfg: ModelConfig) -> Result<Llama, EngineError> {
    let variant = Variant {
        multipliers: true,
        ..Variant::LLAMA
    };
    Llama::load_variant(file, cfg, variant)
}
