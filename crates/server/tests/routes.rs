//! Every non-generating route, and every error the router itself returns:
//! models, health, tokenize/detokenize, unknown model, malformed JSON,
//! parameter errors naming `param`, 404/405 fallbacks, 413, request ids.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{app, chat, get, post, post_bytes, send, MODEL};
use serde_json::json;

#[tokio::test]
async fn lists_and_retrieves_models_with_and_without_v1() {
    let app = app();
    for path in ["/v1/models", "/models"] {
        let answer = get(&app, path).await;
        assert_eq!(answer.status, StatusCode::OK);
        let body = answer.json();
        assert_eq!(body["object"], "list");
        assert_eq!(body["data"][0]["id"], MODEL);
        assert_eq!(body["data"][0]["object"], "model");
        assert!(body["data"][0]["created"].is_u64());
        assert!(body["data"][0]["owned_by"].is_string());
    }
    for path in [format!("/v1/models/{MODEL}"), format!("/models/{MODEL}")] {
        let answer = get(&app, &path).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json()["id"], MODEL);
    }
}

#[tokio::test]
async fn model_ids_may_contain_slashes() {
    let state = server::AppState::new([("org/name-1".to_owned(), common::engine())]);
    let app = server::router(state);
    let answer = get(&app, "/v1/models/org/name-1").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["id"], "org/name-1");
}

#[tokio::test]
async fn unknown_model_is_404_model_not_found() {
    let app = app();
    let answer = get(&app, "/v1/models/no-such/model").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let error = answer.error();
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");

    let mut body = chat("hi", json!({"max_tokens": 1}));
    body["model"] = json!("gpt-nope");
    for path in ["/v1/chat/completions", "/chat/completions"] {
        let answer = post(&app, path, body.clone()).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(answer.error()["code"], "model_not_found");
    }
    let answer = post(
        &app,
        "/v1/completions",
        json!({"model": "gpt-nope", "prompt": "x", "max_tokens": 1}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.error()["param"], "model");
    let answer = post(&app, "/tokenize", json!({"content": "x", "model": "nope"})).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_answers() {
    let answer = get(&app(), "/health").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["status"], "ok");
}

#[tokio::test]
async fn tokenize_and_detokenize_round_trip() {
    let app = app();
    let text = "Hello world, ça va?";
    let answer = post(&app, "/tokenize", json!({"content": text})).await;
    assert_eq!(answer.status, StatusCode::OK);
    let tokens = answer.json()["tokens"].clone();
    let expected: Vec<u32> = common::engine().tokenizer().encode(text, false, true);
    assert_eq!(tokens, json!(expected));

    let answer = post(&app, "/v1/detokenize", json!({"tokens": tokens})).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["content"], text);

    let answer = post(
        &app,
        "/tokenize",
        json!({"content": "Hello world", "with_pieces": true}),
    )
    .await;
    let pieces = answer.json()["tokens"].clone();
    assert_eq!(pieces[0]["piece"], "Hello");
    assert!(pieces[0]["id"].is_u64());
}

#[tokio::test]
async fn tokenize_errors_name_the_param() {
    let app = app();
    let answer = post(&app, "/tokenize", json!({"content": 5})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error()["param"], "content");
    let answer = post(&app, "/detokenize", json!({"tokens": [4_000_000_000u32]})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error()["param"], "tokens");
    let answer = post(&app, "/detokenize", json!({"tokens": "abc"})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error()["param"], "tokens");
}

#[tokio::test]
async fn malformed_json_is_400_on_every_post_route() {
    let app = app();
    for path in [
        "/v1/chat/completions",
        "/v1/completions",
        "/tokenize",
        "/detokenize",
    ] {
        for body in ["{", "not json", "", "[1,2]", "null"] {
            let answer = post_bytes(&app, path, body).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path} {body:?}");
            assert_eq!(answer.error()["type"], "invalid_request_error");
        }
    }
}

#[tokio::test]
async fn invalid_fields_name_their_param() {
    let app = app();
    let cases = [
        (json!({"temperature": 3}), "temperature"),
        (json!({"top_p": 1.5}), "top_p"),
        (json!({"n": 0}), "n"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"presence_penalty": -3}), "presence_penalty"),
        (json!({"frequency_penalty": 2.5}), "frequency_penalty"),
        (json!({"temperature": "hot"}), "temperature"),
        (json!({"top_logprobs": 3}), "top_logprobs"),
        (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
    ];
    for (extra, param) in cases {
        let answer = post(&app, "/v1/chat/completions", chat("hi", extra.clone())).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{extra}");
        assert_eq!(answer.error()["param"], param, "{extra}");
    }
    let body = json!({"model": MODEL, "messages": []});
    let answer = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error()["param"], "messages");
    let body = json!({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]});
    let answer = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error()["param"], "messages[0].role");
    let body = json!({"messages": [{"role": "user", "content": "x"}]});
    let answer = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error()["param"], "model");
    let body = json!({"model": MODEL, "prompt": "x", "temperature": -1});
    let answer = post(&app, "/v1/completions", body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error()["param"], "temperature");
}

