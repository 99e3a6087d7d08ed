//! `POST /v1/completions` against the real default model: the four prompt
//! shapes, `n`, logprobs, and the streamed form.

mod common;

use axum::http::StatusCode;
use common::{app, post, MODEL};
use serde_json::json;

const PATH: &str = "/v1/completions";

#[tokio::test]
async fn string_prompt() {
    let body = json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 3, "suffix": null, "user": "u"});
    let answer = post(&app(), PATH, body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["object"], "text_completion");
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
    let choice = &body["choices"][0];
    assert!(choice["text"].is_string());
    assert!(choice["logprobs"].is_null());
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn default_max_tokens_is_sixteen() {
    let body = json!({"model": MODEL, "prompt": "The list of numbers: 1, 2, 3,", "temperature": 0});
    let body = post(&app(), PATH, body).await.json();
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() <= 16);
}

#[tokio::test]
async fn list_of_strings_gives_a_choice_per_prompt_and_n() {
    let body = json!({"model": MODEL, "prompt": ["One", "Two"], "n": 2, "max_tokens": 2});
    let body = post(&app(), PATH, body).await.json();
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
    }
    assert_eq!(body["usage"]["completion_tokens"], 8);
}

#[tokio::test]
async fn token_id_prompts() {
    let app = app();
    let ids = common::engine()
        .tokenizer()
        .encode("Hello, my name is", false, true);
    let body = json!({"model": MODEL, "prompt": ids, "max_tokens": 2});
    let answer = post(&app, PATH, body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["usage"]["prompt_tokens"], ids.len());

    let body = json!({"model": MODEL, "prompt": [ids.clone(), ids[..2].to_vec()], "max_tokens": 2});
    let body = post(&app, PATH, body).await.json();
    assert_eq!(body["choices"].as_array().unwrap().len(), 2);
    assert_eq!(body["usage"]["prompt_tokens"], ids.len() + 2);
}

#[tokio::test]
async fn legacy_logprobs_shape() {
    let body = json!({"model": MODEL, "prompt": "Hello", "max_tokens": 3, "logprobs": 2, "temperature": 0});
    let body = post(&app(), PATH, body).await.json();
    let choice = &body["choices"][0];
    let logprobs = &choice["logprobs"];
    let tokens = logprobs["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 3);
    let joined: String = tokens.iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(joined, choice["text"].as_str().unwrap());
    assert_eq!(logprobs["token_logprobs"].as_array().unwrap().len(), 3);
    assert_eq!(logprobs["text_offset"][0], 0);
    assert!(logprobs["top_logprobs"][0].as_object().unwrap().len() <= 2);
}

#[tokio::test]
async fn stream_ends_with_usage_and_done() {
    let body = json!({
        "model": MODEL, "prompt": "Hello", "max_tokens": 3, "stream": true,
        "stream_options": {"include_usage": true},
    });
    let answer = post(&app(), PATH, body).await;
    assert_eq!(answer.status, StatusCode::OK);
    let events = answer.events();
    assert_eq!(events.last(), Some(&json!("[DONE]")));
    let usage_event = &events[events.len() - 2];
    assert_eq!(usage_event["choices"], json!([]));
    assert_eq!(usage_event["usage"]["completion_tokens"], 3);
    let finishes = events
        .iter()
        .filter(|e| e["choices"][0]["finish_reason"].is_string())
        .count();
    assert_eq!(finishes, 1);
    for event in &events[..events.len() - 1] {
        assert_eq!(event["object"], "text_completion");
        assert_eq!(event["id"], events[0]["id"]);
    }
}

#[tokio::test]
async fn empty_prompt_is_400() {
    let body = json!({"model": MODEL, "prompt": [], "max_tokens": 2});
    let answer = post(&app(), PATH, body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert_eq!(answer.error()["param"], "prompt");
}
