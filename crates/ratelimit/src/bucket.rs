//! The token-bucket arithmetic both backends share: exact integers, no floats.
//!
//! **Algorithm: a token bucket with continuous refill.** Each subject has two
//! buckets, one for requests and one for tokens. A bucket holds at most
//! `limit` units and refills at `limit` units per minute, continuously (not
//! in per-minute windows), so a limit of 60 RPM admits a burst of 60 and then
//! one request per second.
//!
//! **Units.** Levels are kept in *scaled units*: one request or token is
//! [`SCALE`] = 60 000 units (the milliseconds in a minute), so a bucket with
//! limit `L` refills exactly `L` units per elapsed millisecond and is full at
//! `L × SCALE`. Time is whole milliseconds. Every quantity stays below 2^53,
//! because the Redis backend runs the same steps in Lua, whose numbers are
//! doubles: [`MAX_LIMIT`] bounds limits and costs, elapsed time is clamped to
//! the two minutes that refill any bucket from its lowest to its highest
//! level, and a bucket's debt is clamped at one full minute.
//!
//! **Debt.** [`adjust`](State::adjust) may charge tokens after the fact,
//! taking a bucket below zero (at most `-L × SCALE`); it then admits nothing
//! until it has refilled past zero.

use std::time::Duration;

use crate::error::RateLimitError;

/// Scaled units per request or token: the milliseconds in a minute.
pub const SCALE: i64 = 60_000;

/// The largest limit (per minute) and the largest single cost accepted;
/// keeps every scaled quantity exact in a double (see the module docs).
pub const MAX_LIMIT: u64 = 10_000_000_000;

/// Longest refill ever needed: from `-full` to `full` takes two minutes.
const MAX_ELAPSED_MS: i64 = 2 * SCALE;

/// Per-minute limits of one subject (an API key or a project).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Requests per minute (RPM), `1..=MAX_LIMIT`.
    pub requests_per_minute: u64,
    /// Tokens per minute (TPM), `1..=MAX_LIMIT`.
    pub tokens_per_minute: u64,
}

impl Limits {
    /// Limits of `rpm` requests and `tpm` tokens per minute.
    pub fn new(rpm: u64, tpm: u64) -> Self {
        Self {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        }
    }

    /// Refuses a zero limit or one above [`MAX_LIMIT`].
    pub fn validate(&self) -> Result<(), RateLimitError> {
        for (name, value) in [
            ("requests_per_minute", self.requests_per_minute),
            ("tokens_per_minute", self.tokens_per_minute),
        ] {
            if value == 0 || value > MAX_LIMIT {
                return Err(RateLimitError::InvalidLimit { name, value });
            }
        }
        Ok(())
    }

    /// The limits as i64, once validated (both are at most [`MAX_LIMIT`]).
    fn as_i64(&self) -> (i64, i64) {
        (
            i64::try_from(self.requests_per_minute).unwrap_or(i64::MAX),
            i64::try_from(self.tokens_per_minute).unwrap_or(i64::MAX),
        )
    }
}

/// What one request asks of its subject's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Requests to consume, normally 1.
    pub requests: u64,
    /// Tokens to consume: the estimate (prompt tokens + max output tokens).
    pub tokens: u64,
}

/// The values OpenAI reports in its `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The RPM limit.
    pub limit_requests: u64,
    /// The TPM limit.
    pub limit_tokens: u64,
    /// Whole requests left in the bucket now.
    pub remaining_requests: u64,
    /// Whole tokens left in the bucket now.
    pub remaining_tokens: u64,
    /// Time until the request bucket is full again.
    pub reset_requests: Duration,
    /// Time until the token bucket is full again.
    pub reset_tokens: Duration,
}

/// The answer to an acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The cost was consumed; go ahead.
    Allowed(Snapshot),
    /// Nothing was consumed; retry after `retry_after` (always > 0).
    Limited {
        /// How long until the same cost would be admitted.
        retry_after: Duration,
        /// The bucket state, for the headers of the 429.
        snapshot: Snapshot,
    },
}

impl Decision {
    /// Whether the request was admitted.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed(_))
    }

    /// The header values, admitted or not.
    pub fn snapshot(&self) -> &Snapshot {
        match self {
            Self::Allowed(s) => s,
            Self::Limited { snapshot, .. } => snapshot,
        }
    }
}

/// One subject's two buckets, in scaled units, as of `updated_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Request bucket level (scaled units; may be negative only for tokens).
    pub requests: i64,
    /// Token bucket level (scaled units; negative after an over-charge).
    pub tokens: i64,
    /// When the levels were last brought up to date, in milliseconds.
    pub updated_ms: i64,
}

