//! The BERT encoder (Devlin et al., 2019, "BERT: Pre-training of Deep
//! Bidirectional Transformers for Language Understanding"): word, absolute
//! position and token-type embeddings summed and layer-normed, then layers
//! of bidirectional multi-head self-attention and a GELU (erf) feed-forward,
//! each followed by a residual add and LayerNorm (post-norm).
//!
//! A batch is packed, not padded: the sequences' rows are stacked into one
//! matrix for every projection (one kernel call per weight for the whole
//! batch), and attention runs per sequence over that sequence's rows only,
//! so nothing of one input (or of padding, of which there is none) can
//! reach another's vector. The matrices go through the chat engine's
//! kernels ([`kernels::matmul_many`]) on a [`kernels::ThreadPool`].

use kernels::ThreadPool;

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

struct Norm {
    g: Vec<f32>,
    b: Vec<f32>,
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// A loaded BERT encoder.
pub struct Bert {
    cfg: BertConfig,
    weights: Weights,
    word: MatrixRef,
    position: MatrixRef,
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
        if cfg.hidden_act != "gelu" {
            return Err(weights.bad(format!(
                "hidden_act {} is not supported (gelu is)",
                cfg.hidden_act
            )));
        }
        if cfg.position_embedding_type != "absolute" {
            return Err(weights.bad(format!(
                "position_embedding_type {} is not supported (absolute is)",
                cfg.position_embedding_type
            )));
        }
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            return Err(weights.bad("hidden_size is not a multiple of num_attention_heads".into()));
        }
        let n = crate::weights::Names::for_weights(&weights);
        let linear = |name: &str, rows: usize, cols: usize| -> Result<Linear, EncoderError> {
            Ok(Linear {
                w: weights.matrix(&n.weight(name), rows, cols)?,
                b: weights.vector(&n.bias(name), rows)?,
            })
        };
        let norm = |name: &str| -> Result<Norm, EncoderError> {
            Ok(Norm {
                g: weights.vector(&n.norm_weight(name), h)?,
                b: weights.vector(&n.norm_bias(name), h)?,
            })
        };
        let word = weights.matrix_any_rows(&n.weight("word"), h)?;
        let position = weights.matrix_any_rows(&n.weight("position"), h)?;
        if position.rows < cfg.max_position_embeddings.min(512).min(position.rows) {
            return Err(weights.bad("too few position embeddings".into()));
        }
        let types = weights.matrix_any_rows(&n.weight("token_type"), h)?;
        let mut token_type = vec![0.0; h];
        weights.qmatrix(&types)?.dequantize_row(0, &mut token_type);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = |part: &str| format!("{i}.{part}");
            layers.push(Layer {
                q: linear(&l("q"), h, h)?,
                k: linear(&l("k"), h, h)?,
                v: linear(&l("v"), h, h)?,
                attn_out: linear(&l("attn_out"), h, h)?,
                attn_norm: norm(&l("attn_norm"))?,
                up: linear(&l("up"), cfg.intermediate_size, h)?,
                down: linear(&l("down"), h, cfg.intermediate_size)?,
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
        self.position.rows
    }

    /// The last hidden states of every sequence, packed: row `r` of the
    /// result belongs to the sequence whose rows cover `r`
    /// (`seqs[0]`'s rows first). Ids and lengths must have been checked.
    pub fn forward(&self, seqs: &[&[u32]], pool: &ThreadPool) -> Result<Vec<f32>, EncoderError> {
        let h = self.cfg.hidden_size;
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let mut x = vec![0.0f32; total * h];
        let word = self.weights.qmatrix(&self.word)?;
        let position = self.weights.qmatrix(&self.position)?;
        let mut row = 0;
        let mut pos_row = vec![0.0f32; h];
        for seq in seqs {
            for (p, &id) in seq.iter().enumerate() {
                let out = &mut x[row * h..(row + 1) * h];
                word.dequantize_row(id as usize, out);
                position.dequantize_row(p, &mut pos_row);
                for ((o, pv), tv) in out.iter_mut().zip(&pos_row).zip(&self.token_type) {
                    *o += pv + tv;
                }
                row += 1;
            }
        }
        layer_norm(&mut x, &self.emb_norm, self.eps, pool);

        let mut q = vec![0.0f32; total * h];
        let mut k = vec![0.0f32; total * h];
        let mut v = vec![0.0f32; total * h];
        let mut ctx = vec![0.0f32; total * h];
        let mut proj = vec![0.0f32; total * h];
        let mut up = vec![0.0f32; total * self.cfg.intermediate_size];
        for layer in &self.layers {
            let ws = [
                self.weights.qmatrix(&layer.q.w)?,
                self.weights.qmatrix(&layer.k.w)?,
                self.weights.qmatrix(&layer.v.w)?,
            ];
            kernels::matmul_many(&ws, &x, total, &mut [&mut q, &mut k, &mut v], pool);
            add_bias(&mut q, &layer.q.b, pool);
            add_bias(&mut k, &layer.k.b, pool);
            add_bias(&mut v, &layer.v.b, pool);
            self.attention(seqs, &q, &k, &v, &mut ctx, pool);

            let wo = self.weights.qmatrix(&layer.attn_out.w)?;
            kernels::matmul(&wo, &ctx, total, &mut proj, pool);
            residual_norm(
                &mut x,
                &proj,
                &layer.attn_out.b,
                &layer.attn_norm,
                self.eps,
                pool,
            );

            let wu = self.weights.qmatrix(&layer.up.w)?;
            kernels::matmul(&wu, &x, total, &mut up, pool);
            let bu = &layer.up.b;
            pool.for_rows(&mut up, bu.len(), 4, &|_, r| {
                for (y, b) in r.iter_mut().zip(bu) {
                    *y = gelu_erf(*y + b);
                }
            });
            let wd = self.weights.qmatrix(&layer.down.w)?;
            kernels::matmul(&wd, &up, total, &mut proj, pool);
            residual_norm(
                &mut x,
                &proj,
                &layer.down.b,
                &layer.out_norm,
                self.eps,
                pool,
            );
        }
        Ok(x)
    }

    /// Scaled dot-product attention, each sequence's rows attending to all
    /// of that sequence's rows (bidirectional), one task per (sequence, head).
    fn attention(
        &self,
        seqs: &[&[u32]],
        q: &[f32],
        k: &[f32],
        v: &[f32],
        ctx: &mut [f32],
        pool: &ThreadPool,
    ) {
        let h = self.cfg.hidden_size;
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
                    let qi = &q[(first + i) * h + col..(first + i) * h + col + dh];
                    let mut max = f32::NEG_INFINITY;
                    for (j, sc) in scores.iter_mut().enumerate() {
                        let kj = &k[(first + j) * h + col..(first + j) * h + col + dh];
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
                        let vj = &v[(first + j) * h + col..(first + j) * h + col + dh];
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

/// GELU with the exact error function, as BERT's `gelu` activation.
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

fn add_bias(x: &mut [f32], b: &[f32], pool: &ThreadPool) {
    pool.for_rows(x, b.len(), 16, &|_, r| {
        for (y, bb) in r.iter_mut().zip(b) {
            *y += bb;
        }
    });
}

/// `x = LayerNorm(x + y + bias)`, row by row.
fn residual_norm(x: &mut [f32], y: &[f32], bias: &[f32], norm: &Norm, eps: f32, pool: &ThreadPool) {
    let h = bias.len();
    pool.for_rows(x, h, 16, &|i, r| {
        let yr = &y[i * h..(i + 1) * h];
        for ((xe, ye), be) in r.iter_mut().zip(yr).zip(bias) {
            *xe += ye + be;
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
