//! Q5_1: blocks of 32 weights as `f16 d; f16 m; u32 qh; u8 qs[16]`, value =
//! q * d + m with a 5-bit q: the low 4 bits are nibbles as in Q4_1 and bit j
//! of the little-endian `qh` is the fifth bit of element j. Pairs with Q8_1
//! activations (whose `s = d * sum(q)` carries the offset term).

use crate::act::ActView;
use crate::f16::{f32_to_f16, read_f16};

/// Bytes per block.
pub(crate) const BLOCK: usize = 24;

/// The 32 unsigned values (0..32) of a block.
#[inline]
fn values(blk: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]);
    let mut v = [0u8; 32];
    for (j, &q) in blk[8..24].iter().enumerate() {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        v[j] = (q & 0x0f) | h0;
        v[j + 16] = (q >> 4) | h1;
    }
    v
}

pub(crate) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (blk, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(32)) {
        let d = read_f16(&blk[0..2]);
        let m = read_f16(&blk[2..4]);
        for (y, q) in y.iter_mut().zip(values(blk)) {
            *y = f32::from(q) * d + m;
        }
    }
}

/// GGML's reference Q5_1 quantizer.
pub(crate) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / 32 * BLOCK);
    for x in src.chunks_exact(32) {
        let min = x.iter().fold(f32::MAX, |a, &v| if v < a { v } else { a });
        let max = x.iter().fold(-f32::MAX, |a, &v| if v > a { v } else { a });
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        out.extend_from_slice(&f32_to_f16(min).to_le_bytes());
        let mut qh = 0u32;
        let mut qs = [0u8; 16];
        for j in 0..16 {
            // Truncating casts, as in C.
            let q0 = (((x[j] - min) * id + 0.5) as u8).min(31);
            let q1 = (((x[j + 16] - min) * id + 0.5) as u8).min(31);
            qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= u32::from((q0 & 0x10) >> 4) << j;
            qh |= u32::from((q1 & 0x10) >> 4) << (j + 16);
        }
        out.extend_from_slice(&qh.to_le_bytes());
        out.extend_from_slice(&qs);
    }
    out
}

/// One weight row against activation rows `b0..b0 + B` (Q8_1).
#[inline]
pub(crate) fn dot<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let nb = a.cols / 32;
    let mut out = [0.0f32; B];
    for (j, o) in out.iter_mut().enumerate() {
        let b = b0 + j;
        let qa = a.qs_row(b);
        let (da, sa) = (&a.d[b * nb..(b + 1) * nb], &a.s[b * nb..(b + 1) * nb]);
        let mut sum = 0.0f32;
        for (i, blk) in w.chunks_exact(BLOCK).enumerate() {
            let y = &qa[i * 32..i * 32 + 32];
            let sumi: i32 = values(blk)
                .iter()
                .zip(y)
                .map(|(&q, &v)| i32::from(q) * i32::from(v))
                .sum();
            sum += read_f16(&blk[0..2]) * da[i] * sumi as f32 + read_f16(&blk[2..4]) * sa[i];
        }
        *o = sum;
    }
    out
}
