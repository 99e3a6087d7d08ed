//! The live state of each configured backend ([`BackendSlot`]): its
//! breaker, 429 cool-down, requests in flight, latency EWMA and counters;
//! the [`BreakerEvent`]s it publishes on every breaker state change; and
//! the [`BackendStatus`] snapshot the status page reads.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::backend::Backend;
use crate::breaker::{Admission, Breaker, BreakerState, Transition};
use crate::config::{BreakerConfig, TimeoutsConfig};
use crate::error::FailureKind;

/// The weight of the newest sample in the latency EWMA.
const EWMA_ALPHA: f64 = 0.2;

/// A breaker state change, for the server to persist as an incident
/// (opened when `to` is `open`, closed when `to` is `closed`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerEvent {
    /// The backend's id.
    pub backend: String,
    /// The model it serves (the gateway's name).
    pub model: String,
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// Why.
    pub reason: String,
    /// When.
    pub at: SystemTime,
}

/// What the status page shows for one backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendStatus {
    /// The backend's id.
    pub id: String,
    /// The model it serves.
    pub model: String,
    /// `local`, `openai` or `anthropic`.
    pub kind: &'static str,
    /// Its breaker's state.
    pub state: BreakerState,
    /// Requests in flight now.
    pub outstanding: u32,
    /// Latency EWMA in milliseconds (to the first token when streamed),
    /// `None` before the first success.
    pub latency_ms: Option<f64>,
    /// The failure share of the breaker's window, 0–1.
    pub error_rate: f64,
    /// Calls made since start.
    pub requests: u64,
    /// Calls failed since start.
    pub failures: u64,
    /// Whether it is cooling down after a 429.
    pub cooling_down: bool,
    /// The last health check's outcome, `None` before the first.
    pub healthy: Option<bool>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: u64,
    failures: u64,
    latency_ms: Option<f64>,
    cooldown_until: Option<Instant>,
    healthy: Option<bool>,
}

/// One configured backend and its live state.
pub struct BackendSlot {
    /// Unique id.
    pub id: String,
    /// The gateway's model name it serves.
    pub model: String,
    /// The upstream's name for that model.
    pub upstream_model: String,
    /// Relative share among equals.
    pub weight: u32,
    /// Lower is preferred.
    pub priority: u32,
    /// Its timeouts.
    pub timeouts: TimeoutsConfig,
    /// The implementation.
    pub backend: Arc<dyn Backend>,
    breaker: Breaker,
    outstanding: AtomicU32,
    counters: Mutex<Counters>,
    events: broadcast::Sender<BreakerEvent>,
}

/// Settings of a slot other than its backend.
pub struct SlotSpec {
    /// Unique id.
    pub id: String,
    /// The gateway's model name.
    pub model: String,
    /// The upstream's model name.
    pub upstream_model: String,
    /// Weight (≥ 1).
    pub weight: u32,
    /// Priority.
    pub priority: u32,
    /// Timeouts.
    pub timeouts: TimeoutsConfig,
}

impl BackendSlot {
    /// A slot with a closed breaker.
    pub fn new(
        spec: SlotSpec,
        backend: Arc<dyn Backend>,
        breaker: BreakerConfig,
        events: broadcast::Sender<BreakerEvent>,
    ) -> Self {
        BackendSlot {
            id: spec.id,
            model: spec.model,
            upstream_model: spec.upstream_model,
            weight: spec.weight.max(1),
            priority: spec.priority,
            timeouts: spec.timeouts,
            backend,
            breaker: Breaker::new(breaker),
            outstanding: AtomicU32::new(0),
            counters: Mutex::new(Counters::default()),
            events,
        }
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        // Counters stay meaningful after a panic elsewhere; keep going.
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, transition: Option<Transition>) {
        let Some(t) = transition else { return };
        tracing::warn!(backend = %self.id, from = t.from.as_str(), to = t.to.as_str(),
            reason = %t.reason, "circuit breaker changed state");
        // No subscriber is fine: nobody persists incidents then.
        let _ = self.events.send(BreakerEvent {
            backend: self.id.clone(),
            model: self.model.clone(),
            from: t.from,
            to: t.to,
            reason: t.reason,
            at: SystemTime::now(),
        });
    }

    /// Whether a call could go out now (breaker, cool-down).
    pub fn available(&self, now: Instant) -> bool {
        !self.cooling_down(now) && self.breaker.would_admit(now)
    }

