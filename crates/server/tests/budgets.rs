//! Budgets, prices and plans at the HTTP boundary, on the real model and a
//! real SQLite store: a request that does not fit a hard limit is a 429
//! `insufficient_quota` before any work; a soft limit reached is posted to
//! the webhook once; a price recorded in the store applies to the requests
//! that start after it; a plan's quota and models are enforced.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use server::{AppState, Auth};
use store::{BudgetKind, BudgetScope, NewApiKey, Role, Store, StoredPrice};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{call, chat, send, Answer, MODEL};

/// The reference prices, picodollars per token.
const INPUT: i64 = 10_000_000;
const OUTPUT: i64 = 30_000_000;

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    org: String,
    project: String,
    key_id: String,
    secret: String,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    let org = store.create_org("acme").await.unwrap();
    let project = store.create_project(&org.id, "web").await.unwrap();
    let new = NewApiKey {
        project_id: project.id.clone(),
        name: "k".into(),
        ..NewApiKey::default()
    };
    let (key, secret) = store.create_key(&org.id, &new).await.unwrap();
    World {
        _dir: dir,
        store,
        org: org.id,
        project: project.id,
        key_id: key.id,
        secret: secret.expose().to_owned(),
    }
}

fn app(world: &World, webhook: Option<String>) -> Router {
    let state = AppState::new([(MODEL.to_owned(), common::engine())])
        .with_auth(Auth::Keys {
            store: world.store.clone(),
            admin: None,
        })
        .with_budget_webhook(webhook);
    server::router(state)
}

async fn ask(app: &Router, secret: &str, request_id: &str, body: Value) -> Answer {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/chat/completions")
        .header("authorization", format!("Bearer {secret}"))
        .header("content-type", "application/json")
        .header("x-request-id", request_id)
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, request).await
}

