//! The in-process backend: one map of buckets behind a mutex, for a single
//! Parlance instance.
//!
//! The lock is held only for the few integer steps of one acquire or adjust,
//! never across an `.await`. Subjects whose buckets have refilled completely
//! are forgotten every [`PRUNE_EVERY`] operations, so the map holds only
//! subjects seen in about the last two minutes.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::bucket::{Cost, Decision, Limits, Snapshot, State};
use crate::error::RateLimitError;
use crate::RateLimiter;

/// Operations between sweeps of the map for full (forgettable) buckets.
pub const PRUNE_EVERY: u32 = 1_024;

/// Rate limits kept in this process's memory.
#[derive(Debug)]
pub struct MemoryLimiter {
    epoch: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    buckets: HashMap<String, (State, Limits)>,
    ops_since_prune: u32,
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLimiter {
    /// An empty limiter: every subject starts with full buckets.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// How many subjects are currently tracked.
    pub fn tracked_subjects(&self) -> usize {
        self.lock().buckets.len()
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// The map; a panic elsewhere cannot leave a bucket half-updated (each
    /// update is a plain assignment), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `step` on the subject's state (created full if absent).
    fn with_state<T>(
        &self,
        subject: &str,
        limits: &Limits,
        step: impl FnOnce(&mut State, i64) -> Result<T, RateLimitError>,
    ) -> Result<T, RateLimitError> {
        limits.validate()?;
        let now = self.now_ms();
        let mut inner = self.lock();
        inner.ops_since_prune += 1;
        if inner.ops_since_prune >= PRUNE_EVERY {
            inner.ops_since_prune = 0;
            inner
                .buckets
                .retain(|_, (state, limits)| !state.is_full(limits, now));
        }
        let entry = inner
            .buckets
            .entry(subject.to_owned())
            .or_insert_with(|| (State::full(limits, now), *limits));
        entry.1 = *limits;
        step(&mut entry.0, now)
    }
}

impl RateLimiter for MemoryLimiter {
    async fn acquire(
        &self,
        subject: &str,
        limits: &Limits,
        cost: Cost,
    ) -> Result<Decision, RateLimitError> {
        self.with_state(subject, limits, |state, now| {
            state.acquire(limits, cost, now)
        })
    }

    async fn adjust(
        &self,
        subject: &str,
        limits: &Limits,
        token_delta: i64,
    ) -> Result<Snapshot, RateLimitError> {
        self.with_state(subject, limits, |state, now| {
            state.adjust(limits, token_delta, now)
        })
    }
}
