//! The Qwen 3.5 family (dense models, `qwen35`): a hybrid decoder. Most
//! layers (three in four by default) mix tokens with gated DeltaNet linear
//! attention, the rest with full gated attention; every layer then runs a
//! SwiGLU feed-forward. Each layer normalises its input (RMSNorm), adds the
//! mixer's output back, normalises again (`post_attention_norm`) for the
//! feed-forward and adds its output too.
//!
//! Linear-attention layers: one projection gives queries, keys and values
//! (`attn_qkv`), which pass a short causal depthwise convolution
//! (`ssm_conv1d`, no bias) and SiLU; queries and keys are L2-normalised per
//! head; each value head keeps a `S × S` matrix state `M` updated per token
//! by the gated delta rule, `M ← e^g M`, `M ← M + β (v − M k) kᵀ`, output
//! `M q / √S`, with the decay `g = softplus(alpha + dt_bias) · ssm_a` (the
//! file stores `ssm_a = −exp(A_log)`) and `β = sigmoid(beta)`; value head
//! `h` reads key head `h mod n_k_heads` (llama.cpp's converter orders the
//! value heads so). The output is RMS-normalised per head (`ssm_norm`),
//! gated by SiLU of a second projection (`attn_gate`) and projected out
//! (`ssm_out`). The convolution window and the matrices are per-sequence
//! recurrent state, kept in the KV cache beside the sequence's blocks
//! ([`crate::kv::SeqState`]): the state moves one position per row, so a
//! sequence's rows must arrive in order, and position 0 starts it afresh.
//!
//! Full-attention layers: the query projection carries, per head, the query
//! then an output gate; per-head RMSNorm of queries and keys; interleaved
//! multi-section rotary embeddings (M-RoPE) over the first
//! `rope.dimension_count` dimensions of each head, which for text (every
//! section at the token's position, the fourth at 0) is GGML's "neox"
//! rotation with the fourth section's pairs left unrotated; attention output
//! times sigmoid of the gate. Only these layers keep keys and values.
//!
//! Multi-token-prediction layers past `block_count − nextn_predict_layers`
//! are not run (llama.cpp does not run them in its main pass either).
//!
//! Qwen Team, "Qwen3.5" (2026); Yang et al., "Gated Delta Networks:
//! Improving Mamba2 with Delta Rule" (2024).

use std::ops::Range;
use std::sync::Arc;

use gguf::GgufFile;
use kernels::glu::silu_approx;
use kernels::{RowOrder, ThreadPool};

use crate::attention::{self, AttnShape};
use crate::error::EngineError;
use crate::kv::KvCache;
use crate::layers::{self, BatchRow, Linear};
use crate::model::{Forward, ModelConfig};
use crate::models::rope;
use crate::ops::{self, Rope, RopeStyle};

/// One full-attention layer in four when the file does not say.
const DEFAULT_FULL_ATTENTION_INTERVAL: usize = 4;

/// The linear-attention geometry (the file's `ssm.*` keys).
#[derive(Debug, Clone, Copy)]
struct LinearDims {
    /// Convolution width (`ssm.conv_kernel`).
    d_conv: usize,
    /// Key (query) heads (`ssm.group_count`).
    n_k_heads: usize,
    /// Value heads (`ssm.time_step_rank`).
    n_v_heads: usize,
    /// Head size of keys and values alike (`ssm.state_size`).
    head: usize,
}

impl LinearDims {
    fn key_dim(&self) -> usize {
        self.n_k_heads * self.head
    }
    fn value_dim(&self) -> usize {
        self.n_v_heads * self.head
    }
    /// Channels of the convolution: queries, keys, values.
    fn conv_dim(&self) -> usize {
        2 * self.key_dim() + self.value_dim()
    }
    /// Floats of one layer's convolution window: the last `d_conv − 1` inputs.
    fn conv_state(&self) -> usize {
        (self.d_conv - 1) * self.conv_dim()
    }
    /// Floats of one layer's delta-rule matrices.
    fn matrix_state(&self) -> usize {
        self.n_v_heads * self.head * self.head
    }
}

