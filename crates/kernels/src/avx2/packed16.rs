//! The 16-bit form of [`super::packed`] for the signed 32-element block
//! formats (Q8_0, Q5_0, Q4_0, IQ4_NL): the same lanes, fewer instructions.
//!
//! [`super::packed`] forms each block's integer products as llama.cpp's
//! AVX2 dot product does: the weights' signs moved onto the activations
//! (`vpsignb`), `vpmaddubsw`, then `vpmaddwd` by ones into eight 32-bit
//! lanes of four products each. Here a task's weight blocks and each group's
//! activation blocks are widened once to 16-bit integers, in an order where
//! two `vpmaddwd` and one add give each lane the same four products
//! ([`halves`]): no sign step and no multiply by ones, so one instruction
//! fewer on the two vector pipes that multiply, per (block, activation row).
//! The lanes' integers are exactly those of the other paths, and from there
//! (conversion, fused multiply-add by `d_w · d_a` in block order, llama.cpp's
//! horizontal sum) nothing differs, so every result keeps its bits.
//!
//! Widening costs a pass over the task's weights per call. For Q8_0, which
//! the plain form reads straight from the weights, the first activation
//! group widens each row while it sweeps the row before (the raw weights
//! prefetched a few rows ahead), so the widening's loads from memory overlap
//! the products instead of waiting in a pass of their own: that made the
//! form pay from two groups ([`MIN_BATCH_CHEAP`]). The other signed formats
//! unpack in a pass of their own (their unpacking costs more than their
//! loads); the unsigned formats (Q4_1) lose nothing to a sign step and stay
//! in the plain form.
//! `cargo run --release -p kernels --example matmul_bench` with
//! `CLOCK=cpu PARLANCE_KERNELS=avx2` times both (docs/PERFORMANCE.md).

use super::blocks::Block;
use super::packed::{row_table, write_row, GROUP, PACKED};
use super::*;

/// Fewest activation rows for which a format whose plain form unpacks for
/// free ([`Block::CHEAP_UNPACK`], Q8_0) takes this form. Gemma's head
/// (262144×640), one thread, with the widening inside the first sweep: 1.11×
/// the plain form at 16 rows (with a widening pass of its own it was 0.97×),
/// and 1.09× (32 rows) and 1.04× (64) that separate pass (docs/PERFORMANCE.md).
pub(super) const MIN_BATCH_CHEAP: usize = 16;

/// Whether `K` at `batch` activation rows takes this form.
pub(super) fn takes<K: Block>(batch: usize) -> bool {
    K::BIASED && (!K::CHEAP_UNPACK || batch >= MIN_BATCH_CHEAP)
}

/// A task's widened weights (blocks, scales, offsets: `n_rows · nb` of
/// each, offsets only for formats with one) and their row count. Raw
/// pointers: the first group's sweep writes row r + 1 while reading row r.
#[derive(Clone, Copy)]
struct Weights {
    ops: *mut i8,
    d: *mut f32,
    m: *mut f32,
    n_rows: usize,
}

/// The raw weights the first group widens as it sweeps them.
#[derive(Clone, Copy)]
struct Raw<'a> {
    w: &'a [u8],
    row_bytes: usize,
}

/// How many rows ahead of the one it widens the first group prefetches
/// the raw weights (a row of Gemma's head is 680 bytes).
const PREFETCH_ROWS: usize = 4;

/// Bytes of one unpacked block: its 32 quants as 16-bit integers, in the
/// lane order of [`halves`].
const BLOCK_BYTES: usize = 64;

/// A block's 32 signed bytes as two vectors of sixteen 16-bit integers whose
/// `vpmaddwd` products, added, give `maddubs`-then-`madd`'s eight lanes:
/// lane k of the first holds elements `4k, 4k + 1`, of the second `4k + 2,
/// 4k + 3`. Weights and activations go through the same order, so every
/// lane is the same four products' exact sum as on the other paths.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn halves(x: __m256i) -> (__m256i, __m256i) {
    // In each 128-bit lane: the byte pairs of elements 0,1, 4,5, 8,9, 12,13
    // first, then 2,3, 6,7, 10,11, 14,15; then the lanes' first halves
    // together and their second halves together.
    let pick = _mm256_setr_epi8(
        0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7,
        10, 11, 14, 15,
    );
    let grouped = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(x, pick));
    (
        _mm256_cvtepi8_epi16(_mm256_castsi256_si128(grouped)),
        _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(grouped)),
    )
}

