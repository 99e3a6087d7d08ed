//! The engine thread: owns the model, the KV cache and every running
//! sequence. Each step it admits waiting requests while the cache has room,
//! builds one batch of rows (one decode row per running sequence, then prompt
//! chunks up to the step's token budget), runs one forward pass, and samples
//! for every sequence that reached the end of its known tokens. A sequence
//! whose client left is dropped and its blocks freed before the next step;
//! when the cache runs out mid-generation, the newest sequence is preempted
//! (its blocks freed, recomputed later from its tokens). With prefix caching,
//! admission takes the cached blocks a sequence's tokens start with and
//! prefills only the rest, and every full block computed is registered for
//! later sequences as soon as its pass is done.
//!
//! While sequences are generating, a step's prompt tokens are bounded by
//! [`Pacer`]: such a step lasts at most `prefill_stall_ratio` times a
//! decode-only step, so a long prompt arriving is read in chunks between
//! the running streams' tokens instead of stalling them (see
//! [`crate::pacing`]).
//!
//! Sequences with a constraint (a grammar) compute their next allowed-token
//! masks on a second thread while the forward pass runs, so a mask costs
//! the step nothing unless it takes longer than the pass.
//!
//! An idle engine that receives a request waits up to [`GATHER_GAP`] for
//! another before its first step (and keeps gathering while requests keep
//! coming, up to [`GATHER_MAX`]): a burst of requests then shares one
//! prefill pass instead of the first running alone while the rest queue
//! behind it. A lone request pays at most [`GATHER_GAP`].

use std::collections::VecDeque;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kernels::ThreadPool;
use tokenizer::Tokenizer;

use crate::kv::KvCache;
use crate::layers::BatchRow;
use crate::model::Model;
use crate::pacing::Pacer;
use crate::sequence::Sequence;
use crate::stats::Counters;

/// How long an idle engine waits for the next request of a burst.
pub(crate) const GATHER_GAP: Duration = Duration::from_millis(4);
/// The longest an idle engine gathers a burst before its first step.
pub(crate) const GATHER_MAX: Duration = Duration::from_millis(25);

pub(crate) enum Command {
    Submit(Box<Sequence>),
}

pub(crate) struct Scheduler {
    model: Model,
    tokenizer: Arc<Tokenizer>,
    pool: ThreadPool,
    kv: KvCache,
    /// Most tokens in one forward pass.
    step_tokens: usize,
    /// Bounds the prompt tokens of steps that carry decode rows.
    pacer: Pacer,
    waiting: VecDeque<Sequence>,
    running: Vec<Sequence>,
    counters: Arc<Counters>,
    /// The last step's logits, kept so the next step reuses the buffer
    /// (dropped when the engine goes idle).
    logits: Vec<f32>,
}

impl Scheduler {
    pub fn new(
        model: Model,
        tokenizer: Arc<Tokenizer>,
        threads: usize,
        kv_tokens: usize,
        step_tokens: usize,
        prefix_cache: bool,
        counters: Arc<Counters>,
    ) -> Self {
        let mut kv = model.new_kv_cache(kv_tokens);
        kv.set_prefix_caching(prefix_cache);
        Scheduler {
            model,
            tokenizer,
            pool: ThreadPool::new(threads),
            kv,
            step_tokens: step_tokens.max(1),
            pacer: Pacer::new(0.0),
            waiting: VecDeque::new(),
            running: Vec::new(),
            counters,
            logits: Vec::new(),
        }
    }

    /// Bounds steps with decode rows at `ratio` times a decode-only step
    /// ([`crate::pacing`]; 1 or less: no bound, the default).
    pub fn with_pacing(mut self, ratio: f64) -> Self {
        let cost = crate::pacing::decode_row_cost(self.model.config());
        self.pacer = Pacer::new(ratio).with_decode_row_cost(cost);
        self
    }

