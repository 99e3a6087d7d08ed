//! `POST /v1/chat/completions` against the real default model: whole and
//! streamed answers, `n`, limits, stop strings, seeds and logprobs.

mod common;

use axum::http::StatusCode;
use common::{app, chat, post, MODEL};
use serde_json::{json, Value};

const PATH: &str = "/v1/chat/completions";

#[tokio::test]
async fn whole_answer_has_the_openai_shape() {
    let body = chat(
        "Say hello.",
        json!({"max_tokens": 4, "seed": 1, "metadata": {"a": "b"}, "store": false, "user": "u1", "service_tier": "auto"}),
    );
    let answer = post(&app(), PATH, body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert!(answer.headers.contains_key("x-request-id"));
    let body = answer.json();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], MODEL);
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["content"].is_string());
    assert!(choice["message"]["refusal"].is_null());
    assert!(choice["logprobs"].is_null());
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let usage = &body["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(usage["completion_tokens"].as_u64().unwrap() <= 4);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        )
    );
}

#[tokio::test]
async fn content_parts_and_all_roles_are_accepted() {
    let body = json!({
        "model": MODEL,
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "system", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": " there"}]},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"},
        ],
        "max_completion_tokens": 2,
    });
    let answer = post(&app(), PATH, body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test]
async fn max_tokens_one_finishes_with_length() {
    let app = app();
    for limit in [
        json!({"max_tokens": 1}),
        json!({"max_completion_tokens": 1}),
    ] {
        let answer = post(&app, PATH, chat("Tell me a long story.", limit)).await;
        let body = answer.json();
        assert_eq!(body["choices"][0]["finish_reason"], "length", "{body}");
        assert_eq!(body["usage"]["completion_tokens"], 1);
    }
}

#[tokio::test]
async fn n_gives_n_choices_and_counts_their_tokens() {
    let body = chat(
        "Name a colour.",
        json!({"n": 2, "max_tokens": 3, "seed": 7}),
    );
    let body = post(&app(), PATH, body).await.json();
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[1]["index"], 1);
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn same_seed_gives_same_text() {
    let app = app();
    let body = chat(
        "Write a word.",
        json!({"max_tokens": 6, "seed": 42, "temperature": 1.0}),
    );
    let first = post(&app, PATH, body.clone()).await.json();
    let second = post(&app, PATH, body).await.json();
    assert_eq!(
        first["choices"][0]["message"]["content"],
        second["choices"][0]["message"]["content"]
    );
}

#[tokio::test]
async fn stop_string_ends_the_answer_without_it() {
    let app = app();
    let base = chat(
        "Count from 1 to 10, separated by commas.",
        json!({"max_tokens": 24, "temperature": 0}),
    );
    let full = post(&app, PATH, base.clone()).await.json();
    let text = full["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    // Stop on the second character of the text (whatever the model says).
    let stop: String = text.chars().skip(1).take(1).collect();
    assert!(!stop.is_empty(), "answer too short: {text:?}");
    let mut body = base.clone();
    body["stop"] = json!(stop);
    let stopped = post(&app, PATH, body).await.json();
    let choice = &stopped["choices"][0];
    assert_eq!(choice["finish_reason"], "stop", "{stopped}");
    let content = choice["message"]["content"].as_str().unwrap();
    assert!(!content.contains(&stop), "{content:?} contains {stop:?}");
    assert!(text.starts_with(content));

    let mut body = base;
    body["stop"] = json!(["\u{1}never", stop]);
    let listed = post(&app, PATH, body).await.json();
    assert_eq!(
        listed["choices"][0]["message"]["content"],
        choice["message"]["content"]
    );
}

// Greedy, so the answer is plain text: a token that is only part of a
// UTF-8 character is sent lossily (its exact bytes are in `bytes`).
#[tokio::test]
async fn logprob_tokens_concatenate_to_the_content() {
    let body = chat(
        "Say hello.",
        json!({"max_tokens": 6, "logprobs": true, "top_logprobs": 2, "temperature": 0}),
    );
    let body = post(&app(), PATH, body).await.json();
    let choice = &body["choices"][0];
    let content = choice["message"]["content"].as_str().unwrap();
    let entries = choice["logprobs"]["content"].as_array().unwrap();
    assert!(!entries.is_empty());
    let joined: String = entries
        .iter()
        .map(|e| e["token"].as_str().unwrap())
        .collect();
    assert_eq!(joined, content);
    for entry in entries {
        assert!(entry["logprob"].as_f64().unwrap() <= 0.0);
        let bytes: Vec<u8> = serde_json::from_value(entry["bytes"].clone()).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            entry["token"].as_str().unwrap()
        );
        assert_eq!(entry["top_logprobs"].as_array().unwrap().len(), 2);
    }
}

