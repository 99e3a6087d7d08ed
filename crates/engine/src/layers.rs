//! Building blocks the model families share: quantized linear layers over the
//! memory-mapped weights, F32 vectors (norm weights), writing keys and values
//! into the block KV cache, and the output projection. Attention itself lives
//! in [`crate::attention`].

use gguf::{GgmlType, GgufFile, TensorInfo};
use kernels::{QMatrix, RowOrder, ThreadPool};

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
    /// The summation order llama.cpp would give this row's K-quant products
    /// ([`RowOrder::prompt_row`] for a prompt row, the default for a decode
    /// step). Only the sums' last bits depend on it.
    pub order: RowOrder,
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

    /// `out[n × rows] = x[n × cols] · Wᵀ`, each row summed in its `orders`
    /// entry's order (see [`BatchRow::order`]).
    pub fn forward(
        &self,
        f: &GgufFile,
        x: &[f32],
        n: usize,
        orders: &[RowOrder],
        out: &mut [f32],
        pool: &ThreadPool,
    ) {
        Linear::forward_many(f, &[self], x, n, orders, &mut [out], pool);
    }

    /// Several layers over the same input in one pass of the thread pool
    /// (see [`kernels::matmul_many`]): `outs[i][n × rows_i] = x · W_iᵀ`.
    pub fn forward_many(
        f: &GgufFile,
        layers: &[&Linear],
        x: &[f32],
        n: usize,
        orders: &[RowOrder],
        outs: &mut [&mut [f32]],
        pool: &ThreadPool,
    ) {
        let ms: Vec<QMatrix<'_>> = layers.iter().map(|l| l.matrix(f)).collect();
        kernels::matmul_many_ordered(&ms, x, n, orders, outs, pool, kernels::Isa::detect());
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

/// Past the last layer's attention only the rows that want logits matter
/// (the others' keys and values are written), and llama.cpp narrows to them
/// there: keeps those rows of each `(buffer, row width)` in `bufs` and
/// returns them, or `None` when every row wants logits.
pub fn keep_output_rows(
    rows: &[BatchRow],
    bufs: &mut [(&mut Vec<f32>, usize)],
) -> Option<Vec<BatchRow>> {
    let keep: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].want_logits).collect();
    if keep.len() == rows.len() {
        return None;
    }
    for (buf, width) in bufs.iter_mut() {
        let w = *width;
        **buf = keep
            .iter()
            .flat_map(|&i| &buf[i * w..(i + 1) * w])
            .copied()
            .collect();
    }
    Some(keep.iter().map(|&i| rows[i]).collect())
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
/// `m × n_vocab` logits, in row order, into `logits` (resized; what it held
/// is overwritten, not cleared first).
#[allow(clippy::too_many_arguments)]
pub fn output_logits(
    f: &GgufFile,
    rows: &[BatchRow],
    x: &[f32],
    norm: &[f32],
    eps: f32,
    output: &Linear,
    pool: &ThreadPool,
    logits: &mut Vec<f32>,
) {
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
    logits.resize(picked.len() * output.rows(), 0.0);
    // llama.cpp's output head sees one row per sequence that wants logits.
    output.forward(f, &normed, picked.len(), &[], logits, pool);
}
