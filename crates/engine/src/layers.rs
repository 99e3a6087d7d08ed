//! Building blocks the model families share: quantized linear layers over the
//! memory-mapped weights, F32 vectors (norm weights), and causal attention of a
//! batch of rows over the block KV cache.

use gguf::{GgmlType, GgufFile, TensorInfo};
use kernels::{QMatrix, ThreadPool};

use crate::error::EngineError;
use crate::kv::{KvCache, SeqId};
use crate::ops;

/// One row of a forward batch: a token of a sequence at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRow {
    pub seq: SeqId,
    pub pos: usize,
    pub token: u32,
    /// Whether the caller wants this row's logits (the last prompt token, or a decode step).
    pub want_logits: bool,
}

/// A weight matrix stored in the model file: `rows` outputs of `cols` inputs.
#[derive(Debug, Clone)]
pub struct Linear {
    info: TensorInfo,
    rows: usize,
    cols: usize,
}

impl Linear {
    /// Looks up tensor `name` and checks it is `cols` × `rows` (GGML order) in a supported type.
    pub fn load(f: &GgufFile, name: &str, cols: usize, rows: usize) -> Result<Self, EngineError> {
        let info = f
            .tensor(name)
            .ok_or_else(|| EngineError::Model(format!("tensor {name} is missing")))?
            .clone();
        if info.dims != [cols as u64, rows as u64] {
            return Err(EngineError::Model(format!(
                "tensor {name} has shape {:?}, expected [{cols}, {rows}]",
                info.dims
            )));
        }
        QMatrix::new(info.ty, f.tensor_data(&info), rows, cols)
            .map_err(|e| EngineError::Model(format!("tensor {name}: {e}")))?;
        Ok(Linear { info, rows, cols })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn ty(&self) -> GgmlType {
        self.info.ty
    }

    fn matrix<'f>(&self, f: &'f GgufFile) -> QMatrix<'f> {
        QMatrix::new(
            self.info.ty,
            f.tensor_data(&self.info),
            self.rows,
            self.cols,
        )
        .expect("shape and type were validated when the model was loaded")
    }

    /// `out[n × rows] = x[n × cols] · Wᵀ`.
    pub fn forward(&self, f: &GgufFile, x: &[f32], n: usize, out: &mut [f32], pool: &ThreadPool) {
        kernels::matmul(&self.matrix(f), x, n, out, pool);
    }

    /// Row `row` of the matrix as f32 (embedding lookup).
    pub fn row(&self, f: &GgufFile, row: usize, out: &mut [f32]) {
        self.matrix(f).dequantize_row(row, out);
    }
}

/// An F32 vector from the model file (norm weights).
pub fn load_vector(f: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>, EngineError> {
    let info = f
        .tensor(name)
        .ok_or_else(|| EngineError::Model(format!("tensor {name} is missing")))?;
    if info.ty != GgmlType::F32 || info.dims != [len as u64] {
        return Err(EngineError::Model(format!(
            "tensor {name} is {} {:?}, expected F32 [{len}]",
            info.ty, info.dims
        )));
    }
    Ok(f.tensor_data(info)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The geometry of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Multiplies q·k before the softmax.
    pub scale: f32,
    /// Sliding window: a row at position p sees keys at positions > p - window.
    pub window: Option<usize>,
}

/// A raw pointer that tasks of one `ThreadPool::run` share to write disjoint slices.
struct SharedOut(*mut f32);
// SAFETY: every task writes only its own, non-overlapping range (see `attention`).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `[at, at + len)` must lie inside the buffer and no other task may touch it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, at: usize, len: usize) -> &mut [f32] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
    }
}

/// A sequence with at least this many rows in one pass takes the
/// single-precision path; fewer rows take the half-precision one. This is the
/// query-tile size at which llama.cpp's CPU flash attention switches from its
/// F16 kernel to its tiled F32 one; following it keeps our logits close to
/// the reference's for short prompts and decode steps alike.
const F32_ATTENTION_MIN_ROWS: usize = 64;

