//! Logit bias and the repetition, presence and frequency penalties.
//!
//! Semantics follow llama.cpp's `penalties` sampler (and OpenAI's
//! documented formula): for a token seen `count > 0` times in the last
//! `penalty_last_n` tokens of the history,
//!
//! ```text
//! logit = logit <= 0 ? logit * repetition : logit / repetition
//! logit -= count * frequency + presence
//! ```
//!
//! Counting touches only the tokens of the window: a per-vocabulary count
//! table is kept between calls and reset entry by entry afterwards.

use crate::SamplingParams;

/// Logit bias at or below this bans the token (OpenAI: "-100 should
/// result in a ban").
pub const BAN_BIAS: f32 = -100.0;

/// Applies `(id, bias)` pairs to `logits` (indexed by token id). Ids
/// outside the slice are ignored; a bias of [`BAN_BIAS`] or lower sets
/// the logit to `-inf`.
pub fn apply_logit_bias(logits: &mut [f32], bias: &[(u32, f32)]) {
    for &(id, b) in bias {
        if let Some(l) = logits.get_mut(id as usize) {
            if b <= BAN_BIAS {
                *l = f32::NEG_INFINITY;
            } else if b.is_finite() {
                *l += b;
            }
        }
    }
}

/// Occurrence counts of the penalty window, kept between calls so that a
/// vocabulary-sized table is allocated once.
#[derive(Debug, Clone, Default)]
pub struct PenaltyCounts {
    counts: Vec<u32>,
    seen: Vec<u32>,
}

impl PenaltyCounts {
    /// Counts the tokens of `window`, calls `f(id, count)` once per
    /// distinct id below `vocab`, then resets the table.
    fn for_each_count(&mut self, window: &[u32], vocab: usize, mut f: impl FnMut(u32, u32)) {
        if self.counts.len() < vocab {
            self.counts.resize(vocab, 0);
        }
        self.seen.clear();
        for &id in window {
            if let Some(n) = self
                .counts
                .get_mut(id as usize)
                .filter(|_| (id as usize) < vocab)
            {
                if *n == 0 {
                    self.seen.push(id);
                }
                *n += 1;
            }
        }
        for &id in &self.seen {
            let n = &mut self.counts[id as usize];
            f(id, *n);
            *n = 0;
        }
    }
}

/// Whether [`apply_penalties`] can change any logit for this history.
pub fn penalties_apply(params: &SamplingParams, history: &[u32]) -> bool {
    let off = params.repetition_penalty == 1.0
        && params.presence_penalty == 0.0
        && params.frequency_penalty == 0.0;
    params.penalty_last_n > 0 && !off && !history.is_empty()
}

/// Applies `params`' repetition, presence and frequency penalties for
/// the last `penalty_last_n` tokens of `history` to
/// `logits` (indexed by token id). `penalty_last_n == 0` applies nothing.
pub fn apply_penalties(
    logits: &mut [f32],
    counts: &mut PenaltyCounts,
    history: &[u32],
    params: &SamplingParams,
) {
    if !penalties_apply(params, history) {
        return;
    }
    let repetition = params.repetition_penalty;
    let presence = params.presence_penalty;
    let frequency = params.frequency_penalty;
    let window = &history[history.len().saturating_sub(params.penalty_last_n)..];
    counts.for_each_count(window, logits.len(), |id, count| {
        let l = &mut logits[id as usize];
        if repetition != 1.0 {
            if *l <= 0.0 {
                *l *= repetition;
            } else {
                *l /= repetition;
            }
        }
        *l -= count as f32 * frequency + presence;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(last_n: usize, rep: f32, pres: f32, freq: f32) -> SamplingParams {
        SamplingParams {
            penalty_last_n: last_n,
            repetition_penalty: rep,
            presence_penalty: pres,
            frequency_penalty: freq,
            ..SamplingParams::default()
        }
    }

    fn logits_after(
        logits: &[f32],
        history: &[u32],
        last_n: usize,
        rep: f32,
        pres: f32,
        freq: f32,
    ) -> Vec<f32> {
        let mut out = logits.to_vec();
        let mut counts = PenaltyCounts::default();
        let params = params(last_n, rep, pres, freq);
        apply_penalties(&mut out, &mut counts, history, &params);
        out
    }

    #[test]
    fn repetition_divides_positive_and_multiplies_negative() {
        let got = logits_after(&[2.0, -2.0, 0.0, 3.0], &[0, 1, 2, 0], 64, 2.0, 0.0, 0.0);
        assert_eq!(got, [1.0, -4.0, 0.0, 3.0]);
    }

    #[test]
    fn presence_once_frequency_per_occurrence() {
        // Token 0 seen 3 times, token 2 once, token 1 never.
        let got = logits_after(&[1.0, 1.0, 1.0], &[0, 2, 0, 0], 64, 1.0, 0.5, 0.25);
        assert_eq!(got, [1.0 - 0.5 - 0.75, 1.0, 1.0 - 0.5 - 0.25]);
    }

    #[test]
    fn all_three_combine_in_llama_cpp_order() {
        // 4.0 / 2 - (2 * 0.5 + 1.0) = 0.0 ; -1.0 * 2 - (1 * 0.5 + 1.0) = -3.5
        let got = logits_after(&[4.0, -1.0], &[0, 1, 0], 64, 2.0, 1.0, 0.5);
        assert_eq!(got, [0.0, -3.5]);
    }

    #[test]
    fn only_the_window_counts() {
        // last_n = 2: window is [1, 1]; token 0 is outside it.
        let got = logits_after(&[1.0, 1.0], &[0, 0, 1, 1], 2, 1.0, 0.0, 1.0);
        assert_eq!(got, [1.0, -1.0]);
        // last_n = 0 disables; usize::MAX is the whole history.
        assert_eq!(
            logits_after(&[1.0, 1.0], &[0, 1], 0, 1.0, 1.0, 1.0),
            [1.0, 1.0]
        );
        let got = logits_after(&[1.0, 1.0], &[0, 0, 1], usize::MAX, 1.0, 0.0, 1.0);
        assert_eq!(got, [-1.0, 0.0]);
    }

    #[test]
    fn out_of_vocab_history_is_ignored_and_table_resets() {
        let mut l = [1.0, 1.0];
        let mut counts = PenaltyCounts::default();
        apply_penalties(&mut l, &mut counts, &[0, 7, 0], &params(64, 1.0, 0.0, 1.0));
        assert_eq!(l, [-1.0, 1.0]);
        // A second call must not see the first call's counts.
        let mut l = [1.0, 1.0];
        apply_penalties(&mut l, &mut counts, &[1], &params(64, 1.0, 0.0, 1.0));
        assert_eq!(l, [1.0, 0.0]);
    }

    #[test]
    fn bias_adds_and_minus_100_bans() {
        let mut l = [1.0, 50.0, 1.0];
        apply_logit_bias(&mut l, &[(0, 2.5), (1, -100.0), (9, 5.0)]);
        assert_eq!(l, [3.5, f32::NEG_INFINITY, 1.0]);
    }
}
