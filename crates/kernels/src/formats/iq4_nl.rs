//! IQ4_NL: blocks of 32 weights as `f16 d; u8 qs[16]`, value =
//! `VALUES[q] * d` with q a nibble indexing a fixed non-linear table;
//! element j is the low nibble of `qs[j]`, element j + 16 the high nibble.
//! Pairs with Q8_0 activations.

use crate::act::ActView;
use crate::f16::{f32_to_f16, read_f16};

/// Bytes per block.
pub(crate) const BLOCK: usize = 18;

/// The sixteen levels a nibble selects (GGML's `kvalues_iq4nl`).
pub(crate) const VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The 32 signed values of a block.
#[inline]
fn values(blk: &[u8]) -> [i8; 32] {
    let mut v = [0i8; 32];
    for (j, &q) in blk[2..18].iter().enumerate() {
        v[j] = VALUES[usize::from(q & 0x0f)];
        v[j + 16] = VALUES[usize::from(q >> 4)];
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

/// The index of the level nearest `v` (in units of the block scale).
pub(crate) fn nearest_level(v: f32) -> u8 {
    let mut best = 0u8;
    for (i, &l) in VALUES.iter().enumerate() {
        if (f32::from(l) - v).abs() < (f32::from(VALUES[usize::from(best)]) - v).abs() {
            best = i as u8;
        }
    }
    best
}

/// A simple quantizer (scale from the largest magnitude, nearest level; not
/// GGML's searched one): valid blocks for tests and tools.
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
        // The extreme level (-127) takes the largest magnitude.
        let d = max / -127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        for j in 0..16 {
            let q0 = nearest_level(x[j] * id);
            let q1 = nearest_level(x[j + 16] * id);
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
