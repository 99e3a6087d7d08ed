//! The gateway wired into the server: chat requests for remote models go
//! through the gateway to misbehaving upstreams on 127.0.0.1 (the gateway
//! crate's mock, shared by path), and each test asserts what the client
//! sees (status, error object, SSE error event) and what the ledger
//! records (rows, status, tokens, backend, model, cost). Also: `/v1/models`
//! with aliases, `/api/status` and `/status`, incidents opened and closed
//! with a backend's breaker, and a model mixing the local engine with a
//! remote backend.

mod common;
#[path = "../../gateway/tests/support/mod.rs"]
mod upstream;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use gateway::{BackendConfig, BackendKind, GatewayConfig};
use serde_json::{json, Value};
use server::{AppState, Auth};
use service::Tenant;
use store::{NewUsage, Store};

use common::Answer;
use upstream::{config, model, openai, refused_url, Behavior, Mock};

/// Reference prices: $0.01 per 1K input, $0.03 per 1K output tokens.
const INPUT_UNIT: i64 = 10_000_000;
const OUTPUT_UNIT: i64 = 30_000_000;
/// The prompt every test sends.
const PROMPT: &str = "Say hello in eight words please.";

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    org: String,
    state: AppState,
    app: Router,
}

async fn world_with(engines: Vec<(String, engine::EngineHandle)>, gw: GatewayConfig) -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    let org = store.create_org("local").await.unwrap();
    let project = store.create_project(&org.id, "local").await.unwrap();
    let tenant = Tenant {
        org_id: org.id.clone(),
        project_id: project.id,
        api_key_id: "local".into(),
        admin: true,
        ..Tenant::default()
    };
    let state = AppState::new(engines)
        .with_gateway(&gw)
        .unwrap()
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

async fn world(gw: GatewayConfig) -> World {
    world_with(Vec::new(), gw).await
}

fn body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": PROMPT}],
    })
}

async fn ask(world: &World, request_id: &str, body: Value) -> Answer {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-request-id", request_id)
        .body(Body::from(body.to_string()))
        .unwrap();
    common::send(&world.app, request).await
}

/// The ledger row of `request_id`, once every settlement has been written.
async fn row(world: &World, request_id: &str) -> Option<NewUsage> {
    world.state.meter().unwrap().flush().await;
    world
        .store
        .get_usage(&world.org, request_id)
        .await
        .ok()
        .map(|r| r.usage)
}

/// What the gateway estimates for [`PROMPT`] (characters / 4 + 1).
fn prompt_estimate() -> i64 {
    (PROMPT.chars().count() / 4 + 1) as i64
}

fn cost(prompt: i64, completion: i64) -> i64 {
    prompt * INPUT_UNIT + completion * OUTPUT_UNIT
}

/// The SSE events of a streamed answer that may end without `[DONE]`.
fn events(answer: &Answer) -> Vec<Value> {
    answer
        .text()
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let data = f.strip_prefix("data: ").expect("a data frame");
            if data == "[DONE]" {
                Value::String(data.into())
            } else {
                serde_json::from_str(data).unwrap()
            }
        })
        .collect()
}

