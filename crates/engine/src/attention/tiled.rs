//! Single-precision attention of a tile of queries that share one KV head,
//! computed as llama.cpp's tiled CPU flash attention computes it (the kernel
//! it takes for 64 or more rows of one sequence), to the bit.
//!
//! The keys are walked in blocks of [`KEY_BLOCK`] (GGML's `GGML_FA_TILE_KV`),
//! aligned to positions that are multiples of the block, as GGML's tiles are
//! aligned to KV cells. Per block, each query:
//! - scores every key as one fused multiply-add chain over the head's
//!   dimensions, in order (GGML's GEMM keeps one lane per key), then scales;
//! - updates its running maximum, rescaling its weighted sum and its sum with
//!   libm's `expf` when the maximum grows;
//! - takes the weights with GGML's vectorised `exp` approximation
//!   ([`kernels::glu::exp_approx`]), summing them as `ggml_vec_soft_max_f32`
//!   does on AVX-512: each group of 16 lanes reduced as a tree in single
//!   precision, the groups added in double precision, the block's total added
//!   to the running sum in double precision and rounded once;
//! - adds the block's values weighted, one fused multiply-add per key in order.
//!
//! Keys outside a query's range weigh exactly zero there, as GGML's masked
//! (−∞) scores do. The key block is widened to single precision once,
//! transposed, and shared by all the tile's queries. The dot products and
//! weighted sums run on AVX2 with FMA where the CPU has them (chosen at run
//! time) and on plain loops otherwise; both give the same bits.

use std::ops::Range;

use kernels::glu::exp_approx;
use kernels::KvRows;

use super::HeadView;

/// Keys per block (GGML's `GGML_FA_TILE_KV`).
const KEY_BLOCK: usize = 64;
/// Lanes whose weights `ggml_vec_soft_max_f32` sums in single precision before
/// adding them in double precision (one 512-bit register).
const SUM_GROUP: usize = 16;

/// Attends `q` (`ranges.len()` queries of the head's size, one after another)
/// to the keys of `head`, query `i` over positions `ranges[i]`, scores scaled
/// by `scale`. Writes one row of the head's size per query into `out`; a query
/// with no keys gets zeros.
pub(super) fn attend(
    q: &[f32],
    ranges: &[Range<usize>],
    head: &HeadView,
    scale: f32,
    out: &mut [f32],
) {
    let d = head.len;
    assert_eq!(q.len(), ranges.len() * d, "tile query size");
    assert_eq!(out.len(), ranges.len() * d, "tile output size");
    let simd = Simd::detect(d);
    let k_lo = ranges.iter().map(|r| r.start).min().unwrap_or(0);
    let k_hi = ranges.iter().map(|r| r.end).max().unwrap_or(0);
    let mut max = vec![f32::NEG_INFINITY; ranges.len()];
    let mut sum = vec![0.0f32; ranges.len()];
    // The block's keys widened and transposed: dimension c of key j at
    // [c * KEY_BLOCK + j]; keys past the block's end stay zero.
    let mut keys_t = vec![0.0f32; d * KEY_BLOCK];
    let mut scores = [0.0f32; KEY_BLOCK];
    let mut values: [&[u16]; KEY_BLOCK] = [&[]; KEY_BLOCK];
    out.fill(0.0);
    let mut start = k_lo / KEY_BLOCK * KEY_BLOCK;
    while start < k_hi {
        let end = (start + KEY_BLOCK).min(k_hi);
        let nk = end - start;
        keys_t.fill(0.0);
        for j in 0..nk {
            for (c, &h) in head.key(start + j).iter().enumerate() {
                keys_t[c * KEY_BLOCK + j] = kernels::f16_to_f32(h);
            }
            values[j] = head.value(start + j);
        }
        for (i, r) in ranges.iter().enumerate() {
            let (lo, hi) = (r.start.max(start), r.end.min(end));
            if lo >= hi {
                continue;
            }
            let span = lo - start..hi - start;
            simd.scores(&q[i * d..(i + 1) * d], &keys_t, &mut scores);
            let mut block_max = f32::NEG_INFINITY;
            for x in &mut scores[span.clone()] {
                *x *= scale;
                block_max = block_max.max(*x);
            }
            let new_max = max[i].max(block_max);
            let acc = &mut out[i * d..(i + 1) * d];
            if new_max > max[i] {
                // The first block rescales zeros by exp(-inf) = 0.
                let shrink = (max[i] - new_max).exp();
                acc.iter_mut().for_each(|a| *a *= shrink);
                sum[i] *= shrink;
                max[i] = new_max;
            }
            let mut weights = [0.0f32; KEY_BLOCK];
            for (w, &s) in weights[span.clone()].iter_mut().zip(&scores[span.clone()]) {
                *w = exp_approx(s - new_max);
            }
            let block_sum: f64 = weights
                .chunks_exact(SUM_GROUP)
                .map(|g| f64::from(tree_sum(g)))
                .sum();
            sum[i] = (f64::from(sum[i]) + block_sum) as f32;
            simd.accumulate(acc, &weights[span.clone()], &values[span]);
        }
        start = end;
    }
    for (acc, &total) in out.chunks_exact_mut(d).zip(&sum) {
        let inv = if total == 0.0 { 0.0 } else { 1.0 / total };
        acc.iter_mut().for_each(|a| *a *= inv);
    }
}

/// The sum of 16 lanes in the order of `_mm512_reduce_add_ps`: halves added
/// lane by lane until one is left.
fn tree_sum(g: &[f32]) -> f32 {
    let mut v = [0.0f32; SUM_GROUP];
    v.copy_from_slice(g);
    let mut n = SUM_GROUP;
    while n > 1 {
        n /= 2;
        for j in 0..n {
            v[j] += v[j + n];
        }
    }
    v[0]
}

