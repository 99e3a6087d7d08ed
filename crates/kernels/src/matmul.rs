//! The weight-matrix view and the matmul driver: quantize the activations once
//! (into a reusable per-thread buffer), cut the output rows into chunks, and
//! let the pool's threads run the per-type kernel over them.

use crate::act::{quantize_into, ActBuf, ActKind, ActView};
use crate::formats::{ChunkKernel, Format, RowsKernel, MAX_B, MAX_B_ANY};
use crate::RowOrder;
use crate::{check_row, Isa, KernelError, ThreadPool};
use gguf::GgmlType;
use std::cell::RefCell;

/// A weight matrix: `rows` output rows of `cols` elements each, every row a
/// contiguous run of `ty` blocks (GGML's layout: `dims[0]` is `cols`).
#[derive(Debug, Clone, Copy)]
pub struct QMatrix<'a> {
    ty: GgmlType,
    format: Format,
    data: &'a [u8],
    rows: usize,
    cols: usize,
    row_bytes: usize,
}

impl<'a> QMatrix<'a> {
    /// Checks that `ty` has kernels, `cols` is a whole number of blocks (and,
    /// for the quantized types, of 32-element activation blocks) and `data`
    /// holds exactly `rows` rows.
    pub fn new(
        ty: GgmlType,
        data: &'a [u8],
        rows: usize,
        cols: usize,
    ) -> Result<Self, KernelError> {
        let format = Format::of(ty).ok_or(KernelError::UnsupportedType(ty))?;
        let bad_len = KernelError::BadRowLength {
            ty,
            cols,
            block: ty.block_size(),
        };
        let row_bytes = ty.row_bytes(cols).ok_or(bad_len.clone())?;
        if matches!(format.act_kind(), ActKind::Q8_0 | ActKind::Q8_1) && !cols.is_multiple_of(32) {
            return Err(bad_len);
        }
        let want = row_bytes
            .checked_mul(rows)
            .ok_or(KernelError::SizeMismatch {
                expected: usize::MAX,
                got: data.len(),
            })?;
        if data.len() != want {
            return Err(KernelError::SizeMismatch {
                expected: want,
                got: data.len(),
            });
        }
        Ok(QMatrix {
            ty,
            format,
            data,
            rows,
            cols,
            row_bytes,
        })
    }

    /// A GGUF tensor as a matrix: `cols = dims[0]`, `rows` = the product of
    /// the other dims (1 for a vector); `data` is `GgufFile::tensor_data(t)`.
    pub fn from_tensor(t: &gguf::TensorInfo, data: &'a [u8]) -> Result<Self, KernelError> {
        let too_big = KernelError::SizeMismatch {
            expected: usize::MAX,
            got: data.len(),
        };
        let cols =
            usize::try_from(t.dims.first().copied().unwrap_or(1)).map_err(|_| too_big.clone())?;
        let rows = t.dims.iter().skip(1).try_fold(1usize, |acc, &d| {
            usize::try_from(d)
                .ok()
                .and_then(|d| acc.checked_mul(d))
                .ok_or(too_big.clone())
        })?;
        QMatrix::new(t.ty, data, rows, cols)
    }

    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// The raw bytes of row `row`.
    ///
    /// # Panics
    /// If `row >= rows()`.
    pub fn row_data(&self, row: usize) -> &'a [u8] {
        &self.data[row * self.row_bytes..(row + 1) * self.row_bytes]
    }

    /// Writes row `row` as `f32` into `out` (the embedding lookup).
    ///
    /// # Panics
    /// If `row >= rows()` or `out.len() != cols()`.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        assert!(
            row < self.rows,
            "row {row} out of range ({} rows)",
            self.rows
        );
        assert_eq!(out.len(), self.cols, "output length must equal cols");
        debug_assert!(check_row(self.ty, self.row_bytes, self.cols).is_ok());
        self.format.dequantize(self.row_data(row), out);
    }
}

thread_local! {
    /// Quantized activations, reused across calls on the calling thread.
    static SCRATCH: RefCell<Vec<ActBuf>> = const { RefCell::new(Vec::new()) };
}