fn content_of(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test]
async fn failover_before_first_byte_bills_one_row_for_the_backend_that_served() {
    let refused = refused_url().await;
    let hang = Mock::start("hang", Behavior::HangBeforeHeaders).await;
    let good = Mock::start("good", Behavior::Ok { words: 5 }).await;
    let world = world(config(
        vec![model(
            "chat",
            vec![
                openai("refused", &refused, 0),
                openai("hang", &hang.base_url(), 1),
                openai("good", &good.base_url(), 2),
            ],
        )],
        60_000,
    ))
    .await;
    // Whole.
    let answer = ask(&world, "req-whole", body("chat", false)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["model"], "chat");
    assert!(json["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("good"));
    let usage = row(&world, "req-whole").await.expect("a ledger row");
    assert_eq!(usage.status, "ok");
    assert_eq!(usage.backend, "good");
    assert_eq!(usage.model, "chat");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (7, 5));
    assert_eq!(usage.cost, cost(7, 5));
    // Streamed.
    let answer = ask(&world, "req-stream", body("chat", true)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let events = events(&answer);
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert!(content_of(&events).starts_with("good"));
    assert!(events.iter().all(|e| e.get("error").is_none()));
    let usage = row(&world, "req-stream").await.expect("a ledger row");
    assert_eq!(
        (usage.status.as_str(), usage.backend.as_str()),
        ("ok", "good")
    );
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (7, 5));
    assert_eq!(usage.finish_reason.as_deref(), Some("stop"));
    assert_eq!(usage.cost, cost(7, 5));
}

#[tokio::test]
async fn a_fallback_model_is_billed_and_reported_as_the_model_that_served() {
    let down = Mock::start("down", Behavior::Status(500)).await;
    let small = Mock::start("small", Behavior::Ok { words: 2 }).await;
    let mut large = model("large", vec![openai("down", &down.base_url(), 0)]);
    large.fallbacks = vec!["small".into()];
    large.aliases = vec!["gpt-4o".into()];
    let world = world(config(
        vec![
            large,
            model("small", vec![openai("small", &small.base_url(), 0)]),
        ],
        60_000,
    ))
    .await;
    let answer = ask(&world, "req-fb", body("gpt-4o", false)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["model"], "small");
    let usage = row(&world, "req-fb").await.expect("a ledger row");
    assert_eq!(
        (usage.model.as_str(), usage.backend.as_str()),
        ("small", "small")
    );
    assert_eq!(usage.status, "ok");
}

/// A stream that fails after output: `behavior` on the only backend.
async fn broken_stream(behavior: Behavior) {
    let mock = Mock::start("up", behavior).await;
    let world = world(config(
        vec![model("chat", vec![openai("only", &mock.base_url(), 0)])],
        60_000,
    ))
    .await;
    let answer = ask(&world, "req-broken", body("chat", true)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let events = events(&answer);
    let last = events.last().unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{events:?}");
    assert!(!last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("127.0.0.1"));
    assert!(events.iter().all(|e| e != "[DONE]"));
    assert_eq!(content_of(&events), "up w1 w2");
    let usage = row(&world, "req-broken").await.expect("a ledger row");
    assert_eq!(usage.status, "error");
    assert_eq!(usage.backend, "only");
    // The three words delivered; the prompt estimated (the upstream never said).
    assert_eq!(usage.completion_tokens, 3);
    assert_eq!(usage.prompt_tokens, prompt_estimate());
    assert_eq!(usage.cost, cost(prompt_estimate(), 3));
}

#[tokio::test]
async fn a_stream_dropped_after_output_ends_with_an_error_event_and_bills_what_was_delivered() {
    broken_stream(Behavior::DropMidStream { words: 3 }).await;
}

#[tokio::test]
async fn a_stream_stalled_after_output_ends_with_an_error_event_and_bills_what_was_delivered() {
    broken_stream(Behavior::StallMidStream { words: 3 }).await;
}

/// Every backend behaves as `behavior`: the client gets `status` and the
/// error `type`, and nothing is billed.
async fn all_fail(behavior: Behavior, stream: bool, status: StatusCode, kind: &str) -> Answer {
    let a = Mock::start("a", behavior.clone()).await;
    let b = Mock::start("b", behavior).await;
    let world = world(config(
        vec![model(
            "chat",
            vec![openai("a", &a.base_url(), 0), openai("b", &b.base_url(), 0)],
        )],
        60_000,
    ))
    .await;
    let answer = ask(&world, "req-fail", body("chat", stream)).await;
    assert_eq!(answer.status, status, "{}", answer.text());
    let error = answer.error();
    assert_eq!(error["type"], kind);
    assert!(!error["message"].as_str().unwrap().contains("127.0.0.1"));
    assert_eq!(row(&world, "req-fail").await, None, "nothing was served");
    let reservations = world.store.recover().await.unwrap();
    assert!(reservations.is_empty(), "the reservation was released");
    answer
}

#[tokio::test]
async fn upstream_429_everywhere_is_a_429_with_retry_after() {
    for stream in [false, true] {
        let answer = all_fail(
            Behavior::RateLimited {
                retry_after: Some(7),
            },
            stream,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
        )
        .await;
        let wait: u64 = answer.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=7).contains(&wait), "{wait}");
    }
}

