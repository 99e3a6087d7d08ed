//! The Gemma 3 family: RMSNorm before and after both attention and the
//! feed-forward, per-head RMSNorm of queries and keys, rotary embeddings in
//! GGML's "neox" (halves) mode with a separate base for local layers, local
//! sliding-window layers interleaved with global ones (five local to one
//! global), query scaling by 1/sqrt(head size), a GELU-tanh gated feed-forward,
//! embeddings scaled by sqrt(width), and the output tied to the embeddings.
//!
//! Gemma Team, "Gemma 3 Technical Report" (2025).

use std::sync::Arc;

use gguf::GgufFile;
use kernels::{RowOrder, ThreadPool};

use crate::attention::{self, AttnShape};
use crate::error::EngineError;
use crate::kv::KvCache;
use crate::layers::{self, BatchRow, Linear};
use crate::model::{Forward, ModelConfig};
use crate::ops::{self, Rope, RopeStyle};

/// RoPE base of the local (sliding-window) layers when the file does not say.
const DEFAULT_LOCAL_ROPE_BASE: f32 = 10_000.0;
/// One global layer follows every five local ones when the file does not say.
const DEFAULT_SWA_PATTERN: usize = 6;

struct Block {
    attn_norm: Vec<f32>,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    wo: Linear,
    post_attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: Vec<f32>,
    /// Local layers attend only to the last `window` positions.
    local: bool,
}

pub struct Gemma3 {
    file: Arc<GgufFile>,
    cfg: ModelConfig,
    embd: Linear,
    blocks: Vec<Block>,
    output_norm: Vec<f32>,
    output: Linear,
    rope_global: Rope,
    rope_local: Rope,
    window: Option<usize>,
}

