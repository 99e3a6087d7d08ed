//! Counters the engine thread publishes for monitoring and tests: how many
//! sequences run and wait, how the KV cache's blocks divide between free,
//! used and cached, how the prefix cache is doing, and how many generations
//! finished, were cancelled by a departed client, or preempted.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::kv::KvCache;
use crate::latency::{AtomicHistogram, Histogram};

/// Shared between the engine thread (writer) and handles (readers).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    running: AtomicUsize,
    waiting: AtomicUsize,
    kv_free_blocks: AtomicUsize,
    kv_cached_blocks: AtomicUsize,
    kv_total_blocks: AtomicUsize,
    finished: AtomicU64,
    cancelled: AtomicU64,
    preempted: AtomicU64,
    prefix_lookups: AtomicU64,
    prefix_hit_blocks: AtomicU64,
    prefix_hit_tokens: AtomicU64,
    kv_evictions: AtomicU64,
    ttft: AtomicHistogram,
    itl: AtomicHistogram,
    masks: AtomicU64,
    mask_nanos: AtomicU64,
    paced_steps: AtomicU64,
}

/// A point-in-time copy of the engine's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Sequences holding KV blocks and taking part in steps.
    pub running: usize,
    /// Sequences queued for admission.
    pub waiting: usize,
    /// Blocks on the free list. `kv_free_blocks + kv_cached_blocks` blocks
    /// can be given to new work; the rest of `kv_total_blocks` are in use.
    pub kv_free_blocks: usize,
    /// Cached blocks no sequence references (prefix cache), evictable.
    pub kv_cached_blocks: usize,
    pub kv_total_blocks: usize,
    /// Generations that ended with `Done` or `Failed`.
    pub finished: u64,
    /// Generations dropped because their receiver went away.
    pub cancelled: u64,
    /// Times a sequence gave up its blocks to make room, to be recomputed.
    pub preempted: u64,
    /// Admissions that looked up the prefix cache.
    pub prefix_cache_lookups: u64,
    /// Blocks taken from the prefix cache instead of being computed.
    pub prefix_cache_hit_blocks: u64,
    /// Positions (prompt or recomputed tokens) those blocks held.
    pub prefix_cache_hit_tokens: u64,
    /// Cached blocks evicted (least recently used first) to make room.
    pub kv_evictions: u64,
    /// Time from submission to the first token, per generation.
    pub time_to_first_token: Histogram,
    /// Time between consecutive tokens of one generation.
    pub inter_token_latency: Histogram,
    /// Allowed-token masks computed for constrained sequences.
    pub masks: u64,
    /// Time spent computing them, in nanoseconds (beside the forward pass).
    pub mask_nanos: u64,
    /// Steps whose prompt tokens the pacing held back so the generating
    /// sequences beside them would not stall (the rest waited for later
    /// steps).
    pub paced_steps: u64,
}

impl EngineStats {
    /// Blocks referenced by running sequences.
    pub fn kv_used_blocks(&self) -> usize {
        self.kv_total_blocks
            .saturating_sub(self.kv_free_blocks + self.kv_cached_blocks)
    }
}

impl Counters {
    pub fn set_queue(&self, running: usize, waiting: usize) {
        self.waiting.store(waiting, Ordering::Relaxed);
        // Release: pairs with the Acquire in `snapshot`, so a reader that
        // sees these sizes also sees the KV counters stored before them.
        self.running.store(running, Ordering::Release);
    }

    pub fn set_kv(&self, kv: &KvCache) {
        self.kv_free_blocks
            .store(kv.free_blocks(), Ordering::Relaxed);
        self.kv_cached_blocks
            .store(kv.cached_blocks(), Ordering::Relaxed);
        self.kv_total_blocks
            .store(kv.total_blocks(), Ordering::Relaxed);
        let p = kv.prefix_stats();
        self.prefix_lookups.store(p.lookups, Ordering::Relaxed);
        self.prefix_hit_blocks
            .store(p.hit_blocks, Ordering::Relaxed);
        self.prefix_hit_tokens
            .store(p.hit_tokens, Ordering::Relaxed);
        self.kv_evictions.store(p.evictions, Ordering::Relaxed);
    }

    pub fn add_finished(&self, n: u64) {
        self.finished.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_cancelled(&self, n: u64) {
        // Release: pairs with the Acquire in `snapshot` (see `set_queue`).
        self.cancelled.fetch_add(n, Ordering::Release);
    }

    /// A sequence sampled a token: its first (`previous` is `None`, measured
    /// from `submitted`) or a later one.
    pub fn observe_token(
        &self,
        submitted: std::time::Instant,
        previous: Option<std::time::Instant>,
        now: std::time::Instant,
    ) {
        match previous {
            None => self.ttft.observe(now.saturating_duration_since(submitted)),
            Some(at) => self.itl.observe(now.saturating_duration_since(at)),
        }
    }

    /// A constrained sequence's mask took `took` to compute.
    pub fn observe_mask(&self, took: std::time::Duration) {
        if !took.is_zero() {
            self.masks.fetch_add(1, Ordering::Relaxed);
            self.mask_nanos
                .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        }
    }

    pub fn add_paced_step(&self) {
        self.paced_steps.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_preempted(&self) {
        self.preempted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> EngineStats {
        let cancelled = self.cancelled.load(Ordering::Acquire);
        let running = self.running.load(Ordering::Acquire);
        EngineStats {
            running,
            waiting: self.waiting.load(Ordering::Relaxed),
            kv_free_blocks: self.kv_free_blocks.load(Ordering::Relaxed),
            kv_cached_blocks: self.kv_cached_blocks.load(Ordering::Relaxed),
            kv_total_blocks: self.kv_total_blocks.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            cancelled,
            preempted: self.preempted.load(Ordering::Relaxed),
            prefix_cache_lookups: self.prefix_lookups.load(Ordering::Relaxed),
            prefix_cache_hit_blocks: self.prefix_hit_blocks.load(Ordering::Relaxed),
            prefix_cache_hit_tokens: self.prefix_hit_tokens.load(Ordering::Relaxed),
            kv_evictions: self.kv_evictions.load(Ordering::Relaxed),
            time_to_first_token: self.ttft.snapshot(),
            inter_token_latency: self.itl.snapshot(),
            masks: self.masks.load(Ordering::Relaxed),
            mask_nanos: self.mask_nanos.load(Ordering::Relaxed),
            paced_steps: self.paced_steps.load(Ordering::Relaxed),
        }
    }
}
