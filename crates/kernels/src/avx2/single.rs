//! The single-activation-row driver for the 32-element block formats: a
//! decode step multiplies every weight row by one activation row, so the
//! weights stream from memory once and nothing else is reused. The driver
//! takes [`GROUP`] weight rows at a time (their blocks against the same
//! activation block, as independent chains of multiply-adds the core
//! overlaps) and prefetches the weights a few groups ahead (the hardware
//! prefetcher alone leaves the core waiting on memory). Each row still sums
//! its blocks in order with the format's own step, so a row's result has the
//! same bits as the per-row kernels give it.

use super::blocks::{widen, Block};
use super::*;

/// Weight rows taken together.
const GROUP: usize = 4;

/// How many groups ahead the weights are prefetched.
const PREFETCH_GROUPS: usize = 2;

/// `out[r] = dot(weight row r, activation row b)` for every row of `w`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows<K: Block>(
    w: &[u8],
    row_bytes: usize,
    a: &ActView<'_>,
    b: usize,
    out: &mut [f32],
) {
    let nb = a.cols / 32;
    assert_eq!(row_bytes, nb * K::BYTES, "row size");
    let n_rows = w.len() / row_bytes;
    assert!(out.len() >= n_rows);
    let act = Act {
        qs: &a.qs[b * nb * 32..(b + 1) * nb * 32],
        d: &a.d[b * nb..(b + 1) * nb],
        // Only Q8_1 activations carry sums; formats without an offset ignore them.
        s: a.s.get(b * nb..(b + 1) * nb),
    };
    let full = n_rows - n_rows % GROUP;
    for (g, rows) in w[..full * row_bytes]
        .chunks_exact(GROUP * row_bytes)
        .enumerate()
    {
        group::<K, GROUP>(rows, row_bytes, &act, &mut out[g * GROUP..(g + 1) * GROUP]);
    }
    for (r, row) in w[full * row_bytes..n_rows * row_bytes]
        .chunks_exact(row_bytes)
        .enumerate()
    {
        group::<K, 1>(row, row_bytes, &act, &mut out[full + r..full + r + 1]);
    }
}

/// One activation row's blocks: quants, scales and (Q8_1) scaled sums.
struct Act<'a> {
    qs: &'a [i8],
    d: &'a [f32],
    s: Option<&'a [f32]>,
}

/// `G` consecutive weight rows (`rows`, `G * row_bytes` bytes) against `act`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn group<K: Block, const G: usize>(rows: &[u8], row_bytes: usize, act: &Act<'_>, out: &mut [f32]) {
    assert!(rows.len() == G * row_bytes && out.len() == G);
    let base = rows.as_ptr();
    let mut acc = [_mm256_setzero_ps(); G];
    let mut summs = [0.0f32; G];
    for (i, &dy) in act.d.iter().enumerate() {
        // A hint only (a prefetch past the end of the weights is harmless):
        // the bytes PREFETCH_GROUPS groups ahead, a step's share at a time.
        let ahead = base.wrapping_add(PREFETCH_GROUPS * GROUP * row_bytes + i * GROUP * K::BYTES);
        _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64).cast());
        let qy = load32_i8(&act.qs[i * 32..]);
        let sy = act.s.map_or(0.0, |s| s[i]);
        for j in 0..G {
            // SAFETY: row j (< G) lies inside `rows` (asserted) and block i
            // (i < the row's block count, the length of act.d) inside the row;
            // AVX2, FMA and F16C are enabled for this function.
            let (u, p) = unsafe {
                let u = K::unpack(base.add(j * row_bytes + i * K::BYTES));
                let p = K::products(&u, qy);
                (u, p)
            };
            if K::OFFSET {
                summs[j] += u.m * sy;
            }
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(u.d * dy), widen(p), acc[j]);
        }
    }
    for j in 0..G {
        let dot = hsum_ps(acc[j]);
        // Formats without an offset end at the sum itself (adding 0.0 would
        // turn a -0.0 into +0.0).
        out[j] = if K::OFFSET { dot + summs[j] } else { dot };
    }
}
