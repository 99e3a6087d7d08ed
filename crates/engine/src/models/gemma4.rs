//! The Gemma 4 family's dense text decoders (E2B, E4B, 31B as llama.cpp
//! converts them): Gemma 3's block (RMSNorm before and after attention and
//! the feed-forward, per-head query and key norms, "neox" rotary embeddings,
//! a GELU-tanh gated feed-forward, embeddings scaled by sqrt(width)) with
//! these differences, read from the file:
//!
//! - which layers slide is a per-layer array
//!   (`gemma4.attention.sliding_window_pattern`), and sliding and global
//!   layers have their own head sizes (`attention.key_length_swa` /
//!   `key_length`), KV head counts (a per-layer `head_count_kv` array), rotary
//!   bases (`rope.freq_base_swa` / `freq_base`) and rotated dimensions; the
//!   global layers' "proportional" rotation is `rope_freqs.weight`, whose
//!   huge factors leave the unrotated pairs still;
//! - queries are not scaled (the norms carry the scale) and values are
//!   RMS-normalised without a weight; a layer without `attn_v` takes its
//!   values from its key projection;
//! - the last `attention.shared_kv_layers` layers compute no keys or values:
//!   each reads the cache of the last earlier layer of its kind (sliding or
//!   global), so the KV cache holds only the first layers
//!   ([`Forward::kv_layout`]);
//! - per-layer token embeddings (E2B, E4B): a second embedding table
//!   (`per_layer_token_embd`) and a projection of the input embedding give
//!   each layer a small input vector that gates a residual branch after its
//!   feed-forward (`blk.N.inp_gate`, `proj`, `post_norm`);
//! - an optional per-layer output scale (`layer_output_scale`) and a final
//!   logit soft-cap (`final_logit_softcapping`).
//!
//! Mixture-of-experts files (26B A4B) are refused when loaded.

use std::sync::Arc;

use gguf::GgufFile;
use kernels::{RowOrder, ThreadPool};

use crate::attention::{self, AttnShape};
use crate::error::EngineError;
use crate::kv::KvCache;
use crate::layers::{self, BatchRow, Linear};
use crate::model::{Forward, ModelConfig};
use crate::ops::{self, Rope, RopeStyle};

/// llama.cpp's rotary base for sliding layers when the file does not say.
const DEFAULT_SWA_ROPE_BASE: f32 = 10_000.0;

/// How a layer gets its queries, keys and values.
enum Qkv {
    /// Queries only: keys and values are an earlier layer's, in the cache.
    Shared { wq: Linear },
    /// Separate projections; without `wv` the values are the key
    /// projection's output (before the key norm and rotation).
    Separate {
        wq: Linear,
        wk: Linear,
        wv: Option<Linear>,
    },
    /// One `attn_qkv`: rows of queries, then keys, then values.
    Fused { wqkv: Linear },
}

/// A layer's branch fed by its per-layer token embedding.
struct PerLayerBranch {
    inp_gate: Linear,
    proj: Linear,
    post_norm: Vec<f32>,
}

struct Block {
    attn_norm: Vec<f32>,
    qkv: Qkv,
    q_norm: Vec<f32>,
    /// Present on layers that write keys.
    k_norm: Option<Vec<f32>>,
    wo: Linear,
    post_attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: Vec<f32>,
    n_ff: usize,
    branch: Option<PerLayerBranch>,
    out_scale: Option<f32>,
    swa: bool,
    head_dim: usize,
    n_kv_head: usize,
    /// The cache layer this layer writes (its own) or reads (a shared one).
    cache_layer: usize,
}

/// The per-layer token embeddings and the projection of the input embedding
/// that, together, give every layer its input vector.
struct PerLayerInputs {
    tok_embd: Linear,
    model_proj: Linear,
    proj_norm: Vec<f32>,
    width: usize,
}

