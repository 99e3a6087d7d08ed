//! One running generation inside the engine thread: its tokens, how many of
//! them are in the KV cache, its sampler, and the text-side state (UTF-8
//! assembly and stop strings) that turns sampled tokens into events, and
//! its constraint's matcher with the mask computed for the next sample.

use std::sync::Arc;

use sampling::{Sampler, StopMatcher, TokenConstraint, Utf8Decoder};
use tokenizer::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

use crate::kv::SeqId;
use crate::request::{Event, FinishReason, GenerateRequest, Usage};

pub(crate) struct Sequence {
    pub id: SeqId,
    /// Prompt followed by every sampled token.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Leading tokens whose keys and values are in the cache.
    pub n_cached: usize,
    /// Prompt tokens the prefix cache served at first admission.
    pub cached_prompt_tokens: Option<usize>,
    /// Most tokens this sequence may ever hold (prompt + max new tokens).
    pub limit: usize,
    sampler: Sampler,
    stop: StopMatcher,
    utf8: Utf8Decoder,
    logprobs: Option<usize>,
    ignore_eos: bool,
    tx: UnboundedSender<Event>,
    /// The grammar matcher, when the output is constrained.
    constraint: Option<Box<dyn TokenConstraint>>,
    /// The allowed-token mask for the next sample (valid when `mask_ready`).
    mask: Vec<u32>,
    mask_ready: bool,
    /// The constraint failed (its message); the next sample fails the sequence.
    mask_error: Option<String>,
    /// When the request was submitted, for time to first token.
    pub submitted: std::time::Instant,
    /// When its last token was sampled, for inter-token latency.
    pub last_token_at: Option<std::time::Instant>,
}

impl Sequence {
    pub fn new(
        id: SeqId,
        req: GenerateRequest,
        n_vocab: usize,
        limit: usize,
        tx: UnboundedSender<Event>,
    ) -> Self {
        Sequence {
            id,
            prompt_len: req.prompt.len(),
            tokens: req.prompt,
            n_cached: 0,
            cached_prompt_tokens: None,
            limit,
            sampler: Sampler::new(&req.params, n_vocab),
            stop: StopMatcher::new(&req.stop),
            utf8: Utf8Decoder::new(),
            logprobs: req.logprobs,
            ignore_eos: req.ignore_eos,
            tx,
            constraint: req.constraint.map(|c| c.0.start()),
            mask: Vec::new(),
            mask_ready: false,
            mask_error: None,
            submitted: std::time::Instant::now(),
            last_token_at: None,
        }
    }

    /// The client dropped its receiver: stop working on this sequence.
    pub fn is_abandoned(&self) -> bool {
        self.tx.is_closed()
    }

    pub fn pending(&self) -> usize {
        self.tokens.len() - self.n_cached
    }

    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_len,
            completion_tokens: self.tokens.len() - self.prompt_len,
            cached_tokens: self.cached_prompt_tokens.unwrap_or(0),
        }
    }

    /// Whether this sequence's output is constrained.
    pub fn is_constrained(&self) -> bool {
        self.constraint.is_some()
    }

    /// Computes the allowed-token mask for the next sample (the scheduler
    /// runs this beside the forward pass). Returns the time it took.
    pub fn prepare_mask(&mut self) -> std::time::Duration {
        let Some(constraint) = self.constraint.as_mut() else {
            return std::time::Duration::ZERO;
        };
        if self.mask_ready || self.mask_error.is_some() {
            return std::time::Duration::ZERO;
        }
        let start = std::time::Instant::now();
        match constraint.compute_mask(&mut self.mask) {
            Ok(()) => self.mask_ready = true,
            Err(e) => self.mask_error = Some(e),
        }
        start.elapsed()
    }

    pub fn fail(&self, message: String) {
        let _ = self.tx.send(Event::Failed { message });
    }

    /// Samples the next token from `logits` and streams it. Returns `true`
    /// when the sequence has finished (and its `Done` event was sent).
    pub fn accept_logits(&mut self, logits: &mut [f32], tok: &Arc<Tokenizer>) -> bool {
        if self.constraint.is_some() {
            self.prepare_mask();
            if let Some(message) = self.mask_error.take() {
                tracing::warn!(seq = self.id, error = %message, "constraint failed");
                self.fail(format!("constrained decoding failed: {message}"));
                return true;
            }
            sampling::apply_mask(logits, &self.mask);
            self.mask_ready = false;
        }
        if self.ignore_eos {
            // As llama.cpp does: end-of-generation tokens can never be picked.
            for id in tok.eog_ids() {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        let id = self.sampler.sample(logits, &self.tokens[self.prompt_len..]);
        let lp = self.logprobs.map(|n| sampling::logprobs(logits, id, n));
        self.tokens.push(id);
        let mut grammar_done = false;
        if let Some(constraint) = self.constraint.as_mut() {
            if tok.is_eog(id) {
                // Allowed only where the grammar accepts: the output is complete.
            } else if let Err(message) = constraint.commit(id) {
                self.fail(format!("constrained decoding failed: {message}"));
                return true;
            } else {
                grammar_done = constraint.is_finished();
            }
        }
        if tok.is_eog(id) && !self.ignore_eos {
            let _ = self.tx.send(Event::Token {
                id,
                text: String::new(),
                logprobs: lp,
            });
            return self.finish(FinishReason::Stop);
        }
        // Control tokens print nothing, except a marker the grammar names (a tool call's).
        let hidden = tok.is_control(id) && !self.constraint.as_ref().is_some_and(|c| c.shows(id));
        let bytes: &[u8] = if hidden { &[] } else { tok.token_bytes(id) };
        let text = self.utf8.push(bytes);
        let out = self.stop.push(&text);
        let _ = self.tx.send(Event::Token {
            id,
            text: out.emit,
            logprobs: lp,
        });
        if out.stopped || grammar_done {
            return self.finish(FinishReason::Stop);
        }
        if self.tokens.len() >= self.limit {
            return self.finish(FinishReason::Length);
        }
        false
    }

    fn finish(&mut self, reason: FinishReason) -> bool {
        let mut text = String::new();
        if reason == FinishReason::Length || !self.stop.is_stopped() {
            let rest = self.utf8.finish();
            let out = self.stop.push(&rest);
            text.push_str(&out.emit);
            if !out.stopped {
                text.push_str(&self.stop.finish());
            }
        }
        let stop = match reason {
            FinishReason::Stop => self.stop.matched().map(str::to_owned),
            FinishReason::Length => None,
        };
        let _ = self.tx.send(Event::Done {
            text,
            reason,
            usage: self.usage(),
            stop,
        });
        true
    }
}
