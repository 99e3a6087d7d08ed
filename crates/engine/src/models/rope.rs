//! Rotary embeddings as a GGUF file describes them for llama-shaped
//! decoders: the base, the rotated dimensions, per-frequency factors
//! (Llama 3's `rope_freqs.weight`, Phi-3's LongRoPE `rope_factors_short` /
//! `rope_factors_long`, chosen by the engine's context as llama.cpp chooses
//! them), and context-extension scaling (`rope.scaling.type`
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

/// llama.cpp rounds a context up to a multiple of this (`llama_context`).
const CTX_PAD: usize = 256;

/// Whether LongRoPE's long factors (`rope_factors_long`) serve sequences of
/// up to `n_ctx` positions rather than its short ones: llama.cpp
/// (`llama_model::get_rope_factors`) takes the long factors, for every
/// position, when its per-sequence context, rounded up to a multiple of
/// 256, exceeds the original context `n_ctx_orig`.
pub(crate) fn long_factors(n_ctx: usize, n_ctx_orig: usize) -> bool {
    n_ctx.div_ceil(CTX_PAD) * CTX_PAD > n_ctx_orig
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
    // Per-frequency divisors: Llama 3's long-context scaling, else
    // LongRoPE's factors for the engine's context (short up to the original
    // length, long beyond it).
    let longrope = if long_factors(cfg.n_ctx, n_ctx_orig(f, cfg)) {
        "rope_factors_long.weight"
    } else {
        "rope_factors_short.weight"
    };
    for name in ["rope_freqs.weight", longrope] {
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

#[cfg(test)]
mod tests {
    use super::long_factors;

    #[test]
    fn long_factors_only_beyond_the_original_context_rounded_as_llama_cpp_does() {
        // Phi-3.5 mini: 4096 original positions.
        assert!(!long_factors(512, 4096));
        assert!(!long_factors(4096, 4096));
        assert!(long_factors(4097, 4096));
        assert!(long_factors(8192, 4096));
        assert!(long_factors(131_072, 4096));
        // llama.cpp rounds the context up to 256 first: 32 positions count
        // as 256, above a 16-position original context, not above 1024.
        assert!(long_factors(32, 16));
        assert!(!long_factors(32, 1024));
        assert!(!long_factors(1024, 1024));
        assert!(long_factors(1025, 1024));
        // An original context off the 256 grid: 200 positions count as 256.
        assert!(long_factors(200, 250));
        assert!(!long_factors(200, 256));
    }
}