pub struct Gemma4 {
    file: Arc<GgufFile>,
    cfg: ModelConfig,
    embd: Linear,
    blocks: Vec<Block>,
    per_layer: Option<PerLayerInputs>,
    output_norm: Vec<f32>,
    output: Linear,
    rope_global: Rope,
    rope_swa: Rope,
    window: Option<usize>,
    softcap: Option<f32>,
    /// Layers with a cache of their own (the first ones), and the widest of
    /// their key rows.
    kv_layers: usize,
    kv_width: usize,
}

/// A per-layer hyper-parameter: one integer for all layers or an array of
/// one per layer.
fn per_layer_u32(f: &GgufFile, key: &str, n_layers: usize) -> Result<Vec<usize>, EngineError> {
    if let Some(v) = f.get_u32(key) {
        return Ok(vec![v as usize; n_layers]);
    }
    let arr = f
        .get(key)
        .and_then(|v| v.as_array())
        .ok_or_else(|| EngineError::Model(format!("{key} is missing")))?;
    let vals: Option<Vec<usize>> = arr.iter().map(|v| v.as_u64().map(|x| x as usize)).collect();
    match vals {
        Some(v) if v.len() == n_layers => Ok(v),
        _ => Err(EngineError::Model(format!(
            "{key} is not an integer or an array of {n_layers} integers"
        ))),
    }
}

/// The sliding-window pattern: one boolean per layer (true: sliding).
fn swa_pattern(f: &GgufFile, n_layers: usize) -> Result<Vec<bool>, EngineError> {
    let key = "gemma4.attention.sliding_window_pattern";
    let arr = f
        .get(key)
        .and_then(|v| v.as_array())
        .ok_or_else(|| EngineError::Model(format!("{key} (one boolean per layer) is missing")))?;
    let vals: Option<Vec<bool>> = arr.iter().map(|v| v.as_bool()).collect();
    match vals {
        Some(v) if v.len() == n_layers => Ok(v),
        _ => Err(EngineError::Model(format!(
            "{key} is not an array of {n_layers} booleans"
        ))),
    }
}

/// A rotation of `n_rot` of `head_dim` dimensions, checked.
fn rope(base: f32, n_rot: usize, head_dim: usize, what: &str) -> Result<Rope, EngineError> {
    if n_rot == 0 || n_rot > head_dim || !n_rot.is_multiple_of(2) {
        return Err(EngineError::Model(format!(
            "gemma4: {what} rotates {n_rot} dimensions of a head of {head_dim}"
        )));
    }
    Ok(Rope::new(RopeStyle::Halves, base, n_rot, head_dim))
}

/// Refuses what this file does not run: mixture-of-experts layers.
fn refuse_experts(f: &GgufFile, n_layers: usize) -> Result<(), EngineError> {
    let experts = f.get_u32("gemma4.expert_count").unwrap_or(0) > 0
        || (0..n_layers).any(|i| f.tensor(&format!("blk.{i}.ffn_gate_inp.weight")).is_some());
    if experts {
        return Err(EngineError::Model(
            "gemma4: mixture-of-experts files (expert tensors, e.g. Gemma 4 26B A4B) are not \
             supported; the dense Gemma 4 models (E2B, E4B, 31B) are"
                .into(),
        ));
    }
    Ok(())
}

