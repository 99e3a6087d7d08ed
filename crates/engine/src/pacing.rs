//! Pacing prompt prefill against running streams, so a person watching a
//! stream never sees it stall while someone else's prompt is read.
//!
//! A step that carries decode rows (sequences generating a token) may take
//! at most `ratio` times as long as a step of those decode rows alone. The
//! [`Pacer`] learns two costs from the steps it times: how long a
//! decode-only step takes (for about the current number of decode rows),
//! and what one more prompt row adds to a step. From them it allows each
//! step `(ratio - 1) · decode step / cost per prompt row` prompt tokens;
//! the rest of a prompt waits for the next steps (chunked prefill,
//! interleaved with decode). A step without decode rows is not bounded:
//! nobody is waiting on it.
//!
//! Until the timings say more, and as a floor under what they say, a step
//! takes `(ratio - 1)` decode rows' worth of prompt rows, where a decode row
//! is worth [`decode_row_cost`] prompt rows: the output head runs only for
//! rows that want logits, so a prompt row skips it. Gemma 3 270M's 262k-token
//! head holds 1.7× the weights of all its layers: a decode row there costs
//! ~2.7 prompt rows (SmolLM2's ~1.3), and a floor of one prompt row per
//! decode row held its prompts to a third of the pace the budget allows.
//!
//! The pacing moves only where prompts are cut into chunks, never what is
//! computed: every row keeps its position and its reference summation
//! order, so the tokens are the same with or without it.

use std::time::Duration;

/// Fewest prompt tokens a step with decode rows takes (when a prompt
/// waits): progress even when the estimates say a single row is too dear.
/// The floor grows with the decode rows, to `(ratio - 1)` decode rows'
/// worth of prompt rows: within the budget wherever rows cost what their
/// weights say (a step that is all arithmetic).
pub(crate) const MIN_PREFILL: usize = 4;

/// Weight of the newest timing in the running averages.
const ALPHA: f64 = 0.25;

/// A decode-only timing counts for a number of decode rows within this
/// factor of the one it was measured at (past it, one decode-only step is
/// timed again before more prompt rows join).
const DECODE_ROWS_DRIFT: f64 = 1.25;

/// After this many steps a decode-only timing is measured afresh.
const DECODE_TIMING_STEPS: u32 = 64;

/// The learned step costs and the budget they give.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    /// A step with decode rows may last this many times a decode-only
    /// step; 0 (or anything not above 1): no bound.
    ratio: f64,
    /// Seconds of a decode-only step, averaged, and the decode rows it
    /// was last measured with.
    decode: Option<(f64, usize)>,
    /// Steps since `decode` was measured.
    decode_age: u32,
    /// Seconds the prompt rows added to a step, and how many rows they
    /// were, both averaged: their ratio is the cost of a prompt row (a
    /// ratio of averages, so the noise of steps with few prompt rows
    /// weighs by their rows, not as much as a full step's).
    prompt: Option<(f64, f64)>,
    /// How many prompt rows one decode row costs by the model's shape
    /// (at least 1; see [`decode_row_cost`]).
    decode_row_cost: f64,
}

/// How many prompt rows a decode row costs, from the model's shape: a
/// prompt row runs every layer's weights, a decode row those and the output
/// head's (`n_vocab × n_embd`). Weight elements stand for the work (the
/// kernels take about the same time per element in every format).
pub(crate) fn decode_row_cost(c: &crate::model::ModelConfig) -> f64 {
    let q = c.n_head * c.head_dim;
    let kv = 2 * c.n_kv_head * c.head_dim;
    let per_layer = c.n_embd * (q + kv) + q * c.n_embd + 3 * c.n_embd * c.n_ff;
    let layers = (c.n_layers * per_layer) as f64;
    let head = (c.n_vocab * c.n_embd) as f64;
    if layers > 0.0 {
        (layers + head) / layers
    } else {
        1.0
    }
}

impl Pacer {
    /// A pacer bounding steps with decode rows at `ratio` times a
    /// decode-only step (`ratio <= 1`: no bound).
    pub fn new(ratio: f64) -> Pacer {
        Pacer {
            ratio,
            decode: None,
            decode_age: 0,
            prompt: None,
            decode_row_cost: 1.0,
        }
    }

