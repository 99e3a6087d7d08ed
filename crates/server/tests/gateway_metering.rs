//! Routed (gateway) requests in the server, the details of their metering
//! and routing: the open reservation names the backend that serves (so a
//! crash is recovered under the right name), an upstream's
//! `usage.prompt_tokens_details.cached_tokens` reaches the ledger at the
//! cached price, and a conversation (`x-parlance-conversation`) or `user`
//! sticks to one backend; `/api/status` names each backend as the ledger
//! does. Upstreams are the gateway crate's mocks.

mod common;
#[path = "../../gateway/tests/support/mod.rs"]
mod upstream;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use gateway::GatewayConfig;
use serde_json::{json, Value};
use server::{AppState, Auth};
use service::Tenant;
use store::{NewUsage, Store};

use upstream::{config, model, openai, Behavior, Mock};

/// Stored prices for `chat`: per uncached input, cached input, output token.
const INPUT: i64 = 10_000_000;
const CACHED: i64 = 1_000_000;
const OUTPUT: i64 = 30_000_000;

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    org: String,
    state: AppState,
    app: Router,
}

async fn world(gw: GatewayConfig) -> World {
    world_with(Vec::new(), gw).await
}

async fn world_with(engines: Vec<(String, engine::EngineHandle)>, gw: GatewayConfig) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.expect("store");
    let org = store.create_org("local").await.expect("org");
    let project = store
        .create_project(&org.id, "local")
        .await
        .expect("project");
    store
        .set_price(&store::StoredPrice {
            model: "chat".into(),
            effective_at: 0,
            input: INPUT,
            cached_input: CACHED,
            output: OUTPUT,
        })
        .await
        .expect("a price");
    let tenant = Tenant {
        org_id: org.id.clone(),
        project_id: project.id,
        api_key_id: "local".into(),
        admin: true,
        ..Tenant::default()
    };
    let state = AppState::new(engines)
        .with_gateway(&gw)
        .expect("valid gateway")
        .with_auth(Auth::Open {
            store: store.clone(),
            tenant,
        });
    World {
        _dir: dir,
        store,
        org: org.id,
        app: server::router(state.clone()),
        state,
    }
}

fn request(request_id: &str, body: Value, conversation: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-request-id", request_id);
    if let Some(conversation) = conversation {
        builder = builder.header("x-parlance-conversation", conversation);
    }
    builder
        .body(Body::from(body.to_string()))
        .expect("a request")
}

fn body(stream: bool) -> Value {
    json!({
        "model": "chat",
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello in eight words please."}],
    })
}

async fn row(world: &World, request_id: &str) -> NewUsage {
    world.state.meter().expect("metered").flush().await;
    world
        .store
        .get_usage(&world.org, request_id)
        .await
        .expect("a ledger row")
        .usage
}

#[tokio::test]
async fn a_routed_stream_labels_its_reservation_with_the_backend_that_serves() {
    // Two words, then silence: the reservation stays open until the idle
    // timeout (400 ms) ends the stream.
    let stall = Mock::start("stall", Behavior::StallMidStream { words: 2 }).await;
    let world = world(config(
        vec![model("chat", vec![openai("stall", &stall.base_url(), 0)])],
        60_000,
    ))
    .await;
    let app = world.app.clone();
    let answer =
        tokio::spawn(
            async move { common::send(&app, request("req-label", body(true), None)).await },
        );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let labelled = loop {
        let open = world
            .store
            .list_reservations(&world.org)
            .await
            .expect("list");
        if let Some(r) = open.iter().find(|r| r.reserved.request_id == "req-label") {
            if r.reserved.backend.as_deref() == Some("stall") {
                break r.reserved.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reservation never named its backend: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(labelled.model.as_deref(), Some("chat"));
    let answer = answer.await.expect("the request task");
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.text().contains("\"error\""), "{}", answer.text());
    let usage = row(&world, "req-label").await;
    assert_eq!(
        (usage.status.as_str(), usage.backend.as_str()),
        ("error", "stall")
    );
}

fn cached_usage() -> Value {
    json!({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12,
           "prompt_tokens_details": {"cached_tokens": 6}})
}

#[tokio::test]
async fn upstream_cached_tokens_are_billed_at_the_cached_price() {
    let whole = json!({
        "id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "up",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there"},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": cached_usage(),
    });
    let mock = Mock::start(
        "cache",
        Behavior::Raw {
            content_type: "application/json",
            body: whole.to_string(),
        },
    )
    .await;
    let world = world(config(
        vec![model("chat", vec![openai("cache", &mock.base_url(), 0)])],
        60_000,
    ))
    .await;
    let expected = 4 * INPUT + 6 * CACHED + 2 * OUTPUT;

    let answer = common::send(&world.app, request("req-whole", body(false), None)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let usage = row(&world, "req-whole").await;
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.completion_tokens
        ),
        (10, 6, 2)
    );
    assert_eq!(usage.cost, expected);

    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1,
               "model": "up", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let events = [
        chunk(json!({"role": "assistant", "content": "hi"}), Value::Null),
        chunk(json!({"content": " there"}), json!("stop")),
        json!({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1,
               "model": "up", "choices": [], "usage": cached_usage()}),
    ];
    let mut sse: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    sse.push_str("data: [DONE]\n\n");
    mock.set(Behavior::Raw {
        content_type: "text/event-stream",
        body: sse,
    });
    let answer = common::send(&world.app, request("req-stream", body(true), None)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.text().ends_with("data: [DONE]\n\n"),
        "{}",
        answer.text()
    );
    let usage = row(&world, "req-stream").await;
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.completion_tokens
        ),
        (10, 6, 2)
    );
    assert_eq!(usage.cost, expected);
}

