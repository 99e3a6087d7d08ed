//! The per-sequence sampler: one request's parameters, its random stream
//! and its reusable buffers.
//!
//! The chain follows llama.cpp's default order: logit bias → penalties →
//! (greedy: argmax) or top-k → top-p → min-p → temperature → softmax →
//! seeded draw. Note that top-p and min-p therefore see the temperature-1
//! distribution, as in llama.cpp.

use crate::filters::{self, Candidates};
use crate::math::max_f32;
use crate::penalties::{apply_logit_bias, apply_penalties, penalties_apply, PenaltyCounts};
use crate::{Rng, SamplingParams};

/// Samples tokens for one sequence. Create one per request; it keeps its
/// random stream, so the same seed over the same logits gives the same
/// tokens.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    /// The logits after bias and penalties (reused between tokens).
    work: Vec<f32>,
    candidates: Candidates,
    counts: PenaltyCounts,
}

impl Sampler {
    /// A sampler for `params` over a vocabulary of `vocab_size` tokens
    /// (buffers are sized for it up front; other logits lengths still
    /// work). Parameters are expected to have passed
    /// [`SamplingParams::validate`]; out-of-range values degrade to the
    /// nearest sensible behaviour rather than panicking.
    pub fn new(params: &SamplingParams, vocab_size: usize) -> Self {
        let rng = match params.seed {
            Some(seed) => Rng::from_seed(seed),
            None => Rng::from_entropy(),
        };
        Self {
            params: params.clone(),
            rng,
            work: Vec::with_capacity(vocab_size),
            candidates: Candidates::with_capacity(vocab_size),
            counts: PenaltyCounts::default(),
        }
    }

    /// The parameters this sampler was made with.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits` (one per vocabulary entry).
    /// `history` holds the tokens the penalties look at (the generated
    /// ones, optionally preceded by the prompt). Returns 0 for empty
    /// logits.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let p = &self.params;
        // A working copy only when bias or penalties change something: a
        // greedy step over a 262k vocabulary is then one pass over the logits.
        let adjusted = !p.logit_bias.is_empty() || penalties_apply(p, history);
        if adjusted {
            self.work.clear();
            self.work.extend_from_slice(logits);
            apply_logit_bias(&mut self.work, &p.logit_bias);
            apply_penalties(&mut self.work, &mut self.counts, history, p);
        }
        let scores: &[f32] = if adjusted { &self.work } else { logits };

        let Some((best_id, best_logit)) = argmax(scores) else {
            return 0;
        };
        if p.is_greedy() {
            return best_id;
        }
        if best_logit == f32::NEG_INFINITY {
            // Everything was banned: fall back to the unbiased argmax
            // rather than drawing uniformly over banned tokens.
            return argmax(logits).map_or(0, |(id, _)| id);
        }

        self.candidates.fill_top_k(scores, p.top_k);
        filters::top_k(&mut self.candidates, p.top_k);
        filters::top_p(&mut self.candidates, p.top_p);
        filters::min_p(&mut self.candidates, p.min_p);
        filters::temperature(&mut self.candidates, p.temperature);
        let u = self.rng.next_f64();
        filters::draw(&mut self.candidates, u).unwrap_or(best_id)
    }
}