#[tokio::test]
async fn upstream_500_garbage_and_refusals_are_502_with_no_internals() {
    for stream in [false, true] {
        all_fail(
            Behavior::Status(500),
            stream,
            StatusCode::BAD_GATEWAY,
            "server_error",
        )
        .await;
        all_fail(
            Behavior::Garbage,
            stream,
            StatusCode::BAD_GATEWAY,
            "server_error",
        )
        .await;
    }
    let refused = refused_url().await;
    let world = world(config(
        vec![model("chat", vec![openai("gone", &refused, 0)])],
        60_000,
    ))
    .await;
    let answer = ask(&world, "req-refused", body("chat", true)).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.error()["type"], "server_error");
    assert_eq!(row(&world, "req-refused").await, None);
}

#[tokio::test]
async fn hanging_upstreams_everywhere_are_a_504() {
    all_fail(
        Behavior::HangBeforeHeaders,
        false,
        StatusCode::GATEWAY_TIMEOUT,
        "server_error",
    )
    .await;
}

#[tokio::test]
async fn an_upstream_rejection_is_the_clients_400() {
    all_fail(
        Behavior::Status(422),
        false,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_model_is_404_and_models_lists_aliases() {
    let mock = Mock::start("m", Behavior::Ok { words: 1 }).await;
    let mut chat = model("chat", vec![openai("m", &mock.base_url(), 0)]);
    chat.aliases = vec!["gpt-4o".into()];
    let world = world(config(vec![chat], 60_000)).await;
    let answer = ask(&world, "req-404", body("nope", false)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.error()["code"], "model_not_found");
    let listed = common::get(&world.app, "/v1/models").await.json();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chat", "gpt-4o"]);
    let one = common::get(&world.app, "/v1/models/gpt-4o").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["id"], "gpt-4o");
}

#[tokio::test]
async fn an_incident_opens_with_the_breaker_and_closes_with_it_and_status_shows_it() {
    let mock = Mock::start("flaky", Behavior::Status(500)).await;
    let world = world(config(
        vec![model("chat", vec![openai("flaky", &mock.base_url(), 0)])],
        200,
    ))
    .await;
    let _background = world.state.start_background();
    // Three failures in a row open the breaker (two attempts per request).
    for i in 0..2 {
        let answer = ask(&world, &format!("req-f{i}"), body("chat", false)).await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    }
    common::wait_incidents(
        &world.store,
        Duration::from_secs(10),
        "an open incident",
        |l| l.len() == 1 && l[0].backend == "flaky" && l[0].closed_at.is_none(),
    )
    .await;
    let status = common::get(&world.app, "/api/status").await;
    assert_eq!(status.status, StatusCode::OK);
    let json = status.json();
    assert_eq!(json["status"], "outage");
    let model = &json["models"][0];
    assert_eq!(model["name"], "chat");
    assert_eq!(model["state"], "down");
    let backend = &model["backends"][0];
    assert_eq!(backend["id"], "flaky");
    assert_eq!(backend["kind"], "openai");
    assert_eq!(backend["state"], "open");
    assert!(backend["error_rate"].as_f64().unwrap() > 0.0);
    assert_eq!(backend["outstanding"], 0);
    for window in ["24h", "7d", "30d"] {
        let up = backend["uptime"][window].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&up), "{window}: {up}");
    }
    assert_eq!(json["incidents"]["open"][0]["backend"], "flaky");
    let page = common::get(&world.app, "/status").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let text = page.text();
    assert!(
        text.contains("flaky") && text.contains("</span> Down</span>"),
        "{text}"
    );
    assert!(
        text.contains("<strong class=\"down\">ongoing</strong>"),
        "{text}"
    );
    // The upstream recovers: after the cool-down a request probes, succeeds,
    // and the breaker (and the incident) closes.
    mock.set(Behavior::Ok { words: 2 });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = ask(&world, &format!("req-r{}", rand_id()), body("chat", false)).await;
        if answer.status == StatusCode::OK {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    common::wait_incidents(
        &world.store,
        Duration::from_secs(10),
        "a closed incident",
        |l| l.len() == 1 && l[0].closed_at.is_some(),
    )
    .await;
    let json = common::get(&world.app, "/api/status").await.json();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["incidents"]["open"], json!([]));
    assert_eq!(json["incidents"]["recent"][0]["backend"], "flaky");
}

fn rand_id() -> u64 {
    rand::random()
}