    /// The pacer with a decode row worth `cost` prompt rows in its floor
    /// (see [`decode_row_cost`]; values below 1 count as 1).
    pub fn with_decode_row_cost(mut self, cost: f64) -> Pacer {
        self.decode_row_cost = if cost.is_finite() { cost.max(1.0) } else { 1.0 };
        self
    }

    /// Whether steps are bounded at all.
    fn bounded(&self) -> bool {
        self.ratio > 1.0
    }

    /// Most prompt tokens the next step may take beside `decoding` decode
    /// rows; `None`: no bound (no decode rows, or pacing off). `Some(0)`
    /// asks for one decode-only step first, to time it.
    pub fn prefill_allowance(&self, decoding: usize) -> Option<usize> {
        if decoding == 0 || !self.bounded() {
            return None;
        }
        let Some((decode, rows)) = self.decode else {
            return Some(0);
        };
        let drift = decoding.max(rows) as f64 / decoding.min(rows).max(1) as f64;
        if drift > DECODE_ROWS_DRIFT || self.decode_age >= DECODE_TIMING_STEPS {
            return Some(0);
        }
        let worth = (self.ratio - 1.0) * decoding as f64 * self.decode_row_cost;
        let floor = MIN_PREFILL.max((worth + 1e-6) as usize);
        let Some((added, rows)) = self.prompt else {
            return Some(floor);
        };
        let per_row = added / rows.max(1e-9);
        let spare = (self.ratio - 1.0) * decode;
        // (The epsilon keeps a whole number of rows whole in floats.)
        let allowed = (spare / per_row.max(1e-9) + 1e-6).floor();
        Some((allowed.min(usize::MAX as f64 / 2.0) as usize).max(floor))
    }

    /// Learns from one step that ran `decoding` decode rows and `prompt`
    /// prompt rows in `elapsed`.
    pub fn observe(&mut self, decoding: usize, prompt: usize, elapsed: Duration) {
        let t = elapsed.as_secs_f64();
        let avg = |old: Option<f64>, new: f64| match old {
            Some(o) => o + ALPHA * (new - o),
            None => new,
        };
        self.decode_age = self.decode_age.saturating_add(1);
        match (decoding, prompt) {
            (0, 0) => {}
            (d, 0) => {
                // A decode-only step: restart the average when the number
                // of decode rows moved past the drift.
                let old = self.decode.filter(|&(_, rows)| {
                    d.max(rows) as f64 / d.min(rows).max(1) as f64 <= DECODE_ROWS_DRIFT
                });
                self.decode = Some((avg(old.map(|(s, _)| s), t), d));
                self.decode_age = 0;
            }
            (0, p) => {
                // Prompt rows alone: the whole step (its fixed cost spread
                // over them errs on the safe side).
                self.add_prompt(t, p);
            }
            (_, p) => {
                // Beside decode rows: what the prompt rows added (a noisy
                // step may say less than nothing; the averages absorb it).
                if let Some((decode, _)) = self.decode {
                    self.add_prompt(t - decode, p);
                }
            }
        }
    }
}