struct FullAttention {
    /// Per head: the query, then its output gate.
    wq_gate: Linear,
    wk: Linear,
    wv: Linear,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    wo: Linear,
    /// This layer's index among the layers that keep keys and values.
    kv_layer: usize,
}

struct LinearAttention {
    wqkv: Linear,
    wgate: Linear,
    wbeta: Linear,
    walpha: Linear,
    /// `conv_dim` rows of `d_conv` taps.
    conv: Vec<f32>,
    dt_bias: Vec<f32>,
    /// `−exp(A_log)`, one per value head.
    a: Vec<f32>,
    norm: Vec<f32>,
    out: Linear,
    /// Where this layer's state starts in a sequence's recurrent state.
    state_at: usize,
}

enum Mixer {
    Full(FullAttention),
    Linear(LinearAttention),
}

struct Block {
    attn_norm: Vec<f32>,
    mixer: Mixer,
    post_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct Qwen35 {
    file: Arc<GgufFile>,
    cfg: ModelConfig,
    embd: Linear,
    blocks: Vec<Block>,
    output_norm: Vec<f32>,
    output: Linear,
    rope: Rope,
    /// Rotated pairs that M-RoPE gives the fourth section, whose text
    /// position is 0: left as they are.
    unrotated: Vec<bool>,
    lin: LinearDims,
    n_kv_layers: usize,
    state_len: usize,
}

/// Which layers are linear attention: `attention.recurrent_layers` if the
/// file has it, else all but every `full_attention_interval`-th.
fn recurrent_layers(f: &GgufFile, arch: &str, n_layers: usize) -> Result<Vec<bool>, EngineError> {
    if let Some(v) = f.get(&format!("{arch}.attention.recurrent_layers")) {
        let flags: Option<Vec<bool>> = v
            .as_array()
            .map(|a| a.iter().map(|x| x.as_bool()).collect::<Option<_>>())
            .unwrap_or(None);
        return match flags {
            Some(fl) if fl.len() >= n_layers => Ok(fl[..n_layers].to_vec()),
            _ => Err(EngineError::Model(format!(
                "{arch}.attention.recurrent_layers is not {n_layers} or more booleans"
            ))),
        };
    }
    let interval = f
        .get_u32(&format!("{arch}.full_attention_interval"))
        .map_or(DEFAULT_FULL_ATTENTION_INTERVAL, |v| v as usize);
    if interval == 0 {
        return Err(EngineError::Model(format!(
            "{arch}.full_attention_interval is 0"
        )));
    }
    Ok((0..n_layers)
        .map(|i| !(i + 1).is_multiple_of(interval))
        .collect())
}

/// The pairs of M-RoPE's fourth section among `n_pairs` rotated pairs
/// (GGML's interleaved assignment: pair `i` in sector `i mod Σ sections`
/// takes the first section when the sector is 0 mod 3 and below 3 × its
/// size, the second when 1 mod 3, the third when 2 mod 3, else the fourth).
fn fourth_section_pairs(sections: &[i32], n_pairs: usize) -> Vec<bool> {
    let sec = |i: usize| sections.get(i).map_or(0, |&s| s.max(0) as usize);
    let total: usize = (0..4).map(sec).sum();
    if total == 0 {
        return vec![false; n_pairs];
    }
    (0..n_pairs)
        .map(|i| {
            let s = i % total;
            let first = s.is_multiple_of(3) && s < 3 * sec(0);
            let second = s % 3 == 1 && s < 3 * sec(1);
            let third = s % 3 == 2 && s < 3 * sec(2);
            !(first || second || third)
        })
        .collect()
}

/// An F32 copy of a (possibly quantized) matrix's rows.
fn dense_rows(f: &GgufFile, name: &str, cols: usize, rows: usize) -> Result<Vec<f32>, EngineError> {
    let m = Linear::load(f, name, cols, rows)?;
    let mut out = vec![0.0f32; rows * cols];
    for (r, row) in out.chunks_exact_mut(cols).enumerate() {
        m.row(f, r, row);
    }
    Ok(out)
}

impl Qwen35 {
    pub fn load(file: Arc<GgufFile>, cfg: ModelConfig) -> Result<Self, EngineError> {
        let f = &*file;
        let arch = cfg.arch.clone();
        let key = |k: &str| format!("{arch}.{k}");
        let need = |k: &str| -> Result<usize, EngineError> {
            f.get_u32(&key(k))
                .map(|v| v as usize)
                .ok_or_else(|| EngineError::Model(format!("{arch}.{k} is missing")))
        };
        let lin = LinearDims {
            d_conv: need("ssm.conv_kernel")?,
            n_k_heads: need("ssm.group_count")?,
            n_v_heads: need("ssm.time_step_rank")?,
            head: need("ssm.state_size")?,
        };
        let d_inner = need("ssm.inner_size")?;
        if lin.d_conv == 0
            || lin.head == 0
            || lin.n_k_heads == 0
            || !lin.n_v_heads.is_multiple_of(lin.n_k_heads)
            || d_inner != lin.value_dim()
        {
            return Err(EngineError::Model(format!(
                "unsupported linear-attention layout: convolution {}, {} key heads, {} value heads, \
                 head size {}, inner size {d_inner}",
                lin.d_conv, lin.n_k_heads, lin.n_v_heads, lin.head
            )));
        }
        if let Some(vl) = f.get_u32(&key("attention.value_length")) {
            if vl as usize != cfg.head_dim {
                return Err(EngineError::Model(format!(
                    "{arch}: value head size {vl} differs from key head size {}",
                    cfg.head_dim
                )));
            }
        }
        let nextn = f.get_u32(&key("nextn_predict_layers")).unwrap_or(0) as usize;
        let n_layers = cfg.n_layers.checked_sub(nextn).ok_or_else(|| {
            EngineError::Model(format!(
                "{arch}.nextn_predict_layers ({nextn}) exceeds block_count ({})",
                cfg.n_layers
            ))
        })?;
        let recurrent = recurrent_layers(f, &arch, n_layers)?;
        let (d, hd, ff) = (cfg.n_embd, cfg.head_dim, cfg.n_ff);
        let (q_dim, kv_dim) = (cfg.n_head * hd, cfg.kv_dim());
        let mut n_kv_layers = 0;
        let mut state_len = 0;
        let mut blocks = Vec::with_capacity(n_layers);
        for (i, &recr) in recurrent.iter().enumerate() {
            let t = |n: &str| format!("blk.{i}.{n}.weight");
            let mixer = if recr {
                let m = LinearAttention {
                    wqkv: Linear::load(f, &t("attn_qkv"), d, lin.conv_dim())?,
                    wgate: Linear::load(f, &t("attn_gate"), d, lin.value_dim())?,
                    wbeta: Linear::load(f, &t("ssm_beta"), d, lin.n_v_heads)?,
                    walpha: Linear::load(f, &t("ssm_alpha"), d, lin.n_v_heads)?,
                    conv: dense_rows(f, &t("ssm_conv1d"), lin.d_conv, lin.conv_dim())?,
                    dt_bias: layers::load_vector(
                        f,
                        &format!("blk.{i}.ssm_dt.bias"),
                        lin.n_v_heads,
                    )?,
                    a: layers::load_vector(f, &format!("blk.{i}.ssm_a"), lin.n_v_heads)?,
                    norm: layers::load_vector(f, &t("ssm_norm"), lin.head)?,
                    out: Linear::load(f, &t("ssm_out"), lin.value_dim(), d)?,
                    state_at: state_len,
                };
                state_len += lin.conv_state() + lin.matrix_state();
                Mixer::Linear(m)
            } else {
                let m = FullAttention {
                    wq_gate: Linear::load(f, &t("attn_q"), d, 2 * q_dim)?,
                    wk: Linear::load(f, &t("attn_k"), d, kv_dim)?,
                    wv: Linear::load(f, &t("attn_v"), d, kv_dim)?,
                    q_norm: layers::load_vector(f, &t("attn_q_norm"), hd)?,
                    k_norm: layers::load_vector(f, &t("attn_k_norm"), hd)?,
                    wo: Linear::load(f, &t("attn_output"), q_dim, d)?,
                    kv_layer: n_kv_layers,
                };
                n_kv_layers += 1;
                Mixer::Full(m)
            };
            blocks.push(Block {
                attn_norm: layers::load_vector(f, &t("attn_norm"), d)?,
                mixer,
                post_norm: layers::load_vector(f, &t("post_attention_norm"), d)?,
                gate: Linear::load(f, &t("ffn_gate"), d, ff)?,
                up: Linear::load(f, &t("ffn_up"), d, ff)?,
                down: Linear::load(f, &t("ffn_down"), ff, d)?,
            });
        }
        let (embd, output) = super::embedding_and_output(f, d, cfg.n_vocab)?;
        let rope = rope::load(f, &cfg, RopeStyle::Halves)?;
        let n_rot = f
            .get_u32(&key("rope.dimension_count"))
            .map_or(hd, |v| v as usize);
        let sections = f
            .get_i32_array(&key("rope.dimension_sections"))
            .unwrap_or_default();
        Ok(Qwen35 {
            output_norm: layers::load_vector(f, "output_norm.weight", d)?,
            unrotated: fourth_section_pairs(&sections, n_rot / 2),
            rope,
            lin,
            n_kv_layers,
            state_len,
            embd,
            output,
            blocks,
            cfg: ModelConfig { n_layers, ..cfg },
            file,
        })
    }

