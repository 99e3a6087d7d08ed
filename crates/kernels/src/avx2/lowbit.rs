//! AVX2 kernels for Q2_K and Q3_K weights against Q8_K activations: each
//! super-block's 2- or 3-bit weights are unpacked in vector registers, their
//! products with the activation quants summed in pairs by `maddubs` and
//! weighted by each 16-weight group's scale with `madd`, and the exact
//! integer sums scaled as the scalar kernels (`formats::q2_k`,
//! `formats::q3_k`) do, so both paths give the same bits.

use super::*;
use crate::formats::{q2_k, q3_k};
use gguf::QK_K;

rows_kernel!(rows_q2_k, dot_q2_k);
rows_kernel!(rows_q3_k, dot_q3_k);

pub(super) const Q2_K_KERNEL: RowsKernel = rows_q2_k;
pub(super) const Q3_K_KERNEL: RowsKernel = rows_q3_k;

/// Sum of the eight 32-bit lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
    _mm_cvtsi128_si32(s)
}

/// The 16-bit lanes that weight one 32-weight vector's pair sums: group
/// `lo`'s scale for its first 16 weights, `hi`'s for the next 16.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pair_scales(lo: i16, hi: i16) -> __m256i {
    _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo))
}

/// Σ over the 8 vectors of `scale · (w · y)`, `w` unsigned (< 128).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scaled_udot(subs: &[__m256i; 8], scales: &[__m256i; 8], y: &[i8]) -> i32 {
    let mut sum = _mm256_setzero_si256();
    for k in 0..8 {
        let p = _mm256_maddubs_epi16(subs[k], load32_i8(&y[32 * k..]));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(scales[k], p));
    }
    hsum_i32(sum)
}

/// Q2_K: one row against activation rows `b0..b0 + B`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_q2_k<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let nb = a.cols / QK_K;
    let m3 = _mm256_set1_epi8(3);
    let mut acc = [0.0f32; B];
    let mut acc_min = [0.0f32; B];
    for (i, blk) in w.chunks_exact(q2_k::BLOCK).enumerate() {
        let (d, dmin) = (f16(&blk[80..82]), f16(&blk[82..84]));
        let sc = &blk[0..16];
        let mut subs = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let q = load32(&blk[16 + 32 * h..]);
            for s in 0..4 {
                let shifted = _mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * s as i32));
                subs[4 * h + s] = _mm256_and_si256(shifted, m3);
            }
        }
        let scales: [__m256i; 8] = std::array::from_fn(|k| {
            pair_scales(i16::from(sc[2 * k] & 15), i16::from(sc[2 * k + 1] & 15))
        });
        for j in 0..B {
            let b = b0 + j;
            let y = &a.qs_row(b)[i * QK_K..(i + 1) * QK_K];
            let bs = &a.bsums[(b * nb + i) * 16..(b * nb + i + 1) * 16];
            let isum = scaled_udot(&subs, &scales, y);
            let msum: i32 = (0..16)
                .map(|g| i32::from(sc[g] >> 4) * i32::from(bs[g]))
                .sum();
            let yd = a.d[b * nb + i];
            acc[j] = (isum as f32).mul_add(d * yd, acc[j]);
            acc_min[j] = (msum as f32).mul_add(dmin * yd, acc_min[j]);
        }
    }
    std::array::from_fn(|j| acc[j] - acc_min[j])
}

/// Q3_K: one row against activation rows `b0..b0 + B`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_q3_k<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let nb = a.cols / QK_K;
    let (m3, one, four) = (
        _mm256_set1_epi8(3),
        _mm256_set1_epi8(1),
        _mm256_set1_epi8(4),
    );
    let mut acc = [0.0f32; B];
    for (i, blk) in w.chunks_exact(q3_k::BLOCK).enumerate() {
        let d = f16(&blk[108..110]);
        let sc = q3_k::scales(blk);
        let hm = load32(&blk[0..32]);
        // Signed values -4..4 as (|v|, sign) for maddubs.
        let mut abs = [_mm256_setzero_si256(); 8];
        let mut signs = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let q = load32(&blk[32 + 32 * h..]);
            for s in 0..4 {
                let k = 4 * h + s;
                let shift = |n: usize| _mm_cvtsi32_si128(n as i32);
                let low = _mm256_and_si256(_mm256_srl_epi16(q, shift(2 * s)), m3);
                let high = _mm256_and_si256(_mm256_srl_epi16(hm, shift(k)), one);
                let v = _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16::<2>(high)), four);
                abs[k] = _mm256_sign_epi8(v, v);
                signs[k] = v;
            }
        }
        let scales: [__m256i; 8] =
            std::array::from_fn(|k| pair_scales(i16::from(sc[2 * k]), i16::from(sc[2 * k + 1])));
        for j in 0..B {
            let b = b0 + j;
            let y = &a.qs_row(b)[i * QK_K..(i + 1) * QK_K];
            let mut sum = _mm256_setzero_si256();
            for k in 0..8 {
                let ys = _mm256_sign_epi8(load32_i8(&y[32 * k..]), signs[k]);
                let p = _mm256_maddubs_epi16(abs[k], ys);
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(scales[k], p));
            }
            let isum = hsum_i32(sum);
            acc[j] = (isum as f32).mul_add(d * a.d[b * nb + i], acc[j]);
        }
    }
    acc
}
