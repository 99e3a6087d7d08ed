//! SwiGLU, the gated activation of llama-style feed-forward blocks
//! (`gate = silu(gate) * up`), computed as llama.cpp's CPU backend computes
//! it on an x86_64 machine with AVX-512, to the bit.
//!
//! GGML does not call the C library's `expf` inside SiLU: 16 values at a time
//! go through a vectorised approximation (Arm's optimized-routines `expf`
//! scheme: Cody–Waite reduction by ln 2, a degree-5 polynomial evaluated in
//! Estrin form, then scaling by `2^n`), accurate to ~1.5 ulp. Those last-ulp
//! differences from libm are enough to flip the rounding of a quantized
//! activation downstream, which SmolLM2's outlier residual channels then
//! amplify into a different greedy token. So we evaluate the same function:
//! the reduction constants and polynomial coefficients below are that
//! scheme's published values, and every step is the same IEEE operation
//! (fused multiply-adds round once), so the result is bit-identical. As in
//! GGML, elements past the last whole group of 16 use libm's `expf`.
//!
//! Two bodies compute it: a portable one and an AVX2+FMA one; the tests check
//! that they agree bit for bit.

use crate::Isa;

/// Elements per group that take the approximation (GGML's 512-bit width);
/// the rest of a row takes libm's `expf`.
pub(crate) const GROUP: usize = 16;

/// `1.5 · 2^23`: adding it rounds a float of magnitude < 2^22 to an integer.
pub(crate) const SHIFT: f32 = 12_582_912.0;
/// log2(e), rounded to f32 (0x1.715476p+0).
pub(crate) const LOG2E: f32 = f32::from_bits(0x3fb8_aa3b);
/// ln 2 split in two: a high part with trailing zero bits (0x1.62e4p-1) so
/// that `n · LN2_HI` is exact, and the remainder (0x1.7f7d1cp-20).
pub(crate) const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
pub(crate) const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
/// Coefficients of `exp(b) ≈ 1 + C1·b + C2·b² + … + C5·b⁵` on |b| ≤ ln2/2
/// (0x1.ffffecp-1, 0x1.fffdb6p-2, 0x1.555e66p-3, 0x1.573e2ep-5, 0x1.0e4020p-7).
pub(crate) const C1: f32 = f32::from_bits(0x3f7f_fff6);
pub(crate) const C2: f32 = f32::from_bits(0x3eff_fedb);
pub(crate) const C3: f32 = f32::from_bits(0x3e2a_af33);
pub(crate) const C4: f32 = f32::from_bits(0x3d2b_9f17);
pub(crate) const C5: f32 = f32::from_bits(0x3c07_2010);
/// Past `|n| > OVERFLOW_N` the result is 0 or infinity outright.
pub(crate) const OVERFLOW_N: f32 = 192.0;

/// The vectorised `exp(x)` approximation, one value (see the module doc).
pub fn exp_approx(x: f32) -> f32 {
    let z = x.mul_add(LOG2E, SHIFT);
    let n = z - SHIFT;
    let b = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let u = b * b;
    let j = C5
        .mul_add(b, C4)
        .mul_add(u, C3.mul_add(b, C2))
        .mul_add(u, C1.mul_add(b, 1.0));
    scale_pow2(j, n)
}

/// `j · 2^n` rounded once (AVX-512's `scalef`), with `|n| > 192` giving 0 or
/// infinity by the sign of `n`. `n` is an integer (or NaN).
pub(crate) fn scale_pow2(j: f32, n: f32) -> f32 {
    if n.is_nan() {
        return f32::NAN;
    }
    if n.abs() > OVERFLOW_N {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // Exact in f64 (24 significant bits, |n| ≤ 192), then one rounding to f32
    // (to nearest even, through the subnormals and to infinity as `scalef`).
    (f64::from(j) * 2f64.powi(n as i32)) as f32
}

/// `x / (1 + exp(-x))` with the approximation.
#[inline]
pub fn silu_approx(x: f32) -> f32 {
    x / (1.0 + exp_approx(0.0 - x))
}

/// `x / (1 + expf(-x))` with libm's `expf` (GGML's tail elements).
#[inline]
fn silu_libm(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `gate = silu(gate) * up`, elementwise, as GGML computes it (see the module doc).
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    swiglu_with(Isa::detect(), gate, up);
}

/// [`swiglu`] on a chosen instruction set (the portable body where this CPU
/// lacks `isa`).
pub fn swiglu_with(isa: Isa, gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "gate and up lengths differ");
    let whole = gate.len() / GROUP * GROUP;
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && Isa::detect() == Isa::Avx2 {
        // SAFETY: AVX2 and FMA were detected just above.
        unsafe { crate::avx2::glu::swiglu(&mut gate[..whole], &up[..whole]) };
    } else {
        swiglu_portable(&mut gate[..whole], &up[..whole]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        swiglu_portable(&mut gate[..whole], &up[..whole]);
    }
    for (g, &u) in gate[whole..].iter_mut().zip(&up[whole..]) {
        *g = silu_libm(*g) * u;
    }
}

fn swiglu_portable(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu_approx(*g) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic spread of floats: every sign and exponent the
    /// activations reach, plus the edges of the approximation's range.
    fn inputs() -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            88.0,
            88.5,
            -87.0,
            -88.5,
            -103.0,
            -104.0,
            89.0,
            120.0,
            -130.0,
            200.0,
            -200.0,
            1e-30,
            -1e-30,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
            let scale = [0.01f32, 1.0, 8.0, 40.0, 100.0][(state % 5) as usize];
            v.push((unit * 2.0 - 1.0) * scale);
        }
        v
    }

    #[test]
    fn exp_approx_is_within_two_ulps_of_libm() {
        for x in inputs() {
            let (got, want) = (exp_approx(x), x.exp());
            if !want.is_finite() || want < f32::MIN_POSITIVE {
                continue;
            }
            let ulps = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulps <= 2, "exp({x}): {got} vs libm {want}, {ulps} ulps");
        }
    }

    #[test]
    fn exp_approx_saturates() {
        assert_eq!(exp_approx(200.0), f32::INFINITY);
        assert_eq!(exp_approx(-200.0), 0.0);
        assert_eq!(exp_approx(0.0), 1.0);
        assert!(exp_approx(f32::NAN).is_nan());
    }

    #[test]
    fn vector_body_matches_portable_bit_for_bit() {
        let gate = inputs();
        let up: Vec<f32> = gate.iter().map(|g| 1.0 - g * 0.37).collect();
        let mut a = gate.clone();
        let mut b = gate.clone();
        swiglu_with(Isa::Scalar, &mut a, &up);
        swiglu_with(Isa::Avx2, &mut b, &up);
        for ((x, y), g) in a.iter().zip(&b).zip(&gate) {
            assert_eq!(x.to_bits(), y.to_bits(), "silu({g})·up: {x} vs {y}");
        }
    }

    #[test]
    fn tail_past_the_last_group_uses_libm() {
        let gate: Vec<f32> = (0..GROUP + 3).map(|i| i as f32 * 0.731 - 5.0).collect();
        let up = vec![1.0; gate.len()];
        let mut out = gate.clone();
        swiglu(&mut out, &up);
        for (i, (&o, &g)) in out.iter().zip(&gate).enumerate() {
            let want = if i < GROUP {
                silu_approx(g)
            } else {
                silu_libm(g)
            };
            assert_eq!(o.to_bits(), want.to_bits(), "element {i}");
        }
    }
}
