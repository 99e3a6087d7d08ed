//! The llama family (SmolLM2, Llama 3 and kin): pre-norm decoder blocks with
//! RMSNorm, rotary embeddings in GGML's interleaved ("normal") mode (with
//! Llama 3's per-frequency factors from `rope_freqs.weight` when the file
//! has them), grouped-query attention and a SwiGLU feed-forward; the output
//! tied to the embeddings or not.
//!
//! The same decoder, with the variations a [`Variant`] names, serves the
//! families that differ from it only in small ways (`qwen2`: biases on the
//! query, key and value projections and "neox" rotary embeddings; `qwen3`:
//! per-head RMSNorm of queries and keys; `phi3`: fused projections;
//! `granite`: multipliers; `smollm3`: layers without rotary embeddings;
//! `mistral3`: YaRN and an attention temperature): their files build it.
//! Rotary scaling (Llama 3 factors, LongRoPE, YaRN) is read by
//! [`super::rope`] for all of them.
//!
//! Touvron et al., "LLaMA: Open and Efficient Foundation Language Models" (2023).

use std::sync::Arc;

use gguf::GgufFile;
use kernels::{RowOrder, ThreadPool};

use crate::attention::{self, AttnShape};
use crate::error::EngineError;
use crate::kv::KvCache;
use crate::layers::{self, BatchRow, Linear};
use crate::model::{Forward, ModelConfig};
use crate::ops::{self, Rope, RopeStyle};

use super::rope;

/// How a family's decoder differs from llama's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Variant {
    /// How rotary embeddings pair dimensions.
    pub rope: RopeStyle,
    /// The query, key and value projections have biases (`attn_q.bias`…).
    pub qkv_bias: bool,
    /// Queries and keys are RMS-normalised per head before the rotation
    /// (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// One `ffn_up` of twice the feed-forward width holds the gate's rows,
    /// then the up projection's (Phi-3).
    pub fused_gate_up: bool,
    /// Layer `i` has no rotary embeddings when `(i + 1) % step == 0`
    /// (SmolLM3's NoPE layers).
    pub no_rope_step: Option<usize>,
    /// The file's embedding, residual, attention and logit multipliers
    /// apply (Granite).
    pub multipliers: bool,
    /// Queries are scaled by 1/sqrt(head size) before attention rather than
    /// inside it (Phi-3's graph).
    pub prescale_q: bool,
}

impl Variant {
    pub(crate) const LLAMA: Variant = Variant {
        rope: RopeStyle::Interleaved,
        qkv_bias: false,
        qk_norm: false,
        fused_gate_up: false,
        no_rope_step: None,
        multipliers: false,
        prescale_q: false,
    };
}

/// Optional per-layer extras of a [`Variant`].
struct Extras {
    bias: Option<[Vec<f32>; 3]>,
    qk_norm: Option<[Vec<f32>; 2]>,
}

/// The query, key and value projections: three matrices, or one
/// (`attn_qkv`, rows of queries then keys then values).
enum Qkv {
    Split([Linear; 3]),
    Fused(Linear),
}

/// The feed-forward's gate and up projections: two matrices, or one.
enum GateUp {
    Split([Linear; 2]),
    Fused(Linear),
}

struct Block {
    attn_norm: Vec<f32>,
    qkv: Qkv,
    extras: Extras,
    wo: Linear,
    ffn_norm: Vec<f32>,
    gate_up: GateUp,
    down: Linear,
    /// Whether this layer rotates queries and keys.
    rope: bool,
}

/// Granite's multipliers, read from the file (1 where a key is absent).
#[derive(Debug, Clone, Copy)]
struct Multipliers {
    embedding: Option<f32>,
    residual: Option<f32>,
    /// Replaces 1/sqrt(head size) as the attention scale.
    attention: Option<f32>,
    /// Logits are divided by it.
    logit: Option<f32>,
}

impl Multipliers {
    const NONE: Multipliers = Multipliers {
        embedding: None,
        residual: None,
        attention: None,
        logit: None,
    };

