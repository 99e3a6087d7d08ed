//! A request id is billed once: sending a finished request's
//! `x-request-id` again is a 400 saying it was used (the ledger batch
//! refuses the reservation: `store::REQUEST_ID_IN_LEDGER`), with no second
//! ledger row and no work done; another organisation may use the same id.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::json;
use server::{AppState, Auth};
use store::{NewApiKey, Store};

use common::{chat, send, Answer, MODEL};

async fn key(store: &Store, org: &str) -> (String, String) {
    let org = store.create_org(org).await.unwrap();
    let project = store.create_project(&org.id, "web").await.unwrap();
    let new = NewApiKey {
        project_id: project.id,
        name: "k".into(),
        ..NewApiKey::default()
    };
    let (_, secret) = store.create_key(&org.id, &new).await.unwrap();
    (org.id, secret.expose().to_owned())
}

async fn ask(app: &Router, secret: &str, request_id: &str) -> Answer {
    let body = chat("Hi", json!({"max_tokens": 2, "temperature": 0}));
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
async fn rows(store: &Store, org: &str, n: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let rows = store.list_usage(org, 0, i64::MAX, None, 100).await.unwrap();
        if rows.len() >= n || std::time::Instant::now() > deadline {
            return rows.len();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_request_id_is_refused_and_billed_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    let (acme, acme_key) = key(&store, "acme").await;
    let (other, other_key) = key(&store, "other").await;
    let state = AppState::new([(MODEL.to_owned(), common::engine())]).with_auth(Auth::Keys {
        store: store.clone(),
        admin: None,
    });
    let app = server::router(state);

    let first = ask(&app, &acme_key, "req-once").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(rows(&store, &acme, 1).await, 1);
    let again = ask(&app, &acme_key, "req-once").await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.text());
    let message = again.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("already used"), "{message}");
    assert!(store.list_reservations(&acme).await.unwrap().is_empty());
    // Another organisation's id space is its own.
    let theirs = ask(&app, &other_key, "req-once").await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.text());
    assert_eq!(rows(&store, &other, 1).await, 1);
    let acme_rows = store
        .list_usage(&acme, 0, i64::MAX, None, 100)
        .await
        .unwrap();
    assert_eq!(acme_rows.len(), 1, "billed once");
}