    /// When the 429 cool-down ends, if one is running.
    pub fn cooldown_left(&self, now: Instant) -> Option<Duration> {
        self.counters()
            .cooldown_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    fn cooling_down(&self, now: Instant) -> bool {
        self.cooldown_left(now).is_some()
    }

    /// Admits a call through the breaker; `Some(is_probe)` when admitted.
    pub fn admit(&self, now: Instant) -> Option<bool> {
        match self.breaker.try_acquire(now) {
            Admission::Allowed => Some(false),
            Admission::Probe(transition) => {
                self.publish(transition);
                Some(true)
            }
            Admission::Refused => None,
        }
    }

    /// Counts a call in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.counters().requests += 1;
        InFlight { slot: self.clone() }
    }

    /// Requests in flight.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// A whole answer came after `latency`.
    pub fn on_success(&self, latency: Duration) {
        self.on_first_token(latency);
        self.publish(self.breaker.record_success());
    }

    /// A stream's first token came after `latency` (the latency sample).
    pub fn on_first_token(&self, latency: Duration) {
        let mut counters = self.counters();
        let sample = latency.as_secs_f64() * 1000.0;
        counters.latency_ms = Some(match counters.latency_ms {
            Some(old) => old + EWMA_ALPHA * (sample - old),
            None => sample,
        });
    }

    /// A committed stream ended: completely (`None`) or with a failure.
    pub fn on_stream_end(&self, failure: Option<&FailureKind>, probe: bool) {
        match failure {
            None => self.publish(self.breaker.record_success()),
            Some(kind) => self.on_failure(kind, probe),
        }
    }

    /// A call failed with `kind`; `probe` says whether it was the breaker's
    /// half-open probe.
    pub fn on_failure(&self, kind: &FailureKind, probe: bool) {
        self.counters().failures += 1;
        if let FailureKind::RateLimited { retry_after } = kind {
            let wait = retry_after.unwrap_or(Duration::from_secs(1));
            let until = Instant::now() + wait;
            let mut counters = self.counters();
            counters.cooldown_until = Some(counters.cooldown_until.map_or(until, |u| u.max(until)));
        }
        if kind.counts_against_backend() {
            self.publish(self.breaker.record_failure(Instant::now()));
        } else if probe {
            self.breaker.release_probe();
        }
    }

    /// A probe call ended without saying anything about health.
    pub fn on_abandoned(&self, probe: bool) {
        if probe {
            self.breaker.release_probe();
        }
    }

    /// A health check's outcome.
    pub fn on_health(&self, outcome: Result<(), FailureKind>) {
        self.counters().healthy = Some(outcome.is_ok());
        match outcome {
            Ok(()) => {
                if self.breaker.state() != BreakerState::Closed {
                    if let Some(probe) = self.admit(Instant::now()) {
                        let _ = probe;
                        self.publish(self.breaker.record_success());
                    }
                }
            }
            Err(kind) if kind.counts_against_backend() => {
                self.publish(self.breaker.record_failure(Instant::now()));
            }
            Err(_) => {}
        }
    }

    /// A snapshot for the status page.
    pub fn status(&self) -> BackendStatus {
        let now = Instant::now();
        let cooling_down = self.cooling_down(now);
        let counters = self.counters();
        BackendStatus {
            id: self.id.clone(),
            model: self.model.clone(),
            kind: self.backend.kind(),
            state: self.breaker.state(),
            outstanding: self.outstanding(),
            latency_ms: counters.latency_ms,
            error_rate: self.breaker.error_rate(),
            requests: counters.requests,
            failures: counters.failures,
            cooling_down,
            healthy: counters.healthy,
        }
    }
}

/// A call in flight; dropping it counts the call out.
pub struct InFlight {
    slot: Arc<BackendSlot>,
}

impl InFlight {
    /// The slot the call went to.
    pub fn slot(&self) -> &Arc<BackendSlot> {
        &self.slot
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slot.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Holds the breaker's half-open probe while a call is being made: if the
/// call is dropped half-way (the caller left), the probe is released so the
/// breaker is not left waiting for an outcome that never comes.
pub struct ProbeGuard {
    slot: Arc<BackendSlot>,
    armed: bool,
}

impl ProbeGuard {
    /// Guards `slot`'s probe when `probe` is true (a no-op otherwise).
    pub fn new(slot: Arc<BackendSlot>, probe: bool) -> Self {
        ProbeGuard { slot, armed: probe }
    }

    /// The call ended and its outcome was (or will be) reported.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if self.armed {
            self.slot.on_abandoned(true);
        }
    }
}