    fn read(f: &GgufFile, arch: &str) -> Self {
        let get = |k: &str| f.get_f32(&format!("{arch}.{k}")).filter(|v| *v != 0.0);
        Multipliers {
            embedding: get("embedding_scale"),
            residual: get("residual_scale"),
            attention: get("attention.scale"),
            logit: get("logit_scale"),
        }
    }
}

pub struct Llama {
    file: Arc<GgufFile>,
    cfg: ModelConfig,
    embd: Linear,
    blocks: Vec<Block>,
    output_norm: Vec<f32>,
    /// The output projection; the embedding matrix itself when the model ties them.
    output: Linear,
    rope: Rope,
    variant: Variant,
    mult: Multipliers,
    /// Per-position query multiplier (Llama 4 / Ministral 3 attention
    /// temperature): `ln(floor(pos / floor_scale) + 1) * scale + 1`.
    attn_temp: Option<(f32, f32)>,
}

impl Llama {
    pub fn load(file: Arc<GgufFile>, cfg: ModelConfig) -> Result<Self, EngineError> {
        Self::load_variant(file, cfg, Variant::LLAMA)
    }

    /// Loads a decoder of llama's shape with `variant`'s differences; the
    /// metadata keys are read under the file's own architecture prefix.
    pub(crate) fn load_variant(
        file: Arc<GgufFile>,
        cfg: ModelConfig,
        variant: Variant,
    ) -> Result<Self, EngineError> {
        let f = &*file;
        let arch = cfg.arch.clone();
        let blocks = (0..cfg.n_layers)
            .map(|i| load_block(f, &cfg, variant, i))
            .collect::<Result<Vec<_>, EngineError>>()?;
        let d = cfg.n_embd;
        let (embd, output) = super::embedding_and_output(f, d, cfg.n_vocab)?;
        let rope = rope::load(f, &cfg, variant.rope)?;
        let attn_temp = f
            .get_f32(&format!("{arch}.attention.temperature_scale"))
            .filter(|s| *s != 0.0)
            .map(|s| (s, rope::n_ctx_orig(f, &cfg) as f32));
        Ok(Llama {
            output_norm: layers::load_vector(f, "output_norm.weight", d)?,
            rope,
            mult: if variant.multipliers {
                Multipliers::read(f, &arch)
            } else {
                Multipliers::NONE
            },
            attn_temp,
            variant,
            file,
            cfg,
            embd,
            blocks,
            output,
        })
    }
}

/// Layer `i`'s weights.
fn load_block(
    f: &GgufFile,
    cfg: &ModelConfig,
    variant: Variant,
    i: usize,
) -> Result<Block, EngineError> {
    let hd = cfg.head_dim;
    let (d, q_dim, kv_dim, ff) = (cfg.n_embd, cfg.n_head * hd, cfg.kv_dim(), cfg.n_ff);
    let t = |n: &str| format!("blk.{i}.{n}.weight");
    let b = |n: &str| format!("blk.{i}.{n}.bias");
    let bias = if variant.qkv_bias {
        Some([
            layers::load_vector(f, &b("attn_q"), q_dim)?,
            layers::load_vector(f, &b("attn_k"), kv_dim)?,
            layers::load_vector(f, &b("attn_v"), kv_dim)?,
        ])
    } else {
        None
    };
    let qk_norm = if variant.qk_norm {
        Some([
            layers::load_vector(f, &t("attn_q_norm"), hd)?,
            layers::load_vector(f, &t("attn_k_norm"), hd)?,
        ])
    } else {
        None
    };
    // Any family's converter may fuse the three projections (llama.cpp
    // accepts either layout wherever it builds them).
    let qkv = if f.tensor(&t("attn_qkv")).is_some() {
        Qkv::Fused(Linear::load(f, &t("attn_qkv"), d, q_dim + 2 * kv_dim)?)
    } else {
        Qkv::Split([
            Linear::load(f, &t("attn_q"), d, q_dim)?,
            Linear::load(f, &t("attn_k"), d, kv_dim)?,
            Linear::load(f, &t("attn_v"), d, kv_dim)?,
        ])
    };
    let gate_up = if variant.fused_gate_up {
        GateUp::Fused(Linear::load(f, &t("ffn_up"), d, 2 * ff)?)
    } else {
        GateUp::Split([
            Linear::load(f, &t("ffn_gate"), d, ff)?,
            Linear::load(f, &t("ffn_up"), d, ff)?,
        ])
    };
    let no_rope = variant
        .no_rope_step
        .is_some_and(|s| (i + 1).is_multiple_of(s));
    // Granite turns rotary embeddings off with `rope.scaling.finetuned = false`.
    let finetuned = f
        .get_bool(&format!("{}.rope.scaling.finetuned", cfg.arch))
        .unwrap_or(true);
    Ok(Block {
        attn_norm: layers::load_vector(f, &t("attn_norm"), d)?,
        qkv,
        extras: Extras { bias, qk_norm },
        wo: Linear::load(f, &t("attn_output"), q_dim, d)?,
        ffn_norm: layers::load_vector(f, &t("ffn_norm"), d)?,
        gate_up,
        down: Linear::load(f, &t("ffn_down"), ff, d)?,
        rope: !no_rope && (finetuned || !variant.multipliers),
    })
}

