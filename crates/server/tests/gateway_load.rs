//! Failover under load through the real server: 1,000 chat requests (half
//! streamed, half whole), 50 at a time, through the in-process router with
//! a real SQLite store and metering on, over two mock upstreams of one
//! model (the gateway crate's mock, shared by path). One upstream is killed
//! halfway (listener and open connections closed) and brought back later.
//!
//! Asserted: at least 99.9% succeed; every success has exactly one ledger
//! row (`ok`, the backend that served, the upstream's token counts, the
//! cost of those); a failure has no row or an `error` row for what was
//! delivered; no reservation is left; the killed backend's breaker opens
//! and an incident is recorded in the store; once it is back its breaker
//! closes and the incident is closed.

mod common;
#[path = "../../gateway/tests/support/mod.rs"]
mod upstream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures_util::StreamExt;
use gateway::BreakerState;
use serde_json::{json, Value};
use server::{AppState, Auth};
use service::Tenant;
use store::Store;

use upstream::{config, eventually, model, openai, Behavior, Mock};

const REQUESTS: u64 = 1_000;
const CONCURRENCY: usize = 50;
/// Words (completion tokens) in every mock answer; its prompt count is 7.
const WORDS: usize = 3;
/// Reference prices: $0.01 per 1K input, $0.03 per 1K output tokens.
const INPUT_UNIT: i64 = 10_000_000;
const OUTPUT_UNIT: i64 = 30_000_000;

/// What the client saw of one request.
struct Seen {
    ok: bool,
    /// The backend that served, from the answer's first word (each mock
    /// starts its answer with its own name).
    backend: Option<String>,
    detail: String,
}

