//! AVX2 kernels for unquantized weights (F32, F16 against f16-rounded
//! activations), one weight row at a time against up to four activation rows.

use super::*;

rows_kernel!(rows_f32, dot_f32);
rows_kernel!(rows_f16, dot_f16);
rows_kernel!(rows_bf16, dot_bf16);

/// Eight f32s rounded to bf16 (to nearest even) and back, as
/// [`crate::formats::float::f32_to_bf16`] does (NaN aside).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn round_bf16(x: __m256) -> __m256 {
    let u = _mm256_castps_si256(x);
    let odd = _mm256_and_si256(_mm256_srli_epi32::<16>(u), _mm256_set1_epi32(1));
    let r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd));
    _mm256_castsi256_ps(_mm256_and_si256(
        r,
        _mm256_set1_epi32(0xffff_0000u32 as i32),
    ))
}

/// BF16 weights against bf16-rounded activations.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_bf16<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    use crate::formats::float::{bf16_to_f32, f32_to_bf16};
    let n = a.cols;
    let main = n - n % 32;
    let mut out = [0.0f32; B];
    for (j, o) in out.iter_mut().enumerate() {
        let x = &a.f[(b0 + j) * n..(b0 + j + 1) * n];
        let mut s = [_mm256_setzero_ps(); 4];
        for i in (0..main).step_by(32) {
            for (k, sk) in s.iter_mut().enumerate() {
                let e = i + 8 * k;
                let wv = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                    load16(&w[2 * e..2 * e + 16]),
                )));
                *sk = _mm256_fmadd_ps(wv, round_bf16(load8_f32(&x[e..e + 8])), *sk);
            }
        }
        let mut sum = reduce4(s);
        for e in main..n {
            let wv = bf16_to_f32(u16::from_le_bytes([w[2 * e], w[2 * e + 1]]));
            sum += wv * bf16_to_f32(f32_to_bf16(x[e]));
        }
        *o = sum;
    }
    out
}

/// Four 8-lane accumulators reduced as llama.cpp's `GGML_F32_VEC_REDUCE`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn reduce4(s: [__m256; 4]) -> f32 {
    let a = _mm256_add_ps(s[0], s[2]);
    let b = _mm256_add_ps(s[1], s[3]);
    hsum_ps(_mm256_add_ps(a, b))
}

/// F32 weights against the f32 activations.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_f32<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let n = a.cols;
    let main = n - n % 32;
    let mut out = [0.0f32; B];
    for (j, o) in out.iter_mut().enumerate() {
        let x = &a.f[(b0 + j) * n..(b0 + j + 1) * n];
        let mut s = [_mm256_setzero_ps(); 4];
        for i in (0..main).step_by(32) {
            for (k, sk) in s.iter_mut().enumerate() {
                let e = i + 8 * k;
                *sk = _mm256_fmadd_ps(
                    load8_f32_bytes(&w[4 * e..4 * e + 32]),
                    load8_f32(&x[e..e + 8]),
                    *sk,
                );
            }
        }
        let mut sum = reduce4(s);
        for e in main..n {
            sum += f32::from_le_bytes([w[4 * e], w[4 * e + 1], w[4 * e + 2], w[4 * e + 3]]) * x[e];
        }
        *o = sum;
    }
    out
}

/// F16 weights against f16-rounded activations.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_f16<const B: usize>(w: &[u8], a: &ActView<'_>, b0: usize) -> [f32; B] {
    let n = a.cols;
    let main = n - n % 32;
    let mut out = [0.0f32; B];
    for (j, o) in out.iter_mut().enumerate() {
        let x = &a.h[(b0 + j) * n..(b0 + j + 1) * n];
        let mut s = [_mm256_setzero_ps(); 4];
        for i in (0..main).step_by(32) {
            for (k, sk) in s.iter_mut().enumerate() {
                let e = i + 8 * k;
                // SAFETY: x[e..e + 8] is in bounds (e + 8 <= main <= n): 16 bytes.
                let xh = unsafe { _mm_loadu_si128(x[e..e + 8].as_ptr().cast()) };
                let xv = _mm256_cvtph_ps(xh);
                *sk = _mm256_fmadd_ps(load8_f16_bytes(&w[2 * e..2 * e + 16]), xv, *sk);
            }
        }
        let mut sum = reduce4(s);
        for e in main..n {
            let wv = crate::f16::f16_to_f32(u16::from_le_bytes([w[2 * e], w[2 * e + 1]]));
            sum += wv * crate::f16::f16_to_f32(x[e]);
        }
        *o = sum;
    }
    out
}
