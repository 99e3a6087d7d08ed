//! Q5_K: super-blocks of 256 weights as `f16 d; f16 dmin; u8 scales[12];
//! u8 qh[32]; u8 qs[128]`: Q4_K's layout and 6-bit scales and mins, with a
//! fifth bit per weight: in 64-weight group g, bit 2g of `qh[l]` tops the
//! low nibble of `qs[32g + l]` (weight 64g + l), bit 2g + 1 its high nibble
//! (weight 64g + 32 + l). Value = d * sc * q - dmin * m, q in 0..32. Pairs
//! with Q8_K activations.

use super::q4_k::{scale_min, scales_mins};
use crate::act::ActView;
use crate::f16::{f16_to_f32, f32_to_f16, read_f16};
use gguf::QK_K;

/// Bytes per super-block.
pub(crate) const BLOCK: usize = 176;

/// The 256 values (0..32) of a super-block.
#[inline]
pub(crate) fn values(blk: &[u8]) -> [u8; QK_K] {
    let (qh, qs) = (&blk[16..48], &blk[48..176]);
    let mut v = [0u8; QK_K];
    for g in 0..4 {
        for l in 0..32 {
            let q = qs[32 * g + l];
            let h = qh[l] >> (2 * g);
            v[64 * g + l] = (q & 0x0f) | ((h & 1) << 4);
            v[64 * g + 32 + l] = (q >> 4) | (((h >> 1) & 1) << 4);
        }
    }
    v
}

pub(crate) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (blk, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK_K)) {
        let d = read_f16(&blk[0..2]);
        let min = read_f16(&blk[2..4]);
        let v = values(blk);
        for j in 0..8 {
            let (sc, m) = scale_min(j, &blk[4..16]);
            let (dj, mj) = (d * f32::from(sc), min * f32::from(m));
            for l in 0..32 {
                y[32 * j + l] = dj * f32::from(v[32 * j + l]) - mj;
            }
        }
    }
}

/// A simple Q5_K quantizer (min/max per sub-block; llama.cpp searches harder).
pub(crate) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK_K * BLOCK);
    for x in src.chunks_exact(QK_K) {
        let mut scales = [0f32; 8];
        let mut mins = [0f32; 8];
        for (j, sub) in x.chunks_exact(32).enumerate() {
            let mn = sub.iter().fold(0.0f32, |a, &v| a.min(v));
            let mx = sub.iter().fold(f32::MIN, |a, &v| a.max(v));
            scales[j] = (mx - mn) / 31.0;
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
            let ls = ((inv_scale * scales[j]).round_ties_even() as i32).min(63) as u8;
            let lm = ((inv_min * mins[j]).round_ties_even() as i32).min(63) as u8;
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
                l[32 * j + i] = ((x[32 * j + i] + dm) / d)
                    .round_ties_even()
                    .clamp(0.0, 31.0) as u8;
            }
        }
        out.extend_from_slice(&dh.to_le_bytes());
        out.extend_from_slice(&mh.to_le_bytes());
        out.extend_from_slice(&packed);
        let mut qh = [0u8; 32];
        let mut qs = [0u8; 128];
        for g in 0..4 {
            for i in 0..32 {
                let (a, b) = (l[64 * g + i], l[64 * g + 32 + i]);
                qs[32 * g + i] = (a & 0x0f) | ((b & 0x0f) << 4);
                qh[i] |= ((a >> 4) << (2 * g)) | ((b >> 4) << (2 * g + 1));
            }
        }
        out.extend_from_slice(&qh);
        out.extend_from_slice(&qs);
    }
    out
}

/// One super-block's exact integer sums against activation quants `y` and
/// block sums `bsums`: (Σ sc_j · q·y over sub-block j, Σ m_j · Σy over j).
#[inline]
pub(crate) fn block_sums(blk: &[u8], v: &[u8; QK_K], y: &[i8], bsums: &[i16]) -> (i32, i32) {
    let (sc, mn) = scales_mins(&blk[4..16]);
    let (mut isum, mut msum) = (0i32, 0i32);
    for j in 0..8 {
        let dot: i32 = (0..32)
            .map(|l| i32::from(v[32 * j + l]) * i32::from(y[32 * j + l]))
            .sum();
        isum += i32::from(sc[j]) * dot;
        msum += i32::from(mn[j]) * (i32::from(bsums[2 * j]) + i32::from(bsums[2 * j + 1]));
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
            acc = (isum as f32).mul_add(read_f16(&blk[0..2]) * yd, acc);
            acc_min = (msum as f32).mul_add(read_f16(&blk[2..4]) * yd, acc_min);
        }
        *o = acc - acc_min;
    }
    out
}
