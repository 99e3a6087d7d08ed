//! The AVX2 + F16C body of [`crate::attn::attend_f16`]: the same recurrence as
//! the portable body, eight lanes at a time. Rounding to half precision is the
//! F16C round trip (`vcvtps2ph` to nearest-even, then `vcvtph2ps`), which
//! gives exactly [`crate::attn::round_f16`]'s bits.

use super::*;
use crate::attn::KvRows;
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
