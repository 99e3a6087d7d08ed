//! Decode attention in half precision: one query head against one sequence's
//! cached keys and values, with the online softmax of llama.cpp's F16 CPU
//! flash-attention kernel (the query and the running weighted sum of values
//! rounded to half precision at every key, the key dot products summed in the
//! reference's lane order). Used for decode steps and short passes, where it
//! is the part of attention that runs once per generated token.
//!
//! Two bodies compute the same recurrence: a portable one and an AVX2+F16C
//! one. Every step is the same per-lane operation in both (products of
//! half-precision values are exact in f32, fused multiply-adds round once,
//! the hardware conversion rounds to nearest-even like [`round_f16`]), so they
//! agree bit for bit; the tests check it.

use std::ops::Range;

use crate::Isa;

/// Where [`attend_f16`] reads one KV head's rows: IEEE half-precision bits,
/// `head_dim` long (the KV cache's own storage).
pub trait KvRows {
    /// The key at position `p`.
    fn key(&self, p: usize) -> &[u16];
    /// The value at position `p`.
    fn value(&self, p: usize) -> &[u16];
}

/// The dot products' lane layout: four accumulators of this many lanes, over
/// steps of four times that (GGML's 512-bit F16 dot product).
const LANES: usize = 16;
const STEP: usize = 4 * LANES;

/// The longest head the vector body keeps on the stack (longer heads take the
/// portable body).
const MAX_HEAD: usize = 512;

/// `x` rounded to half precision and back, bit for bit
/// `f16_to_f32(f32_to_f16(x))` (round to nearest, ties to even): a few integer
/// operations in the half-precision normal range, the full conversion for
/// zeros, subnormals, overflow and NaN.
#[inline(always)]
pub fn round_f16(x: f32) -> f32 {
    let b = x.to_bits();
    // f32 exponents 113..=142 are the f16 normal range (2^-14 ..= 65504).
    if (113..=142).contains(&((b >> 23) & 0xff)) {
        // Drop the 13 low mantissa bits, rounding to nearest even; a carry
        // moves into the exponent as it should.
        let r = (b + 0x0fff + ((b >> 13) & 1)) & !0x1fff;
        if (r >> 23) & 0xff <= 142 {
            return f32::from_bits(r);
        }
    }
    crate::f16_to_f32(crate::f32_to_f16(x))
}

/// Dot product of two rows of half-precision values (held as f32), summed in
/// the order GGML's 512-bit F16 dot product uses: four 16-lane fused
/// multiply-add accumulators over steps of 64, folded pairwise, then the lanes
/// halved down to one. Products of half-precision values are exact in f32, so
/// following the order reproduces the reference bit for bit. Rows not a
/// multiple of 64 are summed in a plain order.
#[inline(always)]
pub fn dot_f16_ordered(a: &[f32], b: &[f32]) -> f32 {
    if !a.len().is_multiple_of(STEP) {
        return a.iter().zip(b).map(|(x, y)| x * y).sum();
    }
    let mut acc = [[0.0f32; LANES]; 4];
    for (ca, cb) in a.chunks_exact(STEP).zip(b.chunks_exact(STEP)) {
        for (j, acc_j) in acc.iter_mut().enumerate() {
            for (l, slot) in acc_j.iter_mut().enumerate() {
                let i = j * LANES + l;
                *slot = ca[i].mul_add(cb[i], *slot);
            }
        }
    }
    let mut v = [0.0f32; LANES];
    for l in 0..LANES {
        v[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            v[l] += v[l + width];
        }
    }
    v[0]
}

/// Attention of query `q` (one head) over the rows `keys` of `kv`, scaled by
/// `scale`, written to `out` (`q.len()` values), on the fastest body this CPU
/// runs.
pub fn attend_f16<K: KvRows + ?Sized>(
    q: &[f32],
    kv: &K,
    keys: Range<usize>,
    scale: f32,
    out: &mut [f32],
) {
    attend_f16_with(Isa::detect(), q, kv, keys, scale, out);
}

/// [`attend_f16`] on a chosen instruction set (the portable body where this
/// CPU lacks `isa` or the head does not fit the vector body).
pub fn attend_f16_with<K: KvRows + ?Sized>(
    isa: Isa,
    q: &[f32],
    kv: &K,
    keys: Range<usize>,
    scale: f32,
    out: &mut [f32],
) {
    assert_eq!(q.len(), out.len(), "query and output lengths differ");
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2
        && Isa::detect() == Isa::Avx2
        && q.len().is_multiple_of(STEP)
        && q.len() <= MAX_HEAD
    {
        // SAFETY: AVX2, FMA and F16C were detected just above.
        unsafe { crate::avx2::attn::attend_f16(q, kv, keys, scale, out) };
        return;
    }
    let _ = isa;
    attend_f16_portable(q, kv, keys, scale, out);
}

