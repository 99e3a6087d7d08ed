//! The BERT encoder (Devlin et al., 2019, "BERT: Pre-training of Deep
//! Bidirectional Transformers for Language Understanding"): word, absolute
//! position and token-type embeddings summed and layer-normed, then layers
//! of bidirectional multi-head self-attention and a GELU (erf) feed-forward,
//! each followed by a residual add and LayerNorm (post-norm).
//!
//! The same code runs llama.cpp's `nomic-bert` graph (nomic-embed-text
//! v1/v1.5 as a GGUF): no position table but rotary position embeddings in
//! GGML's "neox" (halves) mode on every head's query and key, one fused
//! query/key/value matrix, a SwiGLU feed-forward (`silu(x·Gᵀ) ⊙ x·Uᵀ`, then
//! down), and biases only where the file has them.
//!
//! A batch is packed, not padded: the sequences' rows are stacked into one
//! matrix for every projection (one kernel call per weight for the whole
//! batch), and attention runs per sequence over that sequence's rows only,
//! so nothing of one input (or of padding, of which there is none) can
//! reach another's vector. Unquantized weights (F32, F16, BF16) are packed
//! once at load for the kernels' packed GEMM ([`kernels::gemm_f32`], bias
//! fused; a layer's query, key and value as one product); quantized ones
//! (Q8_0 and the other block formats of a GGUF) go through the chat
//! engine's kernels ([`kernels::matmul_many`]). Both run on a
//! [`kernels::ThreadPool`].

use kernels::{GgmlType, PackedF32, ThreadPool};

use crate::weights::{MatrixRef, Weights};
use crate::EncoderError;

/// The shape of a BERT model, from its `config.json`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "gelu")]
    pub hidden_act: String,
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
    #[serde(default)]
    pub vocab_size: usize,
    /// The rotary base (`position_embedding_type` `rotary` only; GGUF).
    #[serde(skip)]
    pub rope_freq_base: f32,
}

fn eps() -> f64 {
    1e-12
}
fn gelu() -> String {
    "gelu".to_owned()
}
fn absolute() -> String {
    "absolute".to_owned()
}

struct Linear {
    w: MatrixRef,
    b: Vec<f32>,
}

/// A projection as it runs: packed for the GEMM, or the file's quantized
/// matrices (several side by side for the fused query/key/value).
enum Proj {
    Packed(PackedF32),
    Quantized(Vec<Linear>),
}

/// Whether weights of `ty` are packed as `f32` (else they stay quantized).
fn packs(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

impl Proj {
    fn new(weights: &Weights, parts: Vec<Linear>) -> Result<Self, EncoderError> {
        if parts.iter().all(|l| packs(l.w.ty)) {
            let mats = parts
                .iter()
                .map(|l| Ok((weights.qmatrix(&l.w)?, Some(l.b.as_slice()))))
                .collect::<Result<Vec<_>, EncoderError>>()?;
            Ok(Proj::Packed(PackedF32::pack_concat(&mats)))
        } else {
            Ok(Proj::Quantized(parts))
        }
    }

    /// Output columns.
    fn rows(&self) -> usize {
        match self {
            Proj::Packed(p) => p.rows(),
            Proj::Quantized(parts) => parts.iter().map(|l| l.w.rows).sum(),
        }
    }

    /// `out = x · Wᵀ + b` for `batch` rows (`out` is `batch × rows()`, the
    /// parts' columns side by side).
    fn run(
        &self,
        weights: &Weights,
        x: &[f32],
        batch: usize,
        out: &mut [f32],
        scratch: &mut Vec<f32>,
        pool: &ThreadPool,
    ) -> Result<(), EncoderError> {
        match self {
            Proj::Packed(p) => kernels::gemm_f32(p, x, batch, out, pool),
            Proj::Quantized(parts) if parts.len() == 1 => {
                let w = weights.qmatrix(&parts[0].w)?;
                kernels::matmul(&w, x, batch, out, pool);
                add_bias(out, &parts[0].b, pool);
            }
            Proj::Quantized(parts) => {
                // All parts in one kernel call (one activation quantization,
                // one meeting of the threads), then interleaved with their
                // biases into the joint rows.
                let all = self.rows();
                let ws = parts
                    .iter()
                    .map(|l| weights.qmatrix(&l.w))
                    .collect::<Result<Vec<_>, _>>()?;
                scratch.resize(batch * all, 0.0);
                let mut outs: Vec<&mut [f32]> = Vec::with_capacity(parts.len());
                let mut rest = scratch.as_mut_slice();
                for l in parts {
                    let (head, tail) = rest.split_at_mut(batch * l.w.rows);
                    outs.push(head);
                    rest = tail;
                }
                kernels::matmul_many(&ws, x, batch, &mut outs, pool);
                let mut first = 0;
                for (l, part) in parts.iter().zip(&outs) {
                    let n = l.w.rows;
                    for (dst, src) in out.chunks_exact_mut(all).zip(part.chunks_exact(n)) {
                        for ((d, s), b) in dst[first..first + n].iter_mut().zip(src).zip(&l.b) {
                            *d = s + b;
                        }
                    }
                    first += n;
                }
            }
        }
        Ok(())
    }
}

struct Norm {
    g: Vec<f32>,
    b: Vec<f32>,
}

struct Layer {
    /// Query, key and value side by side (`3 × hidden` columns).
    qkv: Proj,
    attn_out: Proj,
    attn_norm: Norm,
    /// SwiGLU's gate (`nomic-bert`); `None` for GELU.
    gate: Option<Proj>,
    up: Proj,
    down: Proj,
    out_norm: Norm,
}

/// A loaded BERT encoder.
pub struct Bert {
    cfg: BertConfig,
    weights: Weights,
    word: MatrixRef,
    /// The learned position table; `None` with rotary positions.
    position: Option<MatrixRef>,
    token_type: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
    eps: f32,
}

impl std::fmt::Debug for Bert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bert").field("cfg", &self.cfg).finish()
    }
}