/// The first id holding the largest logit, and that logit; NaN never wins.
/// `None` if empty; an all-NaN row reports token 0 at `-inf`. The maximum
/// is taken chunk by chunk, so only the chunk that holds it is read a second
/// time to find its position.
fn argmax(logits: &[f32]) -> Option<(u32, f32)> {
    const CHUNK: usize = 4096;
    if logits.is_empty() {
        return None;
    }
    let (mut max, mut at) = (f32::NEG_INFINITY, 0);
    for (c, chunk) in logits.chunks(CHUNK).enumerate() {
        let m = max_f32(chunk);
        if m > max {
            (max, at) = (m, c * CHUNK);
        }
    }
    let id = logits[at..]
        .iter()
        .position(|&l| l == max)
        .map_or(0, |i| at + i);
    Some((id as u32, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(p: SamplingParams, vocab: usize) -> Sampler {
        Sampler::new(&p, vocab)
    }

    fn seeded(seed: u64) -> SamplingParams {
        SamplingParams {
            seed: Some(seed),
            ..SamplingParams::default()
        }
    }

    /// A deterministic pseudo-random logits row.
    fn logits_row(n: usize, salt: u64) -> Vec<f32> {
        let mut r = Rng::from_seed(salt);
        (0..n).map(|_| (r.next_f64() * 8.0 - 4.0) as f32).collect()
    }

    #[test]
    fn greedy_picks_argmax_with_ties_to_lowest_id() {
        let mut s = sampler(SamplingParams::greedy(), 5);
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 2.0, 1.9], &[]), 1);
        assert_eq!(s.sample(&[f32::NAN, 0.0, 0.5, 0.5], &[]), 2);
        let row = logits_row(49_152, 3);
        let want = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
        assert_eq!(s.sample(&row, &[]) as usize, want);
    }

    #[test]
    fn argmax_takes_the_first_of_tied_maxima_across_chunks() {
        let mut row = vec![0.0f32; 20_000];
        row[9_000] = 3.0;
        row[15_000] = 3.0;
        row[100] = f32::NAN;
        row[19_999] = 2.0;
        assert_eq!(argmax(&row), Some((9_000, 3.0)));
        // The maximum's first occurrence may sit before a later chunk's NaN.
        row[9_000] = 0.0;
        assert_eq!(argmax(&row), Some((15_000, 3.0)));
        assert_eq!(argmax(&[f32::NAN; 5000]).map(|(id, _)| id), Some(0));
        assert_eq!(
            argmax(&[f32::NEG_INFINITY; 9000]),
            Some((0, f32::NEG_INFINITY))
        );
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn greedy_with_penalties_sees_the_adjusted_logits_but_leaves_the_input() {
        let logits = vec![2.0f32, 1.9, 0.0];
        let p = SamplingParams {
            presence_penalty: 0.5,
            ..SamplingParams::greedy()
        };
        let mut s = sampler(p, 3);
        assert_eq!(s.sample(&logits, &[0]), 1);
        assert_eq!(logits, [2.0, 1.9, 0.0]);
        // Without a history the penalty changes nothing.
        assert_eq!(s.sample(&logits, &[]), 0);
    }

    #[test]
    fn same_seed_reproduces_different_seed_differs() {
        let rows: Vec<Vec<f32>> = (0..32).map(|i| logits_row(1000, i)).collect();
        let run = |seed| {
            let mut s = sampler(seeded(seed), 1000);
            rows.iter().map(|r| s.sample(r, &[])).collect::<Vec<u32>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn draws_follow_the_distribution() {
        // p = [0.1, 0.2, 0.7]
        let logits = [0.1f32.ln(), 0.2f32.ln(), 0.7f32.ln()];
        let mut s = sampler(seeded(1), 3);
        let mut hits = [0usize; 3];
        let n = 20_000;
        for _ in 0..n {
            hits[s.sample(&logits, &[]) as usize] += 1;
        }
        for (h, want) in hits.iter().zip([0.1, 0.2, 0.7]) {
            let got = *h as f64 / n as f64;
            assert!((got - want).abs() < 0.015, "{hits:?}");
        }
    }

    #[test]
    fn low_temperature_concentrates_high_temperature_spreads() {
        let logits = [1.0f32, 2.0, 3.0];
        let count_top = |t: f32| {
            let mut s = sampler(
                SamplingParams {
                    temperature: t,
                    ..seeded(5)
                },
                3,
            );
            (0..5000).filter(|_| s.sample(&logits, &[]) == 2).count()
        };
        let cold = count_top(0.1);
        let warm = count_top(1.0);
        let hot = count_top(10.0);
        assert!(cold > 4990, "{cold}");
        assert!(hot < warm && warm < cold, "{hot} {warm} {cold}");
    }

    #[test]
    fn logit_bias_minus_100_bans_even_the_best_token() {
        let logits = [0.0f32, 30.0, 0.0, 0.1];
        let banned = SamplingParams {
            logit_bias: vec![(1, -100.0)],
            ..seeded(9)
        };
        let mut s = sampler(banned.clone(), 4);
        for _ in 0..2000 {
            assert_ne!(s.sample(&logits, &[]), 1);
        }
        let mut g = sampler(
            SamplingParams {
                temperature: 0.0,
                ..banned
            },
            4,
        );
        assert_eq!(g.sample(&logits, &[]), 3);
    }

    #[test]
    fn positive_bias_forces_a_token() {
        let p = SamplingParams {
            logit_bias: vec![(2, 100.0)],
            ..seeded(2)
        };
        let mut s = sampler(p, 4);
        for _ in 0..200 {
            assert_eq!(s.sample(&[5.0, 5.0, 0.0, 5.0], &[]), 2);
        }
    }

    #[test]
    fn all_banned_falls_back_to_raw_argmax() {
        let p = SamplingParams {
            logit_bias: vec![(0, -100.0), (1, -100.0)],
            ..seeded(2)
        };
        assert_eq!(sampler(p, 2).sample(&[0.0, 1.0], &[]), 1);
    }

    #[test]
    fn penalties_steer_greedy_away_from_repeats() {
        let logits = [2.0f32, 1.9, 0.0];
        let p = SamplingParams {
            repetition_penalty: 1.1,
            ..SamplingParams::greedy()
        };
        // 2.0 / 1.1 = 1.818 < 1.9
        assert_eq!(sampler(p.clone(), 3).sample(&logits, &[0]), 1);
        assert_eq!(sampler(p, 3).sample(&logits, &[2]), 0);
        let p = SamplingParams {
            presence_penalty: 0.2,
            ..SamplingParams::greedy()
        };
        assert_eq!(sampler(p, 3).sample(&logits, &[0]), 1);
    }

    #[test]
    fn top_k_1_is_greedy_whatever_the_seed() {
        let row = logits_row(262_144, 11);
        let want = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
        for seed in 0..5 {
            let p = SamplingParams {
                top_k: 1,
                ..seeded(seed)
            };
            assert_eq!(sampler(p, row.len()).sample(&row, &[]) as usize, want);
        }
    }

    #[test]
    fn filtered_draws_stay_inside_the_kept_set() {
        let row = logits_row(5000, 4);
        let p = SamplingParams {
            top_k: 40,
            top_p: 0.9,
            min_p: 0.05,
            temperature: 0.8,
            ..seeded(3)
        };
        let mut kept = Candidates::from_logits(&row);
        filters::top_k(&mut kept, 40);
        let allowed: Vec<u32> = kept.as_slice().iter().map(|c| c.id).collect();
        let mut s = sampler(p, row.len());
        for _ in 0..500 {
            assert!(allowed.contains(&s.sample(&row, &[])));
        }
    }

    #[test]
    fn empty_logits_give_token_zero() {
        assert_eq!(sampler(seeded(1), 0).sample(&[], &[]), 0);
    }
}
