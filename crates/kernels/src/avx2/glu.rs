//! The AVX2+FMA body of [`crate::glu::swiglu`] and of the `exp`
//! approximation ([`exp8`], which the tiled softmax shares): the same
//! operations as the portable body, eight lanes at a time. The final scaling by `2^n` is a
//! multiplication by a power of two built from `n`'s bits, which rounds
//! exactly as `scalef` does while `|n| ≤ 126`; a group with a lane outside
//! that range (|x| beyond ~87) takes the portable formula for its lanes.

use super::*;
use crate::glu::{silu_approx, C1, C2, C3, C4, C5, LN2_HI, LN2_LO, LOG2E, SHIFT};

/// [`crate::glu::exp_approx`] of eight lanes, and the lanes whose `2^n` is
/// not a normal float (or that are NaN: an unordered compare), as an
/// all-ones mask: those lanes of the result are wrong and must take the
/// portable formula.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn exp8(x: __m256) -> (__m256, __m256) {
    let shift = _mm256_set1_ps(SHIFT);
    let z = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), shift);
    let n = _mm256_sub_ps(z, shift);
    let b = _mm256_fnmadd_ps(
        n,
        _mm256_set1_ps(LN2_LO),
        _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x),
    );
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(_mm256_set1_ps(C5), b, _mm256_set1_ps(C4)),
            u,
            _mm256_fmadd_ps(_mm256_set1_ps(C3), b, _mm256_set1_ps(C2)),
        ),
        u,
        _mm256_fmadd_ps(_mm256_set1_ps(C1), b, _mm256_set1_ps(1.0)),
    );
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let outside = _mm256_cmp_ps::<_CMP_NLE_UQ>(abs_n, _mm256_set1_ps(126.0));
    // z holds SHIFT + n: its low bits are n, so (z << 23) + bits(1.0) = 2^n.
    let pow2 = _mm256_castsi256_ps(_mm256_add_epi32(
        _mm256_slli_epi32::<23>(_mm256_castps_si256(z)),
        _mm256_set1_epi32(0x3f80_0000),
    ));
    (_mm256_mul_ps(j, pow2), outside)
}

/// `silu(gate) * up` for eight lanes at `gate[i..i + 8]`, `up[i..i + 8]`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn swiglu8(gate: &mut [f32], up: &[f32]) {
    assert!(gate.len() >= 8 && up.len() >= 8);
    // SAFETY: eight readable floats in each (asserted); unaligned loads.
    let (x, g) = unsafe { (_mm256_loadu_ps(gate.as_ptr()), _mm256_loadu_ps(up.as_ptr())) };
    let neg = _mm256_sub_ps(_mm256_setzero_ps(), x);
    let (e, outside) = exp8(neg);
    if _mm256_movemask_ps(outside) != 0 {
        for (v, &w) in gate[..8].iter_mut().zip(&up[..8]) {
            *v = silu_approx(*v) * w;
        }
        return;
    }
    let silu = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e));
    // SAFETY: eight writable floats (asserted); unaligned store.
    unsafe { _mm256_storeu_ps(gate.as_mut_ptr(), _mm256_mul_ps(silu, g)) }
}

/// `gate = silu(gate) * up` over rows a multiple of eight long.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn swiglu(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    assert!(gate.len().is_multiple_of(8));
    for (g, u) in gate.chunks_exact_mut(8).zip(up.chunks_exact(8)) {
        swiglu8(g, u);
    }
}
