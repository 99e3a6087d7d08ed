//! OpenAI-style log probabilities of the model's own distribution.
//!
//! OpenAI reports the log-softmax of the raw logits: before logit bias,
//! penalties, temperature or any truncation. The maximum is subtracted
//! before exponentiating, so large logits cannot overflow, and partial
//! sums are gathered in `f64`.

use crate::math::{max_f32, sum_exp_shifted};

/// The chosen token's log probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// Log probability of the sampled token (`-inf` if it is not in the
    /// vocabulary).
    pub chosen_logprob: f32,
    /// Up to `top_n` `(id, logprob)` pairs, most likely first; equal
    /// values keep the lower id first.
    pub top: Vec<(u32, f32)>,
}

/// Log-softmax of `logits` at `chosen`, plus the `top_n` most likely
/// tokens. NaN logits count as `-inf`.
pub fn logprobs(logits: &[f32], chosen: u32, top_n: usize) -> TokenLogprobs {
    let clean = |l: f32| if l.is_nan() { f32::NEG_INFINITY } else { l };
    let max = max_f32(logits);
    if max == f32::NEG_INFINITY {
        // No finite logit: there is no distribution to report.
        return TokenLogprobs {
            chosen_logprob: f32::NEG_INFINITY,
            top: Vec::new(),
        };
    }
    // Subtract the max before the log-sum: `l - (max + ln sum)` would lose
    // `ln sum` to rounding when the logits are huge.
    let ln_sum = sum_exp_shifted(logits, max).ln();
    let lp = |l: f32| (f64::from(clean(l) - max) - ln_sum) as f32;

    let chosen_logprob = logits
        .get(chosen as usize)
        .map_or(f32::NEG_INFINITY, |&l| lp(l));
    let top = top_n_by_logit(logits, top_n)
        .into_iter()
        .map(|(id, l)| (id, lp(l)))
        .collect();
    TokenLogprobs {
        chosen_logprob,
        top,
    }
}

/// The `n` highest logits, descending, ties to the lower id. One pass
/// with a small sorted buffer: `n` is a handful (OpenAI allows 20) while
/// the vocabulary may be 262k.
fn top_n_by_logit(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let n = n.min(logits.len());
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    if n == 0 {
        return top;
    }
    for (i, &l) in logits.iter().enumerate() {
        let l = if l.is_nan() { f32::NEG_INFINITY } else { l };
        if top.len() == n && top.last().is_some_and(|&(_, worst)| l <= worst) {
            continue;
        }
        // After every equal value, so earlier (lower) ids stay first.
        let at = top.partition_point(|&(_, v)| v >= l);
        top.insert(at, (i as u32, l));
        top.truncate(n);
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_computed_values() {
        // p = [0.5, 0.25, 0.25]
        let logits = [2.0f32.ln() + 10.0, 10.0, 10.0];
        let lp = logprobs(&logits, 1, 2);
        assert!((lp.chosen_logprob - 0.25f32.ln()).abs() < 1e-6);
        assert_eq!(lp.top.len(), 2);
        assert_eq!(lp.top[0].0, 0);
        assert!((lp.top[0].1 - 0.5f32.ln()).abs() < 1e-6);
        assert_eq!(lp.top[1].0, 1, "ties keep the lower id");
    }

    #[test]
    fn huge_logits_do_not_overflow() {
        let lp = logprobs(&[1e30, 1e30, -1e30], 0, 3);
        assert!((lp.chosen_logprob - 0.5f32.ln()).abs() < 1e-6);
        assert!(lp.top.iter().all(|(_, v)| !v.is_nan()));
    }

    #[test]
    fn out_of_range_and_degenerate_inputs() {
        assert_eq!(
            logprobs(&[0.0, 0.0], 5, 1).chosen_logprob,
            f32::NEG_INFINITY
        );
        assert!(logprobs(&[], 0, 5).top.is_empty());
        let lp = logprobs(&[f32::NAN, 0.0], 0, 5);
        assert_eq!(lp.chosen_logprob, f32::NEG_INFINITY);
        assert_eq!(lp.top.len(), 2);
        assert_eq!(lp.top[0], (1, 0.0));
    }

    proptest! {
        #[test]
        fn exp_sums_to_one_and_top_is_sorted(
            logits in prop::collection::vec(-30.0f32..30.0, 1..300),
            top_n in 0usize..25,
        ) {
            let all: Vec<f32> = (0..logits.len() as u32)
                .map(|id| logprobs(&logits, id, 0).chosen_logprob)
                .collect();
            let total: f64 = all.iter().map(|&l| f64::from(l).exp()).sum();
            prop_assert!((total - 1.0).abs() < 1e-4, "{}", total);

            let lp = logprobs(&logits, 0, top_n);
            prop_assert_eq!(lp.top.len(), top_n.min(logits.len()));
            prop_assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
            // The top entries are truly the best: nothing outside beats them.
            let worst = lp.top.last().map_or(f32::INFINITY, |t| t.1);
            for (id, &l) in all.iter().enumerate() {
                if !lp.top.iter().any(|t| t.0 == id as u32) {
                    prop_assert!(l <= worst);
                }
            }
            for &(id, v) in &lp.top {
                prop_assert_eq!(v, all[id as usize]);
            }
        }
    }
}