    /// The rotation of a row at `pos` (see [`Qwen35::unrotated`]).
    fn angles(&self, pos: usize) -> Vec<(f32, f32)> {
        let mut a = self.rope.angles(pos);
        for (cs, &skip) in a.iter_mut().zip(&self.unrotated) {
            if skip {
                *cs = (1.0, 0.0);
            }
        }
        a
    }

    /// A full-attention layer over `h` (the normalised rows) into `out`.
    #[allow(clippy::too_many_arguments)]
    fn full_attention(
        &self,
        m: &FullAttention,
        rows: &[BatchRow],
        h: &[f32],
        angles: &[Vec<(f32, f32)>],
        orders: &[RowOrder],
        kv: &mut KvCache,
        pool: &ThreadPool,
        out: &mut [f32],
    ) -> Result<(), EngineError> {
        let f = &*self.file;
        let c = &self.cfg;
        let n = rows.len();
        let hd = c.head_dim;
        let (q_dim, kv_dim) = (c.n_head * hd, c.kv_dim());
        let eps = c.rms_eps;
        let mut qg = vec![0.0f32; n * 2 * q_dim];
        let (mut k, mut v) = (vec![0.0f32; n * kv_dim], vec![0.0f32; n * kv_dim]);
        Linear::forward_many(
            f,
            &[&m.wq_gate, &m.wk, &m.wv],
            h,
            n,
            orders,
            &mut [&mut qg, &mut k, &mut v],
            pool,
        );
        // Split each head's [query | gate].
        let (mut q, mut gate) = (vec![0.0f32; n * q_dim], vec![0.0f32; n * q_dim]);
        for (i, src) in qg.chunks_exact(2 * hd).enumerate() {
            q[i * hd..(i + 1) * hd].copy_from_slice(&src[..hd]);
            gate[i * hd..(i + 1) * hd].copy_from_slice(&src[hd..]);
        }
        let min = ops::MIN_PARALLEL_ROWS;
        pool.for_rows(&mut q, q_dim, min, &|i, row| {
            ops::rms_norm_chunks(row, &m.q_norm, eps);
            self.rope.rotate(row, &angles[i]);
        });
        pool.for_rows(&mut k, kv_dim, min, &|i, row| {
            ops::rms_norm_chunks(row, &m.k_norm, eps);
            self.rope.rotate(row, &angles[i]);
        });
        layers::store_kv(rows, &k, &v, kv, m.kv_layer)?;
        let shape = AttnShape {
            n_head: c.n_head,
            n_kv_head: c.n_kv_head,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            window: None,
        };
        let mut att = vec![0.0f32; n * q_dim];
        attention::attention(rows, &q, kv, m.kv_layer, shape, pool, &mut att)?;
        for (a, &g) in att.iter_mut().zip(&gate) {
            *a *= sigmoid(g);
        }
        m.wo.forward(f, &att, n, orders, out, pool);
        Ok(())
    }

