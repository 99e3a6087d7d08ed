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

use std::fmt::Write as _;
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
/// Most incidents listed in the JSON (those of the last 30 days).
const INCIDENT_LIMIT: u32 = 50;
/// Days in an uptime bar, today included.
const DAYS: u32 = 90;
/// Most incidents listed on the page (those of the bars' 90 days).
const HISTORY_LIMIT: u32 = 100;
const DAY_MS: i64 = 86_400_000;
/// A closed breaker whose window has at least this share of failures is
/// degraded.
const DEGRADED_ERROR_RATE: f64 = 0.10;
/// A day down this share of it or more is drawn as "much" downtime.
const MUCH_DOWN: f64 = 0.01;

/// What a person is told about a model or a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Operational,
    Degraded,
    Down,
}

impl Health {
    fn as_str(self) -> &'static str {
        match self {
            Health::Operational => "operational",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }

    fn parse(text: &str) -> Health {
        match text {
            "operational" => Health::Operational,
            "degraded" => Health::Degraded,
            _ => Health::Down,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Health::Operational => "Operational",
            Health::Degraded => "Degraded",
            Health::Down => "Down",
        }
    }

    /// A shape beside the colour, hidden from screen readers (the word is
    /// read instead).
    fn symbol(self) -> &'static str {
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
fn backend_health(status: &BackendStatus) -> (Health, Vec<String>) {
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
fn model_health(backends: &[Health]) -> Health {
    if backends.iter().all(|h| *h == Health::Down) {
        Health::Down
    } else if backends.iter().all(|h| *h == Health::Operational) {
        Health::Operational
    } else {
        Health::Degraded
    }
}

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

/// Uptime in percent of `window` ending now, from the store's incidents.
async fn uptime(state: &AppState, backend: &str, now: i64) -> Value {
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
async fn daily_down(state: &AppState, backends: &[&str], now: i64) -> Option<Vec<i64>> {
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
fn daily_json(down: &[i64], now: i64) -> (Value, f64) {
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

/// `ledger_backend` is the name the usage ledger gives the backend: its id,
/// except for a model served by exactly one local engine (the direct
/// path), whose rows say `local`.
fn backend_json(
    status: &BackendStatus,
    uptime: Value,
    daily: Value,
    ledger_backend: &str,
) -> Value {
    let (health, reasons) = backend_health(status);
    json!({
        "id": status.id,
        "ledger_backend": ledger_backend,
        "kind": status.kind,
        "state": status.state.as_str(),
        "status": health.as_str(),
        "reasons": reasons,
        "latency_ms": status.latency_ms.map(|ms| (ms * 10.0).round() / 10.0),
        "error_rate": (status.error_rate * 10_000.0).round() / 10_000.0,
        "outstanding": status.outstanding,
        "requests": status.requests,
        "failures": status.failures,
        "cooling_down": status.cooling_down,
        "healthy": status.healthy,
        "uptime": uptime,
        "daily": daily,
    })
}

/// The breaker view kept for compatibility: a model is `up` when every
/// backend's breaker is closed, `down` when none is, else `degraded`.
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
        let mut healths = Vec::with_capacity(mine.len());
        let mut own_daily = None;
        let direct = routing.is_direct(name);
        for status in &mine {
            let ledger = if direct {
                service::LOCAL_BACKEND
            } else {
                status.id.as_str()
            };
            let mut uptime = uptime(state, &status.id, now).await;
            let down = daily_down(state, &[status.id.as_str()], now).await;
            let daily = match &down {
                Some(down) => {
                    let (daily, total) = daily_json(down, now);
                    if let Value::Object(windows) = &mut uptime {
                        windows.insert("90d".to_owned(), json!(total));
                    }
                    daily
                }
                None => {
                    if let Value::Object(windows) = &mut uptime {
                        windows.insert("90d".to_owned(), Value::Null);
                    }
                    Value::Null
                }
            };
            own_daily = down;
            healths.push(backend_health(status).0);
            backends.push(backend_json(status, uptime, daily, ledger));
        }
        // One backend: the model's downtime is its own; several: the time
        // all were down at once.
        let down = if mine.len() == 1 {
            own_daily
        } else {
            let ids: Vec<&str> = mine.iter().map(|s| s.id.as_str()).collect();
            daily_down(state, &ids, now).await
        };
        let (daily, uptime) = match down {
            Some(down) => {
                let (daily, total) = daily_json(&down, now);
                (daily, json!({ "90d": total }))
            }
            None => (Value::Null, Value::Null),
        };
        models.push(json!({
            "name": name,
            "aliases": aliases,
            "state": model_state(&mine),
            "status": model_health(&healths).as_str(),
            "backends": backends,
            "uptime": uptime,
            "daily": daily,
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
        "time_ms": now,
        "uptime_history": state.meter().is_some(),
        "models": models,
        "incidents": { "open": open, "recent": recent },
    })
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
    (
        open.iter().map(|i| incident_json(i, now)).collect(),
        recent.iter().map(|i| incident_json(i, now)).collect(),
    )
}

/// The page's incident history: those open or of the bars' 90 days, newest
/// first; `None` without a store or when it cannot be read.
async fn history(state: &AppState, now: i64) -> Option<Vec<store::Incident>> {
    let store = state.meter()?.store();
    match store.list_incidents(bars_from(now), HISTORY_LIMIT).await {
        Ok(listed) => Some(listed),
        Err(err) => {
            tracing::error!(error = %err, "cannot list incidents");
            None
        }
    }
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

/// A JSON value as text (`—` for null), escaped.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "—".to_owned(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

/// `YYYY-MM-DD` (UTC) of unix milliseconds.
fn date(ms: i64) -> String {
    let (y, m, d) = billing::Timestamp::from_unix_millis(ms).utc_date();
    format!("{y:04}-{m:02}-{d:02}")
}

/// `<time>` of unix milliseconds, as `YYYY-MM-DD HH:MM UTC`.
fn time_element(ms: i64) -> String {
    let of_day = ms.rem_euclid(DAY_MS) / 1000;
    let (h, m, s) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    let day = date(ms);
    format!("<time datetime=\"{day}T{h:02}:{m:02}:{s:02}Z\">{day} {h:02}:{m:02} UTC</time>")
}

/// A duration in the two largest units that matter: `45 s`, `11 min`,
/// `3 min 20 s`, `2 h 5 min`, `3 d 4 h`.
fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let two = |a: i64, a_unit: &str, b: i64, b_unit: &str| {
        if b == 0 {
            format!("{a} {a_unit}")
        } else {
            format!("{a} {a_unit} {b} {b_unit}")
        }
    };
    if ms < 1000 {
        "under 1 s".to_owned()
    } else if s < 60 {
        format!("{s} s")
    } else if s < 600 {
        two(m, "min", sec, "s")
    } else if s < 3600 {
        format!("{m} min")
    } else if s < 86_400 {
        two(h, "h", m, "min")
    } else {
        two(d, "d", h, "h")
    }
}

/// A percentage as text with `decimals`, rounded down so that anything
/// short of 100 never reads as 100 (`100%` only when exactly 100).
fn percent_text(value: f64, decimals: usize) -> String {
    if value >= 100.0 {
        return "100%".to_owned();
    }
    let scale = 10f64.powi(decimals as i32);
    let shown = (value.max(0.0) * scale).floor() / scale;
    format!("{shown:.decimals$}%")
}

/// The text of a bar's cell: `2026-12-01: 99.2% up, 11 min down`.
fn day_label(day: &Value, today: bool) -> String {
    let down = day["down_ms"].as_i64().unwrap_or(0);
    let date = day["date"].as_str().unwrap_or("");
    let when = if today {
        format!("{date} (today so far)")
    } else {
        date.to_owned()
    };
    if down == 0 {
        format!("{when}: 100% up, no downtime")
    } else {
        let up = day["uptime"].as_f64().unwrap_or(0.0).min(99.99);
        format!(
            "{when}: {} up, {} down",
            percent_text(up, 1),
            human_duration(down)
        )
    }
}

/// A 90-day uptime bar for `name` with its uptime beside it, or a note
/// when there is no history.
fn bar(html: &mut String, name: &str, daily: &Value, uptime: &Value) {
    let Some(days) = daily.as_array() else {
        html.push_str("<p class=\"muted\">Uptime history unavailable.</p>");
        return;
    };
    let down: i64 = days.iter().filter_map(|d| d["down_ms"].as_i64()).sum();
    let total = uptime["90d"].as_f64().unwrap_or(100.0);
    let total = if down > 0 { total.min(99.999) } else { 100.0 };
    let _ = write!(
        html,
        "<div class=\"uptime\"><p class=\"figure\"><strong>{}</strong> uptime over the last {DAYS} days",
        percent_text(total, 2)
    );
    if down > 0 {
        let _ = write!(html, " ({} down)", human_duration(down));
    }
    let _ = write!(
        html,
        "</p><ol class=\"bar\" aria-label=\"{}: uptime per day, last {DAYS} days, oldest first\">",
        escape(name)
    );
    for (i, day) in days.iter().enumerate() {
        let label = escape(&day_label(day, i + 1 == days.len()));
        let down = day["down_ms"].as_i64().unwrap_or(0);
        let level = if down == 0 {
            "none"
        } else if 100.0 - day["uptime"].as_f64().unwrap_or(0.0) < MUCH_DOWN * 100.0 {
            "some"
        } else {
            "much"
        };
        let _ = write!(
            html,
            "<li class=\"{level}\" title=\"{label}\"><span class=\"vh\">{label}</span></li>"
        );
    }
    let _ = write!(
        html,
        "</ol><p class=\"ends\" aria-hidden=\"true\"><span>{DAYS} days ago</span><span>Today</span></p></div>"
    );
}

/// A state badge: symbol and word, coloured.
fn badge(health: Health) -> String {
    format!(
        "<span class=\"badge {}\"><span aria-hidden=\"true\">{}</span> {}</span>",
        health.as_str(),
        health.symbol(),
        health.word()
    )
}

fn kind_words(kind: &str) -> String {
    match kind {
        "local" => "Local engine".to_owned(),
        "openai" => "OpenAI-compatible API".to_owned(),
        "anthropic" => "Anthropic API".to_owned(),
        other => escape(other),
    }
}

/// The facts of one backend, in words.
fn backend_facts(backend: &Value) -> String {
    let mut facts = vec![kind_words(backend["kind"].as_str().unwrap_or(""))];
    facts.push(match backend["latency_ms"].as_f64() {
        Some(ms) => format!("latency {} ms", ms.round()),
        None => "no answers yet".to_owned(),
    });
    let rate = backend["error_rate"].as_f64().unwrap_or(0.0);
    facts.push(if rate > 0.0 {
        format!(
            "{} of recent requests failed",
            percent_text(rate * 100.0, 1)
        )
    } else {
        "no recent failures".to_owned()
    });
    facts.push(format!("{} in flight", cell(&backend["outstanding"])));
    let uptime = &backend["uptime"];
    if uptime.is_object() {
        let windows: Vec<String> = ["24h", "7d", "30d"]
            .iter()
            .filter_map(|w| {
                let up = uptime[*w].as_f64()?;
                Some(format!("{w} {}", percent_text(up, 2)))
            })
            .collect();
        if !windows.is_empty() {
            facts.push(format!("uptime {}", windows.join(", ")));
        }
    }
    facts.join(" · ")
}

const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--card:#f6f8fa;\
--operational:#1a7f37;--degraded:#9a6700;--down:#cf222e}\
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#f0f6fc;--muted:#9198a1;--line:#3d444d;\
--card:#151b23;--operational:#3fb950;--degraded:#d29922;--down:#f85149}}\
*{box-sizing:border-box}\
body{margin:0;background:var(--bg);color:var(--fg);font:1rem/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}\
header,main{max-width:52rem;margin:0 auto;padding:0 1rem}\
h1{font-size:1.75rem;margin:1.5rem 0 .75rem}h2{font-size:1.35rem;margin:2rem 0 .5rem}\
h3{font-size:1.15rem;margin:0}h4{font-size:1rem;margin:0}\
h3,h4{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:center;gap:.25rem .75rem}\
.muted,.figure,.facts,.ends{color:var(--muted)}\
.banner{font-size:1.2rem;font-weight:600;padding:.75rem 1rem;border:2px solid;border-radius:.5rem;margin:0 0 .5rem}\
.operational{color:var(--operational)}.degraded{color:var(--degraded)}.down{color:var(--down)}\
.badge{font-size:.95rem;font-weight:600;white-space:nowrap;border:1px solid;border-radius:1rem;padding:0 .6rem}\
.component{border:1px solid var(--line);border-radius:.5rem;background:var(--card);padding:1rem;margin:1rem 0}\
.backends{list-style:none;margin:1rem 0 0;padding:0}\
.backends>li{border-top:1px solid var(--line);padding:.75rem 0 0;margin:.75rem 0 0}\
.facts,.why,.figure{margin:.25rem 0;font-size:.95rem}\
.bar{display:grid;grid-template-columns:repeat(90,1fr);gap:1px;height:2.25rem;list-style:none;margin:.25rem 0 0;padding:0}\
.bar li{min-width:0;border-radius:1px;background:var(--operational)}\
.bar li.some{background:var(--degraded);box-shadow:inset 0 .5rem 0 var(--card)}\
.bar li.much{background:var(--down);box-shadow:inset 0 1rem 0 var(--card)}\
.ends{display:flex;justify-content:space-between;font-size:.85rem;margin:0}\
.legend{display:flex;flex-wrap:wrap;gap:.25rem 1.25rem;list-style:none;padding:0;font-size:.95rem}\
.swatch{display:inline-block;width:.8rem;height:1.1rem;vertical-align:middle;margin-right:.35rem;border-radius:1px}\
.swatch.none{background:var(--operational)}\
.swatch.some{background:var(--degraded);box-shadow:inset 0 .25rem 0 var(--bg)}\
.swatch.much{background:var(--down);box-shadow:inset 0 .5rem 0 var(--bg)}\
.scroll{overflow-x:auto}\
table{border-collapse:collapse;width:100%;font-size:.95rem}\
caption{text-align:left;color:var(--muted);padding:.25rem 0}\
th,td{text-align:left;vertical-align:top;padding:.4rem .6rem;border-bottom:1px solid var(--line)}\
th{white-space:nowrap}\
.vh{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}\
@media (forced-colors:active){.bar li,.swatch{forced-color-adjust:none;background:CanvasText}\
.bar li.some,.bar li.much,.swatch.some,.swatch.much{background:Highlight}}\
";

/// The page: a banner, each model with its backends (state, facts, bar),
/// and the incident history. `history` is `None` without a store.
fn render(snapshot: &Value, history: Option<&[store::Incident]>, now: i64) -> String {
    let models: &[Value] = snapshot["models"].as_array().map_or(&[], Vec::as_slice);
    let count = |h: Health| {
        models
            .iter()
            .filter(|m| Health::parse(m["status"].as_str().unwrap_or("")) == h)
            .count()
    };
    let (down, degraded) = (count(Health::Down), count(Health::Degraded));
    let plural = |n: usize| if n == 1 { "model" } else { "models" };
    let (overall, summary) = match (down, degraded) {
        (0, 0) => (Health::Operational, "All systems operational".to_owned()),
        (0, d) => (Health::Degraded, format!("{d} {} degraded", plural(d))),
        (n, 0) => (Health::Down, format!("{n} {} down", plural(n))),
        (n, d) => (
            Health::Down,
            format!("{n} {} down, {d} degraded", plural(n)),
        ),
    };
    let mut html = String::with_capacity(16 * 1024);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{summary} · Parlance status</title><style>{STYLE}</style></head><body>\
         <header><h1>Parlance status</h1>\
         <p class=\"banner {}\"><span aria-hidden=\"true\">{}</span> {summary}</p>\
         <p class=\"muted\">As of {}. Reload the page for the latest.</p></header><main>",
        overall.as_str(),
        overall.symbol(),
        time_element(now),
    );
    html.push_str("<section aria-labelledby=\"models\"><h2 id=\"models\">Models</h2>");
    if history.is_none() {
        html.push_str(
            "<p class=\"muted\">Uptime history is unavailable: this server runs without a \
             database, so only the live state is shown.</p>",
        );
    } else {
        let _ = write!(
            html,
            "<p class=\"muted\">Each bar is the last {DAYS} days, one cell per UTC day, oldest \
             first; downtime is the time a backend was refusing requests (a model: all its \
             backends at once). Point at a day for its figures.</p>\
             <ul class=\"legend\" aria-label=\"Legend\">\
             <li><span class=\"swatch none\" aria-hidden=\"true\"></span>No downtime</li>\
             <li><span class=\"swatch some\" aria-hidden=\"true\"></span>Down under 1% of the day</li>\
             <li><span class=\"swatch much\" aria-hidden=\"true\"></span>Down 1% of the day or more</li></ul>"
        );
    }
    if models.is_empty() {
        html.push_str("<p>No models are configured.</p>");
    }
    for (m, model) in models.iter().enumerate() {
        let name = model["name"].as_str().unwrap_or("");
        let health = Health::parse(model["status"].as_str().unwrap_or(""));
        let _ = write!(
            html,
            "<section class=\"component\" aria-labelledby=\"model-{m}\">\
             <h3 id=\"model-{m}\"><span>{}</span> {}</h3>",
            escape(name),
            badge(health)
        );
        let aliases: Vec<String> = model["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(escape))
            .collect();
        if !aliases.is_empty() {
            let _ = write!(
                html,
                "<p class=\"muted\">Also called {}</p>",
                aliases.join(", ")
            );
        }
        if history.is_some() {
            bar(&mut html, name, &model["daily"], &model["uptime"]);
        }
        let backends: &[Value] = model["backends"].as_array().map_or(&[], Vec::as_slice);
        let _ = write!(
            html,
            "<ul class=\"backends\" aria-label=\"Backends of {}\">",
            escape(name)
        );
        for backend in backends {
            let id = backend["id"].as_str().unwrap_or("");
            let health = Health::parse(backend["status"].as_str().unwrap_or(""));
            let _ = write!(
                html,
                "<li><h4><span><span class=\"vh\">Backend </span>{}</span> {}</h4>\
                 <p class=\"facts\">{}</p>",
                escape(id),
                badge(health),
                backend_facts(backend)
            );
            for reason in backend["reasons"].as_array().into_iter().flatten() {
                let _ = write!(html, "<p class=\"why\">{}</p>", cell(reason));
            }
            if history.is_some() {
                bar(&mut html, id, &backend["daily"], &backend["uptime"]);
            }
            html.push_str("</li>");
        }
        html.push_str("</ul></section>");
    }
    html.push_str(
        "</section><section aria-labelledby=\"incidents\"><h2 id=\"incidents\">Incident history</h2>",
    );
    match history {
        None => html.push_str(
            "<p class=\"muted\">Incident history is unavailable: this server runs without a \
             database.</p>",
        ),
        Some([]) => {
            let _ = write!(html, "<p>No incidents in the last {DAYS} days.</p>");
        }
        Some(incidents) => {
            let _ = write!(
                html,
                "<div class=\"scroll\" role=\"region\" aria-labelledby=\"incidents\" tabindex=\"0\">\
                 <table><caption>Incidents of the last {DAYS} days, newest first. Times are UTC.</caption>\
                 <thead><tr><th scope=\"col\">Started</th><th scope=\"col\">Ended</th>\
                 <th scope=\"col\">Duration</th><th scope=\"col\">Backend</th>\
                 <th scope=\"col\">Model</th><th scope=\"col\">Reason</th></tr></thead><tbody>"
            );
            let mut sorted: Vec<&store::Incident> = incidents.iter().collect();
            sorted.sort_by_key(|i| std::cmp::Reverse((i.opened_at, i.id)));
            for i in sorted {
                let ended = match i.closed_at {
                    Some(at) => time_element(at),
                    None => "<strong class=\"down\">ongoing</strong>".to_owned(),
                };
                let mut duration = human_duration(i.closed_at.unwrap_or(now) - i.opened_at);
                if i.closed_at.is_none() {
                    duration.push_str(" so far");
                }
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{ended}</td><td>{duration}</td><td>{}</td><td>{}</td>\
                     <td>{}</td></tr>",
                    time_element(i.opened_at),
                    escape(&i.backend),
                    escape(&i.model),
                    escape(&i.reason),
                );
            }
            html.push_str("</tbody></table></div>");
        }
    }
    html.push_str("</section></main></body></html>");
    html
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

    #[test]
    fn dates_durations_and_percentages_read_well() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_796_083_200_000), "2026-12-01");
        assert_eq!(date(951_782_400_000), "2000-02-29");
        assert_eq!(
            time_element(1_796_083_200_000 + 14 * 3_600_000 + 3 * 60_000 + 5_000),
            "<time datetime=\"2026-12-01T14:03:05Z\">2026-12-01 14:03 UTC</time>"
        );
        assert_eq!(human_duration(400), "under 1 s");
        assert_eq!(human_duration(45_000), "45 s");
        assert_eq!(human_duration(200_000), "3 min 20 s");
        assert_eq!(human_duration(660_000), "11 min");
        assert_eq!(human_duration(7_500_000), "2 h 5 min");
        assert_eq!(human_duration(3 * 86_400_000 + 4 * 3_600_000), "3 d 4 h");
        assert_eq!(percent_text(100.0, 2), "100%");
        assert_eq!(percent_text(99.999, 2), "99.99%");
        assert_eq!(percent_text(99.236, 1), "99.2%");
        let day = json!({"date": "2026-12-01", "down_ms": 660_000, "uptime": 99.236});
        assert_eq!(day_label(&day, false), "2026-12-01: 99.2% up, 11 min down");
        let day = json!({"date": "2026-12-02", "down_ms": 0, "uptime": 100.0});
        assert_eq!(
            day_label(&day, true),
            "2026-12-02 (today so far): 100% up, no downtime"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let incident = store::Incident {
            id: 1,
            backend: "b&1".into(),
            model: "<m>".into(),
            reason: "<x>".into(),
            opened_at: 1_000,
            closed_at: Some(2_000),
        };
        let page = render(
            &json!({
                "status": "ok",
                "models": [{"name": "<script>", "status": "operational", "aliases": ["<a>"],
                    "backends": [{"id": "b&1", "kind": "<k>", "status": "degraded",
                        "reasons": ["<r>"], "uptime": null, "daily": null}]}],
            }),
            Some(&[incident]),
            3_000,
        );
        assert!(
            !page.contains("<script>") && !page.contains("<a>"),
            "{page}"
        );
        assert!(!page.contains("<k>") && !page.contains("<r>") && !page.contains("<x>"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("b&amp;1"));
        assert!(page.contains("&lt;x&gt;"));
    }
}
