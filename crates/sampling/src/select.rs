//! Pre-selection for large candidate lists.
//!
//! Sorting or even `select_nth` over a 262k-token vocabulary costs more
//! than a millisecond, yet top-k and top-p usually need only its head.
//!
//! - [`threshold_for_top`] estimates, from an evenly strided sample, a
//!   logit that comfortably more than `k` tokens reach; one comparison
//!   per token then drops the rest. The caller checks that enough
//!   tokens survived and falls back to the whole list otherwise, so the
//!   estimate only affects speed, never the result.
//! - [`Histogram`] buckets logits (bucket index is monotone in the
//!   logit) so that top-p can find the bucket where the probability mass
//!   reaches `p` and sort only that bucket's tokens, for flat
//!   distributions whose nucleus is large.

/// Number of histogram buckets: small enough to live on the stack,
/// fine enough that the boundary bucket holds few tokens.
const BUCKETS: usize = 1024;

/// Lists at least this long are pre-selected; shorter ones are cheaper
/// to handle directly.
pub(crate) const MIN_LEN: usize = 4096;

/// Sample size of [`threshold_for_top`].
const SAMPLE: usize = 1024;

/// A logit that, judging by a strided sample of `n` values read through
/// `value`, at least `k` of them reach with a wide margin (about twice
/// as many are expected, plus some). `None` when the sample says most of
/// the list is needed anyway.
pub(crate) fn threshold_for_top(n: usize, k: usize, value: impl Fn(usize) -> f32) -> Option<f32> {
    if n < MIN_LEN {
        return None;
    }
    let mut sample = [0.0f32; SAMPLE];
    for (j, s) in sample.iter_mut().enumerate() {
        let v = value(j * n / SAMPLE);
        *s = if v.is_nan() { f32::NEG_INFINITY } else { v };
    }
    // Expected hits of the top k in the sample, doubled, plus slack so
    // a small k still has a comfortable margin.
    let m = (k * SAMPLE).div_ceil(n) * 2 + 8;
    if m >= SAMPLE / 4 {
        return None;
    }
    let (_, t, _) = sample.select_nth_unstable_by(m - 1, |a, b| b.total_cmp(a));
    Some(*t)
}

/// A linear mapping of a logit range onto bucket indices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Histogram {
    lo: f32,
    scale: f32,
}

impl Histogram {
    /// The mapping for the finite range of `values`, or `None` when the
    /// range is empty or degenerate (then pre-selection cannot help).
    pub(crate) fn over(values: impl Iterator<Item = f32>) -> Option<Self> {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for v in values {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        let scale = BUCKETS as f32 / (hi - lo);
        (hi > lo && scale.is_finite() && scale > 0.0).then_some(Self { lo, scale })
    }

    /// The bucket of `v`; `-inf` and values below the range land in 0,
    /// `+inf` and values above it in the last bucket.
    pub(crate) fn bucket(&self, v: f32) -> usize {
        // `as usize` saturates: negative and NaN give 0.
        (((v - self.lo) * self.scale) as usize).min(BUCKETS - 1)
    }

    /// The highest bucket `b` such that buckets `>= b` hold at least
    /// `target` of the probability mass of `(logit, p)` pairs.
    pub(crate) fn mass_cutoff(
        &self,
        pairs: impl Iterator<Item = (f32, f32)>,
        target: f64,
    ) -> usize {
        let mut mass = [0.0f64; BUCKETS];
        for (l, p) in pairs {
            mass[self.bucket(l)] += f64::from(p);
        }
        let mut seen = 0.0;
        for b in (0..BUCKETS).rev() {
            seen += mass[b];
            if seen >= target {
                return b;
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotone_and_cover_the_range() {
        let h = Histogram::over([-3.0f32, 5.0, f32::NEG_INFINITY].into_iter());
        let Some(h) = h else {
            panic!("range should be usable")
        };
        assert_eq!(h.bucket(-3.0), 0);
        assert_eq!(h.bucket(f32::NEG_INFINITY), 0);
        assert_eq!(h.bucket(5.0), BUCKETS - 1);
        assert_eq!(h.bucket(f32::INFINITY), BUCKETS - 1);
        let mut last = 0;
        for i in 0..=8000 {
            let b = h.bucket(-3.0 + i as f32 * 1e-3);
            assert!(b >= last);
            last = b;
        }
        assert!(Histogram::over([1.0f32, 1.0].into_iter()).is_none());
        assert!(Histogram::over(std::iter::empty()).is_none());
    }

    #[test]
    fn mass_cutoff_finds_the_nucleus_bucket() {
        let values: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        let h = Histogram::over(values.iter().copied());
        let Some(h) = h else {
            panic!("range should be usable")
        };
        // Uniform mass: half the mass needs about half the buckets.
        let p = 1.0 / values.len() as f32;
        let b = h.mass_cutoff(values.iter().map(|&v| (v, p)), 0.5);
        assert!((500..=512).contains(&b), "{b}");
    }

    #[test]
    fn threshold_keeps_enough_but_not_too_many() {
        let n = 262_144;
        let values: Vec<f32> = (0..n)
            .map(|i| ((i as u64 * 2_654_435_761) % 1_000_003) as f32)
            .collect();
        for k in [1, 40, 1000, 5000] {
            let t = threshold_for_top(n, k, |i| values[i]);
            let Some(t) = t else {
                panic!("k = {k} should get a threshold")
            };
            let kept = values.iter().filter(|&&v| v >= t).count();
            assert!(
                kept >= k && kept <= 4 * k + 16 * n / SAMPLE,
                "k {k} kept {kept}"
            );
        }
        assert!(threshold_for_top(n, n / 2, |i| values[i]).is_none());
        assert!(threshold_for_top(100, 1, |i| values[i]).is_none());
    }
}
