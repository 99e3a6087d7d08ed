//! A cache-blocked, packed single-precision GEMM for many activation rows
//! against one weight matrix (an encoder's batch of tokens through a
//! projection): `out[m][n] = bias[n] + Σ_k x[m][k] · W[n][k]`.
//!
//! The structure is the one of Goto and van de Geijn ("Anatomy of
//! High-Performance Matrix Multiplication", ACM TOMS 2008) as BLIS lays it
//! out: the weights are packed once, at load ([`PackedF32`]), into panels of
//! [`NR`] output columns stored k-major, so a micro-kernel streams them
//! contiguously. F16 weights stay F16 in their panels (converted to f32 in
//! the micro-kernel, exactly): a batch of one sentence is bound by the
//! weights' bytes, and half the bytes is twice the speed there; per call, each task packs a block of at most [`MC`]
//! activation rows by at most [`KC`] inputs into panels of the level's
//! `MR` rows (that block stays in L2 while every weight panel of the task
//! passes over it, one kc × NR weight panel staying in L1 while every row
//! panel meets it). The `MR × NR` micro-kernel keeps its whole output tile
//! in registers: 6 × 16 in twelve AVX2 registers, 12 × 16 in twelve
//! AVX-512 registers, 4 × 16 in plain Rust for the scalar level.
//! Tasks are (row block, column range) tiles shared over the pool.
//!
//! The level follows [`crate::Level::active`] (so `PARLANCE_KERNELS` caps it);
//! results differ between levels only by float rounding (the tests compare
//! each against [`crate::reference::gemm_f32`]).

use crate::{Level, QMatrix, ThreadPool};
use std::cell::RefCell;

/// Output columns per packed weight panel (and per micro-kernel tile).
pub const NR: usize = 16;
/// Inputs per packed block (a kc × NR weight panel is 16 KiB: L1).
const KC: usize = 256;
/// Most activation rows per task (an MC × KC block is 96 KiB: L2).
const MC: usize = 96;

/// A weight matrix packed for [`gemm_f32`]: `rows` output columns of `cols`
/// inputs, in panels of [`NR`] rows stored k-major (element
/// `p * cols * NR + k * NR + j` is `W[p * NR + j][k]`, zero past the last
/// row), as F16 when every source matrix is F16, else as f32; the bias
/// padded alike.
#[derive(Clone)]
pub struct PackedF32 {
    rows: usize,
    cols: usize,
    data: Panels,
    bias: Vec<f32>,
}

/// The packed elements.
#[derive(Clone)]
enum Panels {
    F32(Vec<f32>),
    /// IEEE half-precision bits.
    F16(Vec<u16>),
}

impl Panels {
    fn new(f16: bool, len: usize) -> Self {
        if f16 {
            Panels::F16(vec![0; len])
        } else {
            Panels::F32(vec![0.0; len])
        }
    }

    /// Element `base + k * NR` ← `W[n][k]` for every k of row `n` (`row`:
    /// scratch of `cols` floats).
    fn put_row(&mut self, w: &QMatrix<'_>, n: usize, base: usize, row: &mut [f32]) {
        match self {
            Panels::F16(d) => {
                for (k, h) in w.row_data(n).chunks_exact(2).enumerate() {
                    d[base + k * NR] = u16::from_le_bytes([h[0], h[1]]);
                }
            }
            Panels::F32(d) => {
                w.dequantize_row(n, row);
                for (k, v) in row.iter().enumerate() {
                    d[base + k * NR] = *v;
                }
            }
        }
    }

    /// A pointer to element `at`.
    fn at(&self, at: usize) -> *const u8 {
        match self {
            Panels::F32(d) => d[at..].as_ptr().cast(),
            Panels::F16(d) => d[at..].as_ptr().cast(),
        }
    }
}

impl std::fmt::Debug for PackedF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedF32")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish()
    }
}

impl PackedF32 {
    /// Packs `w` (any type the kernels read, dequantized to `f32`) with an
    /// optional bias (`w.rows()` values; zero when absent).
    ///
    /// # Panics
    /// If a bias is given whose length is not `w.rows()`.
    pub fn pack(w: &QMatrix<'_>, bias: Option<&[f32]>) -> Self {
        Self::pack_concat(&[(*w, bias)])
    }

