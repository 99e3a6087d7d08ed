//! Q4_0: blocks of 32 weights as `f16 d; u8 qs[16]`, value = (q - 8) * d with
//! q in 0..16; element j is the low nibble of `qs[j]`, element j + 16 the
//! high nibble. Pairs with Q8_0 activations.

use crate::act::ActView;
use crate::f16::{f32_to_f16, read_f16};

/// Bytes per block.
pub(crate) const BLOCK: usize = 18;

/// The 32 signed values (-8..8) of a block.
#[inline]
fn values(blk: &[u8]) -> [i8; 32] {
    let mut v = [0i8; 32];
    for (j, &q) in blk[2..18].iter().enumerate() {
        v[j] = (q & 0x0f) as i8 - 8;
        v[j + 16] = (q >> 4) as i8 - 8;
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

/// GGML's reference Q4_0 quantizer.
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
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        for j in 0..16 {
            // Truncating casts, as in C.
            let q0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
            let q1 = ((x[j + 16] * id + 8.5) as i8).min(15) as u8;
            out.push(q0 | (q1 << 4));
        }
    }
    out
}

/// One weight row against activation rows `b0..b0 + B` (Q8_0).
#[inline]
pub(crate) fn dot<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    super::dot_signed32::<B>(w, BLOCK, values, a, b0)
}
