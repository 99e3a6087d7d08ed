//! Q4_1: blocks of 32 weights as `f16 d; f16 m; u8 qs[16]`, value = q * d + m
//! with q in 0..16; element j is the low nibble of `qs[j]`, element j + 16 the
//! high nibble. Pairs with Q8_1 activations (whose `s = d * sum(q)` carries the
//! offset term).

use crate::act::ActView;
use crate::f16::{f32_to_f16, read_f16};

/// Bytes per block.
pub(crate) const BLOCK: usize = 20;

pub(crate) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (blk, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(32)) {
        let d = read_f16(&blk[0..2]);
        let m = read_f16(&blk[2..4]);
        for (j, &q) in blk[4..20].iter().enumerate() {
            y[j] = f32::from(q & 0x0f) * d + m;
            y[j + 16] = f32::from(q >> 4) * d + m;
        }
    }
}

/// GGML's reference Q4_1 quantizer.
pub(crate) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / 32 * BLOCK);
    for x in src.chunks_exact(32) {
        let min = x.iter().fold(f32::MAX, |a, &v| if v < a { v } else { a });
        let max = x.iter().fold(-f32::MAX, |a, &v| if v > a { v } else { a });
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        out.extend_from_slice(&f32_to_f16(min).to_le_bytes());
        for j in 0..16 {
            // Truncating casts, as in C.
            let q0 = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
            let q1 = (((x[j + 16] - min) * id + 0.5) as i8).min(15) as u8;
            out.push(q0 | (q1 << 4));
        }
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
            let mut sumi = 0i32;
            for (l, &q) in blk[4..20].iter().enumerate() {
                sumi += i32::from(q & 0x0f) * i32::from(y[l])
                    + i32::from(q >> 4) * i32::from(y[l + 16]);
            }
            sum += read_f16(&blk[0..2]) * da[i] * sumi as f32 + read_f16(&blk[2..4]) * sa[i];
        }
        *o = sum;
    }
    out
}