#[tokio::test]
async fn status_needs_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    let state = AppState::new([]).with_auth(Auth::Keys { store, admin: None });
    let app = server::router(state);
    assert_eq!(
        common::get(&app, "/v1/models").await.status,
        StatusCode::UNAUTHORIZED
    );
    let status = common::get(&app, "/api/status").await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.json()["models"], json!([]));
    assert_eq!(common::get(&app, "/status").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_model_mixing_a_dead_upstream_and_the_local_engine_is_served_by_the_engine() {
    let refused = refused_url().await;
    let local: BackendConfig = serde_json::from_value(json!({
        "id": "engine", "kind": "local", "model": common::MODEL, "priority": 1,
    }))
    .unwrap();
    assert_eq!(local.kind, BackendKind::Local);
    let world = world_with(
        vec![(common::MODEL.to_owned(), common::engine())],
        config(
            vec![model("mixed", vec![openai("dead", &refused, 0), local])],
            60_000,
        ),
    )
    .await;
    let mut request = body("mixed", false);
    request["max_tokens"] = json!(4);
    let answer = ask(&world, "req-mixed", request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["model"], "mixed");
    let usage = row(&world, "req-mixed").await.expect("a ledger row");
    assert_eq!(
        (usage.backend.as_str(), usage.status.as_str()),
        ("engine", "ok")
    );
    assert_eq!(
        usage.completion_tokens,
        json["usage"]["completion_tokens"].as_i64().unwrap()
    );
    assert_eq!(
        usage.prompt_tokens,
        json["usage"]["prompt_tokens"].as_i64().unwrap()
    );
    // Streamed through the gateway too.
    let mut request = body("mixed", true);
    request["max_tokens"] = json!(4);
    let answer = ask(&world, "req-mixed-s", request).await;
    let events = events(&answer);
    assert_eq!(events.last().unwrap(), "[DONE]", "{events:?}");
    let usage = row(&world, "req-mixed-s").await.expect("a ledger row");
    assert_eq!(
        (usage.backend.as_str(), usage.status.as_str()),
        ("engine", "ok")
    );
    assert!(usage.completion_tokens >= 1);
    // The local model itself still takes the direct path, under its own name.
    let mut request = body(common::MODEL, false);
    request["max_tokens"] = json!(2);
    let answer = ask(&world, "req-direct", request).await;
    assert_eq!(answer.status, StatusCode::OK);
    let usage = row(&world, "req-direct").await.expect("a ledger row");
    assert_eq!(usage.backend, "local");
}

#[tokio::test]
async fn shutdown_past_the_grace_drops_the_stream_and_settles_it_cancelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = Mock::start("slow", Behavior::StallMidStream { words: 2 }).await;
    let mut backend = openai("slow", &mock.base_url(), 0);
    backend.timeouts.idle_ms = 120_000;
    let world = world(config(vec![model("chat", vec![backend])], 60_000)).await;
    let state = world
        .state
        .clone()
        .with_shutdown_grace(Duration::from_millis(300));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve_until(listener, state, async {
        let _ = stopped.await;
    }));
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body("chat", true).to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
         x-request-id: req-grace\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut piece = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains(" w1") {
        let n = socket.read(&mut piece).await.unwrap();
        assert!(n > 0, "closed early");
        received.extend_from_slice(&piece[..n]);
    }
    stop.send(()).unwrap();
    let served = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("serve_until returned after the grace")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    socket.read_to_end(&mut received).await.unwrap();
    assert!(!String::from_utf8_lossy(&received).contains("[DONE]"));
    let usage = row(&world, "req-grace").await.expect("a ledger row");
    assert_eq!(usage.status, "cancelled");
    assert_eq!(
        (usage.backend.as_str(), usage.completion_tokens),
        ("slow", 2)
    );
}