/// Causal attention of each batch row over its own sequence's cached keys and
/// values (which must already include the batch's rows). `q` and `out` are
/// `rows.len() × n_head*head_dim`.
pub fn attention(
    rows: &[BatchRow],
    q: &[f32],
    kv: &KvCache,
    layer: usize,
    shape: AttnShape,
    pool: &ThreadPool,
    out: &mut [f32],
) -> Result<(), EngineError> {
    let hd = shape.head_dim;
    let q_dim = shape.n_head * hd;
    assert_eq!(out.len(), rows.len() * q_dim, "attention output size");
    let views = rows
        .iter()
        .map(|r| kv.view(layer, r.seq))
        .collect::<Result<Vec<_>, _>>()?;
    let wide: Vec<bool> = rows
        .iter()
        .map(|r| rows.iter().filter(|o| o.seq == r.seq).count() >= F32_ATTENTION_MIN_ROWS)
        .collect();
    let group = shape.n_head / shape.n_kv_head;
    let shared = SharedOut(out.as_mut_ptr());
    let task = |t: usize| {
        let (r, h) = (t / shape.n_head, t % shape.n_head);
        let row = rows[r];
        let qh = &q[r * q_dim + h * hd..r * q_dim + (h + 1) * hd];
        let lo = shape.window.map_or(0, |w| (row.pos + 1).saturating_sub(w));
        let head = HeadView {
            view: &views[r],
            off: (h / group) * hd,
            len: hd,
        };
        // SAFETY: task t owns out[r*q_dim + h*hd .. + hd]; tasks never overlap and
        // `out` outlives `pool.run`, which returns only when every task is done.
        let o = unsafe { shared.slice(r * q_dim + h * hd, hd) };
        if wide[r] {
            attend_f32(qh, &head, lo..row.pos + 1, shape.scale, o);
        } else {
            attend_f16(qh, &head, lo..row.pos + 1, shape.scale, o);
        }
    };
    pool.run(rows.len() * shape.n_head, &task);
    Ok(())
}

/// One KV head of one sequence.
struct HeadView<'a> {
    view: &'a crate::kv::SeqView<'a>,
    off: usize,
    len: usize,
}

impl HeadView<'_> {
    fn key(&self, p: usize) -> &[f32] {
        &self.view.key(p)[self.off..self.off + self.len]
    }

    fn value(&self, p: usize) -> &[f32] {
        &self.view.value(p)[self.off..self.off + self.len]
    }
}

/// Softmax attention in single precision: scores, softmax, weighted sum.
fn attend_f32(
    q: &[f32],
    head: &HeadView,
    keys: std::ops::Range<usize>,
    scale: f32,
    out: &mut [f32],
) {
    let mut scores: Vec<f32> = keys
        .clone()
        .map(|p| ops::dot(q, head.key(p)) * scale)
        .collect();
    ops::softmax(&mut scores);
    out.fill(0.0);
    for (i, p) in keys.enumerate() {
        ops::axpy(out, scores[i], head.value(p));
    }
}

/// Online-softmax attention with the query and the running weighted sum of
/// values rounded to half precision at every step, as llama.cpp's F16 CPU
/// flash-attention kernel computes it.
fn attend_f16(
    q: &[f32],
    head: &HeadView,
    keys: std::ops::Range<usize>,
    scale: f32,
    out: &mut [f32],
) {
    let round = |x: f32| kernels::f16_to_f32(kernels::f32_to_f16(x));
    let q16: Vec<f32> = q.iter().map(|&x| round(x)).collect();
    let (mut sum, mut max) = (0.0f32, f32::NEG_INFINITY);
    out.fill(0.0);
    for p in keys {
        let s = ops::dot_f16_ordered(&q16, head.key(p)) * scale;
        let (mut ms, mut vs) = (1.0f32, 1.0f32);
        if s > max {
            let old = max;
            max = s;
            ms = (old - max).exp();
            out.iter_mut().for_each(|o| *o = round(*o * ms));
        } else {
            vs = (s - max).exp();
        }
        for (o, &v) in out.iter_mut().zip(head.value(p)) {
            *o = round(v.mul_add(vs, *o));
        }
        sum = sum.mul_add(ms, vs);
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    out.iter_mut().for_each(|o| *o *= inv);
}

/// Writes each row's key and value (`rows.len() × kv_dim` each) into the cache.
pub fn store_kv(
    rows: &[BatchRow],
    k: &[f32],
    v: &[f32],
    kv: &mut KvCache,
    layer: usize,
) -> Result<(), EngineError> {
    let d = kv.kv_dim();
    for (i, r) in rows.iter().enumerate() {
        kv.write(
            layer,
            r.seq,
            r.pos,
            &k[i * d..(i + 1) * d],
            &v[i * d..(i + 1) * d],
        )?;
    }
    Ok(())
}

/// The final norm and output projection for the rows that want logits:
/// `m × n_vocab` logits, in row order.
pub fn output_logits(
    f: &GgufFile,
    rows: &[BatchRow],
    x: &[f32],
    norm: &[f32],
    eps: f32,
    output: &Linear,
    pool: &ThreadPool,
) -> Vec<f32> {
    let d = norm.len();
    let picked: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].want_logits).collect();
    let mut normed = vec![0.0f32; picked.len() * d];
    for (j, &i) in picked.iter().enumerate() {
        ops::rms_norm(
            &x[i * d..(i + 1) * d],
            norm,
            eps,
            &mut normed[j * d..(j + 1) * d],
        );
    }
    let mut logits = vec![0.0f32; picked.len() * output.rows()];
    output.forward(f, &normed, picked.len(), &mut logits, pool);
    logits
}