#[tokio::test]
async fn token_ids_outside_the_vocabulary_are_400() {
    let body = json!({"model": MODEL, "prompt": [1, 2, 999_999], "max_tokens": 1});
    let answer = post(&app(), "/v1/completions", body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert_eq!(answer.error()["param"], "prompt");
}

#[tokio::test]
async fn prompt_too_long_is_context_length_exceeded() {
    let answer = post(
        &app(),
        "/v1/chat/completions",
        chat("hi", json!({"max_tokens": 1_000_000})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert_eq!(answer.error()["code"], "context_length_exceeded");
}

#[tokio::test]
async fn unknown_route_is_404_error_object() {
    let app = app();
    // `/` is the web app's page (routes/web); other unknown paths are 404s.
    for path in ["/v1/nothing", "/nothing", "/v2/models"] {
        let answer = get(&app, path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.error()["type"], "invalid_request_error");
        assert!(answer.headers.contains_key("x-request-id"));
    }
}

#[tokio::test]
async fn wrong_method_is_405_error_object() {
    let app = app();
    for (method, path) in [
        (Method::PUT, "/v1/chat/completions"),
        (Method::DELETE, "/v1/models"),
        (Method::PUT, "/completions"),
        (Method::GET, "/tokenize"),
    ] {
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let answer = send(&app, request).await;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        answer.error();
        assert!(answer.headers.contains_key("x-request-id"));
    }
}

#[tokio::test]
async fn oversized_body_is_413_error_object() {
    let app = server::router(common::state().with_body_limit(1024));
    let big = format!(
        "{{\"model\":\"{MODEL}\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "a".repeat(4096)
    );
    let answer = post_bytes(&app, "/v1/chat/completions", big.clone()).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error()["code"], "request_too_large");

    // Without a content-length (a streamed body), the limit still holds.
    let chunks = big
        .into_bytes()
        .chunks(100)
        .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
        .collect::<Vec<_>>();
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    let answer = post_bytes(&app, "/v1/chat/completions", body).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn default_body_limit_is_8_mib() {
    let app = app();
    let answer = post_bytes(&app, "/v1/completions", vec![b' '; 9 << 20]).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    answer.error();
}

#[tokio::test]
async fn request_id_is_generated_or_echoed() {
    let app = app();
    let first = get(&app, "/v1/models").await;
    let second = get(&app, "/v1/models").await;
    let a = first.headers["x-request-id"].to_str().unwrap().to_owned();
    let b = second.headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(!a.is_empty());
    assert_ne!(a, b);

    let request = Request::builder()
        .uri("/v1/models/missing")
        .header("x-request-id", "client-id-42")
        .body(Body::empty())
        .unwrap();
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.headers["x-request-id"], "client-id-42");
}

#[tokio::test]
async fn overloaded_engine_is_503_with_retry_after() {
    let config = engine::EngineConfig {
        threads: 2,
        queue_capacity: 1,
        ..engine::EngineConfig::default()
    };
    let path = testkit::model_path(MODEL);
    let engine = engine::EngineHandle::start(&path, config).unwrap();
    let app = server::router(server::AppState::new([(MODEL.to_owned(), engine)]));
    // 128 submissions in a burst against a queue of one: the engine cannot
    // drain them as fast as they come, so some are refused.
    let body = chat("Hi", json!({"n": 128, "max_tokens": 1}));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let answer = post(&app, "/v1/chat/completions", body.clone()).await;
        statuses.push(answer.status);
        if answer.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(answer.headers["retry-after"], "1");
            let error = answer.error();
            assert_eq!(error["type"], "server_error");
            assert_eq!(error["code"], "server_overloaded");
            return;
        }
    }
    panic!("never overloaded: {statuses:?}");
}

/// A copy of the test model whose chat template key is renamed, so the
/// engine finds no template.
fn model_without_template(dir: &std::path::Path) -> std::path::PathBuf {
    let mut bytes = std::fs::read(testkit::model_path(MODEL)).unwrap();
    let key = b"tokenizer.chat_template";
    let at = bytes
        .windows(key.len())
        .position(|window| window == key)
        .expect("the test model has a chat template");
    bytes[at + key.len() - 1] = b'X';
    let path = dir.join("no-template.gguf");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn chat_on_a_model_without_template_is_400_naming_messages() {
    let dir = tempfile::tempdir().unwrap();
    let config = engine::EngineConfig {
        threads: 1,
        ..engine::EngineConfig::default()
    };
    let engine = engine::EngineHandle::start(&model_without_template(dir.path()), config).unwrap();
    assert!(!engine.info().has_chat_template);
    let app = server::router(server::AppState::new([("plain".to_owned(), engine)]));
    let mut body = chat("Hi", json!({"max_tokens": 1}));
    body["model"] = json!("plain");
    let answer = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert_eq!(answer.error()["param"], "messages");
    // Plain completions still work on it.
    let body = json!({"model": "plain", "prompt": "Hello", "max_tokens": 1});
    let answer = post(&app, "/v1/completions", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}