#[tokio::test]
async fn a_reload_swaps_the_gateway_keeps_streams_in_flight_and_refuses_a_bad_config() {
    let old = Mock::start("old", Behavior::StallMidStream { words: 1 }).await;
    let new = Mock::start("new", Behavior::Ok { words: 2 }).await;
    let mut slow = openai("old", &old.base_url(), 0);
    slow.timeouts.idle_ms = 1_500;
    let world = world(config(vec![model("chat", vec![slow])], 200)).await;
    let _background = world.state.start_background();
    // A stream in flight on the old gateway (it will end by idle timeout).
    let app = world.app.clone();
    let in_flight = tokio::spawn(async move {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("x-request-id", "req-old")
            .body(Body::from(body("chat", true).to_string()))
            .unwrap();
        common::send(&app, request).await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while old.chat_requests() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never routed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // An incident open on the old gateway's backend.
    world
        .store
        .open_incident("old", "chat", "test", store::now_ms())
        .await
        .unwrap();
    let mut renamed = model("chat", vec![openai("new", &new.base_url(), 0)]);
    renamed.aliases = vec!["fresh".into()];
    world
        .state
        .reload_gateway(&config(vec![renamed], 200))
        .unwrap();
    let answer = ask(&world, "req-new", body("fresh", false)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(row(&world, "req-new").await.unwrap().backend, "new");
    // The old stream was not cut by the reload: it ran on to its own end.
    let old_answer = in_flight.await.unwrap();
    assert_eq!(content_of(&events(&old_answer)), "old");
    assert_eq!(row(&world, "req-old").await.unwrap().backend, "old");
    common::wait_incidents(
        &world.store,
        Duration::from_secs(10),
        "the old backend's incident closed",
        |l| l.iter().all(|i| i.closed_at.is_some()),
    )
    .await;
    // A configuration that cannot be used is refused; the new one stays.
    let mut broken = model("chat", vec![openai("x", &new.base_url(), 0)]);
    broken.fallbacks = vec!["nowhere".into()];
    let err = world
        .state
        .reload_gateway(&config(vec![broken], 200))
        .unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
    let answer = ask(&world, "req-after", body("fresh", false)).await;
    assert_eq!(answer.status, StatusCode::OK);
}

/// Regression: with an alias configured, `/v1/models` listed it and chat
/// answered it, but `/v1/completions` answered 404 `model_not_found`: the
/// endpoints resolved models differently. Now every endpoint resolves an
/// alias the same way, and bills the model it names.
#[tokio::test]
async fn every_endpoint_resolves_an_alias_like_chat() {
    let local: BackendConfig = serde_json::from_value(json!({
        "id": "engine", "kind": "local", "model": common::MODEL,
    }))
    .unwrap();
    let mut entry = model("chat-model", vec![local]);
    entry.aliases = vec!["gpt-3.5-turbo-instruct".into(), "gpt-4o".into()];
    let world = world_with(
        vec![(common::MODEL.to_owned(), common::engine())],
        config(vec![entry], 60_000),
    )
    .await;
    let post = |uri: &str, id: &str, body: Value| {
        Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("content-type", "application/json")
            .header("x-request-id", id)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let completion = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Hello", "max_tokens": 2});
    let answer = common::send(&world.app, post("/v1/completions", "req-cmpl", completion)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["model"], "chat-model");
    let usage = row(&world, "req-cmpl").await.expect("a ledger row");
    assert_eq!(
        (usage.model.as_str(), usage.status.as_str()),
        ("chat-model", "ok")
    );

    let mut chat = body("gpt-4o", false);
    chat["max_tokens"] = json!(2);
    let answer = ask(&world, "req-chat", chat).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["model"], "chat-model");

    let tokenize = json!({"model": "gpt-4o", "content": "Hello"});
    let answer = common::send(&world.app, post("/tokenize", "req-tok", tokenize)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    let get = |uri: &str| Request::builder().uri(uri).body(Body::empty()).unwrap();
    let answer = common::send(&world.app, get("/v1/models/gpt-3.5-turbo-instruct")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let answer = common::send(&world.app, get("/v1/models")).await;
    let ids: Vec<Value> = answer.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert!(ids.contains(&json!("gpt-3.5-turbo-instruct")), "{ids:?}");

    // An unknown name is the same 404 everywhere.
    let completion = json!({"model": "nope", "prompt": "Hello", "max_tokens": 2});
    let answer = common::send(&world.app, post("/v1/completions", "req-nope", completion)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text());
    assert_eq!(answer.json()["error"]["code"], "model_not_found");
}

/// A model served only by remote backends has no engine for the legacy
/// endpoint: a clear 400 naming `model`, not a 404 or a 500.
#[tokio::test]
async fn completions_for_a_remote_only_model_name_the_model() {
    let world = world(config(
        vec![model(
            "remote",
            vec![openai("dead", &refused_url().await, 0)],
        )],
        60_000,
    ))
    .await;
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/completions")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"model": "remote", "prompt": "Hi", "max_tokens": 1}).to_string(),
        ))
        .unwrap();
    let answer = common::send(&world.app, request).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert_eq!(answer.json()["error"]["param"], "model");
}