    /// A linear-attention layer over `h` into `out`, advancing the state of
    /// each run of rows (one sequence's consecutive positions).
    #[allow(clippy::too_many_arguments)]
    fn linear_attention(
        &self,
        m: &LinearAttention,
        rows: &[BatchRow],
        runs: &[Range<usize>],
        h: &[f32],
        orders: &[RowOrder],
        kv: &mut KvCache,
        pool: &ThreadPool,
        out: &mut [f32],
    ) -> Result<(), EngineError> {
        let f = &*self.file;
        let l = self.lin;
        let n = rows.len();
        let (s, hv, hk) = (l.head, l.n_v_heads, l.n_k_heads);
        let (key_dim, value_dim, conv_dim) = (l.key_dim(), l.value_dim(), l.conv_dim());
        let eps = self.cfg.rms_eps;
        let mut qkv = vec![0.0f32; n * conv_dim];
        let mut z = vec![0.0f32; n * value_dim];
        let (mut beta, mut g) = (vec![0.0f32; n * hv], vec![0.0f32; n * hv]);
        Linear::forward_many(
            f,
            &[&m.wqkv, &m.wgate, &m.wbeta, &m.walpha],
            h,
            n,
            orders,
            &mut [&mut qkv, &mut z, &mut beta, &mut g],
            pool,
        );
        for (i, (b, a)) in beta.iter_mut().zip(g.iter_mut()).enumerate() {
            let head = i % hv;
            *b = sigmoid(*b);
            *a = softplus(*a + m.dt_bias[head]) * m.a[head];
        }
        // The convolution, SiLU and the queries' and keys' L2 norms, then
        // the delta rule: per run, in position order.
        let mut conv = vec![0.0f32; n * conv_dim];
        let mut o = vec![0.0f32; n * value_dim];
        for run in runs {
            let seq = rows[run.start].seq;
            let st = kv.recurrent_state(seq).ok_or_else(|| {
                EngineError::Model("the KV cache keeps no recurrent state".into())
            })?;
            let data = &mut st.data[m.state_at..m.state_at + l.conv_state() + l.matrix_state()];
            let (window, matrices) = data.split_at_mut(l.conv_state());
            let len = run.len();
            let x = &qkv[run.start * conv_dim..run.end * conv_dim];
            let y = &mut conv[run.start * conv_dim..run.end * conv_dim];
            convolve(&m.conv, l.d_conv, conv_dim, window, x, y);
            for row in y.chunks_exact_mut(conv_dim) {
                row.iter_mut().for_each(|v| *v = silu_approx(*v));
                for head in row[..2 * key_dim].chunks_exact_mut(s) {
                    l2_norm(head, eps);
                }
            }
            let y = &*y;
            // Per value head: its matrix and its outputs, head-major.
            let mut head_out = vec![0.0f32; hv * len * s];
            let mut work: Vec<(&mut [f32], &mut [f32])> = matrices
                .chunks_exact_mut(s * s)
                .zip(head_out.chunks_exact_mut(len * s))
                .collect();
            let (betas, gates) = (&beta[run.start * hv..], &g[run.start * hv..]);
            pool.for_parts(&mut work, 2, &|first, part| {
                let mut delta = vec![0.0f32; s];
                for (j, (mat, ho)) in part.iter_mut().enumerate() {
                    let vh = first + j;
                    let kh = vh % hk;
                    for t in 0..len {
                        let row = &y[t * conv_dim..(t + 1) * conv_dim];
                        let q = &row[kh * s..(kh + 1) * s];
                        let k = &row[key_dim + kh * s..key_dim + (kh + 1) * s];
                        let v = &row[2 * key_dim + vh * s..2 * key_dim + (vh + 1) * s];
                        delta_step(
                            mat,
                            q,
                            k,
                            v,
                            gates[t * hv + vh],
                            betas[t * hv + vh],
                            &mut delta,
                            &mut ho[t * s..(t + 1) * s],
                        );
                    }
                }
            });
            for (vh, ho) in head_out.chunks_exact(len * s).enumerate() {
                for t in 0..len {
                    let dst = (run.start + t) * value_dim + vh * s;
                    o[dst..dst + s].copy_from_slice(&ho[t * s..(t + 1) * s]);
                }
            }
        }
        // Per head: RMSNorm, times SiLU of the gate.
        let mut normed = vec![0.0f32; s];
        for (oh, zh) in o.chunks_exact_mut(s).zip(z.chunks_exact(s)) {
            ops::rms_norm(oh, &m.norm, eps, &mut normed);
            for ((v, &nv), &zv) in oh.iter_mut().zip(&normed).zip(zh) {
                *v = nv * silu_approx(zv);
            }
        }
        m.out.forward(f, &o, n, orders, out, pool);
        Ok(())
    }
}

/// The runs of consecutive rows of one sequence at consecutive positions.
fn sequence_runs(rows: &[BatchRow]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match runs.last_mut() {
            Some(run) if rows[run.end - 1].seq == r.seq && rows[run.end - 1].pos + 1 == r.pos => {
                run.end = i + 1
            }
            _ => runs.push(i..i + 1),
        }
    }
    runs
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// GGML's softplus: `ln(1 + eˣ)`, the identity above 20.
fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        (1.0 + x.exp()).ln()
    }
}