/// The inner loops, on the best instruction set available for this head size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simd {
    Portable,
    /// AVX2, FMA and F16C are present (checked by [`Simd::detect`]) and the head
    /// size is a multiple of 8.
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Simd {
    fn detect(head_dim: usize) -> Simd {
        #[cfg(target_arch = "x86_64")]
        if kernels::Isa::detect() == kernels::Isa::Avx2 && head_dim.is_multiple_of(8) {
            return Simd::Avx2;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = head_dim;
        Simd::Portable
    }

    /// `out[j] = Σ_c q[c] · keys_t[c * KEY_BLOCK + j]`, one fused chain per key
    /// over `c` in order.
    fn scores(self, q: &[f32], keys_t: &[f32], out: &mut [f32; KEY_BLOCK]) {
        assert_eq!(keys_t.len(), q.len() * KEY_BLOCK, "key block size");
        match self {
            Simd::Portable => {
                out.fill(0.0);
                for (&qc, row) in q.iter().zip(keys_t.chunks_exact(KEY_BLOCK)) {
                    for (o, &k) in out.iter_mut().zip(row) {
                        *o = qc.mul_add(k, *o);
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2` is only chosen when the CPU has AVX2 and FMA; the
            // block holds q.len() rows of KEY_BLOCK (checked above).
            Simd::Avx2 => unsafe { avx2::scores(q, keys_t, out) },
        }
    }

    /// `acc += Σⱼ weights[j] · values[j]` (values in half precision), one
    /// fused multiply-add per key in order.
    fn accumulate(self, acc: &mut [f32], weights: &[f32], values: &[&[u16]]) {
        match self {
            Simd::Portable => {
                for (&w, v) in weights.iter().zip(values) {
                    for (a, &x) in acc.iter_mut().zip(v.iter()) {
                        *a = w.mul_add(kernels::f16_to_f32(x), *a);
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => {
                assert!(
                    values.iter().all(|v| v.len() == acc.len()),
                    "value row size"
                );
                // SAFETY: `Avx2` is only chosen when the CPU has AVX2, FMA and
                // F16C and the rows are a multiple of 8 long; all rows are acc's length.
                unsafe { avx2::accumulate(acc, weights, values) }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2+FMA+F16C loops of the tile; callers check the CPU and the row sizes.

    use std::arch::x86_64::*;

    use super::KEY_BLOCK;

    /// Eight halves at `p + c` widened to floats.
    ///
    /// # Safety
    /// `c + 8 <= p.len()`; the CPU must have F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load_half8(p: &[u16], c: usize) -> __m256 {
        // SAFETY: eight readable halves at c (the caller's contract).
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.as_ptr().add(c).cast()) })
    }

    /// The block's scores, eight keys per register, one fused chain per lane.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `keys_t.len() == q.len() * KEY_BLOCK`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn scores(q: &[f32], keys_t: &[f32], out: &mut [f32; KEY_BLOCK]) {
        const R: usize = KEY_BLOCK / 8;
        let mut acc = [_mm256_setzero_ps(); R];
        for (c, &qc) in q.iter().enumerate() {
            let qv = _mm256_set1_ps(qc);
            // SAFETY: row c of the block holds KEY_BLOCK floats (the caller's contract).
            let row = unsafe { keys_t.as_ptr().add(c * KEY_BLOCK) };
            for (r, a) in acc.iter_mut().enumerate() {
                // SAFETY: as above, 8r + 8 <= KEY_BLOCK.
                *a = _mm256_fmadd_ps(qv, unsafe { _mm256_loadu_ps(row.add(8 * r)) }, *a);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            // SAFETY: out holds KEY_BLOCK floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * r), *a) };
        }
    }

    /// `acc[c..c + 8W] += Σⱼ weights[j] · values[j][c..c + 8W]`, the slice of
    /// `acc` held in `W` registers across all the values.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `c + 8W` must not pass the end of
    /// `acc`, and every value row must be as long as `acc`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn accumulate_w<const W: usize>(
        acc: &mut [f32],
        c: usize,
        weights: &[f32],
        values: &[&[u16]],
    ) {
        let mut a = [_mm256_setzero_ps(); W];
        for (r, slot) in a.iter_mut().enumerate() {
            // SAFETY: c + 8W <= acc.len() (the caller's contract).
            *slot = unsafe { _mm256_loadu_ps(acc.as_ptr().add(c + 8 * r)) };
        }
        for (&w, v) in weights.iter().zip(values) {
            let wv = _mm256_set1_ps(w);
            for (r, slot) in a.iter_mut().enumerate() {
                // SAFETY: v.len() == acc.len() (the caller's contract).
                let x = unsafe { load_half8(v, c + 8 * r) };
                *slot = _mm256_fmadd_ps(wv, x, *slot);
            }
        }
        for (r, slot) in a.iter().enumerate() {
            // SAFETY: as for the loads.
            unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(c + 8 * r), *slot) };
        }
    }

    /// `acc += Σⱼ weights[j] · values[j]`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `acc` must be a multiple of 8 long and
    /// every value row as long as `acc`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn accumulate(acc: &mut [f32], weights: &[f32], values: &[&[u16]]) {
        let mut c = 0;
        while c + 64 <= acc.len() {
            // SAFETY: forwarded contract, c + 64 <= acc.len().
            unsafe { accumulate_w::<8>(acc, c, weights, values) };
            c += 64;
        }
        while c + 8 <= acc.len() {
            // SAFETY: forwarded contract, c + 8 <= acc.len().
            unsafe { accumulate_w::<1>(acc, c, weights, values) };
            c += 8;
        }
    }
}