    /// Several matrices of the same input width packed as one whose output
    /// columns are theirs side by side (a layer's query, key and value
    /// projections as one product), with their biases concatenated.
    ///
    /// # Panics
    /// If the matrices' `cols` differ or a bias has the wrong length.
    pub fn pack_concat(ws: &[(QMatrix<'_>, Option<&[f32]>)]) -> Self {
        let cols = ws.first().map_or(0, |(w, _)| w.cols());
        let rows: usize = ws.iter().map(|(w, _)| w.rows()).sum();
        let mut row = vec![0.0f32; cols];
        let f16 = ws.iter().all(|(w, _)| w.ty() == gguf::GgmlType::F16);
        let mut data = Panels::new(f16, rows.div_ceil(NR) * NR * cols);
        let mut bias = vec![0.0f32; rows];
        let mut n = 0;
        for (w, b) in ws {
            assert_eq!(w.cols(), cols, "concatenated matrices share their input");
            if let Some(b) = b {
                assert_eq!(b.len(), w.rows(), "one bias per output");
                bias[n..n + w.rows()].copy_from_slice(b);
            }
            for r in 0..w.rows() {
                data.put_row(w, r, (n / NR) * cols * NR + n % NR, &mut row);
                n += 1;
            }
        }
        Self::with_bias(rows, cols, data, Some(&bias))
    }

    fn with_bias(rows: usize, cols: usize, data: Panels, bias: Option<&[f32]>) -> Self {
        let mut padded = vec![0.0f32; rows.div_ceil(NR) * NR];
        if let Some(b) = bias {
            assert_eq!(b.len(), rows, "one bias per output");
            padded[..rows].copy_from_slice(b);
        }
        Self {
            rows,
            cols,
            data,
            bias: padded,
        }
    }

    /// Output columns (the weight matrix's rows).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Inputs per output (the weight matrix's columns).
    pub fn cols(&self) -> usize {
        self.cols
    }

    fn panels(&self) -> usize {
        self.rows.div_ceil(NR)
    }

    /// Whether the panels hold F16 (else f32).
    pub fn is_f16(&self) -> bool {
        matches!(self.data, Panels::F16(_))
    }
}

/// A micro-kernel: `kc` steps over an `MR`-row packed activation panel `a`
/// and an [`NR`]-column packed weight panel `b` (f32 or F16 elements, by
/// kernel), into the `rows × cols` corner of the tile at `c` (row stride
/// `ldc`): `c = acc + bias` when `init`, else `c += acc`.
///
/// # Safety
/// `a` holds `kc * MR` values, `b` `kc * NR` elements, `bias` `NR`, and
/// `c` the `rows × cols` tile; the CPU has the kernel's instruction set.
pub(crate) type Micro = unsafe fn(
    kc: usize,
    a: *const f32,
    b: *const u8,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    init: bool,
);

/// The micro-kernel of `level` for f32 or F16 panels, and its row count
/// `MR`.
fn micro_for(level: Level, f16: bool) -> (Micro, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::avx2::gemm as g;
        let level = Level::best_up_to(level);
        match (level, f16) {
            (Level::Avx512, false) => return (g::micro_12x16::<false>, 12),
            (Level::Avx512, true) => return (g::micro_12x16::<true>, 12),
            (Level::Avx2 | Level::AvxVnni, false) => return (g::micro_6x16::<false>, 6),
            (Level::Avx2 | Level::AvxVnni, true) => return (g::micro_6x16::<true>, 6),
            (Level::Scalar, _) => {}
        }
    }
    let _ = level;
    if f16 {
        (micro_scalar::<true>, SCALAR_MR)
    } else {
        (micro_scalar::<false>, SCALAR_MR)
    }
}

const SCALAR_MR: usize = 4;

/// The scalar level's micro-kernel (portable Rust, 4 × 16), over F16
/// panels when `F16`.
///
/// # Safety
/// As [`Micro`].
#[allow(clippy::too_many_arguments)] // the micro-kernels' common signature
unsafe fn micro_scalar<const F16: bool>(
    kc: usize,
    a: *const f32,
    b: *const u8,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    init: bool,
) {
    // SAFETY: the caller gives kc * MR, kc * NR and NR readable values
    // (panels are allocated as Vec<f32> or Vec<u16>, so `b` is aligned).
    let (a, bias) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * SCALAR_MR),
            std::slice::from_raw_parts(bias, NR),
        )
    };
    let mut acc = [[0.0f32; NR]; SCALAR_MR];
    let mut bk = [0.0f32; NR];
    for (k, ak) in a.chunks_exact(SCALAR_MR).enumerate() {
        if F16 {
            // SAFETY: as above, kc * NR u16s.
            let h = unsafe { std::slice::from_raw_parts(b.cast::<u16>().add(k * NR), NR) };
            for (o, &v) in bk.iter_mut().zip(h) {
                *o = crate::f16::f16_to_f32(v);
            }
        } else {
            // SAFETY: as above, kc * NR f32s.
            let f = unsafe { std::slice::from_raw_parts(b.cast::<f32>().add(k * NR), NR) };
            bk.copy_from_slice(f);
        }
        for (row, &x) in acc.iter_mut().zip(ak) {
            for (o, &w) in row.iter_mut().zip(&bk) {
                *o += x * w;
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(rows) {
        for (j, v) in row.iter().enumerate().take(cols) {
            // SAFETY: (i, j) is inside the caller's rows × cols tile.
            let dst = unsafe { &mut *c.add(i * ldc + j) };
            *dst = if init { v + bias[j] } else { *dst + v };
        }
    }
}

thread_local! {
    /// The packed activation block, reused across calls on each thread.
    static A_PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Output pointer shared by the tasks; each task writes a disjoint tile.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint tiles (see `gemm_f32_with`).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `out[m * w.rows() + n] = bias[n] + Σ_k x[m * w.cols() + k] · W[n][k]` for
/// `m` in `0..batch`, on the kernel level in force ([`Level::active`]).
///
/// # Panics
/// If `x.len() != batch * w.cols()` or `out.len() != batch * w.rows()`.
pub fn gemm_f32(w: &PackedF32, x: &[f32], batch: usize, out: &mut [f32], pool: &ThreadPool) {
    gemm_f32_with(w, x, batch, out, pool, Level::active());
}

/// [`gemm_f32`] on a chosen level (the best this CPU has at or below it).
///
/// # Panics
/// As [`gemm_f32`].
pub fn gemm_f32_with(
    w: &PackedF32,
    x: &[f32],
    batch: usize,
    out: &mut [f32],
    pool: &ThreadPool,
    level: Level,
) {
    let (n_all, k_all) = (w.rows, w.cols);
    assert_eq!(x.len(), batch * k_all, "x must hold batch * cols values");
    assert_eq!(
        out.len(),
        batch * n_all,
        "out must hold batch * rows values"
    );
    if batch == 0 || n_all == 0 {
        return;
    }
    let (micro, mr) = micro_for(level, w.is_f16());
    // Row blocks of at most MC rows, a multiple of MR, as even as possible.
    let m_blocks = batch.div_ceil(MC);
    let mc = batch.div_ceil(m_blocks).div_ceil(mr) * mr;
    let m_blocks = batch.div_ceil(mc);
    // Split the columns too when there are few row blocks, so every thread
    // gets work (three tasks per thread even out a late one), keeping at
    // least four panels per task.
    let panels = w.panels();
    let want = pool.n_threads() * 3;
    let n_split = if pool.n_threads() > 1 {
        want.div_ceil(m_blocks).clamp(1, panels.div_ceil(4).max(1))
    } else {
        1
    };
    let per_split = panels.div_ceil(n_split);
    let n_split = panels.div_ceil(per_split);
    let outp = OutPtr(out.as_mut_ptr());
    let task = |t: usize| {
        let (mb, ns) = (t / n_split, t % n_split);
        let m0 = mb * mc;
        let rows = mc.min(batch - m0);
        let row_panels = rows.div_ceil(mr);
        let p0 = ns * per_split;
        let p1 = (p0 + per_split).min(panels);
        let mut apack = A_PACK.with(|a| std::mem::take(&mut *a.borrow_mut()));
        for k0 in (0..k_all).step_by(KC) {
            let kc = KC.min(k_all - k0);
            apack.clear();
            apack.resize(row_panels * kc * mr, 0.0);
            for (i, xr) in x[m0 * k_all..(m0 + rows) * k_all]
                .chunks_exact(k_all)
                .enumerate()
            {
                let panel = &mut apack[(i / mr) * kc * mr..];
                for (k, v) in xr[k0..k0 + kc].iter().enumerate() {
                    panel[k * mr + i % mr] = *v;
                }
            }
            for p in p0..p1 {
                let b = w.data.at(p * k_all * NR + k0 * NR);
                let cols = NR.min(n_all - p * NR);
                for ip in 0..row_panels {
                    let r = mr.min(rows - ip * mr);
                    // SAFETY: the packed panels hold kc * mr and kc * NR
                    // values from these offsets and the bias NR from p * NR;
                    // the tile (m0 + ip * mr .. + r) × (p * NR .. + cols) is
                    // inside `out` (batch × n_all, checked above) and only
                    // this task writes it (tasks own disjoint row blocks ×
                    // panel ranges). `micro_for` picks kernels this CPU has.
                    unsafe {
                        micro(
                            kc,
                            apack.as_ptr().add(ip * kc * mr),
                            b,
                            w.bias.as_ptr().add(p * NR),
                            outp.get().add((m0 + ip * mr) * n_all + p * NR),
                            n_all,
                            r,
                            cols,
                            k0 == 0,
                        );
                    }
                }
            }
        }
        A_PACK.with(|a| *a.borrow_mut() = apack);
    };
    pool.run(m_blocks * n_split, &task);
}

#[cfg(test)]
mod tests {
    use super::*;
    use gguf::GgmlType;

    #[test]
    fn packing_places_every_weight() {
        let (rows, cols) = (19, 5);
        let w: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let m = QMatrix::new(GgmlType::F32, &bytes, rows, cols).expect("matrix");
        let p = PackedF32::pack(&m, None);
        let Panels::F32(data) = &p.data else {
            panic!("F32 weights pack as f32")
        };
        assert_eq!(data.len(), 2 * NR * cols);
        for n in 0..rows {
            for k in 0..cols {
                assert_eq!(
                    data[(n / NR) * cols * NR + k * NR + n % NR],
                    w[n * cols + k]
                );
            }
        }
        assert!(data[cols * NR..].chunks(NR).all(|c| c[3..] == [0.0; 13]));
    }
}
