//! Rate limits through the router: keys from a real SQLite store, OpenAI's
//! `x-ratelimit-*` headers on every answer, 429s with `retry-after` and the
//! error object at the requests and tokens limits, key and project limits,
//! and (with `PARLANCE_TEST_REDIS_URL`) one budget shared by two instances.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use common::{chat, send, Answer, MODEL};
use serde_json::{json, Value};
use server::{AppState, Auth, Limiter};
use service::LimitDefaults;
use store::{NewApiKey, RateLimits, Store};
use tempfile::TempDir;

/// A store in a temporary directory (kept alive by the `TempDir`).
async fn temp_store() -> (Store, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
    (Store::connect(&url).await.unwrap(), dir)
}

fn memory() -> Limiter {
    Limiter::Memory(ratelimit::MemoryLimiter::new())
}

/// A limiter in the Redis at `url`, keys under `prefix`.
async fn redis(url: &str, prefix: &str) -> Limiter {
    Limiter::Redis(Box::new(
        ratelimit::RedisLimiter::connect(url, prefix).await.unwrap(),
    ))
}

/// The router over the test model, keys from `store`, limits in `limiter`.
fn app(store: &Store, limiter: Limiter, defaults: LimitDefaults) -> Router {
    let state = AppState::new([(MODEL.to_owned(), common::engine())])
        .with_auth(Auth::Keys {
            store: store.clone(),
            admin: None,
        })
        .with_rate_limits(limiter, defaults);
    server::router(state)
}

fn limits(rpm: Option<u64>, tpm: Option<u64>) -> RateLimits {
    RateLimits { rpm, tpm }
}

fn defaults(key: RateLimits, project: RateLimits) -> LimitDefaults {
    LimitDefaults { key, project }
}

/// A new organisation with one project; answers (org id, project id).
async fn project(store: &Store) -> (String, String) {
    let name = format!("rate-limited-{:08x}", rand::random::<u32>());
    let org = store.create_org(&name).await.unwrap();
    let project = store.create_project(&org.id, "default").await.unwrap();
    (org.id, project.id)
}

/// A key in the project with its own `limits`; answers its secret.
async fn key(store: &Store, (org_id, project_id): &(String, String), limits: RateLimits) -> String {
    let new = NewApiKey {
        project_id: project_id.clone(),
        name: "test".into(),
        limits,
        ..NewApiKey::default()
    };
    let (_, secret) = store.create_key(org_id, &new).await.unwrap();
    secret.expose().to_owned()
}

async fn call(app: &Router, method: Method, path: &str, key: &str, body: Option<Value>) -> Answer {
    let builder = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json");
    let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
    send(app, builder.body(body).unwrap()).await
}

async fn models(app: &Router, key: &str) -> Answer {
    call(app, Method::GET, "/v1/models", key, None).await
}

fn header(answer: &Answer, name: &str) -> String {
    answer
        .headers
        .get(name)
        .unwrap_or_else(|| {
            panic!(
                "no {name} on a {} answer: {:?}",
                answer.status, answer.headers
            )
        })
        .to_str()
        .unwrap()
        .to_owned()
}

fn number(answer: &Answer, name: &str) -> u64 {
    header(answer, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number: {:?}", answer.headers))
}

const SIX: [&str; 6] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// Asserts a 429 of type `resource` with the retry headers; answers the
/// error object.
fn assert_limited(answer: &Answer, resource: &str) -> Value {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.text()
    );
    let error = answer.error();
    assert_eq!(error["type"], resource, "{error}");
    assert_eq!(error["code"], "rate_limit_exceeded", "{error}");
    assert!(error["param"].is_null());
    assert!(number(answer, "retry-after") >= 1);
    assert!(number(answer, "retry-after-ms") >= 1);
    for name in SIX {
        header(answer, name);
    }
    error
}

