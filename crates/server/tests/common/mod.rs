//! Shared set-up of the server tests: one engine on the real default model
//! per test binary, the router over it, and small request helpers.
#![allow(dead_code)]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use engine::{EngineConfig, EngineHandle};
use serde_json::Value;
use server::AppState;
use tower::ServiceExt;

/// The id the test model is served under.
pub const MODEL: &str = testkit::SMOLLM2;

/// The engine shared by a test binary's tests.
pub fn engine() -> EngineHandle {
    static ENGINE: OnceLock<EngineHandle> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let config = EngineConfig {
                threads: 2,
                ..EngineConfig::default()
            };
            EngineHandle::start(&testkit::model_path(MODEL), config).unwrap()
        })
        .clone()
}

pub fn state() -> AppState {
    AppState::new([(MODEL.to_owned(), engine())])
}

pub fn app() -> Router {
    server::router(state())
}

/// A response read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!("not JSON ({err}): {}", String::from_utf8_lossy(&self.body))
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `data:` payloads of an SSE body, `[DONE]` included as a string.
    pub fn events(&self) -> Vec<Value> {
        let text = self.text();
        assert!(text.ends_with("\n\n"), "unterminated stream: {text}");
        text.split("\n\n")
            .filter(|frame| !frame.is_empty())
            .map(|frame| {
                let data = frame
                    .strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("not a data frame: {frame:?}"));
                if data == "[DONE]" {
                    Value::String(data.into())
                } else {
                    serde_json::from_str(data).unwrap()
                }
            })
            .collect()
    }

    /// The error object, checking it has exactly the four keys.
    pub fn error(&self) -> Value {
        let body = self.json();
        let error = body["error"].clone();
        let mut keys: Vec<_> = error
            .as_object()
            .unwrap_or_else(|| panic!("no error object: {body}"))
            .keys()
            .cloned()
            .collect();
        keys.sort();
        assert_eq!(keys, ["code", "message", "param", "type"], "{body}");
        error
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// A request with `Authorization: Bearer {key}` and, if given, a JSON body.
pub async fn call(
    app: &Router,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    send(app, request).await
}

pub async fn post_bytes(app: &Router, path: &str, body: impl Into<Body>) -> Answer {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    send(app, request).await
}

pub async fn post(app: &Router, path: &str, body: Value) -> Answer {
    post_bytes(app, path, body.to_string()).await
}

pub async fn get(app: &Router, path: &str) -> Answer {
    let request = Request::builder().uri(path).body(Body::empty()).unwrap();
    send(app, request).await
}

/// A chat request for one user message.
pub fn chat(content: &str, extra: Value) -> Value {
    let mut body = serde_json::json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

/// Polls the store's incidents until `condition` holds on them, or panics
/// naming `what` once `within` has passed.
pub async fn wait_incidents(
    store: &store::Store,
    within: std::time::Duration,
    what: &str,
    condition: impl Fn(&[store::Incident]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let listed = store.list_incidents(0, 100).await.expect("incidents");
        if condition(&listed) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: incidents are {listed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
