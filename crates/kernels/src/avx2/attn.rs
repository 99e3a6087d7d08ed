//! The AVX2 + F16C body of [`crate::attn::attend_f16`]: the same recurrence as
//! the portable body, eight lanes at a time. Rounding to half precision is the
//! F16C round trip (`vcvtps2ph` to nearest-even, then `vcvtph2ps`), which
//! gives exactly [`crate::attn::round_f16`]'s bits. Also the AVX2 bodies of
//! the tiled softmax's block steps ([`scale_block`], [`block_weights`]).

use super::*;
use crate::attn::{KvRows, KEY_BLOCK};
use std::ops::Range;

/// Eight floats rounded to half precision and back.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn round8(x: __m256) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
}

/// Stores eight floats at `p[0..8]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store8(p: &mut [f32], x: __m256) {
    assert!(p.len() >= 8);
    // SAFETY: eight writable floats (asserted); unaligned store.
    unsafe { _mm256_storeu_ps(p.as_mut_ptr(), x) }
}

/// Eight halves (bits at `p[0..8]`) widened to floats.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load8_half(p: &[u16]) -> __m256 {
    assert!(p.len() >= 8);
    // SAFETY: eight readable halves (asserted): 16 bytes, unaligned load.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.as_ptr().cast()) })
}

/// [`crate::attn::dot_f16_ordered`] of f32 `a` and half-precision `b`, rows a
/// multiple of 64 long: each 16-lane accumulator is two 8-lane registers
/// (low lanes, high lanes).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_ordered(a: &[f32], b: &[u16]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 8];
    for (ca, cb) in a.chunks_exact(64).zip(b.chunks_exact(64)) {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            // Register r holds lanes (r % 2) * 8 .. + 8 of accumulator r / 2.
            let i = r * 8;
            *acc_r = _mm256_fmadd_ps(load8_f32(&ca[i..]), load8_half(&cb[i..]), *acc_r);
        }
    }
    // v = (acc0 + acc2) + (acc1 + acc3), lane by lane, for both halves.
    let lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
    let hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
    // Halving 16 -> 8 lanes, then 8 -> 4, then the last two steps.
    let v8 = _mm256_add_ps(lo, hi);
    let v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps::<1>(v8));
    hsum_ps4(v4)
}

/// See [`crate::attn::attend_f16`]; `q.len()` is a multiple of 64 and at most 512.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attend_f16<K: KvRows + ?Sized>(
    q: &[f32],
    kv: &K,
    keys: Range<usize>,
    scale: f32,
    out: &mut [f32],
) {
    let n = q.len();
    assert!(n.is_multiple_of(64) && n <= 512 && out.len() == n);
    let mut q16 = [0.0f32; 512];
    let q16 = &mut q16[..n];
    for i in (0..n).step_by(8) {
        store8(&mut q16[i..], round8(load8_f32(&q[i..])));
    }
    let (mut sum, mut max) = (0.0f32, f32::NEG_INFINITY);
    out.fill(0.0);
    for p in keys {
        let s = dot_ordered(q16, kv.key(p)) * scale;
        let (mut ms, mut vs) = (1.0f32, 1.0f32);
        if s > max {
            let old = max;
            max = s;
            ms = (old - max).exp();
            let m = _mm256_set1_ps(ms);
            for i in (0..n).step_by(8) {
                let o = _mm256_mul_ps(load8_f32(&out[i..]), m);
                store8(&mut out[i..], round8(o));
            }
        } else {
            vs = (s - max).exp();
        }
        let value = kv.value(p);
        assert!(value.len() >= n);
        let w = _mm256_set1_ps(vs);
        for i in (0..n).step_by(8) {
            let o = _mm256_fmadd_ps(load8_half(&value[i..]), w, load8_f32(&out[i..]));
            store8(&mut out[i..], round8(o));
        }
        sum = sum.mul_add(ms, vs);
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    let inv8 = _mm256_set1_ps(inv);
    for i in (0..n).step_by(8) {
        let o = _mm256_mul_ps(load8_f32(&out[i..]), inv8);
        store8(&mut out[i..], o);
    }
}

/// The lanes `8r .. 8r + 8` of a key block that lie in `span`, as an all-ones
/// mask.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn span_mask(r: usize, span: &Range<usize>) -> __m256 {
    let idx = _mm256_add_epi32(
        _mm256_set1_epi32((8 * r) as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    );
    let below = _mm256_cmpgt_epi32(_mm256_set1_epi32(span.start as i32), idx);
    let inside = _mm256_cmpgt_epi32(_mm256_set1_epi32(span.end as i32), idx);
    _mm256_castsi256_ps(_mm256_andnot_si256(below, inside))
}

/// See [`crate::attn::scale_block`]; `span` lies within the block.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn scale_block(
    scores: &mut [f32; KEY_BLOCK],
    span: Range<usize>,
    scale: f32,
) -> f32 {
    let s = _mm256_set1_ps(scale);
    let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut m = neg_inf;
    for r in 0..KEY_BLOCK / 8 {
        let x = _mm256_mul_ps(load8_f32(&scores[8 * r..]), s);
        store8(&mut scores[8 * r..], x);
        // A NaN lane leaves the maximum as it was, as `f32::max` does.
        m = _mm256_max_ps(_mm256_blendv_ps(neg_inf, x, span_mask(r, &span)), m);
    }
    let mut lanes = [0.0f32; 8];
    store8(&mut lanes, m);
    lanes.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x))
}

/// See [`crate::attn::block_weights`]; `span` lies within the block. A lane
/// whose `exp` leaves the vector form's range takes the portable formula.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn block_weights(
    scores: &[f32; KEY_BLOCK],
    span: Range<usize>,
    max: f32,
    weights: &mut [f32; KEY_BLOCK],
) -> f64 {
    let m = _mm256_set1_ps(max);
    let mut sum = 0.0f64;
    // Each group of 16 lanes is two registers, summed as one 512-bit one.
    for g in 0..KEY_BLOCK / 16 {
        let mut half = [_mm256_setzero_ps(); 2];
        for (h, w) in half.iter_mut().enumerate() {
            let r = 2 * g + h;
            if 8 * r >= span.end || 8 * r + 8 <= span.start {
                continue;
            }
            let mask = span_mask(r, &span);
            let (e, outside) =
                crate::avx2::glu::exp8(_mm256_sub_ps(load8_f32(&scores[8 * r..]), m));
            *w = if _mm256_movemask_ps(_mm256_and_ps(outside, mask)) == 0 {
                _mm256_and_ps(e, mask)
            } else {
                let mut lanes = [0.0f32; 8];
                for (l, x) in lanes.iter_mut().enumerate() {
                    if span.contains(&(8 * r + l)) {
                        *x = crate::glu::exp_approx(scores[8 * r + l] - max);
                    }
                }
                load8_f32(&lanes)
            };
        }
        store8(&mut weights[16 * g..], half[0]);
        store8(&mut weights[16 * g + 8..], half[1]);
        let v8 = _mm256_add_ps(half[0], half[1]);
        let v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps::<1>(v8));
        sum += f64::from(hsum_ps4(v4));
    }
    sum
}