/// The data payloads of a streamed answer, with the stream rules checked:
/// same id/created/model everywhere, role first, one finish per choice.
fn check_stream(events: &[Value], choices: usize, include_usage: bool) -> Vec<String> {
    assert_eq!(events.last(), Some(&json!("[DONE]")));
    let chunks = &events[..events.len() - 1];
    let id = &chunks[0]["id"];
    let created = &chunks[0]["created"];
    let mut texts = vec![String::new(); choices];
    let mut finishes = vec![0; choices];
    let mut opened = vec![false; choices];
    for chunk in chunks {
        assert_eq!(&chunk["id"], id);
        assert_eq!(&chunk["created"], created);
        assert_eq!(chunk["model"], MODEL);
        assert_eq!(chunk["object"], "chat.completion.chunk");
        if include_usage {
            assert!(chunk.as_object().unwrap().contains_key("usage"), "{chunk}");
        } else {
            assert!(!chunk.as_object().unwrap().contains_key("usage"), "{chunk}");
        }
        for choice in chunk["choices"].as_array().unwrap() {
            let index = choice["index"].as_u64().unwrap() as usize;
            if !opened[index] {
                assert_eq!(choice["delta"]["role"], "assistant", "{chunk}");
                opened[index] = true;
            } else {
                assert!(choice["delta"].get("role").is_none());
            }
            assert_eq!(finishes[index], 0, "chunk after finish: {chunk}");
            if let Some(text) = choice["delta"]["content"].as_str() {
                texts[index].push_str(text);
            }
            if !choice["finish_reason"].is_null() {
                finishes[index] += 1;
            }
        }
    }
    assert_eq!(finishes, vec![1; choices]);
    if include_usage {
        let last = &chunks[chunks.len() - 1];
        assert_eq!(last["choices"], json!([]));
        assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
        for chunk in &chunks[..chunks.len() - 1] {
            assert!(chunk["usage"].is_null());
        }
    }
    texts
}

#[tokio::test]
async fn stream_has_the_openai_shape() {
    let app = app();
    let body = chat(
        "Say hello.",
        json!({"max_tokens": 5, "stream": true, "seed": 5}),
    );
    let answer = post(&app, PATH, body.clone()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    assert!(answer.headers.contains_key("x-request-id"));
    let streamed = check_stream(&answer.events(), 1, false);

    let mut whole = body;
    whole["stream"] = json!(false);
    let whole = post(&app, PATH, whole).await.json();
    assert_eq!(
        whole["choices"][0]["message"]["content"],
        streamed[0].as_str()
    );
}

#[tokio::test]
async fn stream_with_include_usage_and_n() {
    let body = chat(
        "Say hello.",
        json!({"max_tokens": 4, "stream": true, "n": 2, "stream_options": {"include_usage": true}}),
    );
    let answer = post(&app(), PATH, body).await;
    let events = answer.events();
    check_stream(&events, 2, true);
    let usage = &events[events.len() - 2]["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() <= 8);
}

#[tokio::test]
async fn stream_with_logprobs_concatenates_to_content() {
    let body = chat(
        "Say hello.",
        json!({"max_tokens": 5, "stream": true, "logprobs": true, "temperature": 0}),
    );
    let events = post(&app(), PATH, body).await.events();
    let texts = check_stream(&events, 1, false);
    let mut joined = String::new();
    for chunk in &events[..events.len() - 1] {
        for choice in chunk["choices"].as_array().unwrap() {
            if let Some(entries) = choice["logprobs"]["content"].as_array() {
                for entry in entries {
                    joined.push_str(entry["token"].as_str().unwrap());
                }
            }
        }
    }
    assert_eq!(joined, texts[0]);
}

#[tokio::test]
async fn stream_max_tokens_one_has_one_length_finish() {
    let body = chat("Tell me a story.", json!({"max_tokens": 1, "stream": true}));
    let events = post(&app(), PATH, body).await.events();
    check_stream(&events, 1, false);
    let finishes: Vec<_> = events
        .iter()
        .filter_map(|e| e["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finishes, ["length"]);
}

/// An engine whose KV cache cannot hold any chat prompt: every generation
/// is accepted, then fails inside the engine.
fn failing_app() -> axum::Router {
    let config = engine::EngineConfig {
        threads: 1,
        kv_cache_tokens: 8,
        ..engine::EngineConfig::default()
    };
    let engine = engine::EngineHandle::start(&testkit::model_path(MODEL), config).unwrap();
    server::router(server::AppState::new([(MODEL.to_owned(), engine)]))
}

#[tokio::test]
async fn failure_after_the_stream_began_is_an_error_event_then_the_end() {
    let app = failing_app();
    let body = chat(
        "Tell me about the sea.",
        json!({"max_tokens": 4, "stream": true}),
    );
    let answer = post(&app, PATH, body).await;
    assert_eq!(answer.status, StatusCode::OK);
    let events = answer.events();
    let last = events.last().unwrap();
    let error = last["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(error["type"], "server_error");
    assert_eq!(error.len(), 4);
    assert!(!events.contains(&json!("[DONE]")));

    let body = chat("Tell me about the sea.", json!({"max_tokens": 4}));
    let answer = post(&app, PATH, body).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.error()["type"], "server_error");
}

/// A request without `max_tokens` is capped by the server's
/// `default_max_tokens` (streamed and whole, direct path); its own
/// `max_tokens` wins.
#[tokio::test]
async fn default_max_tokens_caps_a_request_that_sets_none() {
    let app = server::router(common::state().with_default_max_tokens(3));
    let no_eos = json!({"logit_bias": {"0": -100, "2": -100}, "temperature": 0});
    let answer = post(&app, PATH, chat("Write a long story.", no_eos.clone())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    let mut own = no_eos;
    own["max_tokens"] = json!(5);
    let answer = post(&app, PATH, chat("Write a long story.", own)).await;
    assert_eq!(answer.json()["usage"]["completion_tokens"], 5);
}