impl Gemma3 {
    pub fn load(file: Arc<GgufFile>, cfg: ModelConfig) -> Result<Self, EngineError> {
        let f = &*file;
        let (d, hd, ff) = (cfg.n_embd, cfg.head_dim, cfg.n_ff);
        let (q_dim, kv_dim) = (cfg.n_head * hd, cfg.kv_dim());
        let window = f
            .get_u32("gemma3.attention.sliding_window")
            .filter(|w| *w > 0)
            .map(|w| w as usize);
        let pattern = f
            .get_u32("gemma3.attention.sliding_window_pattern")
            .map_or(DEFAULT_SWA_PATTERN, |p| p as usize)
            .max(1);
        let blocks = (0..cfg.n_layers)
            .map(|i| {
                let t = |n: &str| format!("blk.{i}.{n}.weight");
                Ok(Block {
                    attn_norm: layers::load_vector(f, &t("attn_norm"), d)?,
                    wq: Linear::load(f, &t("attn_q"), d, q_dim)?,
                    wk: Linear::load(f, &t("attn_k"), d, kv_dim)?,
                    wv: Linear::load(f, &t("attn_v"), d, kv_dim)?,
                    q_norm: layers::load_vector(f, &t("attn_q_norm"), hd)?,
                    k_norm: layers::load_vector(f, &t("attn_k_norm"), hd)?,
                    wo: Linear::load(f, &t("attn_output"), q_dim, d)?,
                    post_attn_norm: layers::load_vector(f, &t("post_attention_norm"), d)?,
                    ffn_norm: layers::load_vector(f, &t("ffn_norm"), d)?,
                    gate: Linear::load(f, &t("ffn_gate"), d, ff)?,
                    up: Linear::load(f, &t("ffn_up"), d, ff)?,
                    down: Linear::load(f, &t("ffn_down"), ff, d)?,
                    post_ffn_norm: layers::load_vector(f, &t("post_ffw_norm"), d)?,
                    local: window.is_some() && i % pattern < pattern - 1,
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let (embd, output) = super::embedding_and_output(f, d, cfg.n_vocab)?;
        let base = f.get_f32("gemma3.rope.freq_base").unwrap_or(10_000.0);
        let local_base = f
            .get_f32("gemma3.rope.freq_base_swa")
            .unwrap_or(DEFAULT_LOCAL_ROPE_BASE);
        Ok(Gemma3 {
            output_norm: layers::load_vector(f, "output_norm.weight", d)?,
            rope_global: Rope::new(RopeStyle::Halves, base, hd, hd),
            rope_local: Rope::new(RopeStyle::Halves, local_base, hd, hd),
            window,
            file,
            cfg,
            embd,
            blocks,
            output,
        })
    }
}

impl Forward for Gemma3 {
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
        let (d, hd) = (c.n_embd, c.head_dim);
        let (q_dim, kv_dim) = (c.n_head * hd, c.kv_dim());
        let eps = c.rms_eps;
        let embd_scale = (d as f32).sqrt();
        let mut x = vec![0.0f32; n * d];
        for (i, r) in rows.iter().enumerate() {
            let xi = &mut x[i * d..(i + 1) * d];
            self.embd.row(f, r.token as usize, xi);
            xi.iter_mut().for_each(|v| *v *= embd_scale);
        }
        let (mut h, mut o) = (vec![0.0f32; n * d], vec![0.0f32; n * d]);
        let (mut q, mut k, mut v) = (
            vec![0.0; n * q_dim],
            vec![0.0; n * kv_dim],
            vec![0.0; n * kv_dim],
        );
        let mut att = vec![0.0f32; n * q_dim];
        let (mut g, mut u) = (vec![0.0f32; n * c.n_ff], vec![0.0f32; n * c.n_ff]);
        let q_scale = 1.0 / (hd as f32).sqrt();
        // Rotary angles depend only on each row's position: once per pass.
        let local_angles: Vec<_> = rows.iter().map(|r| self.rope_local.angles(r.pos)).collect();
        let mut out_rows: Option<Vec<BatchRow>> = None;
        let global_angles: Vec<_> = rows
            .iter()
            .map(|r| self.rope_global.angles(r.pos))
            .collect();
        for (l, b) in self.blocks.iter().enumerate() {
            // llama.cpp runs the last layer's feed-forward only on the rows
            // that want logits, one per sequence: each sums alone.
            let last = l + 1 == self.blocks.len();
            let ffn_orders: &[RowOrder] = if last { &[] } else { &orders };
            let (rope, angles, window) = if b.local {
                (&self.rope_local, &local_angles, self.window)
            } else {
                (&self.rope_global, &global_angles, None)
            };
            ops::rms_norm_rows(&x, &b.attn_norm, eps, &mut h, pool);
            Linear::forward_many(
                f,
                &[&b.wq, &b.wk, &b.wv],
                &h,
                n,
                &orders,
                &mut [&mut q, &mut k, &mut v],
                pool,
            );
            // Per row: the heads' norms, the rotation, and (queries) the scale.
            let min = ops::MIN_PARALLEL_ROWS;
            pool.for_rows(&mut q[..n * q_dim], q_dim, min, &|i, row| {
                ops::rms_norm_chunks(row, &b.q_norm, eps);
                rope.rotate(row, &angles[i]);
                row.iter_mut().for_each(|v| *v *= q_scale);
            });
            pool.for_rows(&mut k[..n * kv_dim], kv_dim, min, &|i, row| {
                ops::rms_norm_chunks(row, &b.k_norm, eps);
                rope.rotate(row, &angles[i]);
            });
            layers::store_kv(rows, &k, &v, kv, l)?;
            let shape = AttnShape {
                n_head: c.n_head,
                n_kv_head: c.n_kv_head,
                head_dim: hd,
                scale: 1.0,
                window,
            };
            attention::attention(rows, &q, kv, l, shape, pool, &mut att)?;
            b.wo.forward(f, &att, n, &orders, &mut o, pool);
            if last {
                let mut bufs = [
                    (&mut x, d),
                    (&mut o, d),
                    (&mut h, d),
                    (&mut g, c.n_ff),
                    (&mut u, c.n_ff),
                ];
                if let Some(kept) = layers::keep_output_rows(rows, &mut bufs) {
                    n = kept.len();
                    out_rows = Some(kept);
                }
            }
            ops::rms_norm_rows(&o, &b.post_attn_norm, eps, &mut h, pool);
            ops::add_in_place(&mut x, &h);
            ops::rms_norm_rows(&x, &b.ffn_norm, eps, &mut h, pool);
            Linear::forward_many(
                f,
                &[&b.gate, &b.up],
                &h,
                n,
                ffn_orders,
                &mut [&mut g, &mut u],
                pool,
            );
            ops::glu_rows(ops::geglu_tanh, &mut g, &u, c.n_ff, pool);
            b.down.forward(f, &g, n, ffn_orders, &mut o, pool);
            ops::rms_norm_rows(&o, &b.post_ffn_norm, eps, &mut h, pool);
            ops::add_in_place(&mut x, &h);
        }
        layers::output_logits(
            f,
            out_rows.as_deref().unwrap_or(rows),
            &x,
            &self.output_norm,
            eps,
            &self.output,
            pool,
            logits,
        );
        Ok(())
    }
}
