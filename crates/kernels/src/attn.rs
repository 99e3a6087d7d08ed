//! Decode attention in half precision: one query head against one sequence's
//! cached keys and values, with the online softmax of llama.cpp's F16 CPU
//! flash-attention kernel (the query and the running weighted sum of values
//! rounded to half precision at every key, the key dot products summed in the
//! reference's lane order). Used for decode steps and short passes, where it
//! is the part of attention that runs once per generated token.
//!
//! Also the softmax steps of the single-precision tiled attention that long
//! prompt batches take (the engine's `attention::tiled`): a key block's
//! scores scaled and their maximum ([`scale_block`]), then its weights and
//! their sum in GGML's order ([`block_weights`]).
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

/// Keys per block of the tiled single-precision softmax (GGML's
/// `GGML_FA_TILE_KV`): [`scale_block`] and [`block_weights`] work on one.
pub const KEY_BLOCK: usize = 64;

/// Lanes whose weights `ggml_vec_soft_max_f32` sums in single precision before
/// adding them in double precision (one 512-bit register).
const SUM_GROUP: usize = 16;

/// Multiplies every score by `scale` in place and returns the largest of
/// those in `span` (−∞ for an empty span).
pub fn scale_block(scores: &mut [f32; KEY_BLOCK], span: Range<usize>, scale: f32) -> f32 {
    scale_block_with(Isa::detect(), scores, span, scale)
}

/// [`scale_block`] on a chosen instruction set (the portable body where this
/// CPU lacks `isa`).
pub fn scale_block_with(
    isa: Isa,
    scores: &mut [f32; KEY_BLOCK],
    span: Range<usize>,
    scale: f32,
) -> f32 {
    let span = span.start.min(KEY_BLOCK)..span.end.min(KEY_BLOCK);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && Isa::detect() == Isa::Avx2 {
        // SAFETY: AVX2 and FMA were detected just above.
        return unsafe { crate::avx2::attn::scale_block(scores, span, scale) };
    }
    let _ = isa;
    scores.iter_mut().for_each(|x| *x *= scale);
    scores[span]
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x))
}

/// The softmax weights of one key block as GGML's tiled flash attention takes
/// them: `weights[j] = exp_approx(scores[j] − max)` ([`crate::glu::exp_approx`])
/// for `j` in `span`, zero elsewhere. Returns their sum as
/// `ggml_vec_soft_max_f32` adds them on AVX-512: each group of 16 lanes
/// reduced as a tree in single precision (halves added lane by lane), the
/// groups' sums added in double precision.
pub fn block_weights(
    scores: &[f32; KEY_BLOCK],
    span: Range<usize>,
    max: f32,
    weights: &mut [f32; KEY_BLOCK],
) -> f64 {
    block_weights_with(Isa::detect(), scores, span, max, weights)
}

/// [`block_weights`] on a chosen instruction set (the portable body where
/// this CPU lacks `isa`).
pub fn block_weights_with(
    isa: Isa,
    scores: &[f32; KEY_BLOCK],
    span: Range<usize>,
    max: f32,
    weights: &mut [f32; KEY_BLOCK],
) -> f64 {
    let span = span.start.min(KEY_BLOCK)..span.end.min(KEY_BLOCK);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && Isa::detect() == Isa::Avx2 {
        // SAFETY: AVX2 and FMA were detected just above.
        return unsafe { crate::avx2::attn::block_weights(scores, span, max, weights) };
    }
    let _ = isa;
    weights.fill(0.0);
    for (w, &s) in weights[span.clone()].iter_mut().zip(&scores[span]) {
        *w = crate::glu::exp_approx(s - max);
    }
    weights
        .chunks_exact(SUM_GROUP)
        .map(|g| f64::from(tree_sum(g)))
        .sum()
}

/// The sum of 16 lanes in the order of `_mm512_reduce_add_ps`: halves added
/// lane by lane until one is left.
fn tree_sum(g: &[f32]) -> f32 {
    let mut v = [0.0f32; SUM_GROUP];
    v.copy_from_slice(g);
    let mut n = SUM_GROUP;
    while n > 1 {
        n /= 2;
        for j in 0..n {
            v[j] += v[j + n];
        }
    }
    v[0]
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
    #[test]
    fn block_steps_vector_bodies_match_portable_bit_for_bit() {
        let mut rng = Rng(0xb10c);
        let spans = [0..64, 0..1, 5..64, 3..17, 63..64, 16..48, 8..9, 0..40];
        for (t, span) in spans.iter().cycle().take(64).enumerate() {
            // Scores spread from small to beyond the vector exp's range (the
            // portable formula's lanes), with the odd NaN outside the span.
            let amp = [1.0f32, 8.0, 60.0, 400.0][t % 4];
            let mut scores = [0.0f32; KEY_BLOCK];
            scores.iter_mut().for_each(|x| *x = rng.f(amp));
            if span.start > 0 {
                scores[0] = f32::NAN;
            }
            let (mut a, mut b) = (scores, scores);
            let ma = scale_block_with(Isa::Scalar, &mut a, span.clone(), 0.37);
            let mb = scale_block_with(Isa::Avx2, &mut b, span.clone(), 0.37);
            assert_eq!(ma.to_bits(), mb.to_bits(), "max, span {span:?}");
            assert!(a[span.clone()]
                .iter()
                .zip(&b[span.clone()])
                .all(|(x, y)| x.to_bits() == y.to_bits()));
            let top = ma + [0.0, 0.5][t % 2];
            let (mut wa, mut wb) = ([1.0f32; KEY_BLOCK], [2.0f32; KEY_BLOCK]);
            let sa = block_weights_with(Isa::Scalar, &a, span.clone(), top, &mut wa);
            let sb = block_weights_with(Isa::Avx2, &a, span.clone(), top, &mut wb);
            assert_eq!(sa.to_bits(), sb.to_bits(), "sum, span {span:?} amp {amp}");
            for j in 0..KEY_BLOCK {
                assert_eq!(
                    wa[j].to_bits(),
                    wb[j].to_bits(),
                    "weight {j}, span {span:?}"
                );
                if !span.contains(&j) {
                    assert_eq!(wa[j], 0.0, "weight {j} outside {span:?}");
                }
            }
        }
    }

    #[test]
    fn block_weights_are_the_softmax_numerators_and_their_sum() {
        let mut rng = Rng(0x50f7);
        let mut scores = [0.0f32; KEY_BLOCK];
        scores.iter_mut().for_each(|x| *x = rng.f(4.0));
        let span = 3..50;
        let max = scale_block(&mut scores, span.clone(), 0.5);
        assert_eq!(
            max,
            scores[span.clone()]
                .iter()
                .fold(f32::NEG_INFINITY, |m, &x| m.max(x))
        );
        let mut w = [0.0f32; KEY_BLOCK];
        let sum = block_weights(&scores, span.clone(), max, &mut w);
        let mut plain = 0.0f64;
        for j in span.clone() {
            let want = f64::from(scores[j] - max).exp();
            assert!(
                (f64::from(w[j]) - want).abs() < 1e-6 * want.max(1e-30),
                "{j}"
            );
            plain += f64::from(w[j]);
        }
        assert!(w
            .iter()
            .enumerate()
            .all(|(j, &x)| span.contains(&j) || x == 0.0));
        assert!((sum - plain).abs() < 1e-5 && sum >= 1.0);
    }
}