async fn ask(app: &axum::Router, request_id: &str, stream: bool) -> Seen {
    let body = json!({
        "model": "chat",
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello in eight words please."}],
    });
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-request-id", request_id)
        .body(Body::from(body.to_string()))
        .expect("a valid request");
    let answer = common::send(app, request).await;
    let text = answer.text();
    if answer.status != StatusCode::OK {
        return Seen {
            ok: false,
            backend: None,
            detail: format!("{}: {text}", answer.status),
        };
    }
    let content = if stream {
        let mut content = String::new();
        let mut done = false;
        for frame in text.split("\n\n").filter(|f| !f.is_empty()) {
            let data = frame.strip_prefix("data: ").unwrap_or(frame);
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let event: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            if event.get("error").is_some() || event.is_null() {
                return Seen {
                    ok: false,
                    backend: None,
                    detail: format!("stream failed: {text}"),
                };
            }
            if let Some(piece) = event["choices"][0]["delta"]["content"].as_str() {
                content.push_str(piece);
            }
        }
        if !done {
            return Seen {
                ok: false,
                backend: None,
                detail: format!("no [DONE]: {text}"),
            };
        }
        content
    } else {
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        json["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let backend = content.split(' ').next().unwrap_or_default().to_owned();
    Seen {
        ok: backend == "a" || backend == "b",
        backend: Some(backend),
        detail: content,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_load_through_the_server_bills_each_success_once() {
    let a = Arc::new(Mock::start("a", Behavior::Ok { words: WORDS }).await);
    let b = Mock::start("b", Behavior::Ok { words: WORDS }).await;
    let mut gw = config(
        vec![model(
            "chat",
            vec![openai("a", &a.base_url(), 0), openai("b", &b.base_url(), 0)],
        )],
        200,
    );
    gw.health.enabled = true;

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.expect("store");
    let org = store.create_org("local").await.expect("org");
    let project = store
        .create_project(&org.id, "local")
        .await
        .expect("project");
    let tenant = Tenant {
        org_id: org.id.clone(),
        project_id: project.id,
        api_key_id: "local".into(),
        admin: true,
        ..Tenant::default()
    };
    let state = AppState::new(Vec::new())
        .with_gateway(&gw)
        .expect("valid gateway")
        .with_auth(Auth::Open {
            store: store.clone(),
            tenant,
        });
    let app = server::router(state.clone());
    let _background = state.start_background();

    let done = Arc::new(AtomicU64::new(0));
    let killer = {
        let (a, done) = (a.clone(), done.clone());
        tokio::spawn(async move {
            let halfway = eventually(Duration::from_secs(300), || {
                done.load(Ordering::SeqCst) >= REQUESTS / 2
            })
            .await;
            a.kill();
            halfway
        })
    };
    let seen: Vec<(String, Seen)> = futures_util::stream::iter(0..REQUESTS)
        .map(|i| {
            let (app, done) = (app.clone(), done.clone());
            async move {
                let id = format!("load-{i}");
                let seen = ask(&app, &id, i % 2 == 0).await;
                done.fetch_add(1, Ordering::SeqCst);
                (id, seen)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    assert!(
        killer.await.expect("the killer task"),
        "halfway was reached"
    );

    let succeeded = seen.iter().filter(|(_, s)| s.ok).count() as u64;
    let failures: Vec<&str> = seen
        .iter()
        .filter(|(_, s)| !s.ok)
        .map(|(_, s)| s.detail.as_str())
        .collect();
    eprintln!(
        "{succeeded} of {REQUESTS} succeeded; a took {}, b took {}; failures: {failures:?}",
        a.chat_requests(),
        b.chat_requests()
    );
    assert!(
        succeeded * 1000 >= REQUESTS * 999,
        "{succeeded} of {REQUESTS} succeeded: {failures:?}"
    );
    assert!(b.chat_requests() > REQUESTS / 2, "b took over");

    // The ledger: one row per success, for the backend that served.
    state.meter().expect("metered").flush().await;
    let rows = store
        .list_usage(&org.id, 0, i64::MAX, None, 10_000)
        .await
        .expect("the ledger");
    let mut by_id: HashMap<&str, Vec<&store::NewUsage>> = HashMap::new();
    for row in &rows {
        by_id
            .entry(row.usage.request_id.as_str())
            .or_default()
            .push(&row.usage);
    }
    let words = WORDS as i64;
    for (id, seen) in &seen {
        let rows = by_id.get(id.as_str()).map_or(&[][..], Vec::as_slice);
        if seen.ok {
            assert_eq!(rows.len(), 1, "{id}: one row, got {rows:?}");
            let row = rows[0];
            assert_eq!(row.status, "ok", "{id}");
            assert_eq!(Some(&row.backend), seen.backend.as_ref(), "{id}");
            assert_eq!(row.model, "chat");
            assert_eq!((row.prompt_tokens, row.completion_tokens), (7, words));
            assert_eq!(row.cost, 7 * INPUT_UNIT + words * OUTPUT_UNIT, "{id}");
        } else {
            assert!(rows.len() <= 1, "{id}: at most one row, got {rows:?}");
            if let Some(row) = rows.first() {
                assert_eq!(row.status, "error", "{id}: a failure is billed as such");
                assert!(row.completion_tokens <= words, "{id}");
            }
        }
    }
    assert_eq!(rows.len(), by_id.len(), "no request id has two rows");
    assert!(rows.len() as u64 >= succeeded && rows.len() as u64 <= REQUESTS);
    let left = store
        .list_reservations(&org.id)
        .await
        .expect("reservations");
    assert!(left.is_empty(), "no reservation is left: {left:?}");

    // The killed backend's breaker opened and an incident was recorded.
    common::wait_incidents(
        &store,
        Duration::from_secs(30),
        "an incident open for a",
        |l| l.iter().any(|i| i.backend == "a" && i.closed_at.is_none()),
    )
    .await;
    assert!(
        !store
            .list_incidents(0, 100)
            .await
            .expect("incidents")
            .iter()
            .any(|i| i.backend == "b"),
        "b never failed"
    );

    // Back again: health checks close the breaker, and the incident.
    a.restart().await;
    let gateway = state.gateway();
    let closed = eventually(Duration::from_secs(30), || {
        gateway
            .status()
            .iter()
            .any(|s| s.id == "a" && s.state == BreakerState::Closed)
    })
    .await;
    assert!(closed, "a's breaker closes once it is back");
    common::wait_incidents(
        &store,
        Duration::from_secs(30),
        "a's incident closed",
        |l| l.iter().any(|i| i.backend == "a") && l.iter().all(|i| i.closed_at.is_some()),
    )
    .await;
}
