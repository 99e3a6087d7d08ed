//! Latency histograms the engine keeps for monitoring: time to first token
//! (from submission to the first sampled token, queueing and prefill
//! included) and inter-token latency (between consecutive tokens of one
//! sequence). Fixed buckets, lock-free counters, Prometheus-shaped
//! snapshots (cumulative counts per upper bound, a sum and a count).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (the last bucket, `+Inf`, is
/// implied by the total count).
pub const BUCKET_BOUNDS_SECONDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The bounds in microseconds, for integer comparisons.
const BOUNDS_MICROS: [u64; 14] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
];

/// A histogram being filled (shared by the engine thread and readers).
#[derive(Debug, Default)]
pub(crate) struct AtomicHistogram {
    /// Observations at or below each bound (not cumulative).
    buckets: [AtomicU64; 14],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl AtomicHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BOUNDS_MICROS.iter().position(|&bound| micros <= bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Histogram {
        let mut cumulative = [0u64; 14];
        let mut running = 0;
        for (slot, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            running += bucket.load(Ordering::Relaxed);
            *slot = running;
        }
        Histogram {
            cumulative,
            count: self.count.load(Ordering::Relaxed).max(running),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time copy of a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Histogram {
    /// Observations at or below each of [`BUCKET_BOUNDS_SECONDS`], cumulative.
    pub cumulative: [u64; 14],
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// Their sum, in microseconds.
    pub sum_micros: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = AtomicHistogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(40));
        h.observe(Duration::from_secs(500));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], 1); // <= 5 ms
        assert_eq!(s.cumulative[3], 2); // <= 50 ms
        assert_eq!(s.cumulative[13], 2); // <= 120 s; 500 s only in +Inf
        assert_eq!(s.sum_micros, 3_000 + 40_000 + 500_000_000);
        for pair in s.cumulative.windows(2) {
            assert!(pair[0] <= pair[1]);
        }
        assert_eq!(BOUNDS_MICROS.len(), BUCKET_BOUNDS_SECONDS.len());
        for (micros, secs) in BOUNDS_MICROS.iter().zip(BUCKET_BOUNDS_SECONDS) {
            assert_eq!(*micros, (secs * 1e6).round() as u64);
        }
    }
}