/// `x / sqrt(Σx² + eps)`, as llama.cpp computes it (an RMS norm with
/// `eps / n`, scaled by `1 / sqrt(n)`; squares summed in f64).
fn l2_norm(x: &mut [f32], eps: f32) {
    let n = x.len() as f32;
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps / n).sqrt();
    let post = 1.0 / n.sqrt();
    x.iter_mut().for_each(|v| *v = *v * scale * post);
}

/// The causal depthwise convolution of `x` (`len` rows of `channels`) into
/// `y`, continuing from `window` (the `d_conv − 1` inputs before `x`, oldest
/// first), which is then advanced past `x`. `w`: `channels` rows of `d_conv`
/// taps, the last applied to the current input.
fn convolve(
    w: &[f32],
    d_conv: usize,
    channels: usize,
    window: &mut [f32],
    x: &[f32],
    y: &mut [f32],
) {
    let keep = d_conv - 1;
    let mut inp = Vec::with_capacity(window.len() + x.len());
    inp.extend_from_slice(window);
    inp.extend_from_slice(x);
    for (t, yt) in y.chunks_exact_mut(channels).enumerate() {
        for (ch, out) in yt.iter_mut().enumerate() {
            let taps = &w[ch * d_conv..(ch + 1) * d_conv];
            let mut sum = 0.0f32;
            for (k, &wk) in taps.iter().enumerate() {
                sum = inp[(t + k) * channels + ch].mul_add(wk, sum);
            }
            *out = sum;
        }
    }
    let total = inp.len() / channels;
    window.copy_from_slice(&inp[(total - keep) * channels..]);
}

