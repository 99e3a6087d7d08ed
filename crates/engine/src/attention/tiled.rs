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
//! transposed, and shared by all the tile's queries, and so is the value
//! block (widened, not transposed). The dot products, weighted sums and
//! widening run on AVX2 with FMA and F16C where the CPU has them (chosen at
//! run time) and on plain loops otherwise, and the softmax steps are the
//! kernels' ([`kernels::attn::scale_block`], [`kernels::attn::block_weights`],
//! vectorised likewise); every body gives the same bits.

use std::ops::Range;

use kernels::attn::{block_weights, scale_block, KEY_BLOCK};
use kernels::KvRows;

use super::HeadView;

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
    // [c * KEY_BLOCK + j]; keys past the block's end stay zero. Its values
    // widened: key j's at [j * d ..][..d].
    let mut keys_t = vec![0.0f32; d * KEY_BLOCK];
    let mut values = vec![0.0f32; KEY_BLOCK * d];
    let mut scores = [0.0f32; KEY_BLOCK];
    let mut weights = [0.0f32; KEY_BLOCK];
    out.fill(0.0);
    let mut start = k_lo / KEY_BLOCK * KEY_BLOCK;
    while start < k_hi {
        let end = (start + KEY_BLOCK).min(k_hi);
        simd.widen_block(head, start..end, &mut keys_t, &mut values);
        for (i, r) in ranges.iter().enumerate() {
            let (lo, hi) = (r.start.max(start), r.end.min(end));
            if lo >= hi {
                continue;
            }
            let span = lo - start..hi - start;
            simd.scores(&q[i * d..(i + 1) * d], &keys_t, &mut scores);
            let block_max = scale_block(&mut scores, span.clone(), scale);
            let new_max = max[i].max(block_max);
            let acc = &mut out[i * d..(i + 1) * d];
            if new_max > max[i] {
                // The first block rescales zeros by exp(-inf) = 0.
                let shrink = (max[i] - new_max).exp();
                acc.iter_mut().for_each(|a| *a *= shrink);
                sum[i] *= shrink;
                max[i] = new_max;
            }
            let block_sum = block_weights(&scores, span.clone(), new_max, &mut weights);
            sum[i] = (f64::from(sum[i]) + block_sum) as f32;
            simd.accumulate(
                acc,
                &weights[span.clone()],
                &values[span.start * d..span.end * d],
            );
        }
        start = end;
    }
    for (acc, &total) in out.chunks_exact_mut(d).zip(&sum) {
        let inv = if total == 0.0 { 0.0 } else { 1.0 / total };
        acc.iter_mut().for_each(|a| *a *= inv);
    }
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

    /// Widens the keys and values at `keys` (at most [`KEY_BLOCK`] of them)
    /// into `keys_t` (transposed: dimension c of key j at `c * KEY_BLOCK + j`,
    /// zero for keys past the block's end) and `values` (key j's row at
    /// `j * d`).
    fn widen_block(
        self,
        head: &HeadView,
        keys: Range<usize>,
        keys_t: &mut [f32],
        values: &mut [f32],
    ) {
        let d = head.len;
        let nk = keys.len();
        assert!(nk <= KEY_BLOCK, "key block size");
        assert!(keys_t.len() == d * KEY_BLOCK && values.len() == KEY_BLOCK * d);
        match self {
            Simd::Portable => {
                for (j, p) in keys.clone().enumerate() {
                    for (c, &h) in head.key(p).iter().enumerate() {
                        keys_t[c * KEY_BLOCK + j] = kernels::f16_to_f32(h);
                    }
                    for (v, &h) in values[j * d..(j + 1) * d].iter_mut().zip(head.value(p)) {
                        *v = kernels::f16_to_f32(h);
                    }
                }
                for row in keys_t.chunks_exact_mut(KEY_BLOCK) {
                    row[nk..].fill(0.0);
                }
            }
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => {
                let key_rows: Vec<&[u16]> = keys.clone().map(|p| head.key(p)).collect();
                assert!(key_rows.iter().all(|k| k.len() == d), "key row size");
                for (j, p) in keys.enumerate() {
                    let v = head.value(p);
                    assert_eq!(v.len(), d, "value row size");
                    // SAFETY: `Avx2` is only chosen when the CPU has F16C and
                    // d is a multiple of 8; both rows are d long (asserted).
                    unsafe { avx2::widen(v, &mut values[j * d..(j + 1) * d]) };
                }
                // SAFETY: as above; every key row is d long (asserted) and
                // keys_t holds d rows of KEY_BLOCK.
                unsafe { avx2::widen_transposed(&key_rows, keys_t) };
            }
        }
    }

    /// `acc += Σⱼ weights[j] · values[j * d ..][..d]` (`d` = `acc.len()`), one
    /// fused multiply-add per key in order.
    fn accumulate(self, acc: &mut [f32], weights: &[f32], values: &[f32]) {
        let d = acc.len();
        assert_eq!(values.len(), weights.len() * d, "value rows");
        match self {
            Simd::Portable => {
                for (&w, v) in weights.iter().zip(values.chunks_exact(d)) {
                    for (a, &x) in acc.iter_mut().zip(v) {
                        *a = w.mul_add(x, *a);
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2` is only chosen when the CPU has AVX2 and FMA and
            // the rows are a multiple of 8 long; values holds one row of
            // acc's length per weight (asserted).
            Simd::Avx2 => unsafe { avx2::accumulate(acc, weights, values) },
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

    /// `dst = src` widened.
    ///
    /// # Safety
    /// The CPU must have AVX2 and F16C; both are as long, a multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn widen(src: &[u16], dst: &mut [f32]) {
        for c in (0..dst.len()).step_by(8) {
            // SAFETY: c + 8 <= len for both (the caller's contract).
            unsafe { _mm256_storeu_ps(dst.as_mut_ptr().add(c), load_half8(src, c)) };
        }
    }

    /// Eight rows of eight lanes transposed: lane j of row c becomes lane c
    /// of row j.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xee>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xee>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xee>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xee>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    /// The key rows widened into `keys_t` transposed (dimension c of key j
    /// at `c * KEY_BLOCK + j`), zeros for keys past `keys.len()`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and F16C; at most KEY_BLOCK rows, every row d
    /// long with d a multiple of 8, and `keys_t.len() == d * KEY_BLOCK`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn widen_transposed(keys: &[&[u16]], keys_t: &mut [f32]) {
        let d = keys_t.len() / KEY_BLOCK;
        for j0 in (0..KEY_BLOCK).step_by(8) {
            for c0 in (0..d).step_by(8) {
                let mut r = [_mm256_setzero_ps(); 8];
                for (i, slot) in r.iter_mut().enumerate() {
                    if let Some(k) = keys.get(j0 + i) {
                        // SAFETY: c0 + 8 <= d == k.len() (the caller's contract).
                        *slot = unsafe { load_half8(k, c0) };
                    }
                }
                for (i, row) in transpose8(r).into_iter().enumerate() {
                    // SAFETY: row c0 + i < d of KEY_BLOCK floats, lanes j0..j0 + 8.
                    unsafe {
                        _mm256_storeu_ps(keys_t.as_mut_ptr().add((c0 + i) * KEY_BLOCK + j0), row)
                    };
                }
            }
        }
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

    /// `acc[c..c + 8W] += Σⱼ weights[j] · values[j * d + c..][..8W]`, the
    /// slice of `acc` held in `W` registers across all the values.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `c + 8W` must not pass the end of
    /// `acc`, and `values` must hold one row of acc's length per weight.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn accumulate_w<const W: usize>(
        acc: &mut [f32],
        c: usize,
        weights: &[f32],
        values: &[f32],
    ) {
        let d = acc.len();
        let mut a = [_mm256_setzero_ps(); W];
        for (r, slot) in a.iter_mut().enumerate() {
            // SAFETY: c + 8W <= acc.len() (the caller's contract).
            *slot = unsafe { _mm256_loadu_ps(acc.as_ptr().add(c + 8 * r)) };
        }
        for (j, &w) in weights.iter().enumerate() {
            let wv = _mm256_set1_ps(w);
            // SAFETY: row j of values is d long and c + 8W <= d.
            let row = unsafe { values.as_ptr().add(j * d + c) };
            for (r, slot) in a.iter_mut().enumerate() {
                // SAFETY: as above.
                let x = unsafe { _mm256_loadu_ps(row.add(8 * r)) };
                *slot = _mm256_fmadd_ps(wv, x, *slot);
            }
        }
        for (r, slot) in a.iter().enumerate() {
            // SAFETY: as for the loads.
            unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(c + 8 * r), *slot) };
        }
    }

    /// `acc += Σⱼ weights[j] · values[j * d ..][..d]`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `acc` must be a multiple of 8 long and
    /// `values` must hold one row of acc's length per weight.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn accumulate(acc: &mut [f32], weights: &[f32], values: &[f32]) {
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