/// `out[b * w.rows() + r] = sum_k W[r][k] * x[b * w.cols() + k]` for `b` in
/// `0..batch`, with the fastest kernels this CPU supports.
///
/// # Panics
/// If `x.len() != batch * w.cols()` or `out.len() != batch * w.rows()`.
pub fn matmul(w: &QMatrix<'_>, x: &[f32], batch: usize, out: &mut [f32], pool: &ThreadPool) {
    matmul_with(w, x, batch, out, pool, Isa::detect());
}

/// [`matmul`] on a chosen instruction set (falls back to [`Isa::Scalar`] when
/// this CPU lacks `isa`). Tests use it to compare the paths.
///
/// # Panics
/// As [`matmul`].
pub fn matmul_with(
    w: &QMatrix<'_>,
    x: &[f32],
    batch: usize,
    out: &mut [f32],
    pool: &ThreadPool,
    isa: Isa,
) {
    matmul_many_with(&[*w], x, batch, &mut [out], pool, isa);
}

/// Several matrices with the same input at once (a layer's query, key and
/// value projections; a feed-forward's gate and up): `outs[i]` receives
/// [`matmul`] of `ws[i]`. The input is quantized once per activation kind and
/// all the matrices' rows are shared out in one pool run, so the threads meet
/// once instead of once per matrix. Each output has exactly the bits
/// [`matmul`] would give it.
///
/// # Panics
/// If the matrices' `cols` differ, `ws` and `outs` differ in length, or a
/// size is wrong as in [`matmul`].
pub fn matmul_many(
    ws: &[QMatrix<'_>],
    x: &[f32],
    batch: usize,
    outs: &mut [&mut [f32]],
    pool: &ThreadPool,
) {
    matmul_many_with(ws, x, batch, outs, pool, Isa::detect());
}

/// Fewest activation rows whose quantization is shared over the threads.
const MIN_PARALLEL_ROWS: usize = 8;

/// At most this many matrices go through one [`matmul_many`] call.
const MAX_MATRICES: usize = 4;

/// [`matmul_many`] on a chosen instruction set.
///
/// # Panics
/// As [`matmul_many`], or with more than four matrices.
pub fn matmul_many_with(
    ws: &[QMatrix<'_>],
    x: &[f32],
    batch: usize,
    outs: &mut [&mut [f32]],
    pool: &ThreadPool,
    isa: Isa,
) {
    matmul_many_ordered(ws, x, batch, &[], outs, pool, isa);
}

/// [`matmul_many_with`] with each activation row's summation order:
/// `orders[b]` (the default past its end) says which of llama.cpp's kernels
/// row `b` would meet, and the K-quant kernels follow its order (see
/// [`RowOrder`]). Other formats have one order.
///
/// # Panics
/// As [`matmul_many`].
pub fn matmul_many_ordered(
    ws: &[QMatrix<'_>],
    x: &[f32],
    batch: usize,
    orders: &[RowOrder],
    outs: &mut [&mut [f32]],
    pool: &ThreadPool,
    isa: Isa,
) {
    assert_eq!(ws.len(), outs.len(), "one output per matrix");
    assert!(ws.len() <= MAX_MATRICES, "at most {MAX_MATRICES} matrices");
    let Some(first) = ws.first() else {
        return;
    };
    let cols = first.cols;
    assert_eq!(x.len(), batch * cols, "x must hold batch * cols values");
    for (w, out) in ws.iter().zip(outs.iter()) {
        assert_eq!(w.cols, cols, "matrices of one call share their input");
        assert_eq!(
            out.len(),
            batch * w.rows,
            "out must hold batch * rows values"
        );
    }
    if batch == 0 {
        return;
    }
    // Quantize the input once per activation kind the matrices need (take the
    // buffers out of the thread-local so a nested call cannot alias them).
    let mut bufs = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut kinds: Vec<ActKind> = Vec::with_capacity(ws.len());
    for w in ws {
        let kind = w.format.act_kind();
        if kinds.contains(&kind) {
            continue;
        }
        if bufs.len() <= kinds.len() {
            bufs.push(ActBuf::default());
        }
        let buf = &mut bufs[kinds.len()];
        buf.prepare(kind, cols, batch);
        if kind != ActKind::F32 {
            // Row by row, over the threads when there are enough rows.
            let rows = buf.rows_mut(kind, cols, batch);
            if pool.shares(batch, MIN_PARALLEL_ROWS) {
                let mut rows: Vec<_> = rows.collect();
                pool.for_parts(&mut rows, MIN_PARALLEL_ROWS, &|first, part| {
                    for (i, dst) in part.iter_mut().enumerate() {
                        let b = first + i;
                        quantize_into(kind, &x[b * cols..(b + 1) * cols], dst.reborrow());
                    }
                });
            } else {
                for (xr, dst) in x.chunks_exact(cols).zip(rows) {
                    quantize_into(kind, xr, dst);
                }
            }
        }
        kinds.push(kind);
    }
    let mut parts = Vec::with_capacity(ws.len());
    let mut n_tasks = 0;
    for (w, out) in ws.iter().zip(outs.iter_mut()) {
        let slot = kinds
            .iter()
            .position(|&k| k == w.format.act_kind())
            .unwrap_or(0);
        let (kernel, max_b) = kernel_for(w.format, isa);
        // More activation rows than one call takes: a kernel that unpacks
        // the task's weights once for all of them, where there is one.
        let many = chunk_kernel_for(w.format, isa).filter(|_| batch > max_b);
        let chunk = chunk_rows(w.rows, w.row_bytes, batch, max_b, pool.n_threads());
        let tasks = w.rows.div_ceil(chunk);
        parts.push(Part {
            w: *w,
            act: slot,
            kernel,
            max_b,
            many,
            out: OutPtr(out.as_mut_ptr()),
            chunk,
            first_task: n_tasks,
        });
        n_tasks += tasks;
    }
    let views: Vec<ActView<'_>> = bufs[..kinds.len()]
        .iter()
        .map(|b| b.view(cols, x, orders))
        .collect();
    let task = |t: usize| {
        // The part whose tasks include t: the last one starting at or before it.
        let Some(p) = parts.iter().rev().find(|p| p.first_task <= t) else {
            return;
        };
        run_chunk(
            &p.w,
            &views[p.act],
            batch,
            p.out,
            (p.kernel, p.max_b, p.many),
            p.chunk,
            t - p.first_task,
        );
    };
    pool.run(n_tasks, &task);
    drop(views);
    SCRATCH.with(|s| *s.borrow_mut() = bufs);
}

/// The kernel for `format` on `isa` and the most activation rows it takes
/// per call.
fn kernel_for(format: Format, isa: Isa) -> (RowsKernel, usize) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && Isa::detect() == Isa::Avx2 {
        return crate::avx2::kernel(format);
    }
    let _ = isa;
    (format.scalar_kernel(), MAX_B)
}

/// The kernel for `format` on `isa` that takes all of a task's activation
/// rows in one call, if there is one.
fn chunk_kernel_for(format: Format, isa: Isa) -> Option<ChunkKernel> {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && Isa::detect() == Isa::Avx2 {
        return crate::avx2::chunk_kernel(format);
    }
    let _ = (format, isa);
    None
}

/// Output pointer shared by the tasks; each task writes a disjoint set of rows.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint elements (see `run_chunk`).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// One matrix of a [`matmul_many`] call: its tasks are `first_task..` (one per
/// `chunk` rows), its input the `act`-th quantized view.
struct Part<'a> {
    w: QMatrix<'a>,
    act: usize,
    kernel: RowsKernel,
    /// Most activation rows `kernel` takes per call.
    max_b: usize,
    /// The kernel taking all the activation rows at once, when there are
    /// more than `max_b` and the format has one.
    many: Option<ChunkKernel>,
    out: OutPtr,
    chunk: usize,
    first_task: usize,
}

/// Most weight bytes one task of a several-threads matmul takes.
const MAX_TASK_BYTES: usize = 1 << 20;

/// Rows per task: small enough to balance the threads and (for batches) keep a
/// chunk of weights in cache while every activation row passes over it.
fn chunk_rows(
    rows: usize,
    row_bytes: usize,
    batch: usize,
    max_b: usize,
    n_threads: usize,
) -> usize {
    let mut chunk = rows;
    if n_threads > 1 {
        // Four tasks per thread, but none over MAX_TASK_BYTES of weights: a
        // thread that runs out of tasks waits for the others' last one, so
        // a large matrix (an output head) gets many short tasks.
        chunk = rows.div_ceil(n_threads * 4).max(16);
        chunk = chunk.min((MAX_TASK_BYTES / row_bytes.max(1)).max(16));
    }
    if batch > max_b {
        // Every group of max_b activation rows passes over the task's
        // weights, which should stay in the core's L2 cache meanwhile. Much
        // smaller tasks pay each kernel call's set-up (laying out the
        // activations) too often: 32 KiB tasks made prefill ~8% slower.
        chunk = chunk.min((128 * 1024 / row_bytes.max(1)).max(4));
    }
    chunk.clamp(1, rows.max(1))
}

/// Task `t` of one matrix: rows `t * chunk ..` of every batch row into `out`
/// (`batch × w.rows`, which the caller checked).
fn run_chunk(
    w: &QMatrix<'_>,
    act: &ActView<'_>,
    batch: usize,
    out: OutPtr,
    (kernel, max_b, many): (RowsKernel, usize, Option<ChunkKernel>),
    chunk: usize,
    t: usize,
) {
    let rows = w.rows;
    let r0 = t * chunk;
    if r0 >= rows {
        return;
    }
    let r1 = (r0 + chunk).min(rows);
    let wchunk = &w.data[r0 * w.row_bytes..r1 * w.row_bytes];
    if let Some(many) = many {
        // SAFETY: `out` has batch * rows elements (checked by the caller), so
        // b * rows + r0 + r is in bounds for b < batch, r < r1 - r0; task t
        // is the only one writing rows r0..r1 of this matrix. `chunk_kernel_for`
        // only returns SIMD kernels the CPU supports.
        unsafe { many(wchunk, w.row_bytes, act, batch, out.get().add(r0), rows) };
        return;
    }
    let max_b = max_b.clamp(1, MAX_B_ANY);
    for b0 in (0..batch).step_by(max_b) {
        let nb = (batch - b0).min(max_b);
        let mut outs: [&mut [f32]; MAX_B_ANY] = Default::default();
        for (j, o) in outs.iter_mut().take(nb).enumerate() {
            // SAFETY: `out` has batch * rows elements (checked by the caller),
            // so (b0 + j) * rows + r0 .. + (r1 - r0) is in bounds; task t is
            // the only one writing rows r0..r1 of any batch row of this
            // matrix, and within this task the `nb` slices are distinct
            // batch rows.
            *o = unsafe {
                std::slice::from_raw_parts_mut(out.get().add((b0 + j) * rows + r0), r1 - r0)
            };
        }
        // SAFETY: `kernel_for` only returns SIMD kernels the CPU supports.
        unsafe { kernel(wchunk, w.row_bytes, act, b0, &mut outs[..nb]) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shapes() {
        let data = vec![0u8; 34 * 2];
        assert!(QMatrix::new(GgmlType::Q8_0, &data, 2, 32).is_ok());
        assert_eq!(
            QMatrix::new(GgmlType::Q8_0, &data, 3, 32).unwrap_err(),
            KernelError::SizeMismatch {
                expected: 102,
                got: 68
            }
        );
        assert!(matches!(
            QMatrix::new(GgmlType::Q8_0, &data, 2, 33),
            Err(KernelError::BadRowLength { .. })
        ));
        assert_eq!(
            QMatrix::new(GgmlType::Q8_K, &data, 1, 256).unwrap_err(),
            KernelError::UnsupportedType(GgmlType::Q8_K)
        );
        // F32 weights have 1-element blocks but any length works.
        let f = vec![0u8; 4 * 5];
        assert!(QMatrix::new(GgmlType::F32, &f, 1, 5).is_ok());
    }

    #[test]
    fn chunks_cover_rows() {
        for (rows, rb, batch, nt) in [
            (1, 10, 1, 2),
            (576, 360, 1, 2),
            (49152, 612, 1, 2),
            (192, 360, 64, 2),
            (7, 5, 9, 1),
        ] {
            let c = chunk_rows(rows, rb, batch, 4, nt);
            assert!(c >= 1 && c <= rows);
            assert!(rows.div_ceil(c) * c >= rows);
        }
    }
}
