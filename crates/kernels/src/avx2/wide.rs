//! The several-rows driver for the 32-element block formats in 512-bit
//! registers, on CPUs with AVX-512 (F, BW, VL, DQ) and VNNI: each register
//! holds two activation rows, one per 256-bit half, with exactly the lanes
//! and operations of [`super::batch`]'s VNNI driver (a row's blocks summed
//! in order into eight float lanes, then llama.cpp's horizontal sum), so
//! every result keeps its bits while the two halves share each instruction.

use super::blocks::Block;
use super::*;
use crate::formats::MAX_B_WIDE;

/// Rows per call, and the pairs they make.
const W: usize = MAX_B_WIDE;
const PAIRS: usize = W / 2;

/// `outs[j][r] = dot(weight row r, activation row b0 + j)` for every row of
/// `w` and `j < outs.len()` (1 to [`MAX_B_WIDE`]).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
pub(super) fn rows<K: Block>(
    w: &[u8],
    row_bytes: usize,
    a: &ActView<'_>,
    b0: usize,
    outs: &mut [&mut [f32]],
) {
    assert!(outs.len() <= W, "at most {W} activation rows per call");
    match outs.len().div_ceil(2) {
        0 => {}
        1 => go::<K, 1>(w, row_bytes, a, b0, outs),
        2 => go::<K, 2>(w, row_bytes, a, b0, outs),
        3 => go::<K, 3>(w, row_bytes, a, b0, outs),
        _ => go::<K, 4>(w, row_bytes, a, b0, outs),
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
#[inline]
fn go<K: Block, const P: usize>(
    w: &[u8],
    row_bytes: usize,
    a: &ActView<'_>,
    b0: usize,
    outs: &mut [&mut [f32]],
) {
    let n = outs.len();
    let nb = a.cols / 32;
    assert_eq!(row_bytes, nb * K::BYTES, "row size");
    assert!(P <= PAIRS && n <= 2 * P);
    let n_rows = w.len() / row_bytes;
    assert!(outs.iter().all(|o| o.len() >= n_rows));
    let mut scratch = Scratch::take();
    scratch.side_by_side(a.d, K::OFFSET.then_some(a.s), b0, n, nb);
    // Pair p's block i: 64 bytes at (p * nb + i) * 64, row 2p's quants then
    // row 2p + 1's (zeros for a missing row, whose sums are dropped); biased
    // by +128 for the signed formats (see `Block::BIASED`).
    let qstride = nb * 32;
    scratch.quants.clear();
    scratch.quants.resize(P * nb * 64, 0);
    let pq = &mut scratch.quants;
    for j in 0..n {
        let row = &a.qs[(b0 + j) * qstride..(b0 + j + 1) * qstride];
        let (p, h) = (j / 2, j % 2);
        for (i, blk) in row.chunks_exact(32).enumerate() {
            let dst = &mut pq[(p * nb + i) * 64 + 32 * h..][..32];
            for (d, &q) in dst.iter_mut().zip(blk) {
                *d = if K::BIASED { q ^ i8::MIN } else { q };
            }
        }
    }
    // Lanes 0..8 take row 2p's scale, lanes 8..16 row 2p + 1's.
    let (pq, dt, st) = (&scratch.quants, &scratch.scales, &scratch.sums);
    let idx: [__m512i; PAIRS] = std::array::from_fn(|p| {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi32(2 * p as i32)),
            _mm256_set1_epi32(2 * p as i32 + 1),
        )
    });
    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
        let base = row.as_ptr();
        let mut acc = [_mm512_setzero_ps(); P];
        let mut summs = _mm256_setzero_ps();
        for i in 0..nb {
            // SAFETY: block i (i < nb) lies inside the row (its length was
            // asserted); the CPU features are enabled here.
            let u = unsafe { K::unpack(base.add(i * K::BYTES)) };
            // SAFETY: as above.
            let start = _mm512_broadcast_i64x4(unsafe { K::vnni_start(&u) });
            let wq = _mm512_broadcast_i64x4(if K::BIASED { u.sx } else { u.ax });
            let scales = _mm256_mul_ps(_mm256_set1_ps(u.d), load8_f32(&dt[W * i..]));
            let scales = _mm512_castps256_ps512(scales);
            if K::OFFSET {
                let m = _mm256_set1_ps(u.m);
                summs = _mm256_add_ps(summs, _mm256_mul_ps(m, load8_f32(&st[W * i..])));
            }
            for p in 0..P {
                // SAFETY: pair p's block i is 64 bytes inside `pq` (p < P, i < nb).
                let qy = unsafe { _mm512_loadu_si512(pq.as_ptr().add((p * nb + i) * 64).cast()) };
                let prod = if K::BIASED {
                    _mm512_dpbusd_epi32(start, qy, wq)
                } else {
                    _mm512_dpbusd_epi32(start, wq, qy)
                };
                let s = _mm512_permutexvar_ps(idx[p], scales);
                acc[p] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(prod), acc[p]);
            }
        }
        let mut sm = [0.0f32; W];
        // SAFETY: eight writable floats.
        unsafe { _mm256_storeu_ps(sm.as_mut_ptr(), summs) };
        for (j, out) in outs.iter_mut().enumerate() {
            let (p, h) = (j / 2, j % 2);
            let half = if h == 0 {
                _mm512_castps512_ps256(acc[p])
            } else {
                _mm512_extractf32x8_ps::<1>(acc[p])
            };
            let dot = hsum_ps(half);
            // Formats without an offset end at the sum itself (adding 0.0
            // would turn a -0.0 into +0.0).
            out[r] = if K::OFFSET { dot + sm[j] } else { dot };
        }
    }
    scratch.put_back();
}