#[tokio::test]
async fn every_answer_carries_the_headers_and_remaining_falls() {
    let (store, _dir) = temp_store().await;
    let tenant = project(&store).await;
    let secret = key(&store, &tenant, RateLimits::default()).await;
    let app = app(
        &store,
        memory(),
        defaults(limits(Some(10), Some(10_000)), RateLimits::default()),
    );

    let mut remaining = Vec::new();
    for _ in 0..3 {
        let answer = models(&app, &secret).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(header(&answer, "x-ratelimit-limit-requests"), "10");
        assert_eq!(header(&answer, "x-ratelimit-limit-tokens"), "10000");
        assert_eq!(header(&answer, "x-ratelimit-remaining-tokens"), "10000");
        for name in SIX {
            header(&answer, name);
        }
        remaining.push(number(&answer, "x-ratelimit-remaining-requests"));
    }
    // A bucket refills continuously, but never a whole request between two
    // of these calls' floors going up: each call takes one.
    assert!(
        remaining[0] <= 9 && remaining[1] < remaining[0] && remaining[2] < remaining[1],
        "{remaining:?}"
    );

    // 4xx answers carry them too.
    let missing = call(&app, Method::GET, "/v1/models/no-such-model", &secret, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    header(&missing, "x-ratelimit-remaining-requests");
    let bad = call(
        &app,
        Method::POST,
        "/v1/chat/completions",
        &secret,
        Some(json!({"model": MODEL})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    for name in SIX {
        header(&bad, name);
    }

    // So does a stream, with the tokens it was charged taken off.
    let body = chat("Hi", json!({"max_tokens": 1, "stream": true}));
    let streamed = call(
        &app,
        Method::POST,
        "/v1/chat/completions",
        &secret,
        Some(body),
    )
    .await;
    assert_eq!(streamed.status, StatusCode::OK, "{}", streamed.text());
    assert!(number(&streamed, "x-ratelimit-remaining-tokens") < 10_000);
    assert!(streamed.text().ends_with("data: [DONE]\n\n"));

    // No key: a 401 before any limit is looked at; /health is not limited.
    let anonymous = common::get(&app, "/v1/models").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let health = common::get(&app, "/health").await;
    assert!(!health.headers.contains_key("x-ratelimit-limit-requests"));
}

#[tokio::test]
async fn the_requests_limit_answers_429_with_retry_after() {
    let (store, _dir) = temp_store().await;
    let tenant = project(&store).await;
    let secret = key(&store, &tenant, RateLimits::default()).await;
    let app = app(
        &store,
        memory(),
        defaults(limits(Some(2), Some(1_000)), RateLimits::default()),
    );
    for _ in 0..2 {
        assert_eq!(models(&app, &secret).await.status, StatusCode::OK);
    }
    let refused = models(&app, &secret).await;
    let error = assert_limited(&refused, "requests");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("Rate limit reached for requests"),
        "{message}"
    );
    assert!(
        message.contains("Limit 2, Used 2, Requested 1"),
        "{message}"
    );
    assert_eq!(header(&refused, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(
        number(&refused, "retry-after-ms").div_ceil(1000),
        number(&refused, "retry-after")
    );
}

/// Prompt tokens of `chat("Hi", …)` as the server counts them.
async fn prompt_tokens_of_hi(app: &Router, secret: &str) -> u64 {
    let body = chat("Hi", json!({"max_tokens": 1}));
    let answer = call(
        app,
        Method::POST,
        "/v1/chat/completions",
        secret,
        Some(body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer.json()["usage"]["prompt_tokens"].as_u64().unwrap()
}

#[tokio::test]
async fn the_tokens_limit_counts_prompt_and_max_tokens() {
    let (store, _dir) = temp_store().await;
    let tenant = project(&store).await;
    let probe = key(&store, &tenant, RateLimits::default()).await;
    let app_defaults = defaults(limits(Some(100), Some(1_000_000)), RateLimits::default());
    let app = app(&store, memory(), app_defaults);
    let prompt = prompt_tokens_of_hi(&app, &probe).await;

    // A key whose tokens per minute hold exactly two of the requests below.
    let tpm = 2 * (prompt + 1);
    let secret = key(&store, &tenant, limits(None, Some(tpm))).await;
    let first = call(
        &app,
        Method::POST,
        "/v1/chat/completions",
        &secret,
        Some(chat("Hi", json!({"max_tokens": 1}))),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(header(&first, "x-ratelimit-limit-tokens"), tpm.to_string());
    assert_eq!(
        number(&first, "x-ratelimit-remaining-tokens"),
        tpm - (prompt + 1)
    );

    // Prompt + max_tokens = the whole limit: it fits the limit but not what
    // is left (refilling the missing half takes 30 s).
    let body = chat("Hi", json!({"max_tokens": prompt + 2}));
    let refused = call(
        &app,
        Method::POST,
        "/v1/chat/completions",
        &secret,
        Some(body),
    )
    .await;
    let error = assert_limited(&refused, "tokens");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("Rate limit reached for tokens"),
        "{message}"
    );
    assert!(message.contains(&format!("Requested {tpm}")), "{message}");

    // Prompt + max_tokens over the limit itself: never admitted.
    let body = chat("Hi", json!({"max_tokens": prompt + 3}));
    let too_large = call(
        &app,
        Method::POST,
        "/v1/chat/completions",
        &secret,
        Some(body),
    )
    .await;
    assert_eq!(
        too_large.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        too_large.text()
    );
    let error = too_large.error();
    assert_eq!(error["type"], "tokens");
    assert_eq!(error["code"], "rate_limit_exceeded");
    let message = error["message"].as_str().unwrap();
    assert!(message.starts_with("Request too large"), "{message}");
    assert!(
        message.contains(&format!("Limit {tpm}, Requested {}", tpm + 1)),
        "{message}"
    );
    assert_eq!(header(&too_large, "x-should-retry"), "false");
    // The refusals took nothing: at least one request's worth is left.
    assert!(number(&too_large, "x-ratelimit-remaining-tokens") >= tpm - (prompt + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_max_tokens_are_given_back_when_the_request_settles() {
    let (store, _dir) = temp_store().await;
    let tenant = project(&store).await;
    let probe = key(&store, &tenant, RateLimits::default()).await;
    let app_defaults = defaults(limits(Some(100), Some(1_000_000)), RateLimits::default());
    let app = app(&store, memory(), app_defaults);
    let prompt = prompt_tokens_of_hi(&app, &probe).await;

    // A slow refill (1000 a minute) so that what comes back is the refund.
    let tpm = 1_000;
    let secret = key(&store, &tenant, limits(None, Some(tpm))).await;
    let body = chat("Hi", json!({"max_tokens": 400, "temperature": 0}));
    let first = call(
        &app,
        Method::POST,
        "/v1/chat/completions",
        &secret,
        Some(body),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(
        number(&first, "x-ratelimit-remaining-tokens"),
        tpm - prompt - 400
    );
    let generated = first.json()["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(generated < 300, "the answer to Hi used {generated} tokens");

    let body = chat("Hi", json!({"max_tokens": 1}));
    let second = call(
        &app,
        Method::POST,
        "/v1/chat/completions",
        &secret,
        Some(body),
    )
    .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    // Charged what the first really used, plus this one's estimate; the
    // refill can only add to it.
    let floor = tpm - (prompt + generated) - (prompt + 1);
    let remaining = number(&second, "x-ratelimit-remaining-tokens");
    assert!(
        remaining >= floor && remaining < floor + 100,
        "remaining {remaining}, expected about {floor}"
    );
}

#[tokio::test]
async fn a_keys_own_limits_override_the_defaults() {
    let (store, _dir) = temp_store().await;
    let tenant = project(&store).await;
    let tight = key(&store, &tenant, limits(Some(2), None)).await;
    let plain = key(&store, &tenant, RateLimits::default()).await;
    let app = app(
        &store,
        memory(),
        defaults(limits(Some(100), Some(1_000)), RateLimits::default()),
    );
    let first = models(&app, &tight).await;
    assert_eq!(header(&first, "x-ratelimit-limit-requests"), "2");
    // The key sets no token limit: the default's applies.
    assert_eq!(header(&first, "x-ratelimit-limit-tokens"), "1000");
    assert_eq!(models(&app, &tight).await.status, StatusCode::OK);
    assert_limited(&models(&app, &tight).await, "requests");
    let other = models(&app, &plain).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(header(&other, "x-ratelimit-limit-requests"), "100");
}

#[tokio::test]
async fn a_projects_limit_is_shared_by_its_keys() {
    let (store, _dir) = temp_store().await;
    let tenant = project(&store).await;
    store
        .set_project_limits(&tenant.0, &tenant.1, limits(Some(3), None))
        .await
        .unwrap();
    let a = key(&store, &tenant, RateLimits::default()).await;
    let b = key(&store, &tenant, RateLimits::default()).await;
    let app = app(
        &store,
        memory(),
        defaults(limits(Some(100), Some(1_000)), RateLimits::default()),
    );
    assert_eq!(models(&app, &a).await.status, StatusCode::OK);
    let second = models(&app, &a).await;
    // The headers speak for the tighter bucket: the project's.
    assert_eq!(header(&second, "x-ratelimit-limit-requests"), "3");
    assert_eq!(header(&second, "x-ratelimit-remaining-requests"), "1");
    assert_eq!(header(&second, "x-ratelimit-limit-tokens"), "1000");
    assert_eq!(models(&app, &b).await.status, StatusCode::OK);
    let refused = models(&app, &b).await;
    let error = assert_limited(&refused, "requests");
    assert!(
        error["message"].as_str().unwrap().contains(&tenant.1),
        "{error}"
    );
    assert_limited(&models(&app, &a).await, "requests");
}

#[tokio::test]
async fn one_organisations_exhaustion_leaves_another_untouched() {
    let (store, _dir) = temp_store().await;
    let first = project(&store).await;
    let second = project(&store).await;
    let spent = key(&store, &first, RateLimits::default()).await;
    let fresh = key(&store, &second, RateLimits::default()).await;
    // Per-project default limits apply to every project separately.
    let app = app(
        &store,
        memory(),
        defaults(limits(Some(100), Some(1_000)), limits(Some(2), None)),
    );
    for _ in 0..2 {
        assert_eq!(models(&app, &spent).await.status, StatusCode::OK);
    }
    assert_limited(&models(&app, &spent).await, "requests");
    let other = models(&app, &fresh).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text());
    assert_eq!(header(&other, "x-ratelimit-remaining-requests"), "1");
}

#[tokio::test]
async fn two_instances_share_one_budget_through_redis() {
    let Ok(url) = std::env::var("PARLANCE_TEST_REDIS_URL") else {
        eprintln!("PARLANCE_TEST_REDIS_URL is unset: skipping the shared Redis limits test");
        return;
    };
    let prefix = format!("parlance:test:{:016x}:", rand::random::<u64>());
    let (store, _dir) = temp_store().await;
    let tenant = project(&store).await;
    let secret = key(&store, &tenant, limits(Some(3), None)).await;
    let config = defaults(limits(Some(100), Some(1_000)), RateLimits::default());
    let one = app(&store, redis(&url, &prefix).await, config);
    let two = app(&store, redis(&url, &prefix).await, config);
    assert_eq!(models(&one, &secret).await.status, StatusCode::OK);
    assert_eq!(models(&two, &secret).await.status, StatusCode::OK);
    let third = models(&one, &secret).await;
    assert_eq!(third.status, StatusCode::OK);
    assert_eq!(header(&third, "x-ratelimit-remaining-requests"), "0");
    assert_limited(&models(&two, &secret).await, "requests");
    assert_limited(&models(&one, &secret).await, "requests");
}

/// How many whole RESP commands (arrays of bulk strings) `buf` starts
/// with, and the bytes they take.
fn whole_commands(buf: &[u8]) -> (usize, usize) {
    fn line(buf: &[u8], at: usize) -> Option<(i64, usize)> {
        let end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(buf.get(at + 1..end)?)
            .ok()?
            .parse()
            .ok()?;
        Some((n, end + 2))
    }
    let (mut count, mut done, mut at) = (0, 0, 0);
    'commands: while let Some((args, next)) = line(buf, at) {
        at = next;
        for _ in 0..args {
            let Some((len, next)) = line(buf, at) else {
                break 'commands;
            };
            at = next + usize::try_from(len).unwrap() + 2;
            if at > buf.len() {
                break 'commands;
            }
        }
        count += 1;
        done = at;
    }
    (count, done)
}

/// A stand-in for a broken Redis: accepts connections and answers every
/// command with an error.
async fn broken_redis() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    let (commands, used) = whole_commands(&pending);
                    pending.drain(..used);
                    let reply = b"-ERR unavailable\r\n".repeat(commands);
                    if socket.write_all(&reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    format!("redis://{addr}")
}

#[tokio::test]
async fn a_failing_redis_lets_requests_through() {
    let (store, _dir) = temp_store().await;
    let tenant = project(&store).await;
    let secret = key(&store, &tenant, limits(Some(1), None)).await;
    let url = broken_redis().await;
    let config = defaults(limits(Some(100), Some(1_000)), RateLimits::default());
    let app = app(&store, redis(&url, "parlance:test:broken:").await, config);
    for _ in 0..3 {
        let answer = models(&app, &secret).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert!(!answer.headers.contains_key("x-ratelimit-limit-requests"));
    }
}