/// Waits (bounded) until the organisation's ledger has `n` rows.
async fn ledger_rows(store: &Store, org: &str, n: usize) -> Vec<store::UsageRecord> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let rows = store
            .list_usage(org, 0, i64::MAX, None, 1000)
            .await
            .unwrap();
        if rows.len() >= n || std::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_hard_limit_is_refused_before_any_work() {
    let w = world().await;
    let app = app(&w, None);
    let body = chat("Hi", json!({"max_tokens": 2, "temperature": 0}));
    let first = ask(&app, &w.secret, "probe", body.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let prompt = first.json()["usage"]["prompt_tokens"].as_i64().unwrap();
    let spent = w
        .store
        .list_usage(&w.org, 0, i64::MAX, None, 10)
        .await
        .unwrap()[0]
        .usage
        .cost;
    // Room for the spend so far plus one token less than another worst case.
    let worst = prompt * INPUT + 2 * OUTPUT;
    w.store
        .set_budget(
            &w.org,
            BudgetScope::Key,
            &w.key_id,
            BudgetKind::Monthly,
            Some(spent + worst - 1),
            None,
        )
        .await
        .unwrap();
    let refused = ask(&app, &w.secret, "over", body.clone()).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text()
    );
    let error = refused.error();
    assert_eq!(error["type"], "insufficient_quota");
    assert_eq!(error["code"], "insufficient_quota");
    assert!(error["message"].as_str().unwrap().contains("quota"));
    assert!(w.store.list_reservations(&w.org).await.unwrap().is_empty());
    assert_eq!(ledger_rows(&w.store, &w.org, 1).await.len(), 1);
    // A smaller request still fits.
    let small = chat("Hi", json!({"max_tokens": 1, "temperature": 0}));
    let ok = ask(&app, &w.secret, "fits", small).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaching_the_soft_limit_posts_the_webhook_once() {
    let w = world().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/budget-hook", listener.local_addr().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
            let _ = tx.send(String::from_utf8_lossy(&got).into_owned());
        }
    });
    // Any spend reaches a soft limit of one picodollar.
    w.store
        .set_budget(
            &w.org,
            BudgetScope::Project,
            &w.project,
            BudgetKind::Monthly,
            None,
            Some(1),
        )
        .await
        .unwrap();
    let app = app(&w, Some(url));
    for i in 0..2 {
        let body = chat("Hi", json!({"max_tokens": 1, "temperature": 0}));
        let answer = ask(&app, &w.secret, &format!("soft-{i}"), body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }
    let posted = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
        .await
        .expect("the webhook was not called")
        .unwrap();
    assert!(posted.starts_with("POST /budget-hook HTTP/1.1"), "{posted}");
    let body: Value = serde_json::from_str(posted.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["type"], "budget.soft_limit_reached");
    assert_eq!(body["scope"], "project");
    assert_eq!(body["scope_id"], w.project.as_str());
    assert_eq!(body["soft_limit_usd"], "0.000000000001");
    // Both settled; the second did not post again.
    assert_eq!(ledger_rows(&w.store, &w.org, 2).await.len(), 2);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "the soft limit was reported twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_price_applies_to_requests_that_start_after_it() {
    let w = world().await;
    let app = app(&w, None);
    let body = chat("Hi", json!({"max_tokens": 3, "temperature": 0}));
    let before = ask(&app, &w.secret, "p-before", body.clone()).await;
    assert_eq!(before.status, StatusCode::OK);
    w.store
        .set_price(&StoredPrice {
            model: MODEL.into(),
            effective_at: billing::Timestamp::now().unix_millis(),
            input: 7,
            cached_input: 7,
            output: 11,
        })
        .await
        .unwrap();
    let after = ask(&app, &w.secret, "p-after", body).await;
    assert_eq!(after.status, StatusCode::OK);
    let rows = ledger_rows(&w.store, &w.org, 2).await;
    let cost_of = |id: &str, input: i64, output: i64| {
        let row = &rows
            .iter()
            .find(|r| r.usage.request_id == id)
            .unwrap()
            .usage;
        (
            row.cost,
            row.prompt_tokens * input + row.completion_tokens * output,
        )
    };
    let (cost, expected) = cost_of("p-before", INPUT, OUTPUT);
    assert_eq!(cost, expected);
    let (cost, expected) = cost_of("p-after", 7, 11);
    assert_eq!(cost, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_enforce_their_models_and_monthly_quota() {
    let w = world().await;
    let s = &w.store;
    let alice = s
        .create_user("alice@example.com", "Alice", "pw-123456")
        .await
        .unwrap();
    s.set_role(&w.org, &alice.id, Role::Member).await.unwrap();
    let now = billing::Timestamp::now();
    // The default plan (Free) allows every model and has tokens left.
    let left = service::plans::admit(s, &w.org, &alice.id, MODEL, now)
        .await
        .unwrap();
    assert_eq!(left.plan, "free");
    assert_eq!(left.remaining, Some(100_000));

    let lite = billing::Plan {
        id: "lite".into(),
        name: "Lite".into(),
        monthly_price: billing::Money::ZERO,
        quota: billing::Quota::Messages(1),
        models: billing::AllowedModels::Only(vec![MODEL.into()]),
    };
    s.put_plan("lite", &serde_json::to_string(&lite).unwrap())
        .await
        .unwrap();
    s.assign_plan(&w.org, &alice.id, "lite").await.unwrap();
    let err = api::ApiError::from(
        service::plans::admit(s, &w.org, &alice.id, "other-model", now)
            .await
            .unwrap_err(),
    );
    assert_eq!(server::status_for(err.kind()), StatusCode::FORBIDDEN);
    service::plans::admit(s, &w.org, &alice.id, MODEL, now)
        .await
        .unwrap();
    s.record_usage(&store::NewUsage {
        endpoint: String::new(),
        request_id: "alice-1".into(),
        org_id: w.org.clone(),
        user_id: Some(alice.id.clone()),
        model: MODEL.into(),
        backend: "local".into(),
        prompt_tokens: 3,
        completion_tokens: 4,
        status: "ok".into(),
        created_at: now.unix_millis(),
        ..store::NewUsage::default()
    })
    .await
    .unwrap();
    let err = api::ApiError::from(
        service::plans::admit(s, &w.org, &alice.id, MODEL, now)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.error_type(), "insufficient_quota");
    // A plan change takes effect at once.
    s.put_plan(
        "plus",
        &serde_json::to_string(&billing::Plan::plus()).unwrap(),
    )
    .await
    .unwrap();
    s.assign_plan(&w.org, &alice.id, "plus").await.unwrap();
    let (plan, left) = service::plans::remaining(s, &w.org, &alice.id, now)
        .await
        .unwrap();
    assert_eq!(plan.id, "plus");
    assert_eq!(left.used.tokens, 7);
    assert_eq!(left.remaining, Some(10_000_000 - 7));
}

async fn admin_key(store: &Store, org: &str, project: &str) -> String {
    let new = NewApiKey {
        project_id: project.to_owned(),
        name: "admin".into(),
        kind: store::KeyKind::Admin,
        ..NewApiKey::default()
    };
    store
        .create_key(org, &new)
        .await
        .unwrap()
        .1
        .expose()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_over_http_are_admin_only_audited_and_isolated() {
    let w = world().await;
    let app = app(&w, None);
    let admin = admin_key(&w.store, &w.org, &w.project).await;
    let other = w.store.create_org("other").await.unwrap();
    let other_project = w.store.create_project(&other.id, "p").await.unwrap();
    let other_admin = admin_key(&w.store, &other.id, &other_project.id).await;

    let set = json!({"scope": "project", "scope_id": w.project, "hard_limit": "25.50", "soft_limit": "20"});
    let answer = call(
        &app,
        Method::POST,
        "/v1/organization/budgets",
        &admin,
        Some(set.clone()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let budget = answer.json();
    assert_eq!(budget["hard_limit"], "25.500000");
    assert_eq!(budget["available"], "25.500000");
    assert_eq!(budget["kind"], "monthly");

    // A project key may not; another organisation's admin finds nothing.
    let answer = call(
        &app,
        Method::POST,
        "/v1/organization/budgets",
        &w.secret,
        Some(set.clone()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = call(
        &app,
        Method::POST,
        "/v1/organization/budgets",
        &other_admin,
        Some(set),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text());
    let path = format!("/v1/organization/budgets/project/{}", w.project);
    let answer = call(&app, Method::DELETE, &path, &other_admin, None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = call(
        &app,
        Method::GET,
        "/v1/organization/budgets",
        &other_admin,
        None,
    )
    .await;
    assert_eq!(answer.json()["data"], json!([]));

    // Bad input names its parameter.
    let bad = json!({"scope": "project", "scope_id": w.project, "hard_limit": "-3"});
    let answer = call(
        &app,
        Method::POST,
        "/v1/organization/budgets",
        &admin,
        Some(bad),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error()["param"], "hard_limit");
    let bad = json!({"scope": "galaxy", "hard_limit": "1"});
    let answer = call(
        &app,
        Method::POST,
        "/v1/organization/budgets",
        &admin,
        Some(bad),
    )
    .await;
    assert_eq!(answer.error()["param"], "scope");

    // Prepaid: top up, list, delete.
    let prepaid = json!({"scope": "organization", "kind": "prepaid", "hard_limit": "0"});
    let answer = call(
        &app,
        Method::POST,
        "/v1/organization/budgets",
        &admin,
        Some(prepaid),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let top_up = json!({"scope": "organization", "amount": "0.000001"});
    let answer = call(
        &app,
        Method::POST,
        "/v1/organization/budgets/top_up",
        &admin,
        Some(top_up),
    )
    .await;
    assert_eq!(answer.json()["available"], "0.000001");
    let answer = call(&app, Method::GET, "/v1/organization/budgets", &admin, None).await;
    assert_eq!(answer.json()["data"].as_array().unwrap().len(), 2);
    let answer = call(&app, Method::DELETE, &path, &admin, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["deleted"], true);

    let audit = w.store.list_audit(&w.org, None, 100).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.entry.action.as_str()).collect();
    assert_eq!(
        actions.iter().filter(|a| a.starts_with("budget.")).count(),
        4,
        "{actions:?}"
    );
    assert!(w
        .store
        .list_audit(&other.id, None, 100)
        .await
        .unwrap()
        .iter()
        .all(|e| !e.entry.action.starts_with("budget.")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_cache_hits_are_reported_and_billed_at_the_cached_price() {
    let w = world().await;
    // Distinct cached and uncached input prices, so the cost shows which.
    w.store
        .set_price(&StoredPrice {
            model: MODEL.into(),
            effective_at: 0,
            input: 1_000,
            cached_input: 100,
            output: 7,
        })
        .await
        .unwrap();
    let app = app(&w, None);
    let system = "You are a careful assistant for a bakery. ".repeat(12);
    let body = |question: &str, stream: bool| {
        json!({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ],
            "max_tokens": 3,
            "temperature": 0,
            "stream": stream,
            "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
        })
    };
    let first = ask(&app, &w.secret, "c-1", body("What do you sell?", false)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let second = ask(&app, &w.secret, "c-2", body("When do you open?", false)).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    let usage = second.json()["usage"].clone();
    let cached = usage["prompt_tokens_details"]["cached_tokens"]
        .as_i64()
        .unwrap();
    let prompt = usage["prompt_tokens"].as_i64().unwrap();
    assert!(cached >= 64 && cached < prompt, "{usage}");
    assert_eq!(cached % 16, 0, "whole blocks only: {usage}");

    let streamed = ask(&app, &w.secret, "c-3", body("Do you deliver?", true)).await;
    let events = streamed.events();
    let usage_event = events
        .iter()
        .find(|e| !e["usage"].is_null())
        .expect("a usage chunk");
    let stream_cached = usage_event["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_i64()
        .unwrap();
    assert!(stream_cached >= cached, "{usage_event}");

    let rows = ledger_rows(&w.store, &w.org, 3).await;
    for (id, expect_cached) in [("c-2", cached), ("c-3", stream_cached)] {
        let row = &rows
            .iter()
            .find(|r| r.usage.request_id == id)
            .unwrap()
            .usage;
        assert_eq!(row.cached_tokens, expect_cached, "{id}");
        let uncached = row.prompt_tokens - row.cached_tokens;
        assert_eq!(
            row.cost,
            uncached * 1_000 + row.cached_tokens * 100 + row.completion_tokens * 7,
            "{id}"
        );
    }
    let first_row = &rows
        .iter()
        .find(|r| r.usage.request_id == "c-1")
        .unwrap()
        .usage;
    assert_eq!(first_row.cached_tokens, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_a_503_to_retry_not_a_500() {
    use sqlx::Connection;
    let w = world().await;
    let app = app(&w, None);
    // Another writer holds SQLite's write lock past the busy timeout.
    let url = format!("sqlite://{}?mode=rwc", w._dir.path().join("t.db").display());
    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let body = chat("Hi", json!({"max_tokens": 1}));
    let answer = ask(&app, &w.secret, "locked", body).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.text()
    );
    assert_eq!(answer.headers["retry-after"], "1");
    assert_eq!(answer.error()["type"], "server_error");
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    // Nothing was reserved or billed; the next request goes through.
    assert!(w.store.list_reservations(&w.org).await.unwrap().is_empty());
    let body = chat("Hi", json!({"max_tokens": 1}));
    let answer = ask(&app, &w.secret, "after", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}
