//! The public status of the models and their backends: `GET /api/status`
//! (JSON) and `GET /status` (a small server-rendered HTML page, no script).
//! Both need no key, like `/health`.
//!
//! Per backend: its id and the name the usage ledger gives it, breaker
//! state, latency (EWMA, ms), error rate over the breaker window, requests
//! in flight, and uptime over 24 h / 7 d / 30 d computed from the store's
//! incidents (absent without a store); then the open incidents and those of
//! the last 30 days.

use std::time::Duration;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use gateway::{BackendStatus, BreakerState};
use serde_json::{json, Value};

use crate::state::AppState;

/// The uptime windows reported, with their names.
const WINDOWS: [(&str, Duration); 3] = [
    ("24h", Duration::from_secs(24 * 3600)),
    ("7d", Duration::from_secs(7 * 24 * 3600)),
    ("30d", Duration::from_secs(30 * 24 * 3600)),
];
/// Most incidents listed.
const INCIDENT_LIMIT: u32 = 50;

/// `GET /api/status`.
pub async fn status_json(State(state): State<AppState>) -> Json<Value> {
    Json(snapshot(&state).await)
}

/// `GET /status`.
pub async fn status_page(State(state): State<AppState>) -> Response {
    Html(render(&snapshot(&state).await)).into_response()
}

/// Uptime in percent of `window` ending now, from the store's incidents.
async fn uptime(state: &AppState, backend: &str, now: i64) -> Value {
    let Some(meter) = state.meter() else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    for (name, window) in WINDOWS {
        let span = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let value = match meter.store().downtime_ms(backend, now - span, now).await {
            Ok(down) => {
                let up = (span - down.clamp(0, span)) as f64 * 100.0 / span as f64;
                json!((up * 1000.0).round() / 1000.0)
            }
            Err(err) => {
                tracing::error!(%backend, error = %err, "cannot read incidents");
                Value::Null
            }
        };
        out.insert(name.to_owned(), value);
    }
    Value::Object(out)
}

/// `ledger_backend` is the name the usage ledger gives the backend: its id,
/// except for a model served by exactly one local engine (the direct
/// path), whose rows say `local`.
fn backend_json(status: &BackendStatus, uptime: Value, ledger_backend: &str) -> Value {
    json!({
        "id": status.id,
        "ledger_backend": ledger_backend,
        "kind": status.kind,
        "state": status.state.as_str(),
        "latency_ms": status.latency_ms.map(|ms| (ms * 10.0).round() / 10.0),
        "error_rate": (status.error_rate * 10_000.0).round() / 10_000.0,
        "outstanding": status.outstanding,
        "requests": status.requests,
        "failures": status.failures,
        "cooling_down": status.cooling_down,
        "healthy": status.healthy,
        "uptime": uptime,
    })
}

/// A model is `up` when every backend's breaker is closed, `down` when
/// none is, else `degraded`.
fn model_state(backends: &[&BackendStatus]) -> &'static str {
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

async fn snapshot(state: &AppState) -> Value {
    let now = store::now_ms();
    let routing = state.routing();
    let statuses = routing.gateway.status();
    let mut models = Vec::new();
    for (name, aliases) in &routing.catalog {
        let mine: Vec<&BackendStatus> = statuses.iter().filter(|s| &s.model == name).collect();
        let mut backends = Vec::with_capacity(mine.len());
        let direct = routing.is_direct(name);
        for status in &mine {
            let ledger = if direct {
                service::LOCAL_BACKEND
            } else {
                status.id.as_str()
            };
            backends.push(backend_json(
                status,
                uptime(state, &status.id, now).await,
                ledger,
            ));
        }
        models.push(json!({
            "name": name,
            "aliases": aliases,
            "state": model_state(&mine),
            "backends": backends,
        }));
    }
    let overall = if models.iter().all(|m| m["state"] == "up") {
        "ok"
    } else if models.iter().any(|m| m["state"] == "down") {
        "outage"
    } else {
        "degraded"
    };
    let (open, recent) = incidents(state, now).await;
    json!({
        "status": overall,
        "time": now / 1000,
        "models": models,
        "incidents": { "open": open, "recent": recent },
    })
}

async fn incidents(state: &AppState, now: i64) -> (Vec<Value>, Vec<Value>) {
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
    let as_json = |i: store::Incident| {
        json!({
            "id": i.id,
            "backend": i.backend,
            "model": i.model,
            "reason": i.reason,
            "opened_at": i.opened_at / 1000,
            "closed_at": i.closed_at.map(|t| t / 1000),
        })
    };
    (
        open.into_iter().map(as_json).collect(),
        recent.into_iter().map(as_json).collect(),
    )
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as table text (`—` for null).
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "—".to_owned(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

fn render(snapshot: &Value) -> String {
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Parlance status</title><style>body{font-family:sans-serif;margin:2em}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em}\
         .up,.closed{color:#070}.degraded,.half_open{color:#a60}.down,.open{color:#b00}\
         </style></head><body><h1>Parlance status</h1>",
    );
    html.push_str(&format!(
        "<p>Overall: <strong>{}</strong></p>",
        cell(&snapshot["status"])
    ));
    html.push_str(
        "<table><tr><th>model</th><th>backend</th><th>kind</th><th>state</th>\
         <th>latency ms</th><th>error rate</th><th>in flight</th>\
         <th>uptime 24h</th><th>7d</th><th>30d</th></tr>",
    );
    for model in snapshot["models"].as_array().into_iter().flatten() {
        for backend in model["backends"].as_array().into_iter().flatten() {
            let state = cell(&backend["state"]);
            html.push_str(&format!(
                "<tr><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td class=\"{state}\">{state}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                cell(&model["state"]),
                cell(&model["name"]),
                cell(&backend["id"]),
                cell(&backend["kind"]),
                cell(&backend["latency_ms"]),
                cell(&backend["error_rate"]),
                cell(&backend["outstanding"]),
                cell(&backend["uptime"]["24h"]),
                cell(&backend["uptime"]["7d"]),
                cell(&backend["uptime"]["30d"]),
            ));
        }
    }
    html.push_str("</table><h2>Incidents</h2>");
    let incidents = &snapshot["incidents"];
    let all: Vec<&Value> = ["open", "recent"]
        .iter()
        .flat_map(|k| incidents[*k].as_array().into_iter().flatten())
        .collect();
    if all.is_empty() {
        html.push_str("<p>No incidents in the last 30 days.</p>");
    } else {
        html.push_str(
            "<table><tr><th>backend</th><th>model</th><th>reason</th><th>opened (unix)</th>\
             <th>closed (unix)</th></tr>",
        );
        for i in all {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                cell(&i["backend"]),
                cell(&i["model"]),
                cell(&i["reason"]),
                cell(&i["opened_at"]),
                if i["closed_at"].is_null() {
                    "<strong>open</strong>".to_owned()
                } else {
                    cell(&i["closed_at"])
                },
            ));
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let page = render(&json!({
            "status": "ok",
            "models": [{"name": "<script>", "state": "up", "backends": [
                {"id": "b&1", "kind": "openai", "state": "closed", "uptime": null}]}],
            "incidents": {"open": [], "recent": [{"backend": "b&1", "model": "<m>",
                "reason": "<x>", "opened_at": 1, "closed_at": 2}]},
        }));
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("b&amp;1"));
        assert!(page.contains("&lt;x&gt;"));
    }
}