impl Pacer {
    /// Averages in a step whose `p` prompt rows added `added` seconds.
    fn add_prompt(&mut self, added: f64, p: usize) {
        let p = p as f64;
        self.prompt = Some(match self.prompt {
            Some((a, r)) => (a + ALPHA * (added - a), r + ALPHA * (p - r)),
            None => (added.max(0.0), p),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn steps_without_decode_rows_or_with_pacing_off_are_unbounded() {
        let mut p = Pacer::new(1.5);
        assert_eq!(p.prefill_allowance(0), None);
        p.observe(4, 0, ms(20));
        p.observe(0, 100, ms(100));
        assert_eq!(p.prefill_allowance(0), None);
        let mut off = Pacer::new(0.0);
        off.observe(4, 0, ms(20));
        assert_eq!(off.prefill_allowance(4), None);
    }

    #[test]
    fn a_decode_step_is_timed_before_prompt_rows_join_it() {
        let mut p = Pacer::new(1.5);
        p.observe(0, 100, ms(100)); // 1 ms a prompt row
        assert_eq!(p.prefill_allowance(8), Some(0));
        p.observe(8, 0, ms(60));
        // Half a 60 ms decode step at 1 ms a row.
        assert_eq!(p.prefill_allowance(8), Some(30));
        // Within the drift the timing holds; past it, time again.
        assert_eq!(p.prefill_allowance(9), Some(30));
        assert_eq!(p.prefill_allowance(16), Some(0));
        assert_eq!(p.prefill_allowance(4), Some(0));
    }

    #[test]
    fn mixed_steps_teach_the_marginal_cost_of_a_prompt_row() {
        let mut p = Pacer::new(1.5);
        p.observe(8, 0, ms(40));
        // No prompt cost known yet: the least that makes progress.
        assert_eq!(p.prefill_allowance(8), Some(MIN_PREFILL));
        // The floor follows the decode rows: half a row each at 1.5.
        let mut wide = Pacer::new(1.5);
        wide.observe(40, 0, ms(100));
        assert_eq!(wide.prefill_allowance(40), Some(20));
        // 4 prompt rows added 2 ms: 0.5 ms a row, so 20 ms buys 40.
        p.observe(8, 4, ms(42));
        assert_eq!(p.prefill_allowance(8), Some(40));
        // Dearer rows shrink the allowance, never below the minimum.
        for _ in 0..40 {
            p.observe(8, 20, ms(40 + 200));
        }
        assert_eq!(p.prefill_allowance(8), Some(MIN_PREFILL));
    }

    #[test]
    fn the_floor_counts_a_decode_row_by_its_cost_in_prompt_rows() {
        // A decode row worth 2.5 prompt rows (a large output head): at 1.5,
        // eight decode rows admit ten prompt rows before any prompt timing,
        // and no fewer once dear ones were seen.
        let mut p = Pacer::new(1.5).with_decode_row_cost(2.5);
        p.observe(8, 0, ms(40));
        assert_eq!(p.prefill_allowance(8), Some(10));
        for _ in 0..40 {
            p.observe(8, 20, ms(40 + 200));
        }
        assert_eq!(p.prefill_allowance(8), Some(10));
        // Cheap rows still buy more than the floor.
        let mut cheap = Pacer::new(1.5).with_decode_row_cost(2.5);
        cheap.observe(8, 0, ms(40));
        cheap.observe(8, 4, ms(42));
        assert_eq!(cheap.prefill_allowance(8), Some(40));
        // A cost below one (or not a number) counts as one.
        let mut one = Pacer::new(1.5).with_decode_row_cost(0.2);
        one.observe(40, 0, ms(100));
        assert_eq!(one.prefill_allowance(40), Some(20));
        let nan = Pacer::new(1.5).with_decode_row_cost(f64::NAN);
        assert_eq!(nan.decode_row_cost, 1.0);
    }

    #[test]
    fn a_decode_row_costs_its_layers_and_the_head_in_prompt_rows() {
        let config = |n_vocab: usize| crate::model::ModelConfig {
            arch: "llama".into(),
            n_layers: 2,
            n_embd: 8,
            n_ff: 16,
            n_head: 2,
            n_kv_head: 1,
            head_dim: 4,
            n_ctx_train: 64,
            n_ctx: 64,
            n_vocab,
            rms_eps: 1e-5,
            sliding_window: None,
        };
        // Per layer: 8·(8 + 8) + 8·8 + 3·8·16 = 128 + 64 + 384 = 576; two
        // layers 1152; a head of 1152 elements doubles a decode row.
        assert_eq!(decode_row_cost(&config(144)), 2.0);
        assert_eq!(decode_row_cost(&config(0)), 1.0);
    }

    #[test]
    fn an_old_decode_timing_is_taken_again() {
        let mut p = Pacer::new(2.0);
        p.observe(2, 0, ms(30));
        p.observe(2, 5, ms(35));
        assert_eq!(p.prefill_allowance(2), Some(30));
        for _ in 0..DECODE_TIMING_STEPS {
            p.observe(2, 5, ms(35));
        }
        assert_eq!(p.prefill_allowance(2), Some(0));
        p.observe(2, 0, ms(30));
        assert_eq!(p.prefill_allowance(2), Some(30));
    }
}