/// Copies each row of a fused projection's output (`n` rows, the parts'
/// widths side by side) into its parts: `(buffer, width)` each.
fn split_rows(fused: &[f32], n: usize, outs: &mut [(&mut Vec<f32>, usize)]) {
    let total: usize = outs.iter().map(|(_, w)| w).sum();
    for r in 0..n {
        let mut at = r * total;
        for (o, w) in outs.iter_mut() {
            let w = *w;
            o[r * w..(r + 1) * w].copy_from_slice(&fused[at..at + w]);
            at += w;
        }
    }
}

impl Forward for Llama {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn forward(
        &self,
        rows: &[BatchRow],
        kv: &mut KvCache,
        pool: &ThreadPool,
        logits: &mut Vec<f32>,
    ) -> Result<(), EngineError> {
        let f = &*self.file;
        let c = &self.cfg;
        let m = self.mult;
        let mut n = rows.len();
        let orders: Vec<RowOrder> = rows.iter().map(|r| r.order).collect();
        let (d, q_dim, kv_dim, ff) = (c.n_embd, c.n_head * c.head_dim, c.kv_dim(), c.n_ff);
        let default_scale = 1.0 / (c.head_dim as f32).sqrt();
        let shape = AttnShape {
            n_head: c.n_head,
            n_kv_head: c.n_kv_head,
            head_dim: c.head_dim,
            scale: if self.variant.prescale_q {
                1.0
            } else {
                m.attention.unwrap_or(default_scale)
            },
            window: None,
        };
        let mut x = vec![0.0f32; n * d];
        for (i, r) in rows.iter().enumerate() {
            let xi = &mut x[i * d..(i + 1) * d];
            self.embd.row(f, r.token as usize, xi);
            if let Some(s) = m.embedding {
                xi.iter_mut().for_each(|v| *v *= s);
            }
        }
        let mut h = vec![0.0f32; n * d];
        let (mut q, mut k, mut v) = (
            vec![0.0; n * q_dim],
            vec![0.0; n * kv_dim],
            vec![0.0; n * kv_dim],
        );
        let mut fused = Vec::new();
        let mut att = vec![0.0f32; n * q_dim];
        let (mut g, mut u) = (vec![0.0f32; n * ff], vec![0.0f32; n * ff]);
        // Rotary angles depend only on each row's position: once per pass.
        let angles: Vec<_> = rows.iter().map(|r| self.rope.angles(r.pos)).collect();
        let temps: Option<Vec<f32>> = self.attn_temp.map(|(scale, floor)| {
            rows.iter()
                .map(|r| {
                    let t = f64::from((r.pos as f32 / floor).floor()) + 1.0;
                    (t.ln() * f64::from(scale) + 1.0) as f32
                })
                .collect()
        });
        let mut out_rows: Option<Vec<BatchRow>> = None;
        for (l, b) in self.blocks.iter().enumerate() {
            // llama.cpp runs the last layer's feed-forward only on the rows
            // that want logits, one per sequence: each sums alone.
            let last = l + 1 == self.blocks.len();
            let ffn_orders: &[RowOrder] = if last { &[] } else { &orders };
            ops::rms_norm_rows(&x, &b.attn_norm, c.rms_eps, &mut h, pool);
            match &b.qkv {
                Qkv::Split([wq, wk, wv]) => Linear::forward_many(
                    f,
                    &[wq, wk, wv],
                    &h,
                    n,
                    &orders,
                    &mut [&mut q, &mut k, &mut v],
                    pool,
                ),
                Qkv::Fused(w) => {
                    fused.resize(n * (q_dim + 2 * kv_dim), 0.0);
                    w.forward(f, &h, n, &orders, &mut fused, pool);
                    split_rows(
                        &fused,
                        n,
                        &mut [(&mut q, q_dim), (&mut k, kv_dim), (&mut v, kv_dim)],
                    );
                }
            }
            if let Some([bq, bk, bv]) = &b.extras.bias {
                for (buf, bias) in [(&mut q, bq), (&mut k, bk), (&mut v, bv)] {
                    for row in buf[..n * bias.len()].chunks_exact_mut(bias.len()) {
                        ops::add_in_place(row, bias);
                    }
                }
            }
            let norms = b.extras.qk_norm.as_ref();
            let eps = c.rms_eps;
            let min = ops::MIN_PARALLEL_ROWS;
            let prescale = self.variant.prescale_q.then_some(default_scale);
            let temps = temps.as_deref();
            pool.for_rows(&mut q[..n * q_dim], q_dim, min, &|i, row| {
                if let Some([qn, _]) = norms {
                    ops::rms_norm_chunks(row, qn, eps);
                }
                if b.rope {
                    self.rope.rotate(row, &angles[i]);
                }
                if let Some(s) = prescale {
                    row.iter_mut().for_each(|v| *v *= s);
                }
                if let Some(t) = temps {
                    row.iter_mut().for_each(|v| *v *= t[i]);
                }
            });
            pool.for_rows(&mut k[..n * kv_dim], kv_dim, min, &|i, row| {
                if let Some([_, kn]) = norms {
                    ops::rms_norm_chunks(row, kn, eps);
                }
                if b.rope {
                    self.rope.rotate(row, &angles[i]);
                }
            });
            layers::store_kv(rows, &k, &v, kv, l)?;
            attention::attention(rows, &q, kv, l, shape, pool, &mut att)?;
            b.wo.forward(f, &att, n, &orders, &mut h, pool);
            if last {
                let mut bufs = [(&mut x, d), (&mut h, d), (&mut g, ff), (&mut u, ff)];
                if let Some(kept) = layers::keep_output_rows(rows, &mut bufs) {
                    n = kept.len();
                    out_rows = Some(kept);
                }
            }
            if let Some(s) = m.residual {
                h.iter_mut().for_each(|v| *v *= s);
            }
            ops::add_in_place(&mut x, &h);
            ops::rms_norm_rows(&x, &b.ffn_norm, c.rms_eps, &mut h, pool);
            match &b.gate_up {
                GateUp::Split([gate, up]) => Linear::forward_many(
                    f,
                    &[gate, up],
                    &h,
                    n,
                    ffn_orders,
                    &mut [&mut g, &mut u],
                    pool,
                ),
                GateUp::Fused(w) => {
                    fused.resize(n * 2 * ff, 0.0);
                    w.forward(f, &h, n, ffn_orders, &mut fused, pool);
                    split_rows(&fused, n, &mut [(&mut g, ff), (&mut u, ff)]);
                }
            }
            ops::glu_rows(ops::swiglu, &mut g, &u, ff, pool);
            b.down.forward(f, &g, n, ffn_orders, &mut h, pool);
            if let Some(s) = m.residual {
                h.iter_mut().for_each(|v| *v *= s);
            }
            ops::add_in_place(&mut x, &h);
        }
        layers::output_logits(
            f,
            out_rows.as_deref().unwrap_or(rows),
            &x,
            &self.output_norm,
            c.rms_eps,
            &self.output,
            pool,
            logits,
        );
        if let Some(s) = m.logit {
            let inv = 1.0 / s;
            logits.iter_mut().for_each(|v| *v *= inv);
        }
        Ok(())
    }
}