/// The portable body: the recurrence written out one element at a time.
fn attend_f16_portable<K: KvRows + ?Sized>(
    q: &[f32],
    kv: &K,
    keys: Range<usize>,
    scale: f32,
    out: &mut [f32],
) {
    let q16: Vec<f32> = q.iter().map(|&x| round_f16(x)).collect();
    let mut key = vec![0.0f32; q.len()];
    let (mut sum, mut max) = (0.0f32, f32::NEG_INFINITY);
    out.fill(0.0);
    for p in keys {
        for (k, &h) in key.iter_mut().zip(kv.key(p)) {
            *k = crate::f16_to_f32(h);
        }
        let s = dot_f16_ordered(&q16, &key) * scale;
        let (mut ms, mut vs) = (1.0f32, 1.0f32);
        if s > max {
            let old = max;
            max = s;
            ms = (old - max).exp();
            out.iter_mut().for_each(|o| *o = round_f16(*o * ms));
        } else {
            vs = (s - max).exp();
        }
        for (o, &v) in out.iter_mut().zip(kv.value(p)) {
            *o = round_f16(crate::f16_to_f32(v).mul_add(vs, *o));
        }
        sum = sum.mul_add(ms, vs);
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    out.iter_mut().for_each(|o| *o *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rows {
        k: Vec<Vec<u16>>,
        v: Vec<Vec<u16>>,
    }

    impl KvRows for Rows {
        fn key(&self, p: usize) -> &[u16] {
            &self.k[p]
        }
        fn value(&self, p: usize) -> &[u16] {
            &self.v[p]
        }
    }

    /// A small xorshift generator: reproducible inputs without a dependency.
    struct Rng(u64);
    impl Rng {
        fn f(&mut self, amp: f32) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
        }
        fn row(&mut self, n: usize, amp: f32) -> Vec<f32> {
            (0..n).map(|_| round_f16(self.f(amp))).collect()
        }
        fn halves(&mut self, n: usize, amp: f32) -> Vec<u16> {
            (0..n).map(|_| crate::f32_to_f16(self.f(amp))).collect()
        }
    }

    #[test]
    fn round_f16_equals_the_full_conversion() {
        let slow = |x: f32| crate::f16_to_f32(crate::f32_to_f16(x));
        let check = |b: u32| {
            let x = f32::from_bits(b);
            let (fast, want) = (round_f16(x), slow(x));
            assert!(
                fast.to_bits() == want.to_bits() || (fast.is_nan() && want.is_nan()),
                "{x:e} ({b:#010x}): {fast:e} != {want:e}"
            );
        };
        // A stride through every exponent and sign, plus the edges of the
        // normal range and rounding ties around them.
        for b in (0..=u32::MAX).step_by(997) {
            check(b);
        }
        for edge in [2f32.powi(-14), 65504.0, 65520.0, 1.0, 2048.0] {
            let e = edge.to_bits();
            for d in 0..0x4000u32 {
                for b in [e.wrapping_add(d), e.wrapping_sub(d)] {
                    check(b);
                    check(b | 0x8000_0000);
                }
            }
        }
    }

    #[test]
    fn vector_body_matches_portable_bit_for_bit() {
        let mut rng = Rng(0x5eed);
        for (hd, n, amp) in [
            (64, 300, 3.0),
            (256, 90, 1.0),
            (128, 40, 40.0),
            (64, 1, 1.0),
        ] {
            let rows = Rows {
                k: (0..n).map(|_| rng.halves(hd, amp)).collect(),
                v: (0..n).map(|_| rng.halves(hd, 1.0)).collect(),
            };
            for trial in 0..6 {
                let q: Vec<f32> = (0..hd).map(|_| rng.f(amp)).collect();
                let keys = (trial * 7) % n..n;
                let (mut fast, mut plain) = (vec![0.0f32; hd], vec![0.0f32; hd]);
                attend_f16_with(Isa::Avx2, &q, &rows, keys.clone(), 0.125, &mut fast);
                attend_f16_with(Isa::Scalar, &q, &rows, keys.clone(), 0.125, &mut plain);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&plain), "hd {hd} trial {trial}");
                assert!(plain.iter().any(|&x| x != 0.0));
            }
        }
    }

    #[test]
    fn ordered_dot_matches_a_plain_sum_closely() {
        let mut rng = Rng(3);
        let (a, b) = (rng.row(128, 1.0), rng.row(128, 1.0));
        let plain: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        assert!((f64::from(dot_f16_ordered(&a, &b)) - plain).abs() < 1e-4);
    }
}