/// The backend that answered, from the mock's first word (its name).
fn served_by(answer: &common::Answer) -> String {
    let json = answer.json();
    let content = json["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    content.split(' ').next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_conversation_or_a_user_sticks_to_one_backend() {
    let a = Mock::start("a", Behavior::Ok { words: 2 }).await;
    let b = Mock::start("b", Behavior::Ok { words: 2 }).await;
    let world = world(config(
        vec![model(
            "chat",
            vec![openai("a", &a.base_url(), 0), openai("b", &b.base_url(), 0)],
        )],
        60_000,
    ))
    .await;
    // Twenty requests of one conversation: one backend (by chance alone,
    // all twenty on one of two backends has odds of 2 in a million).
    let mut seen = Vec::new();
    for i in 0..20 {
        let answer = common::send(
            &world.app,
            request(&format!("conv-{i}"), body(false), Some("conv-1")),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        seen.push(served_by(&answer));
    }
    assert!(seen.iter().all(|s| s == &seen[0]), "{seen:?}");
    // Likewise for the request's `user`.
    let mut seen = Vec::new();
    for i in 0..20 {
        let mut body = body(false);
        body["user"] = json!("user-7");
        let answer = common::send(&world.app, request(&format!("user-{i}"), body, None)).await;
        assert_eq!(answer.status, StatusCode::OK);
        seen.push(served_by(&answer));
    }
    assert!(seen.iter().all(|s| s == &seen[0]), "{seen:?}");
    // Without either, both backends serve.
    let mut seen = std::collections::HashSet::new();
    for i in 0..40 {
        let answer =
            common::send(&world.app, request(&format!("free-{i}"), body(false), None)).await;
        seen.insert(served_by(&answer));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn the_status_names_each_backend_as_the_ledger_does() {
    let up = Mock::start("up", Behavior::Ok { words: 2 }).await;
    let world = world_with(
        vec![(common::MODEL.to_owned(), common::engine())],
        config(
            vec![model("chat", vec![openai("up", &up.base_url(), 0)])],
            60_000,
        ),
    )
    .await;
    // A routed request's row names the backend id; a direct one `local`.
    let answer = common::send(&world.app, request("req-routed", body(false), None)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(row(&world, "req-routed").await.backend, "up");
    let mut direct = body(false);
    direct["model"] = json!(common::MODEL);
    direct["max_tokens"] = json!(1);
    let answer = common::send(&world.app, request("req-direct", direct, None)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let direct_row = row(&world, "req-direct").await.backend;

    let status = common::get(&world.app, "/api/status").await.json();
    let backend_of = |model: &str| {
        status["models"]
            .as_array()
            .expect("models")
            .iter()
            .find(|m| m["name"] == model)
            .map(|m| m["backends"][0].clone())
            .expect("listed")
    };
    let routed = backend_of("chat");
    assert_eq!(routed["id"], "up");
    assert_eq!(routed["ledger_backend"], "up");
    let local = backend_of(common::MODEL);
    assert_eq!(local["id"], format!("{}#local", common::MODEL));
    assert_eq!(local["ledger_backend"], json!(direct_row));
}
