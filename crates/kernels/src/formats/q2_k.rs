//! Q2_K: super-blocks of 256 weights as `u8 scales[16]; u8 qs[64]; f16 d;
//! f16 dmin`. Weight e has a 4-bit scale (`scales[e / 16] & 15`) and a 4-bit
//! min (`scales[e / 16] >> 4`) and a 2-bit q: in 128-weight half h, weight
//! 128h + 32s + l is bits 2s..2s+2 of `qs[32h + l]`. Value = d * sc * q -
//! dmin * m. Pairs with Q8_K activations.

use crate::act::ActView;
use crate::f16::{f16_to_f32, f32_to_f16, read_f16};
use gguf::QK_K;

/// Bytes per super-block.
pub(crate) const BLOCK: usize = 84;

/// The 256 values (0..4) of a super-block.
#[inline]
pub(crate) fn values(blk: &[u8]) -> [u8; QK_K] {
    let qs = &blk[16..80];
    let mut v = [0u8; QK_K];
    for h in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                v[128 * h + 32 * s + l] = (qs[32 * h + l] >> (2 * s)) & 3;
            }
        }
    }
    v
}

pub(crate) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (blk, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK_K)) {
        let d = read_f16(&blk[80..82]);
        let min = read_f16(&blk[82..84]);
        let v = values(blk);
        for (e, y) in y.iter_mut().enumerate() {
            let sc = blk[e / 16];
            *y = d * f32::from(sc & 15) * f32::from(v[e]) - min * f32::from(sc >> 4);
        }
    }
}

/// A simple Q2_K quantizer (min/max per 16 weights; llama.cpp searches harder).
pub(crate) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK_K * BLOCK);
    for x in src.chunks_exact(QK_K) {
        let mut scales = [0f32; 16];
        let mut mins = [0f32; 16];
        for (j, sub) in x.chunks_exact(16).enumerate() {
            let mn = sub.iter().fold(0.0f32, |a, &v| a.min(v));
            let mx = sub.iter().fold(f32::MIN, |a, &v| a.max(v));
            scales[j] = (mx - mn) / 3.0;
            mins[j] = -mn;
        }
        let max_scale = scales.iter().fold(0.0f32, |a, &v| a.max(v));
        let max_min = mins.iter().fold(0.0f32, |a, &v| a.max(v));
        let dh = f32_to_f16(max_scale / 15.0);
        let mh = f32_to_f16(max_min / 15.0);
        let (d, dm) = (f16_to_f32(dh), f16_to_f32(mh));
        let mut packed = [0u8; 16];
        let mut qs = [0u8; 64];
        for j in 0..16 {
            let ls = if d > 0.0 {
                (scales[j] / d).round_ties_even().min(15.0) as u8
            } else {
                0
            };
            let lm = if dm > 0.0 {
                (mins[j] / dm).round_ties_even().min(15.0) as u8
            } else {
                0
            };
            packed[j] = ls | (lm << 4);
            let (sd, sm) = (d * f32::from(ls), dm * f32::from(lm));
            for i in 0..16 {
                let e = 16 * j + i;
                let q = if sd > 0.0 {
                    ((x[e] + sm) / sd).round_ties_even().clamp(0.0, 3.0) as u8
                } else {
                    0
                };
                let (h, s, l) = (e / 128, (e % 128) / 32, e % 32);
                qs[32 * h + l] |= q << (2 * s);
            }
        }
        out.extend_from_slice(&packed);
        out.extend_from_slice(&qs);
        out.extend_from_slice(&dh.to_le_bytes());
        out.extend_from_slice(&mh.to_le_bytes());
    }
    out
}

/// One super-block's exact integer sums against activation quants `y` and
/// block sums `bsums`: (Σ sc_j · q·y over 16-weight group j, Σ m_j · Σy over j).
#[inline]
pub(crate) fn block_sums(blk: &[u8], v: &[u8; QK_K], y: &[i8], bsums: &[i16]) -> (i32, i32) {
    let (mut isum, mut msum) = (0i32, 0i32);
    for j in 0..16 {
        let dot: i32 = (16 * j..16 * j + 16)
            .map(|e| i32::from(v[e]) * i32::from(y[e]))
            .sum();
        isum += i32::from(blk[j] & 15) * dot;
        msum += i32::from(blk[j] >> 4) * i32::from(bsums[j]);
    }
    (isum, msum)
}

/// One weight row against activation rows `b0..b0 + B` (Q8_K): per
/// super-block `acc += isum · (d·d_a)`, `acc_min += msum · (dmin·d_a)`;
/// the result is `acc - acc_min`.
#[inline]
pub(crate) fn dot<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let nb = a.cols / QK_K;
    let mut out = [0.0f32; B];
    for (j, o) in out.iter_mut().enumerate() {
        let b = b0 + j;
        let (mut acc, mut acc_min) = (0.0f32, 0.0f32);
        for (i, blk) in w.chunks_exact(BLOCK).enumerate() {
            let y = &a.qs_row(b)[i * QK_K..(i + 1) * QK_K];
            let bs = &a.bsums[(b * nb + i) * 16..(b * nb + i + 1) * 16];
            let (isum, msum) = block_sums(blk, &values(blk), y, bs);
            let yd = a.d[b * nb + i];
            acc = (isum as f32).mul_add(read_f16(&blk[80..82]) * yd, acc);
            acc_min = (msum as f32).mul_add(read_f16(&blk[82..84]) * yd, acc_min);
        }
        *o = acc - acc_min;
    }
    out
}