    /// Runs until every handle is gone and no work is left.
    pub fn run(mut self, rx: Receiver<Command>) {
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                // Idle: give back the logits buffer (64 Gemma rows held 64 MB).
                self.logits = Vec::new();
                match rx.recv() {
                    Ok(cmd) => self.take(cmd),
                    Err(_) => return,
                }
                self.gather(&rx);
            }
            while let Ok(cmd) = rx.try_recv() {
                self.take(cmd);
            }
            self.drop_abandoned();
            self.admit();
            self.step();
            self.publish();
        }
    }

    /// Takes the rest of a burst: requests that follow each other within
    /// [`GATHER_GAP`], for at most [`GATHER_MAX`].
    fn gather(&mut self, rx: &Receiver<Command>) {
        let deadline = Instant::now() + GATHER_MAX;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match rx.recv_timeout(GATHER_GAP.min(left)) {
                Ok(cmd) => self.take(cmd),
                // Quiet for a gap, or every handle gone (the loop sees that next).
                Err(_) => return,
            }
        }
    }

    fn publish(&self) {
        // KV first: a reader that sees the new queue sizes sees these too.
        self.counters.set_kv(&self.kv);
        self.counters
            .set_queue(self.running.len(), self.waiting.len());
    }

    fn take(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(seq) => self.waiting.push_back(*seq),
        }
    }

    fn drop_abandoned(&mut self) {
        let before = self.running.len() + self.waiting.len();
        let kv = &mut self.kv;
        self.running.retain(|s| {
            let keep = !s.is_abandoned();
            if !keep {
                kv.free_seq(s.id);
                tracing::debug!(
                    seq = s.id,
                    "client gone: sequence cancelled, KV blocks freed"
                );
            }
            keep
        });
        self.waiting.retain(|s| !s.is_abandoned());
        let gone = before - self.running.len() - self.waiting.len();
        if gone > 0 {
            // Publish first: whoever sees the cancellation sees the freed blocks.
            self.publish();
            self.counters.add_cancelled(gone as u64);
        }
    }

    /// Moves waiting sequences to running while their known tokens fit the cache.
    fn admit(&mut self) {
        while let Some(mut seq) = self.waiting.pop_front() {
            match self.kv.admit(seq.id, &seq.tokens, seq.tokens.len() + 1) {
                Ok(cached) => {
                    seq.n_cached = cached;
                    // Billing sees what the first admission found cached.
                    seq.cached_prompt_tokens
                        .get_or_insert(cached.min(seq.prompt_len));
                    self.running.push(seq);
                }
                Err(_) if self.running.is_empty() => {
                    // Nothing will ever free room: the cache is smaller than this prompt.
                    seq.fail("the prompt does not fit the KV cache".into());
                    self.counters.add_finished(1);
                }
                Err(_) => {
                    self.waiting.push_front(seq);
                    return;
                }
            }
        }
    }

    /// Grows each running sequence's reservation to cover this step, preempting
    /// the newest sequences when the cache is full.
    fn reserve_step(&mut self) -> Vec<usize> {
        let mut budget = self.step_tokens;
        let mut take = vec![0usize; self.running.len()];
        // Decode rows first (one token each), then prompt chunks, oldest
        // first, as many prompt tokens as the pacer allows beside the
        // decode rows.
        let decoding = self.running.iter().filter(|s| s.pending() == 1).count();
        let mut prompt_budget = self.pacer.prefill_allowance(decoding).unwrap_or(usize::MAX);
        let mut held = false;
        let mut order: Vec<usize> = (0..self.running.len()).collect();
        order.sort_by_key(|&i| (self.running[i].pending() > 1, i));
        for i in order {
            if budget == 0 {
                break;
            }
            let s = &self.running[i];
            let prompt = s.pending() > 1;
            let n = if prompt {
                held |= s.pending().min(budget) > prompt_budget;
                s.pending().min(budget).min(prompt_budget)
            } else {
                s.pending().min(budget)
            };
            if n == 0 {
                continue;
            }
            if self.kv.reserve(s.id, s.n_cached + n).is_ok() {
                take[i] = n;
                budget -= n;
                if prompt {
                    prompt_budget -= n;
                }
            }
        }
        if take.iter().all(|&n| n == 0) && self.running.len() > 1 {
            self.preempt_newest();
            return self.reserve_step();
        }
        if held {
            self.counters.add_paced_step();
        }
        take
    }

    fn preempt_newest(&mut self) {
        if let Some(mut seq) = self.running.pop() {
            self.counters.add_preempted();
            self.kv.free_seq(seq.id);
            seq.n_cached = 0;
            self.waiting.push_front(seq);
        }
    }

    fn step(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let take = self.reserve_step();
        // Decode rows (one token of a sequence with one pending) and prompt
        // rows, for the pacer.
        let decode_rows = self
            .running
            .iter()
            .zip(&take)
            .filter(|(s, &n)| n == 1 && s.pending() == 1)
            .count();
        let mut rows = Vec::new();
        for (s, &n) in self.running.iter().zip(&take) {
            for p in s.n_cached..s.n_cached + n {
                rows.push(BatchRow {
                    seq: s.id,
                    pos: p,
                    token: s.tokens[p],
                    want_logits: p + 1 == s.tokens.len(),
                    order: self.model.config().prompt_row_order(p, s.prompt_len),
                });
            }
        }
        if rows.is_empty() {
            // Not even one sequence fits the cache on its own.
            for s in self.running.drain(..) {
                s.fail("the sequence no longer fits the KV cache".into());
                self.kv.free_seq(s.id);
                self.counters.add_finished(1);
            }
            return;
        }
        let mut logits = std::mem::take(&mut self.logits);
        // Constrained sequences that sample this step compute their masks
        // on a second thread while the forward pass runs.
        let constrained: Vec<bool> = self
            .running
            .iter()
            .zip(&take)
            .map(|(s, &n)| n > 0 && s.pending() == n && s.is_constrained())
            .collect();
        let Scheduler {
            model,
            kv,
            pool,
            running,
            counters,
            ..
        } = self;
        let started = Instant::now();
        let forward = if constrained.iter().any(|&c| c) {
            std::thread::scope(|scope| {
                let masks = scope.spawn(|| {
                    for (s, _) in running.iter_mut().zip(&constrained).filter(|(_, &c)| c) {
                        counters.observe_mask(s.prepare_mask());
                    }
                });
                let forward = model.forward_into(&rows, kv, pool, &mut logits);
                if masks.join().is_err() {
                    tracing::error!("mask computation panicked");
                }
                forward
            })
        } else {
            model.forward_into(&rows, kv, pool, &mut logits)
        };
        if let Err(e) = forward {
            tracing::error!(error = %e, "forward pass failed");
            for s in self.running.drain(..) {
                s.fail("the model failed to run this request".into());
                self.kv.free_seq(s.id);
                self.counters.add_finished(1);
            }
            self.logits = logits;
            return;
        }
        self.pacer
            .observe(decode_rows, rows.len() - decode_rows, started.elapsed());
        let n_vocab = self.model.config().n_vocab;
        let mut out = logits.chunks_exact_mut(n_vocab);
        let mut finished = Vec::new();
        for (i, (s, &n)) in self.running.iter_mut().zip(&take).enumerate() {
            s.n_cached += n;
            if n > 0 {
                self.kv.cache_full_blocks(s.id, &s.tokens[..s.n_cached]);
            }
            if n > 0 && s.pending() == 0 {
                let row = out
                    .next()
                    .expect("one logits row per sequence that reached its end");
                let now = std::time::Instant::now();
                self.counters
                    .observe_token(s.submitted, s.last_token_at, now);
                s.last_token_at = Some(now);
                if s.accept_logits(row, &self.tokenizer) {
                    finished.push(i);
                }
            }
        }
        self.logits = logits;
        self.counters.add_finished(finished.len() as u64);
        for i in finished.into_iter().rev() {
            let s = self.running.remove(i);
            self.kv.free_seq(s.id);
        }
    }
}
