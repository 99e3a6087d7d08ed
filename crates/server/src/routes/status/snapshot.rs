//! The status document (`GET /api/status`, and what the page is drawn
//! from): every model of the routing catalog with its backends' live state,
//! health and reasons, uptime windows and 90-day bars, then the open and
//! recent incidents and the overall status.

use gateway::BackendStatus;
use serde_json::{json, Value};

use super::health::{backend_health, model_health, model_state};
use super::history::{daily_down, daily_json, incidents, uptime};
use crate::state::AppState;

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

pub(super) async fn snapshot(state: &AppState) -> Value {
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