impl Gemma4 {
    pub fn load(file: Arc<GgufFile>, cfg: ModelConfig) -> Result<Self, EngineError> {
        let f = &*file;
        let nl = cfg.n_layers;
        let d = cfg.n_embd;
        refuse_experts(f, nl)?;
        let swa = swa_pattern(f, nl)?;
        let n_kv = per_layer_u32(f, "gemma4.attention.head_count_kv", nl)
            .unwrap_or_else(|_| vec![cfg.n_kv_head; nl]);
        let n_ff = per_layer_u32(f, "gemma4.feed_forward_length", nl)?;
        let hd_full = cfg.head_dim;
        let hd_swa = f
            .get_u32("gemma4.attention.key_length_swa")
            .map_or(hd_full, |v| v as usize);
        for (key, want) in [
            ("gemma4.attention.value_length", hd_full),
            ("gemma4.attention.value_length_swa", hd_swa),
        ] {
            if let Some(v) = f.get_u32(key).filter(|&v| v as usize != want) {
                return Err(EngineError::Model(format!(
                    "gemma4: {key} is {v}, but value and key heads must be equal ({want})"
                )));
            }
        }
        let window = f
            .get_u32("gemma4.attention.sliding_window")
            .filter(|w| *w > 0)
            .map(|w| w as usize);
        let shared = f.get_u32("gemma4.attention.shared_kv_layers").unwrap_or(0) as usize;
        let kv_layers = nl.saturating_sub(shared);
        // A shared layer reads the last earlier layer of its kind: the two
        // layers before the shared ones must be one sliding, one global.
        let source = |il: usize| kv_layers - if swa[il] { 2 } else { 1 };
        if shared > 0 && (kv_layers < 2 || !swa[kv_layers - 2] || swa[kv_layers - 1]) {
            return Err(EngineError::Model(format!(
                "gemma4: {shared} KV-sharing layers need a sliding then a global layer before them"
            )));
        }
        let n_head = cfg.n_head;
        let mut blocks = Vec::with_capacity(nl);
        for i in 0..nl {
            let t = |n: &str| format!("blk.{i}.{n}.weight");
            let hd = if swa[i] { hd_swa } else { hd_full };
            if n_kv[i] == 0 || !n_head.is_multiple_of(n_kv[i]) || !hd.is_multiple_of(2) {
                return Err(EngineError::Model(format!(
                    "gemma4: layer {i}: {n_head} heads, {} KV heads, head size {hd}",
                    n_kv[i]
                )));
            }
            let (q_dim, kv_dim) = (n_head * hd, n_kv[i] * hd);
            let own = i < kv_layers;
            let qkv = if f.tensor(&t("attn_qkv")).is_some() {
                Qkv::Fused {
                    wqkv: Linear::load(f, &t("attn_qkv"), d, q_dim + 2 * kv_dim)?,
                }
            } else if own {
                Qkv::Separate {
                    wq: Linear::load(f, &t("attn_q"), d, q_dim)?,
                    wk: Linear::load(f, &t("attn_k"), d, kv_dim)?,
                    wv: match f.tensor(&t("attn_v")) {
                        Some(_) => Some(Linear::load(f, &t("attn_v"), d, kv_dim)?),
                        None => None,
                    },
                }
            } else {
                Qkv::Shared {
                    wq: Linear::load(f, &t("attn_q"), d, q_dim)?,
                }
            };
            let cache_layer = if own {
                i
            } else {
                let s = source(i);
                if n_kv[s] != n_kv[i] {
                    return Err(EngineError::Model(format!(
                        "gemma4: layer {i} shares layer {s}'s cache but has {} KV heads, not {}",
                        n_kv[i], n_kv[s]
                    )));
                }
                s
            };
            let branch = if f.tensor("per_layer_token_embd.weight").is_some() {
                let w = f
                    .get_u32("gemma4.embedding_length_per_layer_input")
                    .unwrap_or(0) as usize;
                Some(PerLayerBranch {
                    inp_gate: Linear::load(f, &t("inp_gate"), d, w)?,
                    proj: Linear::load(f, &t("proj"), w, d)?,
                    post_norm: layers::load_vector(f, &t("post_norm"), d)?,
                })
            } else {
                None
            };
            let out_scale = match f.tensor(&t("layer_output_scale")) {
                Some(_) => Some(layers::load_vector(f, &t("layer_output_scale"), 1)?[0]),
                None => None,
            };
            blocks.push(Block {
                attn_norm: layers::load_vector(f, &t("attn_norm"), d)?,
                qkv,
                q_norm: layers::load_vector(f, &t("attn_q_norm"), hd)?,
                k_norm: if own {
                    Some(layers::load_vector(f, &t("attn_k_norm"), hd)?)
                } else {
                    None
                },
                wo: Linear::load(f, &t("attn_output"), q_dim, d)?,
                post_attn_norm: layers::load_vector(f, &t("post_attention_norm"), d)?,
                ffn_norm: layers::load_vector(f, &t("ffn_norm"), d)?,
                gate: Linear::load(f, &t("ffn_gate"), d, n_ff[i])?,
                up: Linear::load(f, &t("ffn_up"), d, n_ff[i])?,
                down: Linear::load(f, &t("ffn_down"), n_ff[i], d)?,
                post_ffn_norm: layers::load_vector(f, &t("post_ffw_norm"), d)?,
                n_ff: n_ff[i],
                branch,
                out_scale,
                swa: swa[i],
                head_dim: hd,
                n_kv_head: n_kv[i],
                cache_layer,
            });
        }
        let per_layer = match f.tensor("per_layer_token_embd.weight") {
            Some(_) => {
                let w = f
                    .get_u32("gemma4.embedding_length_per_layer_input")
                    .filter(|&w| w > 0)
                    .ok_or_else(|| {
                        EngineError::Model(
                            "gemma4.embedding_length_per_layer_input is missing".into(),
                        )
                    })? as usize;
                Some(PerLayerInputs {
                    tok_embd: Linear::load(f, "per_layer_token_embd.weight", w * nl, cfg.n_vocab)?,
                    model_proj: Linear::load(f, "per_layer_model_proj.weight", d, w * nl)?,
                    proj_norm: layers::load_vector(f, "per_layer_proj_norm.weight", w)?,
                    width: w,
                })
            }
            None => None,
        };
        let (embd, output) = super::embedding_and_output(f, d, cfg.n_vocab)?;
        let base = f.get_f32("gemma4.rope.freq_base").unwrap_or(10_000.0);
        let base_swa = f
            .get_f32("gemma4.rope.freq_base_swa")
            .unwrap_or(DEFAULT_SWA_ROPE_BASE);
        let n_rot = f
            .get_u32("gemma4.rope.dimension_count")
            .map_or(hd_full, |v| v as usize);
        let n_rot_swa = f
            .get_u32("gemma4.rope.dimension_count_swa")
            .map_or(n_rot, |v| v as usize);
        let mut rope_global = rope(base, n_rot, hd_full, "a global layer")?;
        if f.tensor("rope_freqs.weight").is_some() {
            rope_global = rope_global.with_freq_factors(layers::load_vector(
                f,
                "rope_freqs.weight",
                n_rot / 2,
            )?);
        }
        let rope_swa = rope(base_swa, n_rot_swa, hd_swa, "a sliding layer")?;
        let kv_width = blocks[..kv_layers]
            .iter()
            .map(|b| b.n_kv_head * b.head_dim)
            .max()
            .unwrap_or(0);
        Ok(Gemma4 {
            output_norm: layers::load_vector(f, "output_norm.weight", d)?,
            softcap: f
                .get_f32("gemma4.final_logit_softcapping")
                .filter(|c| *c != 0.0),
            rope_global,
            rope_swa,
            window,
            per_layer,
            kv_layers,
            kv_width,
            file,
            cfg,
            embd,
            blocks,
            output,
        })
    }

