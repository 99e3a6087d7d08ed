//! Q6_K: super-blocks of 256 weights as `u8 ql[128]; u8 qh[64]; i8 scales[16];
//! f16 d`. Weight e has a signed 8-bit scale `scales[e / 16]` and a 6-bit q
//! (low 4 bits in `ql`, high 2 in `qh`, interleaved by 32s within each
//! 128-weight half); value = d * scale * (q - 32). Pairs with Q8_K activations.

use crate::act::ActView;
use crate::f16::{f16_to_f32, f32_to_f16, read_f16};
use gguf::QK_K;

/// Bytes per super-block.
pub(crate) const BLOCK: usize = 210;

/// The 256 signed values (-32..32) of a super-block.
#[inline]
pub(crate) fn values(blk: &[u8]) -> [i8; QK_K] {
    let mut v = [0i8; QK_K];
    for n in 0..2 {
        let ql = &blk[64 * n..64 * n + 64];
        let qh = &blk[128 + 32 * n..128 + 32 * n + 32];
        let y = &mut v[128 * n..128 * n + 128];
        for l in 0..32 {
            y[l] = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i8 - 32;
            y[l + 32] = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            y[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            y[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    v
}

pub(crate) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (blk, y) in src.chunks_exact(BLOCK).zip(dst.chunks_exact_mut(QK_K)) {
        let d = read_f16(&blk[208..210]);
        let v = values(blk);
        for (e, y) in y.iter_mut().enumerate() {
            *y = d * f32::from(blk[192 + e / 16] as i8) * f32::from(v[e]);
        }
    }
}

#[inline]
fn nearest(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// A simple Q6_K quantizer (one pass per sub-block; llama.cpp searches harder).
pub(crate) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK_K * BLOCK);
    for x in src.chunks_exact(QK_K) {
        let mut scales = [0f32; 16];
        let (mut max_scale, mut max_abs) = (0.0f32, 0.0f32);
        for (ib, sub) in x.chunks_exact(16).enumerate() {
            let (mut amax, mut max) = (0.0f32, 0.0f32);
            for &v in sub {
                if v.abs() > amax {
                    amax = v.abs();
                    max = v;
                }
            }
            scales[ib] = max / -32.0;
            if scales[ib].abs() > max_abs {
                max_abs = scales[ib].abs();
                max_scale = scales[ib];
            }
        }
        let start = out.len();
        out.resize(start + BLOCK, 0);
        let blk = &mut out[start..];
        if max_abs < 1e-15 {
            continue; // all zero
        }
        let iscale = -128.0 / max_scale;
        let dh = f32_to_f16(1.0 / iscale);
        let mut sc = [0i8; 16];
        for (s, &v) in sc.iter_mut().zip(&scales) {
            *s = nearest(iscale * v).min(127) as i8;
        }
        let mut l = [32u8; QK_K];
        for (j, &s) in sc.iter().enumerate() {
            let d = f16_to_f32(dh) * f32::from(s);
            if d == 0.0 {
                continue;
            }
            for i in 0..16 {
                l[16 * j + i] = (nearest(x[16 * j + i] / d).clamp(-32, 31) + 32) as u8;
            }
        }
        for n in 0..2 {
            let lq = &l[128 * n..128 * n + 128];
            for i in 0..32 {
                blk[64 * n + i] = (lq[i] & 0x0f) | ((lq[i + 64] & 0x0f) << 4);
                blk[64 * n + 32 + i] = (lq[i + 32] & 0x0f) | ((lq[i + 96] & 0x0f) << 4);
                blk[128 + 32 * n + i] = (lq[i] >> 4)
                    | ((lq[i + 32] >> 4) << 2)
                    | ((lq[i + 64] >> 4) << 4)
                    | ((lq[i + 96] >> 4) << 6);
            }
        }
        for (dst, &s) in blk[192..208].iter_mut().zip(&sc) {
            *dst = s as u8;
        }
        blk[208..210].copy_from_slice(&dh.to_le_bytes());
    }
    out
}

/// Adds one super-block's term `isum · d_w · d_a` to a row's sum as
/// llama.cpp's tiled K-quant matmul does (batches of eight rows or more):
/// the integer sum converted and multiplied by `d_w` (each rounded), then
/// one fused multiply-add with `d_a`.
#[inline(always)]
pub(crate) fn accumulate_tiled(isum: i32, d_w: f32, d_a: f32, acc: &mut f32) {
    *acc = (isum as f32 * d_w).mul_add(d_a, *acc);
}

/// One weight row against activation rows `b0..b0 + B` (Q8_K). Tiled rows
/// (see [`crate::RowOrder`]) sum as llama.cpp's tiled matmul; the others in
/// a plain order (the AVX2 kernel follows llama.cpp's dot product there).
#[inline]
pub(crate) fn dot<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let nb = a.cols / QK_K;
    let mut out = [0.0f32; B];
    for (i, blk) in w.chunks_exact(BLOCK).enumerate() {
        let v = values(blk);
        let d = read_f16(&blk[208..210]);
        for (j, o) in out.iter_mut().enumerate() {
            let b = b0 + j;
            let y = &a.qs_row(b)[i * QK_K..(i + 1) * QK_K];
            let mut isum = 0i32;
            for (s, (vq, yq)) in blk[192..208]
                .iter()
                .zip(v.chunks_exact(16).zip(y.chunks_exact(16)))
            {
                let sub: i32 = vq
                    .iter()
                    .zip(yq)
                    .map(|(&q, &y)| i32::from(q) * i32::from(y))
                    .sum();
                isum += i32::from(*s as i8) * sub;
            }
            let yd = a.d[b * nb + i];
            if a.order(b).q6k_tiled {
                accumulate_tiled(isum, d, yd, o);
            } else {
                *o += d * yd * isum as f32;
            }
        }
    }
    out
}
