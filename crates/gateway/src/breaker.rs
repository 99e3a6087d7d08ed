//! A circuit breaker per backend.
//!
//! Closed: calls pass; it opens after `consecutive_failures` failures in a
//! row, or when the failure share of the last `window` outcomes reaches
//! `error_rate_percent` (once at least `min_requests` are in the window).
//! Open: calls are refused for `open_ms`; then the next call (or health
//! probe) is let through alone as a probe — half-open. The probe's success
//! closes the breaker (and clears the window); its failure opens it again.
//! Every state change is returned as a [`Transition`] so the router can
//! publish it (the server persists them as incidents).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::BreakerConfig;

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls pass.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// One probe call is allowed; its outcome decides.
    HalfOpen,
}

impl BreakerState {
    /// The state as spelled in events and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A change of state and why it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// Why, in words (e.g. "5 consecutive failures").
    pub reason: String,
}

/// What [`Breaker::try_acquire`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// A normal call.
    Allowed,
    /// The one half-open probe; report its outcome.
    Probe(Option<Transition>),
    /// Refused: open, or a probe is already out.
    Refused,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    opened_at: Instant,
    consecutive: u32,
    /// Recent outcomes, `true` for a failure.
    window: VecDeque<bool>,
    probe_out: bool,
}

/// One backend's breaker.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                opened_at: Instant::now(),
                consecutive: 0,
                window: VecDeque::new(),
                probe_out: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves counters only; keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn open_for(&self) -> Duration {
        Duration::from_millis(self.config.open_ms)
    }

    /// The current state (an open breaker past its cool-down still reads
    /// `Open` until something probes it).
    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// The failure share of the window, 0–1.
    pub fn error_rate(&self) -> f64 {
        let inner = self.lock();
        if inner.window.is_empty() {
            return 0.0;
        }
        inner.window.iter().filter(|failed| **failed).count() as f64 / inner.window.len() as f64
    }

    /// Whether a call could be admitted now (without admitting it).
    pub fn would_admit(&self, now: Instant) -> bool {
        let inner = self.lock();
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => now >= inner.opened_at + self.open_for(),
            BreakerState::HalfOpen => !inner.probe_out,
        }
    }

    /// Admits a call, or refuses it; may move open → half-open.
    pub fn try_acquire(&self, now: Instant) -> Admission {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::Open if now >= inner.opened_at + self.open_for() => {
                inner.state = BreakerState::HalfOpen;
                inner.probe_out = true;
                Admission::Probe(Some(Transition {
                    from: BreakerState::Open,
                    to: BreakerState::HalfOpen,
                    reason: "cool-down over; probing".into(),
                }))
            }
            BreakerState::HalfOpen if !inner.probe_out => {
                inner.probe_out = true;
                Admission::Probe(None)
            }
            _ => Admission::Refused,
        }
    }

    /// A probe ended without telling anything about health (client error,
    /// 429, cancelled): let another probe go.
    pub fn release_probe(&self) {
        self.lock().probe_out = false;
    }

    /// A call succeeded.
    pub fn record_success(&self) -> Option<Transition> {
        let mut inner = self.lock();
        inner.consecutive = 0;
        match inner.state {
            BreakerState::Closed => {
                self.push(&mut inner, false);
                None
            }
            // A success seen while open (a call admitted just before it
            // opened) does not close it: only a probe does.
            BreakerState::Open => None,
            BreakerState::HalfOpen => {
                inner.state = BreakerState::Closed;
                inner.probe_out = false;
                inner.window.clear();
                Some(Transition {
                    from: BreakerState::HalfOpen,
                    to: BreakerState::Closed,
                    reason: "probe succeeded".into(),
                })
            }
        }
    }

    /// A call failed (in a way that counts against the backend).
    pub fn record_failure(&self, now: Instant) -> Option<Transition> {
        let mut inner = self.lock();
        inner.consecutive = inner.consecutive.saturating_add(1);
        match inner.state {
            BreakerState::Open => None,
            BreakerState::HalfOpen => {
                inner.state = BreakerState::Open;
                inner.opened_at = now;
                inner.probe_out = false;
                Some(Transition {
                    from: BreakerState::HalfOpen,
                    to: BreakerState::Open,
                    reason: "probe failed".into(),
                })
            }
            BreakerState::Closed => {
                self.push(&mut inner, true);
                let reason = if inner.consecutive >= self.config.consecutive_failures {
                    format!("{} consecutive failures", inner.consecutive)
                } else {
                    let len = inner.window.len();
                    let failed = inner.window.iter().filter(|f| **f).count();
                    let over_rate = len >= self.config.min_requests.max(1) as usize
                        && failed * 100 >= len * self.config.error_rate_percent as usize;
                    if !over_rate {
                        return None;
                    }
                    format!("{failed} of the last {len} calls failed")
                };
                inner.state = BreakerState::Open;
                inner.opened_at = now;
                Some(Transition {
                    from: BreakerState::Closed,
                    to: BreakerState::Open,
                    reason,
                })
            }
        }
    }

    fn push(&self, inner: &mut Inner, failed: bool) {
        inner.window.push_back(failed);
        while inner.window.len() > self.config.window as usize {
            inner.window.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            error_rate_percent: 50,
            window: 10,
            min_requests: 6,
            open_ms: 1_000,
        }
    }

    #[test]
    fn opens_on_consecutive_failures_then_probes_and_closes() {
        let breaker = Breaker::new(config());
        let t0 = Instant::now();
        assert_eq!(breaker.record_failure(t0), None);
        assert_eq!(breaker.record_failure(t0), None);
        let opened = breaker.record_failure(t0).expect("opens on the third");
        assert_eq!(opened.to, BreakerState::Open);
        assert_eq!(breaker.try_acquire(t0), Admission::Refused);
        let later = t0 + Duration::from_millis(1_000);
        assert!(breaker.would_admit(later));
        let Admission::Probe(Some(half)) = breaker.try_acquire(later) else {
            panic!("expected the probe");
        };
        assert_eq!(half.to, BreakerState::HalfOpen);
        assert_eq!(
            breaker.try_acquire(later),
            Admission::Refused,
            "one probe at a time"
        );
        let closed = breaker.record_success().expect("closes");
        assert_eq!(closed.to, BreakerState::Closed);
        assert_eq!(breaker.try_acquire(later), Admission::Allowed);
    }

    #[test]
    fn failed_probe_reopens() {
        let breaker = Breaker::new(config());
        let t0 = Instant::now();
        for _ in 0..3 {
            breaker.record_failure(t0);
        }
        let later = t0 + Duration::from_secs(2);
        assert!(matches!(breaker.try_acquire(later), Admission::Probe(_)));
        let reopened = breaker.record_failure(later).expect("reopens");
        assert_eq!(
            (reopened.from, reopened.to),
            (BreakerState::HalfOpen, BreakerState::Open)
        );
        assert_eq!(breaker.try_acquire(later), Admission::Refused);
    }

    #[test]
    fn opens_on_error_rate_without_a_streak() {
        let breaker = Breaker::new(config());
        let now = Instant::now();
        let mut opened = None;
        for _ in 0..5 {
            breaker.record_success();
            opened = opened.or(breaker.record_failure(now));
            opened = opened.or(breaker.record_failure(now));
        }
        let opened = opened.expect("2 failures in 3 is over 50%");
        assert!(opened.reason.contains("of the last"), "{}", opened.reason);
    }

    #[test]
    fn released_probe_lets_another_through() {
        let breaker = Breaker::new(config());
        let t0 = Instant::now();
        for _ in 0..3 {
            breaker.record_failure(t0);
        }
        let later = t0 + Duration::from_secs(2);
        assert!(matches!(breaker.try_acquire(later), Admission::Probe(_)));
        breaker.release_probe();
        assert_eq!(breaker.try_acquire(later), Admission::Probe(None));
    }
}