    /// Every row's per-layer inputs, `[row][layer][width]`: the per-layer
    /// token embedding (scaled by sqrt(width)) plus the RMS-normalised
    /// projection of the scaled input embedding (`x`, by 1/sqrt(model width)),
    /// the sum scaled by 1/sqrt(2).
    fn per_layer_inputs(
        &self,
        p: &PerLayerInputs,
        rows: &[BatchRow],
        x: &[f32],
        orders: &[RowOrder],
        pool: &ThreadPool,
    ) -> Vec<f32> {
        let f = &*self.file;
        let n = rows.len();
        let all = p.width * self.blocks.len();
        let mut proj = vec![0.0f32; n * all];
        p.model_proj.forward(f, x, n, orders, &mut proj, pool);
        let proj_scale = 1.0 / (self.cfg.n_embd as f32).sqrt();
        let tok_scale = (p.width as f32).sqrt();
        let input_scale = 1.0 / 2.0f32.sqrt();
        let mut tok = vec![0.0f32; all];
        for (r, row) in rows.iter().zip(proj.chunks_exact_mut(all)) {
            p.tok_embd.row(f, r.token as usize, &mut tok);
            row.iter_mut().for_each(|v| *v *= proj_scale);
            ops::rms_norm_chunks(row, &p.proj_norm, self.cfg.rms_eps);
            for (v, &t) in row.iter_mut().zip(&tok) {
                *v = (*v + t * tok_scale) * input_scale;
            }
        }
        proj
    }
}

