//! What a person is told about a backend and a model: [`Health`]
//! (Operational, Degraded or Down) derived from the gateway's breaker, error
//! rate, health checks and cool-down, with the reasons in words; and the
//! older breaker-only view (`up` | `degraded` | `down`) the JSON keeps.

use gateway::{BackendStatus, BreakerState};

use super::text::percent_text;

/// A closed breaker whose window has at least this share of failures is
/// degraded.
const DEGRADED_ERROR_RATE: f64 = 0.10;

/// What a person is told about a model or a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    Operational,
    Degraded,
    Down,
}

impl Health {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Health::Operational => "operational",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }

    pub(super) fn parse(text: &str) -> Health {
        match text {
            "operational" => Health::Operational,
            "degraded" => Health::Degraded,
            _ => Health::Down,
        }
    }

    pub(super) fn word(self) -> &'static str {
        match self {
            Health::Operational => "Operational",
            Health::Degraded => "Degraded",
            Health::Down => "Down",
        }
    }

    /// A shape beside the colour, hidden from screen readers (the word is
    /// read instead).
    pub(super) fn symbol(self) -> &'static str {
        match self {
            Health::Operational => "✓",
            Health::Degraded => "!",
            Health::Down => "✕",
        }
    }
}

/// A backend is Down while its breaker is open (it takes no calls);
/// Degraded while half-open (one probe decides), when at least 10% of the
/// breaker's window failed, when its last health check failed, or while it
/// cools down after a 429; else Operational. The reasons say why in words.
/// Latency is shown, not judged: it mixes first-token and whole-answer
/// times, and no single threshold suits every model.
pub(super) fn backend_health(status: &BackendStatus) -> (Health, Vec<String>) {
    match status.state {
        BreakerState::Open => (
            Health::Down,
            vec!["Not taking requests: too many recent requests failed.".to_owned()],
        ),
        BreakerState::HalfOpen => (
            Health::Degraded,
            vec![
                "Recovering: one trial request decides whether it takes traffic again.".to_owned(),
            ],
        ),
        BreakerState::Closed => {
            let mut reasons = Vec::new();
            if status.error_rate >= DEGRADED_ERROR_RATE {
                reasons.push(format!(
                    "{} of recent requests failed.",
                    percent_text(status.error_rate * 100.0, 0)
                ));
            }
            if status.healthy == Some(false) {
                reasons.push("Its last health check failed.".to_owned());
            }
            if status.cooling_down {
                reasons.push("Rate limited by its provider; pausing briefly.".to_owned());
            }
            let health = if reasons.is_empty() {
                Health::Operational
            } else {
                Health::Degraded
            };
            (health, reasons)
        }
    }
}

/// A model is Down when all its backends are (or it has none), Operational
/// when all are, else Degraded.
pub(super) fn model_health(backends: &[Health]) -> Health {
    if backends.iter().all(|h| *h == Health::Down) {
        Health::Down
    } else if backends.iter().all(|h| *h == Health::Operational) {
        Health::Operational
    } else {
        Health::Degraded
    }
}

/// The breaker view kept for compatibility: a model is `up` when every
/// backend's breaker is closed, `down` when none is, else `degraded`.
pub(super) fn model_state(backends: &[&BackendStatus]) -> &'static str {
    let closed = backends
        .iter()
        .filter(|b| b.state == BreakerState::Closed)
        .count();
    match closed {
        0 => "down",
        n if n == backends.len() => "up",
        _ => "degraded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: BreakerState, error_rate: f64) -> BackendStatus {
        BackendStatus {
            id: "b".into(),
            model: "m".into(),
            kind: "openai",
            state,
            outstanding: 0,
            latency_ms: None,
            error_rate,
            requests: 10,
            failures: 0,
            cooling_down: false,
            healthy: None,
        }
    }

    #[test]
    fn states_are_derived_from_the_breaker_and_the_error_rate() {
        let health = |s: &BackendStatus| backend_health(s).0;
        assert_eq!(
            health(&status(BreakerState::Closed, 0.0)),
            Health::Operational
        );
        assert_eq!(
            health(&status(BreakerState::Closed, 0.05)),
            Health::Operational
        );
        assert_eq!(
            health(&status(BreakerState::Closed, 0.25)),
            Health::Degraded
        );
        assert_eq!(
            backend_health(&status(BreakerState::Closed, 0.25)).1,
            ["25% of recent requests failed."]
        );
        assert_eq!(
            health(&status(BreakerState::HalfOpen, 0.0)),
            Health::Degraded
        );
        assert_eq!(health(&status(BreakerState::Open, 1.0)), Health::Down);
        let mut unhealthy = status(BreakerState::Closed, 0.0);
        unhealthy.healthy = Some(false);
        assert_eq!(health(&unhealthy), Health::Degraded);
        let mut cooling = status(BreakerState::Closed, 0.0);
        cooling.cooling_down = true;
        assert_eq!(health(&cooling), Health::Degraded);

        use Health::*;
        assert_eq!(model_health(&[Operational, Operational]), Operational);
        assert_eq!(model_health(&[Operational, Down]), Degraded);
        assert_eq!(model_health(&[Degraded]), Degraded);
        assert_eq!(model_health(&[Down, Down]), Down);
        assert_eq!(model_health(&[]), Down);
    }
}
