//! IQ4_XS: super-blocks of 256 weights as `f16 d; u16 scales_h; u8
//! scales_l[4]; u8 qs[128]`: eight sub-blocks of 32, each with a 6-bit
//! scale `ls` (low 4 bits in `scales_l`, two per byte, high 2 bits in
//! `scales_h`) and IQ4_NL's sixteen non-linear levels per nibble (within a
//! sub-block's 16 bytes, the low nibbles are its first 16 weights). Value =
//! `d * (ls - 32) * VALUES[q]`. Pairs with Q8_K activations.

use super::iq4_nl::{nearest_level, VALUES};
use crate::act::ActView;
use crate::f16::{f16_to_f32, f32_to_f16, read_f16};
use gguf::QK_K;

/// Bytes per super-block.
pub(crate) const BLOCK: usize = 136;

/// The signed scale (`ls - 32`, -32..32) of sub-block `ib`.
#[inline]
pub(crate) fn scale(blk: &[u8], ib: usize) -> i32 {
    let sh = u16::from_le_bytes([blk[2], blk[3]]);
    let low = (blk[4 + ib / 2] >> (4 * (ib % 2))) & 0x0f;
    let high = ((sh >> (2 * ib)) & 3) as u8;
    i32::from(low | (high << 4)) - 32
}

/// The 256 levels of a super-block.
#[inline]
pub(crate) fn values(blk: &[u8]) -> [i8; QK_K] {
    let mut v = [0i8; QK_K];
    for ib in 0..8 {
        let qs = &blk[8 + 16 * ib..8 + 16 * ib + 16];
        for (j, &q) in qs.iter().enumerate() {
            v[32 * ib + j] = VALUES[usize::from(q & 0x0f)];
            v[32 * ib + 16 + j] = VALUES[usize::from(q >> 4)];
        }
    }
    v
}

pub(crate) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (blk, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK_K)) {
        let d = read_f16(&blk[0..2]);
        let v = values(blk);
        for ib in 0..8 {
            let dl = d * scale(blk, ib) as f32;
            for l in 0..32 {
                y[32 * ib + l] = dl * f32::from(v[32 * ib + l]);
            }
        }
    }
}

/// A simple quantizer (per sub-block scale from its largest magnitude,
/// nearest level; not GGML's searched one), for tests and tools.
pub(crate) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK_K * BLOCK);
    for x in src.chunks_exact(QK_K) {
        // Each sub-block's scale in units of -127 levels: its value of max / -127.
        let mut sub = [0f32; 8];
        for (ib, s) in x.chunks_exact(32).enumerate() {
            let (mut amax, mut max) = (0.0f32, 0.0f32);
            for &v in s {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
            }
            sub[ib] = max / -127.0;
        }
        let amax = sub.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
        let d = amax / 31.0;
        let dh = f32_to_f16(d);
        let dq = f16_to_f32(dh);
        let id = if dq != 0.0 { 1.0 / dq } else { 0.0 };
        let mut ls = [0u8; 8];
        for ib in 0..8 {
            ls[ib] = ((sub[ib] * id).round() as i32 + 32).clamp(0, 63) as u8;
        }
        let mut sh = 0u16;
        let mut sl = [0u8; 4];
        for ib in 0..8 {
            sl[ib / 2] |= (ls[ib] & 0x0f) << (4 * (ib % 2));
            sh |= u16::from(ls[ib] >> 4) << (2 * ib);
        }
        out.extend_from_slice(&dh.to_le_bytes());
        out.extend_from_slice(&sh.to_le_bytes());
        out.extend_from_slice(&sl);
        for ib in 0..8 {
            let dl = dq * (i32::from(ls[ib]) - 32) as f32;
            let inv = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            let s = &x[32 * ib..32 * ib + 32];
            for j in 0..16 {
                out.push(nearest_level(s[j] * inv) | (nearest_level(s[j + 16] * inv) << 4));
            }
        }
    }
    out
}

/// One super-block's exact integer sum against activation quants `y`:
/// Σ over sub-blocks of `(ls - 32) ·` levels·y.
#[inline]
pub(crate) fn block_sum(blk: &[u8], v: &[i8; QK_K], y: &[i8]) -> i32 {
    (0..8)
        .map(|ib| {
            let dot: i32 = (0..32)
                .map(|l| i32::from(v[32 * ib + l]) * i32::from(y[32 * ib + l]))
                .sum();
            scale(blk, ib) * dot
        })
        .sum()
}

/// One weight row against activation rows `b0..b0 + B` (Q8_K): per
/// super-block `acc += isum · (d·d_a)`.
#[inline]
pub(crate) fn dot<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let nb = a.cols / QK_K;
    let mut out = [0.0f32; B];
    for (j, o) in out.iter_mut().enumerate() {
        let b = b0 + j;
        let mut acc = 0.0f32;
        for (i, blk) in w.chunks_exact(BLOCK).enumerate() {
            let y = &a.qs_row(b)[i * QK_K..(i + 1) * QK_K];
            let isum = block_sum(blk, &values(blk), y);
            acc = (isum as f32).mul_add(read_f16(&blk[0..2]) * a.d[b * nb + i], acc);
        }
        *o = acc;
    }
    out
}
