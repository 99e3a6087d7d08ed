//! Q5_0: blocks of 32 weights as `f16 d; u8 qh[4]; u8 qs[16]`, value =
//! (q - 16) * d with a 5-bit q: the low 4 bits are nibbles as in Q4_0 and bit j
//! of the little-endian `qh` is the fifth bit of element j. Pairs with Q8_0
//! activations.

use crate::act::ActView;
use crate::f16::{f32_to_f16, read_f16};

/// Bytes per block.
pub(crate) const BLOCK: usize = 22;

/// The 32 signed values (-16..16) of a block.
#[inline]
fn values(blk: &[u8]) -> [i8; 32] {
    let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
    let mut v = [0i8; 32];
    for (j, &q) in blk[6..22].iter().enumerate() {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        v[j] = ((q & 0x0f) | h0) as i8 - 16;
        v[j + 16] = ((q >> 4) | h1) as i8 - 16;
    }
    v
}

pub(crate) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (blk, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(32)) {
        let d = read_f16(&blk[0..2]);
        for (y, q) in y.iter_mut().zip(values(blk)) {
            *y = f32::from(q) * d;
        }
    }
}

/// GGML's reference Q5_0 quantizer.
pub(crate) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / 32 * BLOCK);
    for x in src.chunks_exact(32) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        let mut qh = 0u32;
        let mut qs = [0u8; 16];
        for j in 0..16 {
            let q0 = ((x[j] * id + 16.5) as i8).min(31) as u8;
            let q1 = ((x[j + 16] * id + 16.5) as i8).min(31) as u8;
            qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= u32::from((q0 & 0x10) >> 4) << j;
            qh |= u32::from((q1 & 0x10) >> 4) << (j + 16);
        }
        out.extend_from_slice(&qh.to_le_bytes());
        out.extend_from_slice(&qs);
    }
    out
}

/// One weight row against activation rows `b0..b0 + B` (Q8_0).
#[inline]
pub(crate) fn dot<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let nb = a.cols / 32;
    let mut out = [0.0f32; B];
    for (i, blk) in w.chunks_exact(BLOCK).enumerate() {
        let v = values(blk);
        let d = read_f16(&blk[0..2]);
        for (j, o) in out.iter_mut().enumerate() {
            let b = b0 + j;
            let y = &a.qs_row(b)[i * 32..i * 32 + 32];
            let sumi: i32 = v
                .iter()
                .zip(y)
                .map(|(&q, &y)| i32::from(q) * i32::from(y))
                .sum();
            *o += d * a.d[b * nb + i] * sumi as f32;
        }
    }
    out
}
