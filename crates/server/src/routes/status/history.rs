//! The store's record behind the figures: uptime over the reported
//! windows, per-day downtime for the 90-day bars (a model's: the time all
//! its backends were down at once) and the incidents, open and past. Each
//! read is `None`/`null` (and logged) without a store or when it fails.

use std::time::Duration;

use serde_json::{json, Value};

use super::text::date;
use crate::state::AppState;

/// The uptime windows reported, with their names.
const WINDOWS: [(&str, Duration); 3] = [
    ("24h", Duration::from_secs(24 * 3600)),
    ("7d", Duration::from_secs(7 * 24 * 3600)),
    ("30d", Duration::from_secs(30 * 24 * 3600)),
];

/// Most incidents listed in the JSON (those of the last 30 days).
const INCIDENT_LIMIT: u32 = 50;

/// Days in an uptime bar, today included.
pub(super) const DAYS: u32 = 90;

/// Most incidents listed on the page (those of the bars' 90 days).
const HISTORY_LIMIT: u32 = 100;

pub(super) const DAY_MS: i64 = 86_400_000;

/// Uptime in percent of `window` ending now, from the store's incidents.
pub(super) async fn uptime(state: &AppState, backend: &str, now: i64) -> Value {
    let Some(meter) = state.meter() else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    for (name, window) in WINDOWS {
        let span = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let value = match meter.store().downtime_ms(backend, now - span, now).await {
            Ok(down) => json!(percent_up(span, down)),
            Err(err) => {
                tracing::error!(%backend, error = %err, "cannot read incidents");
                Value::Null
            }
        };
        out.insert(name.to_owned(), value);
    }
    Value::Object(out)
}

/// The share of `span` not in `down`, in percent to three decimals.
fn percent_up(span: i64, down: i64) -> f64 {
    if span <= 0 {
        return 100.0;
    }
    let up = (span - down.clamp(0, span)) as f64 * 100.0 / span as f64;
    (up * 1000.0).round() / 1000.0
}

/// The first day of the bars (a UTC midnight, 89 days before today's).
fn bars_from(now: i64) -> i64 {
    now.div_euclid(DAY_MS) * DAY_MS - i64::from(DAYS - 1) * DAY_MS
}

/// Per-day downtime of `backends` together (one backend: its own), or
/// `None` without a store or when it cannot be read.
pub(super) async fn daily_down(state: &AppState, backends: &[&str], now: i64) -> Option<Vec<i64>> {
    let store = state.meter()?.store();
    let from = bars_from(now);
    let read = match backends {
        [one] => store.daily_downtime_ms(one, from, DAYS, now).await,
        many => store.daily_joint_downtime_ms(many, from, DAYS, now).await,
    };
    read.map_err(|err| tracing::error!(?backends, error = %err, "cannot read incidents"))
        .ok()
}

/// The bar's days as JSON (oldest first: `date`, `down_ms`, `uptime` in
/// percent of the day, of its elapsed part today) and the 90-day uptime.
pub(super) fn daily_json(down: &[i64], now: i64) -> (Value, f64) {
    let from = bars_from(now);
    let days = down
        .iter()
        .enumerate()
        .map(|(i, &down)| {
            let start = from + i as i64 * DAY_MS;
            let span = (start + DAY_MS).min(now) - start;
            json!({"date": date(start), "down_ms": down, "uptime": percent_up(span, down)})
        })
        .collect();
    (
        Value::Array(days),
        percent_up(now - from, down.iter().sum()),
    )
}

/// An incident as JSON; `duration_s` runs to `now` while it is open.
fn incident_json(i: &store::Incident, now: i64) -> Value {
    json!({
        "id": i.id,
        "backend": i.backend,
        "model": i.model,
        "reason": i.reason,
        "opened_at": i.opened_at / 1000,
        "closed_at": i.closed_at.map(|t| t / 1000),
        "duration_s": (i.closed_at.unwrap_or(now) - i.opened_at).max(0) / 1000,
    })
}

pub(super) async fn incidents(state: &AppState, now: i64) -> (Vec<Value>, Vec<Value>) {
    let Some(meter) = state.meter() else {
        return (Vec::new(), Vec::new());
    };
    let since = now - i64::try_from(WINDOWS[2].1.as_millis()).unwrap_or(i64::MAX);
    let listed = match meter.store().list_incidents(since, INCIDENT_LIMIT).await {
        Ok(listed) => listed,
        Err(err) => {
            tracing::error!(error = %err, "cannot list incidents");
            Vec::new()
        }
    };
    let (open, recent): (Vec<_>, Vec<_>) = listed.into_iter().partition(|i| i.closed_at.is_none());
    (
        open.iter().map(|i| incident_json(i, now)).collect(),
        recent.iter().map(|i| incident_json(i, now)).collect(),
    )
}

/// The page's incident history: those open or of the bars' 90 days, newest
/// first; `None` without a store or when it cannot be read.
pub(super) async fn history(state: &AppState, now: i64) -> Option<Vec<store::Incident>> {
    let store = state.meter()?.store();
    match store.list_incidents(bars_from(now), HISTORY_LIMIT).await {
        Ok(listed) => Some(listed),
        Err(err) => {
            tracing::error!(error = %err, "cannot list incidents");
            None
        }
    }
}
