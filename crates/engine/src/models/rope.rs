//! Rotary embeddings as a GGUF file describes them for llama-shaped
//! decoders: the base, the rotated dimensions, per-frequency factors
//! (Llama 3's `rope_freqs.weight`, Phi-3's LongRoPE `rope_factors_short` /
//! `rope_factors_long`), and context-extension scaling (`rope.scaling.type`
//! linear or YaRN, `rope.scaling.attn_factor`), read the way llama.cpp
//! (`llama_model::load_hparams`, `llama_context`'s YaRN set-up) reads them.
//!
//! Peng et al., "YaRN: Efficient Context Window Extension of Large Language
//! Models" (2023); Ding et al., "LongRoPE" (2024).

use gguf::GgufFile;

use crate::error::EngineError;
use crate::layers;
use crate::model::ModelConfig;
use crate::ops::{Rope, RopeScaling, RopeStyle};

/// The context length the rotary scaling was trained around
/// (`rope.scaling.original_context_length`, else the training context).
pub(crate) fn n_ctx_orig(f: &GgufFile, cfg: &ModelConfig) -> usize {
    f.get_u32(&format!(
        "{}.rope.scaling.original_context_length",
        cfg.arch
    ))
    .map_or(cfg.n_ctx_train, |v| v as usize)
}

/// The rotation `cfg.arch`'s keys describe.
pub(crate) fn load(f: &GgufFile, cfg: &ModelConfig, style: RopeStyle) -> Result<Rope, EngineError> {
    let arch = &cfg.arch;
    let key = |k: &str| format!("{arch}.{k}");
    let base = f.get_f32(&key("rope.freq_base")).unwrap_or(10000.0);
    let n_rot = f
        .get_u32(&key("rope.dimension_count"))
        .map_or(cfg.head_dim, |v| v as usize);
    if n_rot == 0 || n_rot > cfg.head_dim || !n_rot.is_multiple_of(2) {
        return Err(EngineError::Model(format!(
            "{arch}.rope.dimension_count is {n_rot}, head size {}",
            cfg.head_dim
        )));
    }
    let mut rope = Rope::new(style, base, n_rot, cfg.head_dim);
    // Llama 3's long-context scaling: per-frequency divisors. LongRoPE's
    // short factors serve contexts up to the original length, which is what
    // the engine runs (its context is at most the training length and the
    // long factors would serve only beyond the original one).
    for name in ["rope_freqs.weight", "rope_factors_short.weight"] {
        if f.tensor(name).is_some() {
            rope = rope.with_freq_factors(layers::load_vector(f, name, n_rot / 2)?);
            break;
        }
    }
    let kind = f.get_str(&key("rope.scaling.type")).unwrap_or("linear");
    let factor = f
        .get_f32(&key("rope.scaling.factor"))
        .filter(|v| *v != 0.0)
        .unwrap_or(1.0);
    let mut scaling = RopeScaling::NONE;
    match kind {
        "none" => {}
        "linear" | "longrope" => scaling.freq_scale = 1.0 / factor,
        "yarn" => {
            scaling.freq_scale = 1.0 / factor;
            scaling.ext_factor = 1.0;
            let beta_fast = f.get_f32(&key("rope.scaling.yarn_beta_fast")).unwrap_or(32.0);
            let beta_slow = f.get_f32(&key("rope.scaling.yarn_beta_slow")).unwrap_or(1.0);
            scaling.corr_dims =
                RopeScaling::yarn_corr_dims(n_rot, n_ctx_orig(f, cfg), base, beta_fast, beta_slow);
            // llama_context's YaRN magnitude, which cancels rope_yarn's own
            // `1 + 0.1 ln(factor)` unless `yarn_log_multiplier` says otherwise.
            let mscale = |m: f32| if factor <= 1.0 { 1.0 } else { 0.1 * m * factor.ln() + 1.0 };
            let log_mul = f
                .get_f32(&key("rope.scaling.yarn_log_multiplier"))
                .unwrap_or(0.0);
            scaling.attn_factor = if log_mul != 0.0 {
                mscale(1.0) / mscale(log_mul)
            } else {
                mscale(1.0)
            };
            scaling.attn_factor *= 1.0 / (1.0 + 0.1 * factor.ln());
        }
        other => {
            return Err(EngineError::Model(format!(
                "{arch}.rope.scaling.type '{other}' is not supported (supported: none, linear, yarn, longrope)"
            )))
        }
    }
    if let Some(a) = f.get_f32(&key("rope.scaling.attn_factor")) {
        scaling.attn_factor *= a;
    }
    Ok(rope.with_scaling(scaling))
}
