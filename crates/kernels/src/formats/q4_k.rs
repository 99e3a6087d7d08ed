//! Q4_K: super-blocks of 256 weights as `f16 d; f16 dmin; u8 scales[12];
//! u8 qs[128]`. Eight sub-blocks of 32 each have a 6-bit scale and 6-bit min
//! (packed in `scales`); value = d * sc * q - dmin * m with q in 0..16. Within
//! each 64-weight group, the low nibbles of 32 bytes are the first 32 weights,
//! the high nibbles the next 32. Pairs with Q8_K activations.

use crate::act::ActView;
use crate::f16::{f16_to_f32, f32_to_f16, read_f16};
use gguf::QK_K;

/// Bytes per super-block.
pub(crate) const BLOCK: usize = 144;

/// The 6-bit scale and min of sub-block `j` (0..8) from the packed 12 bytes.
#[inline]
pub(crate) fn scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// All eight (scales, mins) of a super-block.
#[inline]
pub(crate) fn scales_mins(q: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        (sc[j], mn[j]) = scale_min(j, q);
    }
    (sc, mn)
}

pub(crate) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (blk, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK_K)) {
        let d = read_f16(&blk[0..2]);
        let min = read_f16(&blk[2..4]);
        let scales = &blk[4..16];
        for (g, (q, y)) in blk[16..]
            .chunks_exact(32)
            .zip(y.chunks_exact_mut(64))
            .enumerate()
        {
            let (sc1, m1) = scale_min(2 * g, scales);
            let (sc2, m2) = scale_min(2 * g + 1, scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            for l in 0..32 {
                y[l] = d1 * f32::from(q[l] & 0x0f) - m1;
                y[l + 32] = d2 * f32::from(q[l] >> 4) - m2;
            }
        }
    }
}

#[inline]
fn nearest(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// A simple Q4_K quantizer (min/max per sub-block; llama.cpp searches harder).
pub(crate) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK_K * BLOCK);
    for x in src.chunks_exact(QK_K) {
        let mut scales = [0f32; 8];
        let mut mins = [0f32; 8];
        for (j, sub) in x.chunks_exact(32).enumerate() {
            let mn = sub.iter().fold(0.0f32, |a, &v| a.min(v));
            let mx = sub.iter().fold(f32::MIN, |a, &v| a.max(v));
            scales[j] = (mx - mn) / 15.0;
            mins[j] = -mn;
        }
        let max_scale = scales.iter().fold(0.0f32, |a, &v| a.max(v));
        let max_min = mins.iter().fold(0.0f32, |a, &v| a.max(v));
        let inv_scale = if max_scale > 0.0 {
            63.0 / max_scale
        } else {
            0.0
        };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        let mut packed = [0u8; 12];
        for j in 0..8 {
            let ls = nearest(inv_scale * scales[j]).min(63) as u8;
            let lm = nearest(inv_min * mins[j]).min(63) as u8;
            if j < 4 {
                packed[j] = ls;
                packed[j + 4] = lm;
            } else {
                packed[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
                packed[j - 4] |= (ls >> 4) << 6;
                packed[j] |= (lm >> 4) << 6;
            }
        }
        let dh = f32_to_f16(max_scale / 63.0);
        let mh = f32_to_f16(max_min / 63.0);
        let mut l = [0u8; QK_K];
        for j in 0..8 {
            let (sc, m) = scale_min(j, &packed);
            let d = f16_to_f32(dh) * f32::from(sc);
            if d == 0.0 {
                continue;
            }
            let dm = f16_to_f32(mh) * f32::from(m);
            for i in 0..32 {
                l[32 * j + i] = nearest((x[32 * j + i] + dm) / d).clamp(0, 15) as u8;
            }
        }
        out.extend_from_slice(&dh.to_le_bytes());
        out.extend_from_slice(&mh.to_le_bytes());
        out.extend_from_slice(&packed);
        for g in 0..4 {
            out.extend((0..32).map(|i| l[64 * g + i] | (l[64 * g + 32 + i] << 4)));
        }
    }
    out
}

/// Adds one super-block's terms to a row's two running sums, in the order
/// of llama.cpp's repacked Q4_K kernels (GGML repacks Q4_K on every x86 CPU
/// with AVX2 and never runs its plain Q4_K dot product there). `pairs[g]`
/// and `min_pairs[g]` are the exact integer sums of sub-blocks `2g` and
/// `2g + 1` (scale × dot product, min × activation sum), `dd` and `dm` the
/// super-block's `d` and `dmin` times the activation scale. A row of a
/// four-row group (the GEMM) adds the four pairs one fused multiply-add at a
/// time; a lone row (the GEMV) adds their total once. The row's result is
/// `acc - acc_min`.
#[inline(always)]
pub(crate) fn accumulate(
    in_quad: bool,
    pairs: [i32; 4],
    min_pairs: [i32; 4],
    (dd, dm): (f32, f32),
    acc: &mut f32,
    acc_min: &mut f32,
) {
    if in_quad {
        for (&p, &m) in pairs.iter().zip(&min_pairs) {
            *acc = (p as f32).mul_add(dd, *acc);
            *acc_min = (m as f32).mul_add(dm, *acc_min);
        }
    } else {
        *acc = (pairs.iter().sum::<i32>() as f32).mul_add(dd, *acc);
        *acc_min = (min_pairs.iter().sum::<i32>() as f32).mul_add(dm, *acc_min);
    }
}

/// One weight row against activation rows `b0..b0 + B` (Q8_K).
#[inline]
pub(crate) fn dot<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let nb = a.cols / QK_K;
    let mut acc = [0.0f32; B];
    let mut acc_min = [0.0f32; B];
    for (i, blk) in w.chunks_exact(BLOCK).enumerate() {
        let d = read_f16(&blk[0..2]);
        let dmin = read_f16(&blk[2..4]);
        let (sc, mn) = scales_mins(&blk[4..16]);
        let qs = &blk[16..];
        for j in 0..B {
            let b = b0 + j;
            let y = &a.qs_row(b)[i * QK_K..(i + 1) * QK_K];
            let bs = &a.bsums[(b * nb + i) * 16..(b * nb + i + 1) * 16];
            let sub_sum = |k: usize| i32::from(bs[2 * k]) + i32::from(bs[2 * k + 1]);
            let mut pairs = [0i32; 4];
            let mut min_pairs = [0i32; 4];
            for g in 0..4 {
                let (mut lo, mut hi) = (0i32, 0i32);
                for l in 0..32 {
                    let q = qs[32 * g + l];
                    lo += i32::from(q & 0x0f) * i32::from(y[64 * g + l]);
                    hi += i32::from(q >> 4) * i32::from(y[64 * g + 32 + l]);
                }
                pairs[g] = i32::from(sc[2 * g]) * lo + i32::from(sc[2 * g + 1]) * hi;
                min_pairs[g] = i32::from(mn[2 * g]) * sub_sum(2 * g)
                    + i32::from(mn[2 * g + 1]) * sub_sum(2 * g + 1);
            }
            let yd = a.d[b * nb + i];
            accumulate(
                a.order(b).q4k_in_quad,
                pairs,
                min_pairs,
                (d * yd, dmin * yd),
                &mut acc[j],
                &mut acc_min[j],
            );
        }
    }
    let mut out = [0.0f32; B];
    for j in 0..B {
        out[j] = acc[j] - acc_min[j];
    }
    out
}