impl Bert {
    /// Bind the model's tensors (checking every shape) from `weights`.
    pub fn new(cfg: BertConfig, weights: Weights) -> Result<Self, EncoderError> {
        let n = crate::weights::Names::for_weights(&weights);
        let gguf = matches!(n, crate::weights::Names::Gguf);
        // SwiGLU and rotary positions come from `nomic-bert` GGUFs only.
        let (acts, positions): (&[&str], &[&str]) = if gguf {
            (&["gelu", "swiglu"], &["absolute", "rotary"])
        } else {
            (&["gelu"], &["absolute"])
        };
        if !acts.contains(&cfg.hidden_act.as_str()) {
            return Err(weights.bad(format!(
                "hidden_act {} is not supported ({} is)",
                cfg.hidden_act,
                acts.join(", ")
            )));
        }
        if !positions.contains(&cfg.position_embedding_type.as_str()) {
            return Err(weights.bad(format!(
                "position_embedding_type {} is not supported ({} is)",
                cfg.position_embedding_type,
                positions.join(", ")
            )));
        }
        let rotary = cfg.position_embedding_type == "rotary";
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            return Err(weights.bad("hidden_size is not a multiple of num_attention_heads".into()));
        }
        if rotary && !(h / cfg.num_attention_heads).is_multiple_of(2) {
            return Err(weights.bad("rotary positions need an even head size".into()));
        }
        // A GGUF may leave biases out (llama.cpp: optional); zeros then.
        let linear = |name: &str, rows: usize, cols: usize| -> Result<Linear, EncoderError> {
            let bias = n.bias(name);
            Ok(Linear {
                w: weights.matrix(&n.weight(name), rows, cols)?,
                b: if gguf && !weights.has(&bias) {
                    vec![0.0; rows]
                } else {
                    weights.vector(&bias, rows)?
                },
            })
        };
        let norm = |name: &str| -> Result<Norm, EncoderError> {
            Ok(Norm {
                g: weights.vector(&n.norm_weight(name), h)?,
                b: weights.vector(&n.norm_bias(name), h)?,
            })
        };
        let word = weights.matrix_any_rows(&n.weight("word"), h)?;
        let position = if rotary {
            None
        } else {
            Some(weights.matrix_any_rows(&n.weight("position"), h)?)
        };
        // Every input is "sentence A": type 0 (a GGUF may leave the table out).
        let mut token_type = vec![0.0; h];
        if weights.has(&n.weight("token_type")) || !matches!(n, crate::weights::Names::Gguf) {
            let types = weights.matrix_any_rows(&n.weight("token_type"), h)?;
            weights.qmatrix(&types)?.dequantize_row(0, &mut token_type);
        }
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = |part: &str| format!("{i}.{part}");
            let proj = |parts: Vec<Linear>| Proj::new(&weights, parts);
            let qkv = if gguf && weights.has(&n.weight(&l("qkv"))) {
                vec![linear(&l("qkv"), 3 * h, h)?]
            } else {
                vec![
                    linear(&l("q"), h, h)?,
                    linear(&l("k"), h, h)?,
                    linear(&l("v"), h, h)?,
                ]
            };
            let gate = if cfg.hidden_act == "swiglu" {
                Some(proj(vec![linear(&l("gate"), cfg.intermediate_size, h)?])?)
            } else {
                None
            };
            layers.push(Layer {
                qkv: proj(qkv)?,
                attn_out: proj(vec![linear(&l("attn_out"), h, h)?])?,
                attn_norm: norm(&l("attn_norm"))?,
                gate,
                up: proj(vec![linear(&l("up"), cfg.intermediate_size, h)?])?,
                down: proj(vec![linear(&l("down"), h, cfg.intermediate_size)?])?,
                out_norm: norm(&l("out_norm"))?,
            });
        }
        let emb_norm = norm("embeddings")?;
        Ok(Self {
            eps: cfg.layer_norm_eps as f32,
            cfg,
            weights,
            word,
            position,
            token_type,
            emb_norm,
            layers,
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// Rows of the word-embedding table (ids must be below it).
    pub fn vocab_rows(&self) -> usize {
        self.word.rows
    }

    /// Rows of the position table (the longest sequence it can take).
    pub fn max_positions(&self) -> usize {
        match &self.position {
            Some(p) => p.rows,
            None => self.cfg.max_position_embeddings,
        }
    }

    /// The last hidden states of every sequence, packed: row `r` of the
    /// result belongs to the sequence whose rows cover `r`
    /// (`seqs[0]`'s rows first). Ids and lengths must have been checked.
    pub fn forward(&self, seqs: &[&[u32]], pool: &ThreadPool) -> Result<Vec<f32>, EncoderError> {
        let h = self.cfg.hidden_size;
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let mut x = vec![0.0f32; total * h];
        let word = self.weights.qmatrix(&self.word)?;
        let position = match &self.position {
            Some(p) => Some(self.weights.qmatrix(p)?),
            None => None,
        };
        let mut row = 0;
        let mut pos_row = vec![0.0f32; h];
        for seq in seqs {
            for (p, &id) in seq.iter().enumerate() {
                let out = &mut x[row * h..(row + 1) * h];
                word.dequantize_row(id as usize, out);
                if let Some(position) = &position {
                    position.dequantize_row(p, &mut pos_row);
                }
                for ((o, pv), tv) in out.iter_mut().zip(&pos_row).zip(&self.token_type) {
                    *o += pv + tv;
                }
                row += 1;
            }
        }
        layer_norm(&mut x, &self.emb_norm, self.eps, pool);

        let mut qkv = vec![0.0f32; total * 3 * h];
        let mut ctx = vec![0.0f32; total * h];
        let mut proj = vec![0.0f32; total * h];
        let ff = self.cfg.intermediate_size;
        let mut up = vec![0.0f32; total * ff];
        let mut gate = Vec::new();
        let mut scratch = Vec::new();
        let w = &self.weights;
        let rope = (self.position.is_none()).then(|| self.rope_table(seqs));
        for layer in &self.layers {
            layer.qkv.run(w, &x, total, &mut qkv, &mut scratch, pool)?;
            if let Some(table) = &rope {
                self.rotate(&mut qkv, table, pool);
            }
            self.attention(seqs, &qkv, &mut ctx, pool);
            layer
                .attn_out
                .run(w, &ctx, total, &mut proj, &mut scratch, pool)?;
            residual_norm(&mut x, &proj, &layer.attn_norm, self.eps, pool);
            layer.up.run(w, &x, total, &mut up, &mut scratch, pool)?;
            if let Some(g) = &layer.gate {
                gate.resize(total * ff, 0.0);
                g.run(w, &x, total, &mut gate, &mut scratch, pool)?;
                let gate = &gate;
                pool.for_rows(&mut up, ff, 4, &|i, r| {
                    for (u, g) in r.iter_mut().zip(&gate[i * ff..(i + 1) * ff]) {
                        *u *= g / (1.0 + (-g).exp());
                    }
                });
            } else {
                pool.for_rows(&mut up, ff, 4, &|_, r| {
                    crate::gelu::gelu_erf_in_place(r);
                });
            }
            layer
                .down
                .run(w, &up, total, &mut proj, &mut scratch, pool)?;
            residual_norm(&mut x, &proj, &layer.out_norm, self.eps, pool);
        }
        Ok(x)
    }

    /// Each packed row's `(cos, sin)` pairs for its position in its
    /// sequence: `dh / 2` of them, angle `p · base^(-2i/dh)` stepped in
    /// `f32` as GGML's rope cache does.
    fn rope_table(&self, seqs: &[&[u32]]) -> Vec<(f32, f32)> {
        let dh = self.cfg.hidden_size / self.cfg.num_attention_heads;
        let half = dh / 2;
        let scale = self.cfg.rope_freq_base.powf(-2.0 / dh as f32);
        let mut table = Vec::new();
        for s in seqs {
            for p in 0..s.len() {
                let mut theta = p as f32;
                for _ in 0..half {
                    table.push((theta.cos(), theta.sin()));
                    theta *= scale;
                }
            }
        }
        table
    }

    /// Rotary positions on every head of the query and key columns of
    /// `qkv`, "neox" mode: dimension `i` pairs with `i + dh/2`.
    fn rotate(&self, qkv: &mut [f32], table: &[(f32, f32)], pool: &ThreadPool) {
        let h = self.cfg.hidden_size;
        let dh = h / self.cfg.num_attention_heads;
        let half = dh / 2;
        pool.for_rows(qkv, 3 * h, 16, &|row, r| {
            let cs = &table[row * half..(row + 1) * half];
            for head in r[..2 * h].chunks_exact_mut(dh) {
                let (a, b) = head.split_at_mut(half);
                for ((x0, x1), &(c, s)) in a.iter_mut().zip(b.iter_mut()).zip(cs) {
                    let (v0, v1) = (*x0, *x1);
                    *x0 = v0 * c - v1 * s;
                    *x1 = v0 * s + v1 * c;
                }
            }
        });
    }

    /// Scaled dot-product attention, each sequence's rows attending to all
    /// of that sequence's rows (bidirectional), one task per (sequence, head).
    /// `qkv` holds each row's query, key and value side by side.
    fn attention(&self, seqs: &[&[u32]], qkv: &[f32], ctx: &mut [f32], pool: &ThreadPool) {
        let h = self.cfg.hidden_size;
        let stride = 3 * h;
        let (q, k, v) = (qkv, &qkv[h..], &qkv[2 * h..]);
        let heads = self.cfg.num_attention_heads;
        let dh = h / heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut starts = Vec::with_capacity(seqs.len());
        let mut at = 0;
        for s in seqs {
            starts.push((at, s.len()));
            at += s.len();
        }
        // One output block (len × dh) per task, scattered into ctx after.
        let mut tasks: Vec<(usize, usize, Vec<f32>)> = starts
            .iter()
            .enumerate()
            .flat_map(|(s, &(_, len))| (0..heads).map(move |hd| (s, hd, vec![0.0; len * dh])))
            .collect();
        pool.for_parts(&mut tasks, 2, &|_, part| {
            let mut scores = Vec::new();
            for (s, hd, out) in part.iter_mut() {
                let (first, len) = starts[*s];
                let col = *hd * dh;
                scores.resize(len, 0.0);
                for i in 0..len {
                    let qi = &q[(first + i) * stride + col..][..dh];
                    let mut max = f32::NEG_INFINITY;
                    for (j, sc) in scores.iter_mut().enumerate() {
                        let kj = &k[(first + j) * stride + col..][..dh];
                        *sc = dot(qi, kj) * scale;
                        max = max.max(*sc);
                    }
                    let mut sum = 0.0;
                    for sc in scores.iter_mut() {
                        *sc = (*sc - max).exp();
                        sum += *sc;
                    }
                    let o = &mut out[i * dh..(i + 1) * dh];
                    o.fill(0.0);
                    for (j, sc) in scores.iter().enumerate() {
                        let p = sc / sum;
                        let vj = &v[(first + j) * stride + col..][..dh];
                        for (oe, ve) in o.iter_mut().zip(vj) {
                            *oe += p * ve;
                        }
                    }
                }
            }
        });
        for (s, hd, out) in &tasks {
            let (first, len) = starts[*s];
            for i in 0..len {
                let dst = (first + i) * h + hd * dh;
                ctx[dst..dst + dh].copy_from_slice(&out[i * dh..(i + 1) * dh]);
            }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent lanes: vectorisable and order-stable.
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        sum += a[i] * b[i];
    }
    sum
}

fn add_bias(x: &mut [f32], b: &[f32], pool: &ThreadPool) {
    pool.for_rows(x, b.len(), 16, &|_, r| {
        for (y, bb) in r.iter_mut().zip(b) {
            *y += bb;
        }
    });
}

/// `x = LayerNorm(x + y)`, row by row.
fn residual_norm(x: &mut [f32], y: &[f32], norm: &Norm, eps: f32, pool: &ThreadPool) {
    let h = norm.g.len();
    pool.for_rows(x, h, 16, &|i, r| {
        let yr = &y[i * h..(i + 1) * h];
        for (xe, ye) in r.iter_mut().zip(yr) {
            *xe += ye;
        }
        norm_row(r, norm, eps);
    });
}

fn layer_norm(x: &mut [f32], norm: &Norm, eps: f32, pool: &ThreadPool) {
    pool.for_rows(x, norm.g.len(), 16, &|_, r| norm_row(r, norm, eps));
}

fn norm_row(r: &mut [f32], norm: &Norm, eps: f32) {
    let n = r.len() as f32;
    let mean = r.iter().sum::<f32>() / n;
    let var = r.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in r.iter_mut().zip(&norm.g).zip(&norm.b) {
        *v = (*v - mean) * inv * g + b;
    }
}
