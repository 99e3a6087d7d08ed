//! The llama family (SmolLM2, Llama 3 and kin): pre-norm decoder blocks with
//! RMSNorm, rotary embeddings in GGML's interleaved ("normal") mode (with
//! Llama 3's per-frequency factors from `rope_freqs.weight` when the file
//! has them), grouped-query attention and a SwiGLU feed-forward; the output
//! tied to the embeddings or not.
//!
//! The same decoder, with the variations a [`Variant`] names, serves the
//! families that differ from it only in small ways (`qwen2`: biases on the
//! query, key and value projections and "neox" rotary embeddings; `qwen3`:
//! per-head RMSNorm of queries and keys): their files build it.
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
}

impl Variant {
    pub(crate) const LLAMA: Variant = Variant {
        rope: RopeStyle::Interleaved,
        qkv_bias: false,
        qk_norm: false,
    };
}

/// Optional per-layer extras of a [`Variant`].
struct Extras {
    bias: Option<[Vec<f32>; 3]>,
    qk_norm: Option<[Vec<f32>; 2]>,
}

struct Block {
    attn_norm: Vec<f32>,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    extras: Extras,
    wo: Linear,
    ffn_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
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
        let hd = cfg.head_dim;
        let (d, q_dim, kv_dim, ff) = (
            cfg.n_embd,
            cfg.n_head * cfg.head_dim,
            cfg.kv_dim(),
            cfg.n_ff,
        );
        let blocks = (0..cfg.n_layers)
            .map(|i| {
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
                Ok(Block {
                    attn_norm: layers::load_vector(f, &t("attn_norm"), d)?,
                    wq: Linear::load(f, &t("attn_q"), d, q_dim)?,
                    wk: Linear::load(f, &t("attn_k"), d, kv_dim)?,
                    wv: Linear::load(f, &t("attn_v"), d, kv_dim)?,
                    extras: Extras { bias, qk_norm },
                    wo: Linear::load(f, &t("attn_output"), q_dim, d)?,
                    ffn_norm: layers::load_vector(f, &t("ffn_norm"), d)?,
                    gate: Linear::load(f, &t("ffn_gate"), d, ff)?,
                    up: Linear::load(f, &t("ffn_up"), d, ff)?,
                    down: Linear::load(f, &t("ffn_down"), ff, d)?,
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let embd = Linear::load(f, "token_embd.weight", d, cfg.n_vocab)?;
        let output = match f.tensor("output.weight") {
            Some(_) => Linear::load(f, "output.weight", d, cfg.n_vocab)?,
            None => embd.clone(),
        };
        let base = f
            .get_f32(&format!("{arch}.rope.freq_base"))
            .unwrap_or(10000.0);
        let n_rot = f
            .get_u32(&format!("{arch}.rope.dimension_count"))
            .map_or(cfg.head_dim, |v| v as usize);
        if n_rot == 0 || n_rot > cfg.head_dim || !n_rot.is_multiple_of(2) {
            return Err(EngineError::Model(format!(
                "{arch}.rope.dimension_count is {n_rot}, head size {}",
                cfg.head_dim
            )));
        }
        let mut rope = Rope::new(variant.rope, base, n_rot, cfg.head_dim);
        // Llama 3's long-context scaling: per-frequency divisors.
        if f.tensor("rope_freqs.weight").is_some() {
            rope = rope.with_freq_factors(layers::load_vector(f, "rope_freqs.weight", n_rot / 2)?);
        }
        Ok(Llama {
            output_norm: layers::load_vector(f, "output_norm.weight", d)?,
            rope,
            file,
            cfg,
            embd,
            blocks,
            output,
        })
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
        let mut n = rows.len();
        let orders: Vec<RowOrder> = rows.iter().map(|r| r.order).collect();
        let (d, q_dim, kv_dim) = (c.n_embd, c.n_head * c.head_dim, c.kv_dim());
        let shape = AttnShape {
            n_head: c.n_head,
            n_kv_head: c.n_kv_head,
            head_dim: c.head_dim,
            scale: 1.0 / (c.head_dim as f32).sqrt(),
            window: None,
        };
        let mut x = vec![0.0f32; n * d];
        for (i, r) in rows.iter().enumerate() {
            self.embd
                .row(f, r.token as usize, &mut x[i * d..(i + 1) * d]);
        }
        let mut h = vec![0.0f32; n * d];
        let (mut q, mut k, mut v) = (
            vec![0.0; n * q_dim],
            vec![0.0; n * kv_dim],
            vec![0.0; n * kv_dim],
        );
        let mut att = vec![0.0f32; n * q_dim];
        let (mut g, mut u) = (vec![0.0f32; n * c.n_ff], vec![0.0f32; n * c.n_ff]);
        // Rotary angles depend only on each row's position: once per pass.
        let angles: Vec<_> = rows.iter().map(|r| self.rope.angles(r.pos)).collect();
        let mut out_rows: Option<Vec<BatchRow>> = None;
        for (l, b) in self.blocks.iter().enumerate() {
            // llama.cpp runs the last layer's feed-forward only on the rows
            // that want logits, one per sequence: each sums alone.
            let last = l + 1 == self.blocks.len();
            let ffn_orders: &[RowOrder] = if last { &[] } else { &orders };
            ops::rms_norm_rows(&x, &b.attn_norm, c.rms_eps, &mut h, pool);
            Linear::forward_many(
                f,
                &[&b.wq, &b.wk, &b.wv],
                &h,
                n,
                &orders,
                &mut [&mut q, &mut k, &mut v],
                pool,
            );
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
            pool.for_rows(&mut q[..n * q_dim], q_dim, min, &|i, row| {
                if let Some([qn, _]) = norms {
                    ops::rms_norm_chunks(row, qn, eps);
                }
                self.rope.rotate(row, &angles[i]);
            });
            pool.for_rows(&mut k[..n * kv_dim], kv_dim, min, &|i, row| {
                if let Some([_, kn]) = norms {
                    ops::rms_norm_chunks(row, kn, eps);
                }
                self.rope.rotate(row, &angles[i]);
            });
            layers::store_kv(rows, &k, &v, kv, l)?;
            attention::attention(rows, &q, kv, l, shape, pool, &mut att)?;
            b.wo.forward(f, &att, n, &orders, &mut h, pool);
            if last {
                let mut bufs = [(&mut x, d), (&mut h, d), (&mut g, c.n_ff), (&mut u, c.n_ff)];
                if let Some(kept) = layers::keep_output_rows(rows, &mut bufs) {
                    n = kept.len();
                    out_rows = Some(kept);
                }
            }
            ops::add_in_place(&mut x, &h);
            ops::rms_norm_rows(&x, &b.ffn_norm, c.rms_eps, &mut h, pool);
            Linear::forward_many(
                f,
                &[&b.gate, &b.up],
                &h,
                n,
                ffn_orders,
                &mut [&mut g, &mut u],
                pool,
            );
            ops::glu_rows(ops::swiglu, &mut g, &u, c.n_ff, pool);
            b.down.forward(f, &g, n, ffn_orders, &mut h, pool);
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
        Ok(())
    }
}