/// `out[b * stride + r] = dot(weight row r, activation row b)` for every row
/// `r` of `w` and every `b < batch`.
///
/// # Safety
/// `out.add(b * stride + r)` must be writable for those `b` and `r`, and no
/// other thread may touch those elements meanwhile; the CPU must support
/// AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows<K: Block>(
    w: &[u8],
    row_bytes: usize,
    a: &ActView<'_>,
    batch: usize,
    out: *mut f32,
    stride: usize,
) {
    let nb = a.cols / 32;
    assert_eq!(row_bytes, nb * K::BYTES, "row size");
    let n_rows = w.len() / row_bytes.max(1);
    if n_rows == 0 || nb == 0 {
        return;
    }
    let mut packed = PACKED.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let wts = Weights {
        ops: packed.ops.resized(n_rows * nb * BLOCK_BYTES).as_mut_ptr(),
        d: packed.d.resized(n_rows * nb).as_mut_ptr(),
        m: packed
            .m
            .resized(if K::OFFSET { n_rows * nb } else { 0 })
            .as_mut_ptr(),
        n_rows,
    };
    let raw = Raw { w, row_bytes };
    if !K::CHEAP_UNPACK {
        // Unpacking costs these formats more than their loads: a pass of
        // its own measured faster than inside the first group's sweep.
        for r in 0..n_rows {
            // SAFETY: row r exists in `w` and in the buffers.
            unsafe { widen_row::<K>(raw, wts, nb, r) };
        }
    }
    let mut scratch = Scratch::take();
    for b0 in (0..batch).step_by(GROUP) {
        let n = (batch - b0).min(GROUP);
        // Q8_0's first group widens the weights as it sweeps them, the
        // others read them.
        let raw = (b0 == 0 && K::CHEAP_UNPACK).then_some(raw);
        // SAFETY: the caller's contract, for rows b0..b0 + n; the buffers
        // hold n_rows · nb blocks, scales and (formats with one) offsets.
        unsafe { at_width!(n, B => group::<K, B>(wts, raw, &mut scratch, a, b0, out, stride)) }
    }
    scratch.put_back();
    PACKED.with(|p| *p.borrow_mut() = packed);
}

/// Widens weight row `r` of `raw` into `wts` (its blocks in [`halves`]'
/// order, its scales and offsets), and prefetches the raw row
/// [`PREFETCH_ROWS`] ahead.
///
/// # Safety
/// Row `r` must exist in `raw` and `wts` (`nb` blocks each); the CPU must
/// support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn widen_row<K: Block>(raw: Raw<'_>, wts: Weights, nb: usize, r: usize) {
    let row = &raw.w[r * raw.row_bytes..(r + 1) * raw.row_bytes];
    // A hint only (a prefetch past the end of the weights is harmless).
    let ahead = row.as_ptr().wrapping_add(PREFETCH_ROWS * raw.row_bytes);
    for line in (0..raw.row_bytes).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast());
    }
    for i in 0..nb {
        let k = r * nb + i;
        // SAFETY: block i (< nb) lies inside the row; widened block k
        // (< n_rows · nb) has BLOCK_BYTES bytes at k · BLOCK_BYTES inside
        // the buffer, its scale and offset slot k (the caller's contract).
        unsafe {
            let u = K::unpack(row.as_ptr().add(i * K::BYTES));
            // The signed quants as values (only signed formats come here:
            // `takes`).
            let (lo, hi) = halves(u.sx);
            _mm256_storeu_si256(wts.ops.add(k * BLOCK_BYTES).cast(), lo);
            _mm256_storeu_si256(wts.ops.add(k * BLOCK_BYTES + 32).cast(), hi);
            *wts.d.add(k) = u.d;
            if K::OFFSET {
                *wts.m.add(k) = u.m;
            }
        }
    }
}

