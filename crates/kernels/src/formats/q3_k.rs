//! Q3_K: super-blocks of 256 weights as `u8 hmask[32]; u8 qs[64];
//! u8 scales[12]; f16 d`. Weight e has a signed 6-bit scale (sixteen packed
//! in 12 bytes, each stored + 32, for 16 weights) and a 3-bit signed q: in
//! 128-weight half h, weight 128h + 32s + l takes bits 2s..2s+2 of
//! `qs[32h + l]`, minus 4 unless bit 4h + s of `hmask[l]` is set. Value =
//! d * scale * q, q in -4..4. Pairs with Q8_K activations.

use crate::act::ActView;
use crate::f16::{f16_to_f32, f32_to_f16, read_f16};
use gguf::QK_K;

/// Bytes per super-block.
pub(crate) const BLOCK: usize = 110;

/// The 256 signed values (-4..4) of a super-block.
#[inline]
pub(crate) fn values(blk: &[u8]) -> [i8; QK_K] {
    let (hm, qs) = (&blk[0..32], &blk[32..96]);
    let mut v = [0i8; QK_K];
    for h in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                let low = ((qs[32 * h + l] >> (2 * s)) & 3) as i8;
                let high = (hm[l] >> (4 * h + s)) & 1;
                v[128 * h + 32 * s + l] = low - if high == 0 { 4 } else { 0 };
            }
        }
    }
    v
}

/// The sixteen signed scales (-32..32), unpacked as GGML does.
#[inline]
pub(crate) fn scales(blk: &[u8]) -> [i8; 16] {
    let s = &blk[96..108];
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0x0f } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (low | (high << 4)) as i8 - 32;
    }
    out
}

pub(crate) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (blk, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK_K)) {
        let d = read_f16(&blk[108..110]);
        let (v, sc) = (values(blk), scales(blk));
        for (e, y) in y.iter_mut().enumerate() {
            *y = d * f32::from(sc[e / 16]) * f32::from(v[e]);
        }
    }
}

/// A simple Q3_K quantizer (one scale per 16 weights from their largest
/// magnitude; llama.cpp searches harder).
pub(crate) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK_K * BLOCK);
    for x in src.chunks_exact(QK_K) {
        let mut scales = [0f32; 16];
        for (j, sub) in x.chunks_exact(16).enumerate() {
            let m = sub
                .iter()
                .fold(0.0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
            scales[j] = m / -4.0;
        }
        let max = scales
            .iter()
            .fold(0.0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
        let dh = f32_to_f16(if max != 0.0 { max / -32.0 } else { 0.0 });
        let d = f16_to_f32(dh);
        let mut ls = [0u8; 16];
        for j in 0..16 {
            let l = if d != 0.0 {
                (scales[j] / d).round_ties_even().clamp(-32.0, 31.0)
            } else {
                0.0
            };
            ls[j] = (l as i32 + 32) as u8;
        }
        let mut packed = [0u8; 12];
        for j in 0..16 {
            let (low, high) = (ls[j] & 0x0f, ls[j] >> 4);
            if j < 8 {
                packed[j] |= low;
            } else {
                packed[j - 8] |= low << 4;
            }
            packed[8 + j % 4] |= high << (2 * (j / 4));
        }
        let (mut hm, mut qs) = ([0u8; 32], [0u8; 64]);
        for e in 0..QK_K {
            let sd = d * (f32::from(ls[e / 16]) - 32.0);
            let q = if sd != 0.0 {
                (x[e] / sd).round_ties_even().clamp(-4.0, 3.0) as i32
            } else {
                0
            };
            let u = (q + 4) as u8;
            let (h, s, l) = (e / 128, (e % 128) / 32, e % 32);
            qs[32 * h + l] |= (u & 3) << (2 * s);
            hm[l] |= (u >> 2) << (4 * h + s);
        }
        out.extend_from_slice(&hm);
        out.extend_from_slice(&qs);
        out.extend_from_slice(&packed);
        out.extend_from_slice(&dh.to_le_bytes());
    }
    out
}

/// One super-block's exact integer sum against activation quants `y`:
/// Σ scale_j · q·y over 16-weight group j.
#[inline]
pub(crate) fn block_sum(sc: &[i8; 16], v: &[i8; QK_K], y: &[i8]) -> i32 {
    (0..16)
        .map(|j| {
            let dot: i32 = (16 * j..16 * j + 16)
                .map(|e| i32::from(v[e]) * i32::from(y[e]))
                .sum();
            i32::from(sc[j]) * dot
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
            let isum = block_sum(&scales(blk), &values(blk), y);
            acc = (isum as f32).mul_add(read_f16(&blk[108..110]) * a.d[b * nb + i], acc);
        }
        *o = acc;
    }
    out
}
