//! Counters the engine thread publishes for monitoring and tests: how many
//! sequences run and wait, how much of the KV cache is free, and how many
//! generations finished, were cancelled by a departed client, or preempted.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shared between the engine thread (writer) and handles (readers).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    running: AtomicUsize,
    waiting: AtomicUsize,
    kv_free_blocks: AtomicUsize,
    kv_total_blocks: AtomicUsize,
    finished: AtomicU64,
    cancelled: AtomicU64,
    preempted: AtomicU64,
}

/// A point-in-time copy of the engine's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Sequences holding KV blocks and taking part in steps.
    pub running: usize,
    /// Sequences queued for admission.
    pub waiting: usize,
    pub kv_free_blocks: usize,
    pub kv_total_blocks: usize,
    /// Generations that ended with `Done` or `Failed`.
    pub finished: u64,
    /// Generations dropped because their receiver went away.
    pub cancelled: u64,
    /// Times a sequence gave up its blocks to make room, to be recomputed.
    pub preempted: u64,
}

impl Counters {
    pub fn set_queue(&self, running: usize, waiting: usize, kv_free: usize, kv_total: usize) {
        self.running.store(running, Ordering::Relaxed);
        self.waiting.store(waiting, Ordering::Relaxed);
        self.kv_free_blocks.store(kv_free, Ordering::Relaxed);
        self.kv_total_blocks.store(kv_total, Ordering::Relaxed);
    }

    pub fn add_finished(&self, n: u64) {
        self.finished.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_cancelled(&self, n: u64) {
        self.cancelled.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_preempted(&self) {
        self.preempted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> EngineStats {
        EngineStats {
            running: self.running.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            kv_free_blocks: self.kv_free_blocks.load(Ordering::Relaxed),
            kv_total_blocks: self.kv_total_blocks.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            preempted: self.preempted.load(Ordering::Relaxed),
        }
    }
}