/// Activation rows `b0..b0 + B` against the `n_rows` unpacked weight rows.
///
/// # Safety
/// As [`rows`], for these activation rows.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn group<K: Block, const B: usize>(
    wts: Weights,
    raw: Option<Raw<'_>>,
    scratch: &mut Scratch,
    a: &ActView<'_>,
    b0: usize,
    out: *mut f32,
    stride: usize,
) {
    const W: usize = GROUP;
    let n_rows = wts.n_rows;
    let nb = a.cols / 32;
    scratch.side_by_side::<W>(a.d, K::OFFSET.then_some(a.s), b0, B, nb);
    let qstride = nb * 32;
    let src = &a.qs[b0 * qstride..(b0 + B) * qstride];
    {
        // Block-major, widened: block i of row j at (i * B + j) * 64.
        let laid = scratch.quants.resized(2 * src.len());
        let lp = laid.as_mut_ptr();
        for j in 0..B {
            for i in 0..nb {
                // SAFETY: row j's block i is 32 bytes inside `src`; its
                // widened form 64 bytes at (i * B + j) * 64 inside `laid`
                // (2 · B · nb · 32 bytes).
                unsafe {
                    let x = _mm256_loadu_si256(src.as_ptr().add(j * qstride + 32 * i).cast());
                    let (lo, hi) = halves(x);
                    let at = lp.add((i * B + j) * BLOCK_BYTES);
                    _mm256_storeu_si256(at.cast(), lo);
                    _mm256_storeu_si256(at.add(32).cast(), hi);
                }
            }
        }
    }
    let qs = scratch.quants.as_slice();
    let tables = scratch.products.resized(2 * W * nb);
    let (dt, st) = (scratch.scales.as_slice(), scratch.sums.as_slice());
    assert!(dt.len() >= W * nb && (!K::OFFSET || st.len() >= W * nb));
    assert!(qs.len() >= B * nb * BLOCK_BYTES);
    let (dtp, stp, tp) = (dt.as_ptr(), st.as_ptr(), tables.as_mut_ptr());
    let (dwp, mwp) = (wts.d.cast_const(), wts.m.cast_const());
    if let Some(raw) = raw {
        assert!(raw.w.len() >= n_rows * raw.row_bytes && raw.row_bytes == nb * K::BYTES);
        // SAFETY: row 0 exists (the caller's contract, checked above).
        unsafe { widen_row::<K>(raw, wts, nb, 0) };
    }
    // SAFETY: row 0's nb scales (and offsets) exist; the tables hold
    // 2 · W · nb floats, the activation tables W · nb (asserted).
    let mut next_summs = unsafe { row_table::<K>(dwp, mwp, nb, dtp, stp, tp, 0) };
    for r in 0..n_rows {
        let summs = next_summs;
        // SAFETY: table r % 2 lies inside the 2 · W · nb floats.
        let pp = unsafe { tp.add((r % 2) * W * nb) };
        if r + 1 < n_rows {
            if let Some(raw) = raw {
                // Row r + 1 widened while row r's products run: its loads
                // overlap them (a pass of its own waited on memory).
                // SAFETY: row r + 1 exists (r + 1 < n_rows).
                unsafe { widen_row::<K>(raw, wts, nb, r + 1) };
            }
            // SAFETY: row r + 1's scales exist (widened).
            next_summs = unsafe { row_table::<K>(dwp, mwp, nb, dtp, stp, tp, r + 1) };
        }
        let base = wts.ops.cast_const().wrapping_add(r * nb * BLOCK_BYTES);
        let mut acc = [_mm256_setzero_ps(); B];
        for i in 0..nb {
            // SAFETY: widened block r · nb + i lies inside the buffer.
            let (wlo, whi) = unsafe {
                let p = base.add(i * BLOCK_BYTES);
                (
                    _mm256_loadu_si256(p.cast()),
                    _mm256_loadu_si256(p.add(32).cast()),
                )
            };
            for j in 0..B {
                // SAFETY: row j's widened block i is 64 bytes at
                // (i * B + j) * 64 inside the re-laid quants (j < B, i < nb;
                // asserted); its scale is at W * i + j (< W * nb).
                let (alo, ahi, s) = unsafe {
                    let q = qs.as_ptr().add((i * B + j) * BLOCK_BYTES);
                    (
                        _mm256_loadu_si256(q.cast()),
                        _mm256_loadu_si256(q.add(32).cast()),
                        _mm256_broadcast_ss(&*pp.add(W * i + j)),
                    )
                };
                let p = _mm256_add_epi32(_mm256_madd_epi16(wlo, alo), _mm256_madd_epi16(whi, ahi));
                acc[j] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(p), acc[j]);
            }
        }
        // SAFETY: the caller's contract (b0 + j < batch for j < B, r < n_rows).
        unsafe { write_row::<K, B>(&acc, summs, out, stride, b0, r) };
    }
}