/// One token of the gated delta rule on one value head's matrix `m`
/// (`S` rows, one per value dimension, of `S` key dimensions), writing the
/// head's output `M q / √S` into `out`. `delta`: `S` floats of scratch.
#[allow(clippy::too_many_arguments)]
fn delta_step(
    m: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    g: f32,
    beta: f32,
    delta: &mut [f32],
    out: &mut [f32],
) {
    let s = q.len();
    let decay = g.exp();
    m.iter_mut().for_each(|x| *x *= decay);
    for (j, row) in m.chunks_exact(s).enumerate() {
        delta[j] = (v[j] - ggml_dot(row, k)) * beta;
    }
    for (row, &dj) in m.chunks_exact_mut(s).zip(delta.iter()) {
        for (r, &kv) in row.iter_mut().zip(k) {
            *r = kv.mul_add(dj, *r);
        }
    }
    let scale = 1.0 / (s as f32).sqrt();
    for (o, row) in out.iter_mut().zip(m.chunks_exact(s)) {
        *o = ggml_dot(row, q) * scale;
    }
}

/// A dot product summed as GGML's AVX-512 `ggml_vec_dot_f32` sums it: four
/// 16-lane fused multiply-add accumulators over each 64 elements, added
/// pairwise and reduced as a tree, then the leftovers one by one.
fn ggml_dot(x: &[f32], y: &[f32]) -> f32 {
    const LANES: usize = 16;
    const STEP: usize = 4 * LANES;
    let n = x.len().min(y.len());
    let np = n / STEP * STEP;
    let mut acc = [[0.0f32; LANES]; 4];
    for i in (0..np).step_by(STEP) {
        for (j, a) in acc.iter_mut().enumerate() {
            for (l, al) in a.iter_mut().enumerate() {
                let k = i + j * LANES + l;
                *al = x[k].mul_add(y[k], *al);
            }
        }
    }
    let mut v = [0.0f32; LANES];
    for (l, vl) in v.iter_mut().enumerate() {
        *vl = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    }
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            v[l] += v[l + width];
        }
        width /= 2;
    }
    let mut sum = v[0];
    for k in np..n {
        sum = x[k].mul_add(y[k], sum);
    }
    sum
}

