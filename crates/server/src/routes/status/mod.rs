//! The public status of the models and their backends: `GET /api/status`
//! (JSON for machines) and `GET /status` (a server-rendered HTML page for
//! people, no script). Both need no key, like `/health`.
//!
//! Each model and each of its backends is **Operational**, **Degraded** or
//! **Down** ([`backend_health`], [`model_health`]), beside a 90-day uptime
//! bar: one cell per UTC day, from the store's incidents
//! (`Store::daily_downtime_ms`, one query per backend; a model's downtime
//! is the time all its backends were down at once). Then the incident
//! history, newest first. Without a store the live states are all there
//! is, and the page says so.
//!
//! The JSON keeps every field it ever had (`status` ok | degraded | outage,
//! each model's `state` up | degraded | down, each backend's breaker
//! `state`, `uptime` over 24h / 7d / 30d, `incidents.open` / `recent`) and
//! adds: `status` (operational | degraded | down) and `daily` per model and
//! backend, `uptime.90d`, `reasons`, an incident's `duration_s`, and
//! `uptime_history` (whether a store backs the figures).
//!
//! - [`health`]: a backend's and a model's state, with reasons;
//! - [`history`]: uptime, per-day downtime and incidents from the store;
//! - [`snapshot`]: the JSON document both routes start from;
//! - [`page`]: the HTML page;
//! - [`text`]: dates, durations, percentages and escaping for the page.

mod health;
mod history;
mod page;
mod snapshot;
mod text;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use crate::state::AppState;
use history::history;
use page::render;
use snapshot::snapshot;

/// `GET /api/status`.
pub async fn status_json(State(state): State<AppState>) -> Json<Value> {
    Json(snapshot(&state).await)
}

/// `GET /status`.
pub async fn status_page(State(state): State<AppState>) -> Response {
    let snapshot = snapshot(&state).await;
    let now = snapshot["time_ms"].as_i64().unwrap_or_else(store::now_ms);
    let history = history(&state, now).await;
    let mut page = Html(render(&snapshot, history.as_deref(), now)).into_response();
    page.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache"),
    );
    page
}