impl State {
    /// Both buckets full at `now_ms` (a subject never seen before).
    pub fn full(limits: &Limits, now_ms: i64) -> Self {
        let (rpm, tpm) = limits.as_i64();
        Self {
            requests: rpm * SCALE,
            tokens: tpm * SCALE,
            updated_ms: now_ms,
        }
    }

    /// Brings both levels up to `now_ms`; a clock going backwards refills nothing.
    fn refill(&mut self, limits: &Limits, now_ms: i64) {
        let (rpm, tpm) = limits.as_i64();
        let elapsed = now_ms
            .saturating_sub(self.updated_ms)
            .clamp(0, MAX_ELAPSED_MS);
        self.requests = (self.requests + elapsed * rpm).min(rpm * SCALE);
        self.tokens = (self.tokens + elapsed * tpm).min(tpm * SCALE);
        if now_ms > self.updated_ms {
            self.updated_ms = now_ms;
        }
    }

    /// Consumes `cost` at `now_ms` if both buckets hold enough, else nothing.
    pub fn acquire(
        &mut self,
        limits: &Limits,
        cost: Cost,
        now_ms: i64,
    ) -> Result<Decision, RateLimitError> {
        limits.validate()?;
        check_cost(limits, cost)?;
        self.refill(limits, now_ms);
        let (rpm, tpm) = limits.as_i64();
        let need_r = to_i64(cost.requests) * SCALE;
        let need_t = to_i64(cost.tokens) * SCALE;
        let wait = wait_ms(self.requests, need_r, rpm).max(wait_ms(self.tokens, need_t, tpm));
        if wait > 0 {
            return Ok(Decision::Limited {
                retry_after: millis(wait),
                snapshot: self.snapshot(limits),
            });
        }
        self.requests -= need_r;
        self.tokens -= need_t;
        Ok(Decision::Allowed(self.snapshot(limits)))
    }

    /// Refunds (`delta < 0`) or charges (`delta > 0`) tokens at `now_ms`,
    /// keeping the level within one minute of debt and a full bucket.
    pub fn adjust(
        &mut self,
        limits: &Limits,
        token_delta: i64,
        now_ms: i64,
    ) -> Result<Snapshot, RateLimitError> {
        limits.validate()?;
        check_delta(token_delta)?;
        self.refill(limits, now_ms);
        let (_, tpm) = limits.as_i64();
        let full = tpm * SCALE;
        self.tokens = (self.tokens - token_delta * SCALE).clamp(-full, full);
        Ok(self.snapshot(limits))
    }

    /// Whether both buckets are full (the state can be forgotten).
    pub fn is_full(&self, limits: &Limits, now_ms: i64) -> bool {
        let mut copy = *self;
        copy.refill(limits, now_ms);
        let (rpm, tpm) = limits.as_i64();
        copy.requests >= rpm * SCALE && copy.tokens >= tpm * SCALE
    }

    /// The header values for the current levels.
    pub fn snapshot(&self, limits: &Limits) -> Snapshot {
        let (rpm, tpm) = limits.as_i64();
        Snapshot {
            limit_requests: limits.requests_per_minute,
            limit_tokens: limits.tokens_per_minute,
            remaining_requests: whole(self.requests),
            remaining_tokens: whole(self.tokens),
            reset_requests: millis(wait_ms(self.requests, rpm * SCALE, rpm)),
            reset_tokens: millis(wait_ms(self.tokens, tpm * SCALE, tpm)),
        }
    }
}

/// Refuses a cost the bucket could never hold (OpenAI's "request too large").
pub fn check_cost(limits: &Limits, cost: Cost) -> Result<(), RateLimitError> {
    if cost.requests > limits.requests_per_minute {
        return Err(RateLimitError::RequestTooLarge {
            dimension: "requests",
            requested: cost.requests,
            limit: limits.requests_per_minute,
        });
    }
    if cost.tokens > limits.tokens_per_minute {
        return Err(RateLimitError::RequestTooLarge {
            dimension: "tokens",
            requested: cost.tokens,
            limit: limits.tokens_per_minute,
        });
    }
    Ok(())
}

/// Refuses a token correction beyond [`MAX_LIMIT`] either way.
pub fn check_delta(token_delta: i64) -> Result<(), RateLimitError> {
    if token_delta.unsigned_abs() > MAX_LIMIT {
        return Err(RateLimitError::InvalidAdjustment { token_delta });
    }
    Ok(())
}

/// Milliseconds until `level` reaches `need` at `rate` units per ms (0 if it has).
pub fn wait_ms(level: i64, need: i64, rate: i64) -> i64 {
    if level >= need || rate <= 0 {
        0
    } else {
        let deficit = need - level;
        (deficit + rate - 1) / rate
    }
}

/// Whole units left in a scaled level (0 when in debt).
pub fn whole(level: i64) -> u64 {
    u64::try_from(level.max(0) / SCALE).unwrap_or(0)
}

/// A non-negative millisecond count as a [`Duration`].
pub fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0))
}