/// Writes each row's key and value (`width` wide) into cache layer `layer`.
fn store_kv(
    rows: &[BatchRow],
    k: &[f32],
    v: &[f32],
    width: usize,
    kv: &mut KvCache,
    layer: usize,
) -> Result<(), EngineError> {
    for (i, r) in rows.iter().enumerate() {
        let at = i * width..(i + 1) * width;
        kv.write(layer, r.seq, r.pos, &k[at.clone()], &v[at])?;
    }
    Ok(())
}

/// Copies each row of a fused projection's output into its parts.
fn split_rows(fused: &[f32], n: usize, outs: &mut [(&mut [f32], usize)]) {
    let width: usize = outs.iter().map(|(_, w)| w).sum();
    for r in 0..n {
        let mut at = r * width;
        for (o, w) in outs.iter_mut() {
            o[r * *w..(r + 1) * *w].copy_from_slice(&fused[at..at + *w]);
            at += *w;
        }
    }
}

impl Forward for Gemma4 {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn kv_layout(&self) -> (usize, usize) {
        (self.kv_layers, self.kv_width)
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
        let n = rows.len();
        let orders: Vec<RowOrder> = rows.iter().map(|r| r.order).collect();
        let d = c.n_embd;
        let eps = c.rms_eps;
        let embd_scale = (d as f32).sqrt();
        let mut x = vec![0.0f32; n * d];
        for (i, r) in rows.iter().enumerate() {
            let xi = &mut x[i * d..(i + 1) * d];
            self.embd.row(f, r.token as usize, xi);
            xi.iter_mut().for_each(|v| *v *= embd_scale);
        }
        let per_layer = self
            .per_layer
            .as_ref()
            .map(|p| (p, self.per_layer_inputs(p, rows, &x, &orders, pool)));
        let max_hd = self.blocks.iter().map(|b| b.head_dim).max().unwrap_or(0);
        let max_kv = self
            .blocks
            .iter()
            .map(|b| b.n_kv_head * b.head_dim)
            .max()
            .unwrap_or(0);
        let max_ff = self.blocks.iter().map(|b| b.n_ff).max().unwrap_or(0);
        let max_q = c.n_head * max_hd;
        let (mut h, mut o) = (vec![0.0f32; n * d], vec![0.0f32; n * d]);
        let mut q = vec![0.0f32; n * max_q];
        let (mut k, mut v) = (vec![0.0f32; n * max_kv], vec![0.0f32; n * max_kv]);
        let mut att = vec![0.0f32; n * max_q];
        let (mut g, mut u) = (vec![0.0f32; n * max_ff], vec![0.0f32; n * max_ff]);
        let mut fused = Vec::new();
        let ones = vec![1.0f32; max_hd];
        let swa_angles: Vec<_> = rows.iter().map(|r| self.rope_swa.angles(r.pos)).collect();
        let global_angles: Vec<_> = rows
            .iter()
            .map(|r| self.rope_global.angles(r.pos))
            .collect();
        let min = ops::MIN_PARALLEL_ROWS;
        for (l, b) in self.blocks.iter().enumerate() {
            let hd = b.head_dim;
            let (q_dim, kv_dim) = (c.n_head * hd, b.n_kv_head * hd);
            let (rope, angles, window) = if b.swa {
                (&self.rope_swa, &swa_angles, self.window)
            } else {
                (&self.rope_global, &global_angles, None)
            };
            let (q, k, v) = (
                &mut q[..n * q_dim],
                &mut k[..n * kv_dim],
                &mut v[..n * kv_dim],
            );
            ops::rms_norm_rows(&x, &b.attn_norm, eps, &mut h, pool);
            match &b.qkv {
                Qkv::Shared { wq } => wq.forward(f, &h, n, &orders, q, pool),
                Qkv::Separate {
                    wq,
                    wk,
                    wv: Some(wv),
                } => Linear::forward_many(f, &[wq, wk, wv], &h, n, &orders, &mut [q, k, v], pool),
                Qkv::Separate { wq, wk, wv: None } => {
                    Linear::forward_many(f, &[wq, wk], &h, n, &orders, &mut [q, k], pool);
                    v.copy_from_slice(k);
                }
                Qkv::Fused { wqkv } => {
                    fused.resize(n * (q_dim + 2 * kv_dim), 0.0);
                    wqkv.forward(f, &h, n, &orders, &mut fused, pool);
                    split_rows(&fused, n, &mut [(q, q_dim), (k, kv_dim), (v, kv_dim)]);
                }
            }
            pool.for_rows(q, q_dim, min, &|i, row| {
                ops::rms_norm_chunks(row, &b.q_norm, eps);
                rope.rotate(row, &angles[i]);
            });
            if let Some(k_norm) = &b.k_norm {
                pool.for_rows(k, kv_dim, min, &|i, row| {
                    ops::rms_norm_chunks(row, k_norm, eps);
                    rope.rotate(row, &angles[i]);
                });
                pool.for_rows(v, kv_dim, min, &|_, row| {
                    ops::rms_norm_chunks(row, &ones[..hd], eps);
                });
                store_kv(rows, k, v, kv_dim, kv, b.cache_layer)?;
            }
            let shape = AttnShape {
                n_head: c.n_head,
                n_kv_head: b.n_kv_head,
                head_dim: hd,
                scale: 1.0,
                window,
            };
            let att = &mut att[..n * q_dim];
            attention::attention(rows, q, kv, b.cache_layer, shape, pool, att)?;
            b.wo.forward(f, att, n, &orders, &mut o, pool);
            ops::rms_norm_rows(&o, &b.post_attn_norm, eps, &mut h, pool);
            ops::add_in_place(&mut x, &h);
            ops::rms_norm_rows(&x, &b.ffn_norm, eps, &mut h, pool);
            let ff = b.n_ff;
            let (g, u) = (&mut g[..n * ff], &mut u[..n * ff]);
            Linear::forward_many(f, &[&b.gate, &b.up], &h, n, &orders, &mut [g, u], pool);
            ops::glu_rows(ops::geglu_tanh, g, u, ff, pool);
            b.down.forward(f, g, n, &orders, &mut o, pool);
            ops::rms_norm_rows(&o, &b.post_ffn_norm, eps, &mut h, pool);
            ops::add_in_place(&mut x, &h);
            if let (Some(br), Some((p, inputs))) = (&b.branch, &per_layer) {
                let w = p.width;
                let all = w * self.blocks.len();
                let mut t = vec![0.0f32; n * w];
                br.inp_gate.forward(f, &x, n, &orders, &mut t, pool);
                // GELU alone: GeGLU against ones, GGML's table and its
                // saturation included.
                let mut this_layer = vec![0.0f32; n * w];
                for (i, dst) in this_layer.chunks_exact_mut(w).enumerate() {
                    dst.copy_from_slice(&inputs[i * all + l * w..i * all + (l + 1) * w]);
                }
                ops::geglu_tanh(&mut t, &vec![1.0f32; n * w]);
                for (a, &bv) in t.iter_mut().zip(&this_layer) {
                    *a *= bv;
                }
                br.proj.forward(f, &t, n, &orders, &mut o, pool);
                ops::rms_norm_rows(&o, &br.post_norm, eps, &mut h, pool);
                ops::add_in_place(&mut x, &h);
            }
            if let Some(s) = b.out_scale {
                x.iter_mut().for_each(|v| *v *= s);
            }
        }
        layers::output_logits(
            f,
            rows,
            &x,
            &self.output_norm,
            eps,
            &self.output,
            pool,
            logits,
        );
        if let Some(cap) = self.softcap {
            let inv = 1.0 / cap;
            logits.iter_mut().for_each(|v| *v = (*v * inv).tanh() * cap);
        }
        Ok(())
    }
}