impl Forward for Qwen35 {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn kv_layout(&self) -> (usize, usize) {
        (self.n_kv_layers.max(1), self.cfg.kv_dim())
    }

    fn recurrent_state_len(&self) -> usize {
        self.state_len
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
        let d = c.n_embd;
        let eps = c.rms_eps;
        let orders: Vec<RowOrder> = rows.iter().map(|r| r.order).collect();
        // Each run continues its sequence's state (or starts it at 0).
        let runs = sequence_runs(rows);
        for run in &runs {
            let (first, last) = (rows[run.start], rows[run.end - 1]);
            let Some(st) = kv.recurrent_state(first.seq) else {
                continue;
            };
            if first.pos == 0 {
                st.data.fill(0.0);
            } else if st.next_pos != first.pos {
                return Err(EngineError::InvalidRequest(format!(
                    "sequence {}: row at position {} but its recurrent state is at {}",
                    first.seq, first.pos, st.next_pos
                )));
            }
            st.next_pos = last.pos + 1;
        }
        let mut x = vec![0.0f32; n * d];
        for (i, r) in rows.iter().enumerate() {
            self.embd
                .row(f, r.token as usize, &mut x[i * d..(i + 1) * d]);
        }
        let angles: Vec<_> = rows.iter().map(|r| self.angles(r.pos)).collect();
        let (mut h, mut o) = (vec![0.0f32; n * d], vec![0.0f32; n * d]);
        let (mut g, mut u) = (vec![0.0f32; n * c.n_ff], vec![0.0f32; n * c.n_ff]);
        for b in &self.blocks {
            ops::rms_norm_rows(&x, &b.attn_norm, eps, &mut h, pool);
            match &b.mixer {
                Mixer::Full(m) => {
                    self.full_attention(m, rows, &h, &angles, &orders, kv, pool, &mut o)?
                }
                Mixer::Linear(m) => {
                    self.linear_attention(m, rows, &runs, &h, &orders, kv, pool, &mut o)?
                }
            }
            ops::add_in_place(&mut x, &o);
            ops::rms_norm_rows(&x, &b.post_norm, eps, &mut h, pool);
            Linear::forward_many(
                f,
                &[&b.gate, &b.up],
                &h,
                n,
                &orders,
                &mut [&mut g, &mut u],
                pool,
            );
            ops::glu_rows(ops::swiglu, &mut g, &u, c.n_ff, pool);
            b.down.forward(f, &g, n, &orders, &mut o, pool);
            ops::add_in_place(&mut x, &o);
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_positions_leave_the_fourth_section_unrotated() {
        // Qwen 3.5's sections over 32 pairs: every pair rotates.
        assert!(fourth_section_pairs(&[11, 11, 10, 0], 32)
            .iter()
            .all(|&u| !u));
        // A fourth section of 2 among 8 sectors: sectors 6 and 7 (6 ≥ 3·2).
        let u = fourth_section_pairs(&[2, 2, 2, 2], 8);
        assert_eq!(u, [false, false, false, false, false, false, true, true]);
        assert!(fourth_section_pairs(&[], 4).iter().all(|&u| !u));
    }

    #[test]
    fn runs_split_at_sequences_and_gaps() {
        let row = |seq, pos| BatchRow {
            seq,
            pos,
            token: 0,
            want_logits: false,
            order: RowOrder::default(),
        };
        let rows = [row(1, 0), row(1, 1), row(2, 5), row(1, 2), row(1, 4)];
        assert_eq!(sequence_runs(&rows), vec![0..2, 2..3, 3..4, 4..5]);
    }

    #[test]
    fn convolution_continues_across_calls() {
        // Two channels, three taps: one call over four inputs equals two
        // calls over two each.
        let w = [1.0, 2.0, 3.0, -1.0, 0.5, 2.0];
        let x: Vec<f32> = (1..=8).map(|v| v as f32).collect();
        let (mut win_a, mut win_b) = (vec![0.0; 4], vec![0.0; 4]);
        let mut whole = vec![0.0; 8];
        convolve(&w, 3, 2, &mut win_a, &x, &mut whole);
        let mut parts = vec![0.0; 8];
        convolve(&w, 3, 2, &mut win_b, &x[..4], &mut parts[..4]);
        convolve(&w, 3, 2, &mut win_b, &x[4..], &mut parts[4..]);
        assert_eq!(whole, parts);
        assert_eq!(win_a, win_b);
        // Row 0, channel 0: only the current input, by the last tap.
        assert_eq!(whole[0], 3.0);
        // Row 2, channel 0: 1·x0 + 2·x1 + 3·x2 = 1 + 6 + 15.
        assert_eq!(whole[4], 22.0);
    }

    #[test]
    fn delta_rule_recalls_a_stored_value() {
        // With β = 1 and no decay, writing v under unit key k and reading
        // with q = k returns v / √S.
        let s = 4;
        let mut m = vec![0.0f32; s * s];
        let k = [1.0, 0.0, 0.0, 0.0];
        let v = [2.0, -4.0, 6.0, 8.0];
        let (mut delta, mut out) = (vec![0.0; s], vec![0.0; s]);
        delta_step(&mut m, &k, &k, &v, 0.0, 1.0, &mut delta, &mut out);
        assert_eq!(out, [1.0, -2.0, 3.0, 4.0]);
        // Writing the same pair again changes nothing (the delta is 0).
        delta_step(&mut m, &k, &k, &v, 0.0, 1.0, &mut delta, &mut out);
        assert_eq!(out, [1.0, -2.0, 3.0, 4.0]);
    }
}
