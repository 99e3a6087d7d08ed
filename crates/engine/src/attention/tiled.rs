//! Single-precision attention of a tile of queries that share one KV head.
//!
//! The keys are walked in blocks of [`KEY_BLOCK`]; every query of the tile
//! takes its scores against the block, updates its online softmax (running
//! maximum and sum, rescaling its weighted sum when the maximum grows) and adds
//! the block's weighted values, while the block's keys and values stay in the
//! first-level cache. The dot products and weighted sums run on AVX2 with FMA
//! where the CPU has them (chosen at run time) and on plain loops otherwise.

use std::ops::Range;

use kernels::KvRows;

use super::HeadView;
use crate::ops;

/// Keys per block: one block of the KV cache.
const KEY_BLOCK: usize = 16;

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
    // Query i's scores against the current block at [i * KEY_BLOCK ..].
    let mut scores = vec![0.0f32; ranges.len() * KEY_BLOCK];
    let mut active: Vec<usize> = Vec::with_capacity(ranges.len());
    let (mut keys, mut values): ([&[u16]; KEY_BLOCK], [&[u16]; KEY_BLOCK]) =
        ([&[]; KEY_BLOCK], [&[]; KEY_BLOCK]);
    out.fill(0.0);
    let mut start = k_lo;
    while start < k_hi {
        let end = (start + KEY_BLOCK).min(k_hi);
        for p in start..end {
            keys[p - start] = head.key(p);
            values[p - start] = head.value(p);
        }
        let nk = end - start;
        // The queries whose keys meet the block score all of it, two at a
        // time (each key chunk widened once for both); each then takes its
        // own span.
        active.clear();
        active.extend(
            ranges
                .iter()
                .enumerate()
                .filter(|(_, r)| r.start.max(start) < r.end.min(end))
                .map(|(i, _)| i),
        );
        for pair in active.chunks(2) {
            match *pair {
                [a, b] => {
                    // a < b: split the scores between their rows.
                    let (left, right) = scores.split_at_mut(b * KEY_BLOCK);
                    simd.dot_keys_2(
                        [&q[a * d..(a + 1) * d], &q[b * d..(b + 1) * d]],
                        &keys[..nk],
                        [
                            &mut left[a * KEY_BLOCK..a * KEY_BLOCK + nk],
                            &mut right[..nk],
                        ],
                    );
                }
                [a] => simd.dot_keys(
                    &q[a * d..(a + 1) * d],
                    &keys[..nk],
                    &mut scores[a * KEY_BLOCK..a * KEY_BLOCK + nk],
                ),
                _ => {}
            }
        }
        for &i in &active {
            let r = &ranges[i];
            let (lo, hi) = (r.start.max(start), r.end.min(end));
            let span = lo - start..hi - start;
            let s = &mut scores[i * KEY_BLOCK + span.start..i * KEY_BLOCK + span.end];
            let mut block_max = f32::NEG_INFINITY;
            for x in s.iter_mut() {
                *x *= scale;
                block_max = block_max.max(*x);
            }
            let new_max = max[i].max(block_max);
            let mut block_sum = 0.0f32;
            for x in s.iter_mut() {
                *x = (*x - new_max).exp();
                block_sum += *x;
            }
            let acc = &mut out[i * d..(i + 1) * d];
            if new_max > max[i] {
                // The first block rescales zeros by exp(-inf) = 0.
                let shrink = (max[i] - new_max).exp();
                acc.iter_mut().for_each(|a| *a *= shrink);
                sum[i] *= shrink;
                max[i] = new_max;
            }
            sum[i] += block_sum;
            simd.accumulate(acc, s, &values[span]);
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

    /// `out[j] = q · keys[j]` (keys in half precision).
    fn dot_keys(self, q: &[f32], keys: &[&[u16]], out: &mut [f32]) {
        match self {
            Simd::Portable => {
                let mut row = vec![0.0f32; q.len()];
                for (o, k) in out.iter_mut().zip(keys) {
                    widen(k, &mut row);
                    *o = ops::dot(q, &row);
                }
            }
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => {
                assert!(keys.iter().all(|k| k.len() == q.len()), "key row size");
                // SAFETY: `Avx2` is only chosen when the CPU has AVX2, FMA and F16C
                // and the rows are a multiple of 8 long; all rows are q's length.
                unsafe { avx2::dot_keys(q, keys, out) }
            }
        }
    }

    /// [`Simd::dot_keys`] for two queries at once (the same sums).
    fn dot_keys_2(self, q: [&[f32]; 2], keys: &[&[u16]], out: [&mut [f32]; 2]) {
        match self {
            Simd::Portable => {
                let [o0, o1] = out;
                self.dot_keys(q[0], keys, o0);
                self.dot_keys(q[1], keys, o1);
            }
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => {
                assert!(
                    keys.iter().all(|k| k.len() == q[0].len()) && q[1].len() == q[0].len(),
                    "row sizes"
                );
                assert!(
                    out.iter().all(|o| o.len() == keys.len()),
                    "one score per key"
                );
                // SAFETY: as in `dot_keys`; both queries and all keys are q[0]'s length.
                unsafe { avx2::dot_keys_2(q, keys, out) }
            }
        }
    }

    /// `acc += Σⱼ weights[j] · values[j]` (values in half precision).
    fn accumulate(self, acc: &mut [f32], weights: &[f32], values: &[&[u16]]) {
        match self {
            Simd::Portable => {
                let mut row = vec![0.0f32; acc.len()];
                for (&w, v) in weights.iter().zip(values) {
                    widen(v, &mut row);
                    ops::axpy(acc, w, &row);
                }
            }
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => {
                assert!(
                    values.iter().all(|v| v.len() == acc.len()),
                    "value row size"
                );
                // SAFETY: as in `dot_keys`; all rows are acc's length.
                unsafe { avx2::accumulate(acc, weights, values) }
            }
        }
    }
}

/// Half-precision bits to f32 (exact).
fn widen(h: &[u16], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(h) {
        *o = kernels::f16_to_f32(x);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2+FMA+F16C loops of the tile; callers check the CPU and the row sizes.

    use std::arch::x86_64::*;

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

    /// Sum of the eight lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// `N` dot products of `q` with `keys`, one accumulator per key.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; every key must be as long as `q`, a multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_n<const N: usize>(q: &[f32], keys: &[&[u16]], out: &mut [f32]) {
        let mut acc = [_mm256_setzero_ps(); N];
        for c in (0..q.len()).step_by(8) {
            // SAFETY: c + 8 <= q.len() == keys[j].len() (the caller's contract).
            let qv = unsafe { _mm256_loadu_ps(q.as_ptr().add(c)) };
            for (a, k) in acc.iter_mut().zip(keys) {
                // SAFETY: as above.
                *a = _mm256_fmadd_ps(qv, unsafe { load_half8(k, c) }, *a);
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = hsum(a);
        }
    }

    /// `out[j] = q · keys[j]`, eight keys at a time.
    ///
    /// # Safety
    /// As [`dot_n`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_keys(q: &[f32], keys: &[&[u16]], out: &mut [f32]) {
        let mut j = 0;
        while j + 8 <= keys.len() {
            // SAFETY: forwarded contract.
            unsafe { dot_n::<8>(q, &keys[j..j + 8], &mut out[j..j + 8]) };
            j += 8;
        }
        while j + 4 <= keys.len() {
            // SAFETY: forwarded contract.
            unsafe { dot_n::<4>(q, &keys[j..j + 4], &mut out[j..j + 4]) };
            j += 4;
        }
        while j < keys.len() {
            // SAFETY: forwarded contract.
            unsafe { dot_n::<1>(q, &keys[j..j + 1], &mut out[j..j + 1]) };
            j += 1;
        }
    }

    /// [`dot_n`] for two queries: each key chunk is widened once for both,
    /// and each (query, key) pair sums exactly as there.
    ///
    /// # Safety
    /// As [`dot_n`], for both queries.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_n2<const N: usize>(q: [&[f32]; 2], keys: &[&[u16]], out: [&mut [f32]; 2]) {
        let mut acc = [[_mm256_setzero_ps(); N]; 2];
        for c in (0..q[0].len()).step_by(8) {
            // SAFETY: c + 8 <= q[0].len() == q[1].len() == keys[j].len() (the
            // caller's contract).
            let (q0, q1) = unsafe {
                (
                    _mm256_loadu_ps(q[0].as_ptr().add(c)),
                    _mm256_loadu_ps(q[1].as_ptr().add(c)),
                )
            };
            for (j, k) in keys.iter().enumerate().take(N) {
                // SAFETY: as above.
                let kv = unsafe { load_half8(k, c) };
                acc[0][j] = _mm256_fmadd_ps(q0, kv, acc[0][j]);
                acc[1][j] = _mm256_fmadd_ps(q1, kv, acc[1][j]);
            }
        }
        for (o, a) in out.into_iter().zip(acc) {
            for (o, a) in o.iter_mut().zip(a) {
                *o = hsum(a);
            }
        }
    }

    /// [`dot_keys`] for two queries, four keys at a time.
    ///
    /// # Safety
    /// As [`dot_n`], for both queries; each `out` holds one score per key.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_keys_2(q: [&[f32]; 2], keys: &[&[u16]], out: [&mut [f32]; 2]) {
        let [o0, o1] = out;
        let mut j = 0;
        while j + 4 <= keys.len() {
            // SAFETY: forwarded contract.
            unsafe { dot_n2::<4>(q, &keys[j..j + 4], [&mut o0[j..j + 4], &mut o1[j..j + 4]]) };
            j += 4;
        }
        while j < keys.len() {
            // SAFETY: forwarded contract.
            unsafe { dot_n2::<1>(q, &keys[j..j + 1], [&mut o0[j..j + 1], &mut o1[j..j + 1]]) };
            j += 1;
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
