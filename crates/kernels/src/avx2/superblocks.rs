//! AVX2 kernels for Q5_K and IQ4_XS weights against Q8_K activations: each
//! super-block's weights are unpacked in vector registers, their integer dot
//! products with the activation quants taken with `maddubs` per 32-weight
//! sub-block, and the exact integer sums scaled as the scalar kernels
//! (`formats::q5_k`, `formats::iq4_xs`) do, so both paths give the same bits.

use super::*;
use crate::formats::{iq4_nl, iq4_xs, q4_k, q5_k};
use gguf::QK_K;

rows_kernel!(rows_q5_k, dot_q5_k);
rows_kernel!(rows_iq4_xs, dot_iq4_xs);

pub(super) const Q5_K_KERNEL: RowsKernel = rows_q5_k;
pub(super) const IQ4_XS_KERNEL: RowsKernel = rows_iq4_xs;

/// Sum of the eight 32-bit lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
    _mm_cvtsi128_si32(s)
}

/// Σ w·y over 32 unsigned weights (< 128) and signed activations.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn udot32(w: __m256i, y: __m256i) -> i32 {
    hsum_i32(_mm256_madd_epi16(
        _mm256_set1_epi16(1),
        _mm256_maddubs_epi16(w, y),
    ))
}

/// Σ w·y over 32 signed weights (|w| < 128) and signed activations.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn sdot32(w: __m256i, y: __m256i) -> i32 {
    udot32(_mm256_sign_epi8(w, w), _mm256_sign_epi8(y, w))
}

/// Q5_K: one row against activation rows `b0..b0 + B`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_q5_k<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let nb = a.cols / QK_K;
    let low4 = _mm256_set1_epi8(0x0f);
    let one = _mm256_set1_epi8(1);
    let mut acc = [0.0f32; B];
    let mut acc_min = [0.0f32; B];
    for (i, blk) in w.chunks_exact(q5_k::BLOCK).enumerate() {
        let (d, dmin) = (f16(&blk[0..2]), f16(&blk[2..4]));
        let (sc, mn) = q4_k::scales_mins(&blk[4..16]);
        let qh = load32(&blk[16..48]);
        // The eight sub-blocks' weights, unpacked once for every row.
        let mut subs = [_mm256_setzero_si256(); 8];
        for g in 0..4 {
            let ql = load32(&blk[48 + 32 * g..]);
            let shift = |k: usize| _mm_cvtsi32_si128(k as i32);
            let h0 = _mm256_and_si256(_mm256_srl_epi16(qh, shift(2 * g)), one);
            let h1 = _mm256_and_si256(_mm256_srl_epi16(qh, shift(2 * g + 1)), one);
            subs[2 * g] = _mm256_or_si256(_mm256_and_si256(ql, low4), _mm256_slli_epi16::<4>(h0));
            subs[2 * g + 1] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(ql), low4),
                _mm256_slli_epi16::<4>(h1),
            );
        }
        for j in 0..B {
            let b = b0 + j;
            let y = &a.qs_row(b)[i * QK_K..(i + 1) * QK_K];
            let bs = &a.bsums[(b * nb + i) * 16..(b * nb + i + 1) * 16];
            let (mut isum, mut msum) = (0i32, 0i32);
            for k in 0..8 {
                isum += i32::from(sc[k]) * udot32(subs[k], load32_i8(&y[32 * k..]));
                msum += i32::from(mn[k]) * (i32::from(bs[2 * k]) + i32::from(bs[2 * k + 1]));
            }
            let yd = a.d[b * nb + i];
            acc[j] = (isum as f32).mul_add(d * yd, acc[j]);
            acc_min[j] = (msum as f32).mul_add(dmin * yd, acc_min[j]);
        }
    }
    std::array::from_fn(|j| acc[j] - acc_min[j])
}

/// IQ4_XS: one row against activation rows `b0..b0 + B`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_iq4_xs<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let nb = a.cols / QK_K;
    // SAFETY: VALUES holds 16 bytes; unaligned load.
    let table = unsafe { _mm_loadu_si128(iq4_nl::VALUES.as_ptr().cast()) };
    let table = _mm256_set_m128i(table, table);
    let mut acc = [0.0f32; B];
    for (i, blk) in w.chunks_exact(iq4_xs::BLOCK).enumerate() {
        let d = f16(&blk[0..2]);
        let mut subs = [_mm256_setzero_si256(); 8];
        let mut scales = [0i32; 8];
        for (ib, s) in subs.iter_mut().enumerate() {
            // SAFETY: sub-block ib's 16 bytes lie inside the block (8 + 16·8 = 136).
            let idx = unsafe { nibbles_at(blk[8 + 16 * ib..8 + 16 * ib + 16].as_ptr()) };
            *s = _mm256_shuffle_epi8(table, idx);
            scales[ib] = iq4_xs::scale(blk, ib);
        }
        for j in 0..B {
            let b = b0 + j;
            let y = &a.qs_row(b)[i * QK_K..(i + 1) * QK_K];
            let isum: i32 = (0..8)
                .map(|k| scales[k] * sdot32(subs[k], load32_i8(&y[32 * k..])))
                .sum();
            acc[j] = (isum as f32).mul_add(d * a.d[b * nb + i], acc[j]);
        }
    }
    acc
}
