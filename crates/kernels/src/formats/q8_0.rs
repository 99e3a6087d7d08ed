//! Q8_0: blocks of 32 weights as `f16 d; i8 qs[32]`, value = q * d. Pairs with
//! Q8_0 activations.

use crate::act::ActView;
use crate::f16::read_f16;

/// Bytes per block.
pub(crate) const BLOCK: usize = 34;

pub(crate) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (blk, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(32)) {
        let d = read_f16(&blk[0..2]);
        for (y, &q) in y.iter_mut().zip(&blk[2..]) {
            *y = f32::from(q as i8) * d;
        }
    }
}

/// One weight row against activation rows `b0..b0 + B` (Q8_0).
#[inline]
pub(crate) fn dot<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let nb = a.cols / 32;
    let mut out = [0.0f32; B];
    for (j, o) in out.iter_mut().enumerate() {
        let b = b0 + j;
        let qa = a.qs_row(b);
        let da = &a.d[b * nb..(b + 1) * nb];
        let mut sum = 0.0f32;
        for (i, blk) in w.chunks_exact(BLOCK).enumerate() {
            let y = &qa[i * 32..i * 32 + 32];
            let sumi: i32 = blk[2..]
                .iter()
                .zip(y)
                .map(|(&q, &v)| i32::from(q as i8) * i32::from(v))
                .sum();
            sum += sumi as f32 * (read_f16(&blk[0..2]) * da[i]);
        }
        *o = sum;
    }
    out
}
