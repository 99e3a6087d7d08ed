//! Vocabulary-wide float loops: a fast `exp`, max and sum, written so
//! the compiler vectorises them with the baseline instruction set.
//!
//! libm's `expf` is a function call per token (about 8 ns); softmax over
//! a 262k vocabulary spends most of its time there. This version is
//! branch-free so the compiler can vectorise loops over it with plain
//! SSE2/NEON: range reduction `x = n·ln2 + r` (n by the add-magic-number
//! rounding trick), a degree-6 Taylor polynomial for `e^r` on
//! `|r| <= ln2/2`, and `2^n` assembled in the exponent bits. Relative
//! error is below 1e-6 — far under what sampling can notice.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a high part exact in few bits and a low remainder, so
/// `x - n·ln2` loses no precision.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5 · 2^23: adding it rounds an f32 to an integer held in the low
/// mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Below this `e^x` is under the smallest normal f32; it becomes 0.
const MIN_X: f32 = -87.0;

/// `e^x` for `x <= 0` (as in softmax after subtracting the maximum);
/// `-inf`, NaN and anything below -87 give 0.
#[inline]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    let xc = x.max(MIN_X);
    let shifted = xc * LOG2_E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // e^r = 1 + r + r²/2! + ... + r⁶/6!, Horner form.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The integer n sits in the low mantissa bits of `shifted`.
    let n_int = (shifted.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let two_n = f32::from_bits(((n_int + 127) as u32) << 23);
    // Zero the result below the range with a bit mask rather than a
    // branch, which would stop vectorisation.
    let keep = u32::from(x >= MIN_X).wrapping_neg();
    f32::from_bits((p * two_n).to_bits() & keep)
}

/// Lanes of the independent accumulators below: enough for the compiler
/// to keep a full vector register busy.
const LANES: usize = 8;

/// The largest value, ignoring NaN; `-inf` for an empty or all-NaN slice.
pub(crate) fn max_f32(values: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            // `v > a` is false for NaN, so NaN never wins.
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in acc.iter().chain(chunks.remainder()) {
        m = if v > m { v } else { m };
    }
    m
}

/// Replaces each value `v` by `e^(v - max)` and returns the sum, with
/// f32 partial sums over short runs gathered in f64.
pub(crate) fn exp_shifted_in_place(values: &mut [f32], max: f32) -> f64 {
    let mut sum = 0.0f64;
    for block in values.chunks_mut(1024) {
        let mut acc = [0.0f32; LANES];
        let mut chunks = block.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            for (a, v) in acc.iter_mut().zip(chunk) {
                *v = exp_nonpositive(*v - max);
                *a += *v;
            }
        }
        for v in chunks.into_remainder() {
            *v = exp_nonpositive(*v - max);
            sum += f64::from(*v);
        }
        sum += acc.iter().map(|&a| f64::from(a)).sum::<f64>();
    }
    sum
}

/// The sum of `e^(v - max)` over `values` (NaN counts as 0), without
/// writing anything.
pub(crate) fn sum_exp_shifted(values: &[f32], max: f32) -> f64 {
    let mut sum = 0.0f64;
    for block in values.chunks(1024) {
        let mut acc = [0.0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(chunk) {
                *a += exp_nonpositive(v - max);
            }
        }
        for &v in chunks.remainder() {
            sum += f64::from(exp_nonpositive(v - max));
        }
        sum += acc.iter().map(|&a| f64::from(a)).sum::<f64>();
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_std_exp_within_one_part_per_million() {
        let mut worst = 0.0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let want = f64::from(x).exp();
            let got = f64::from(exp_nonpositive(x));
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
    }

    #[test]
    fn max_and_exp_sum_match_scalar_loops() {
        let values: Vec<f32> = (0..1237)
            .map(|i| ((i * 37) % 101) as f32 * 0.1 - 3.0)
            .collect();
        let want_max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(max_f32(&values), want_max);
        assert_eq!(max_f32(&[f32::NAN, -1.0, f32::NAN]), -1.0);
        assert_eq!(max_f32(&[]), f32::NEG_INFINITY);
        let mut e = values.clone();
        let sum = exp_shifted_in_place(&mut e, want_max);
        assert_eq!(sum, sum_exp_shifted(&values, want_max));
        let want_sum: f64 = values.iter().map(|&v| f64::from(v - want_max).exp()).sum();
        assert!((sum - want_sum).abs() / want_sum < 1e-6, "{sum} {want_sum}");
        for (v, x) in values.iter().zip(&e) {
            assert!((f64::from(*x) - f64::from(v - want_max).exp()).abs() < 1e-6);
        }
    }

    #[test]
    fn edges() {
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert!(exp_nonpositive(-86.9) > 0.0);
        assert_eq!(exp_nonpositive(f32::NAN), 0.0);
    }
}