/// A value already bounded by [`MAX_LIMIT`] as i64.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(requests: u64, tokens: u64) -> Cost {
        Cost { requests, tokens }
    }

    #[test]
    fn a_new_subject_starts_full() {
        let limits = Limits::new(3, 100);
        let s = State::full(&limits, 0).snapshot(&limits);
        assert_eq!((s.remaining_requests, s.remaining_tokens), (3, 100));
        assert_eq!(
            (s.reset_requests, s.reset_tokens),
            (Duration::ZERO, Duration::ZERO)
        );
    }

    #[test]
    fn refill_is_continuous_and_exact() {
        // 60 RPM: one request per second.
        let limits = Limits::new(60, 6_000);
        let mut state = State::full(&limits, 0);
        for _ in 0..60 {
            assert!(state.acquire(&limits, cost(1, 0), 0).unwrap().is_allowed());
        }
        let limited = state.acquire(&limits, cost(1, 0), 0).unwrap();
        assert_eq!(
            limited,
            Decision::Limited {
                retry_after: Duration::from_secs(1),
                snapshot: state.snapshot(&limits)
            }
        );
        assert!(!state
            .acquire(&limits, cost(1, 0), 999)
            .unwrap()
            .is_allowed());
        let allowed = state.acquire(&limits, cost(1, 0), 1_000).unwrap();
        assert!(allowed.is_allowed());
        assert_eq!(allowed.snapshot().reset_requests, Duration::from_secs(60));
    }

    #[test]
    fn limited_consumes_nothing() {
        let limits = Limits::new(10, 100);
        let mut state = State::full(&limits, 0);
        assert!(state.acquire(&limits, cost(1, 90), 0).unwrap().is_allowed());
        let before = state;
        assert!(!state.acquire(&limits, cost(1, 20), 0).unwrap().is_allowed());
        assert_eq!(state, before);
    }

    #[test]
    fn retry_after_is_the_slower_bucket() {
        // 100 TPM refills 10 tokens in 6 s; requests are plentiful.
        let limits = Limits::new(600, 100);
        let mut state = State::full(&limits, 0);
        assert!(state
            .acquire(&limits, cost(1, 100), 0)
            .unwrap()
            .is_allowed());
        match state.acquire(&limits, cost(1, 10), 0).unwrap() {
            Decision::Limited { retry_after, .. } => {
                assert_eq!(retry_after, Duration::from_secs(6))
            }
            other => panic!("expected limited, got {other:?}"),
        }
    }

    #[test]
    fn oversized_requests_are_refused_outright() {
        let limits = Limits::new(10, 100);
        let mut state = State::full(&limits, 0);
        let err = state.acquire(&limits, cost(1, 101), 0).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::RateLimited);
        let err = state
            .acquire(&Limits::new(0, 1), cost(1, 1), 0)
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidRequest);
        let err = state
            .acquire(&Limits::new(1, MAX_LIMIT + 1), cost(1, 1), 0)
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidRequest);
    }

    #[test]
    fn adjust_refunds_up_to_full_and_charges_into_bounded_debt() {
        let limits = Limits::new(10, 100);
        let mut state = State::full(&limits, 0);
        assert!(state.acquire(&limits, cost(1, 80), 0).unwrap().is_allowed());
        assert_eq!(state.adjust(&limits, -50, 0).unwrap().remaining_tokens, 70);
        assert_eq!(
            state.adjust(&limits, -500, 0).unwrap().remaining_tokens,
            100
        );
        let s = state.adjust(&limits, 1_000, 0).unwrap();
        assert_eq!(s.remaining_tokens, 0);
        assert_eq!(state.tokens, -100 * SCALE);
        // Two minutes from one minute of debt to full.
        assert_eq!(s.reset_tokens, Duration::from_secs(120));
        assert!(state.adjust(&limits, i64::MIN, 0).is_err());
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let limits = Limits::new(2, 100);
        let mut state = State::full(&limits, 10_000);
        assert!(state
            .acquire(&limits, cost(2, 0), 10_000)
            .unwrap()
            .is_allowed());
        assert!(!state.acquire(&limits, cost(1, 0), 0).unwrap().is_allowed());
        assert_eq!(state.updated_ms, 10_000);
    }

    #[test]
    fn long_idle_time_cannot_overflow() {
        let limits = Limits::new(MAX_LIMIT, MAX_LIMIT);
        let mut state = State::full(&limits, 0);
        state
            .adjust(&limits, i64::try_from(MAX_LIMIT).unwrap(), 0)
            .unwrap();
        assert!(state
            .acquire(&limits, cost(1, MAX_LIMIT), i64::MAX / 2)
            .unwrap()
            .is_allowed());
        assert!(state.is_full(&limits, i64::MAX / 2 + 60_000));
    }
}
