//! Every validation rule, wrong type and malformed body gives an
//! `invalid_request_error` naming the parameter as OpenAI does.

use api::{
    parse_request, ApiError, ChatCompletionRequest, CompletionRequest, DetokenizeRequest,
    ErrorKind, TokenizeRequest,
};
use serde_json::{json, Value};

/// A valid chat body with `patch` merged over its top level.
fn chat_with(patch: Value) -> Value {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for (key, value) in patch.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

fn chat_error(body: Value) -> ApiError {
    parse_request::<ChatCompletionRequest>(body.to_string().as_bytes()).unwrap_err()
}

/// Asserts `body` is rejected as an invalid request about `param` with `code`.
fn assert_param(body: Value, param: &str, code: &str) {
    let err = chat_error(body.clone());
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{body}: {err:?}");
    assert_eq!(err.param(), Some(param), "{body}: {err:?}");
    assert_eq!(err.code(), Some(code), "{body}: {err:?}");
    let object = err.to_object();
    assert_eq!(object.error_type, "invalid_request_error");
    assert!(object.message.contains(param), "{}", object.message);
}

fn assert_ok(body: Value) {
    if let Err(err) = parse_request::<ChatCompletionRequest>(body.to_string().as_bytes()) {
        panic!("{body} rejected: {err:?}");
    }
}

#[test]
fn temperature_range() {
    assert_param(
        chat_with(json!({"temperature": 2.5})),
        "temperature",
        "decimal_above_max_value",
    );
    assert_param(
        chat_with(json!({"temperature": -0.1})),
        "temperature",
        "decimal_below_min_value",
    );
    assert_ok(chat_with(json!({"temperature": 0})));
    assert_ok(chat_with(json!({"temperature": 2})));
}

#[test]
fn top_p_range() {
    assert_param(
        chat_with(json!({"top_p": 1.5})),
        "top_p",
        "decimal_above_max_value",
    );
    assert_param(
        chat_with(json!({"top_p": -1})),
        "top_p",
        "decimal_below_min_value",
    );
    assert_ok(chat_with(json!({"top_p": 0.0})));
    assert_ok(chat_with(json!({"top_p": 1.0})));
}

#[test]
fn n_range() {
    assert_param(chat_with(json!({"n": 0})), "n", "integer_below_min_value");
    assert_param(chat_with(json!({"n": 129})), "n", "integer_above_max_value");
    assert_param(chat_with(json!({"n": -3})), "n", "integer_below_min_value");
    assert_ok(chat_with(json!({"n": 128})));
}

#[test]
fn token_limits_at_least_one() {
    assert_param(
        chat_with(json!({"max_tokens": 0})),
        "max_tokens",
        "integer_below_min_value",
    );
    assert_param(
        chat_with(json!({"max_completion_tokens": -5})),
        "max_completion_tokens",
        "integer_below_min_value",
    );
    assert_ok(chat_with(
        json!({"max_tokens": 1, "max_completion_tokens": 1}),
    ));
}

#[test]
fn penalty_ranges() {
    for param in ["presence_penalty", "frequency_penalty"] {
        assert_param(
            chat_with(json!({param: 2.01})),
            param,
            "decimal_above_max_value",
        );
        assert_param(
            chat_with(json!({param: -2.01})),
            param,
            "decimal_below_min_value",
        );
        assert_ok(chat_with(json!({param: -2})));
        assert_ok(chat_with(json!({param: 2})));
    }
}

#[test]
fn logit_bias_keys_and_values() {
    assert_param(
        chat_with(json!({"logit_bias": {"abc": 1}})),
        "logit_bias",
        "invalid_value",
    );
    assert_param(
        chat_with(json!({"logit_bias": {"-1": 1}})),
        "logit_bias",
        "invalid_value",
    );
    assert_param(
        chat_with(json!({"logit_bias": {"12": 101}})),
        "logit_bias",
        "invalid_value",
    );
    assert_param(
        chat_with(json!({"logit_bias": {"12": -100.5}})),
        "logit_bias",
        "invalid_value",
    );
    assert_param(
        chat_with(json!({"logit_bias": {"12": "x"}})),
        "logit_bias",
        "invalid_value",
    );
    assert_ok(chat_with(
        json!({"logit_bias": {"12": -100, "13": 100, "14": 0.5}}),
    ));
}

#[test]
fn top_logprobs_range_and_needs_logprobs() {
    assert_param(
        chat_with(json!({"logprobs": true, "top_logprobs": 21})),
        "top_logprobs",
        "integer_above_max_value",
    );
    assert_param(
        chat_with(json!({"logprobs": true, "top_logprobs": -1})),
        "top_logprobs",
        "integer_below_min_value",
    );
    assert_param(
        chat_with(json!({"top_logprobs": 2})),
        "top_logprobs",
        "invalid_value",
    );
    assert_param(
        chat_with(json!({"logprobs": false, "top_logprobs": 2})),
        "top_logprobs",
        "invalid_value",
    );
    assert_ok(chat_with(json!({"logprobs": true, "top_logprobs": 20})));
    assert_ok(chat_with(json!({"logprobs": true, "top_logprobs": 0})));
}

#[test]
fn stop_at_most_four() {
    assert_param(
        chat_with(json!({"stop": ["a", "b", "c", "d", "e"]})),
        "stop",
        "array_above_max_length",
    );
    assert_param(chat_with(json!({"stop": 5})), "stop", "invalid_type");
    assert_param(chat_with(json!({"stop": [1, 2]})), "stop", "invalid_value");
    let err = chat_error(chat_with(json!({"stop": [1]})));
    assert_eq!(
        err.to_object().message,
        "Invalid value for 'stop': expected a string or an array of strings."
    );
}

#[test]
fn bad_tool_call_in_history_names_it() {
    assert_param(
        json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": 1}]}]}),
        "messages[0].tool_calls",
        "invalid_value",
    );
    assert_param(
        chat_with(json!({"logit_bias": [1]})),
        "logit_bias",
        "invalid_type",
    );
    assert_param(
        chat_with(json!({"tool_choice": 5})),
        "tool_choice",
        "invalid_type",
    );
}

#[test]
fn messages_must_not_be_empty() {
    assert_param(
        json!({"model": "m", "messages": []}),
        "messages",
        "empty_array",
    );
}

#[test]
fn messages_must_be_present_and_an_array() {
    assert_param(
        json!({"model": "m"}),
        "messages",
        "missing_required_parameter",
    );
    assert_param(
        json!({"model": "m", "messages": "hi"}),
        "messages",
        "invalid_type",
    );
    assert_param(
        json!({"model": "m", "messages": ["hi"]}),
        "messages[0]",
        "invalid_type",
    );
}

#[test]
fn model_must_be_present_and_a_string() {
    assert_param(
        json!({"messages": [{"role": "user", "content": "x"}]}),
        "model",
        "missing_required_parameter",
    );
    assert_param(chat_with(json!({"model": 7})), "model", "invalid_type");
    assert_param(chat_with(json!({"model": null})), "model", "invalid_type");
}

#[test]
fn unknown_role_names_the_message() {
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "hi"}, {"role": "wizard", "content": "x"}]});
    assert_param(body, "messages[1].role", "invalid_value");
    let err = chat_error(json!({"model": "m", "messages": [{"role": "function", "content": "x"}]}));
    assert!(err.to_string().contains("'developer'"), "{err}");
    assert_param(
        json!({"model": "m", "messages": [{"content": "x"}]}),
        "messages[0].role",
        "missing_required_parameter",
    );
    assert_param(
        json!({"model": "m", "messages": [{"role": 3, "content": "x"}]}),
        "messages[0].role",
        "invalid_type",
    );
}

#[test]
fn message_content_faults_name_the_message() {
    let body = json!({"model": "m", "messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": 42}]});
    assert_param(body, "messages[1].content", "invalid_type");
    assert_param(
        json!({"model": "m", "messages": [{"role": "user"}]}),
        "messages[0].content",
        "missing_required_parameter",
    );
    assert_param(
        json!({"model": "m", "messages": [{"role": "user", "content": null}]}),
        "messages[0].content",
        "invalid_type",
    );
    assert_param(
        json!({"model": "m", "messages": [{"role": "user", "content": []}]}),
        "messages[0].content",
        "empty_array",
    );
    assert_param(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "assistant"}]}),
        "messages[1].content",
        "invalid_value",
    );
    assert_param(
        json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
        "messages[0].tool_call_id",
        "missing_required_parameter",
    );
}

#[test]
fn non_text_content_parts_are_rejected_by_name() {
    let image = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]});
    assert_param(image, "messages[0].content[1].type", "invalid_value");
    let bad_text = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": 5}]}]});
    assert_param(bad_text, "messages[0].content[0].text", "invalid_type");
    let no_type = json!({"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]});
    assert_param(
        no_type,
        "messages[0].content[0].type",
        "missing_required_parameter",
    );
    let not_object = json!({"model": "m", "messages": [{"role": "user", "content": ["x"]}]});
    assert_param(
        not_object,
        "messages[0].content[0].type",
        "missing_required_parameter",
    );
}

#[test]
fn wrong_types_name_the_param() {
    let cases = [
        ("temperature", json!("hot")),
        ("top_p", json!([0.5])),
        ("n", json!(1.5)),
        ("n", json!("2")),
        ("stream", json!("yes")),
        ("stream_options", json!("on")),
        ("max_tokens", json!("ten")),
        ("max_completion_tokens", json!(true)),
        ("presence_penalty", json!({})),
        ("frequency_penalty", json!("0")),
        ("logit_bias", json!([1])),
        ("logprobs", json!(1)),
        ("top_logprobs", json!(2.5)),
        ("seed", json!("s")),
        ("response_format", json!("json")),
        ("tools", json!({})),
        ("tool_choice", json!(5)),
        ("parallel_tool_calls", json!("no")),
        ("user", json!(12)),
    ];
    for (param, value) in cases {
        assert_param(chat_with(json!({param: value})), param, "invalid_type");
    }
}

#[test]
fn temperature_hot_message_reads_like_openai() {
    let err = chat_error(chat_with(json!({"temperature": "hot"})));
    assert_eq!(
        err.to_object().message,
        "Invalid type for 'temperature': expected a decimal, but got a string instead."
    );
}

#[test]
fn bad_enum_values_name_the_param() {
    assert_param(
        chat_with(json!({"response_format": {"type": "yaml"}})),
        "response_format",
        "invalid_value",
    );
    assert_param(
        chat_with(json!({"tool_choice": "sometimes"})),
        "tool_choice",
        "invalid_value",
    );
}

#[test]
fn malformed_json_is_its_own_kind() {
    for body in [
        &b"{"[..],
        b"",
        b"{\"model\": }",
        b"not json",
        b"{\"a\":1}}",
        b"\xff\xfe",
    ] {
        let err = parse_request::<ChatCompletionRequest>(body).unwrap_err();
        assert!(
            matches!(err, ApiError::MalformedJson { .. }),
            "{body:?}: {err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert_eq!(err.error_type(), "invalid_request_error");
        assert_eq!(err.param(), None);
    }
}

#[test]
fn body_must_be_an_object() {
    for body in ["[]", "null", "42", "\"model\""] {
        let err = parse_request::<ChatCompletionRequest>(body.as_bytes()).unwrap_err();
        assert!(
            matches!(err, ApiError::InvalidRequest { param: None, .. }),
            "{body}: {err:?}"
        );
    }
}

#[test]
fn deeply_nested_json_is_malformed_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = parse_request::<ChatCompletionRequest>(deep.as_bytes()).unwrap_err();
    assert!(matches!(err, ApiError::MalformedJson { .. }), "{err:?}");
}

#[test]
fn from_json_error_without_path() {
    let err = serde_json::from_str::<ChatCompletionRequest>("{\"messages\": []}").unwrap_err();
    assert_eq!(api::from_json_error(&err).param(), Some("model"));
    let err = serde_json::from_str::<ChatCompletionRequest>("{").unwrap_err();
    assert!(matches!(
        api::from_json_error(&err),
        ApiError::MalformedJson { .. }
    ));
}

fn completion_error(body: Value) -> ApiError {
    parse_request::<CompletionRequest>(body.to_string().as_bytes()).unwrap_err()
}

#[test]
fn completion_rules() {
    let cases = [
        (
            json!({"model": "m"}),
            "prompt",
            "missing_required_parameter",
        ),
        (json!({"model": "m", "prompt": []}), "prompt", "empty_array"),
        (
            json!({"model": "m", "prompt": [[1], []]}),
            "prompt[1]",
            "empty_array",
        ),
        (
            json!({"model": "m", "prompt": [-1]}),
            "prompt",
            "invalid_value",
        ),
        (json!({"model": "m", "prompt": 5}), "prompt", "invalid_type"),
        (
            json!({"model": "m", "prompt": "x", "logprobs": 6}),
            "logprobs",
            "integer_above_max_value",
        ),
        (
            json!({"model": "m", "prompt": "x", "max_tokens": -1}),
            "max_tokens",
            "integer_below_min_value",
        ),
        (
            json!({"model": "m", "prompt": "x", "n": 2, "best_of": 1}),
            "best_of",
            "invalid_value",
        ),
        (
            json!({"model": "m", "prompt": "x", "temperature": 3}),
            "temperature",
            "decimal_above_max_value",
        ),
        (
            json!({"model": "m", "prompt": "x", "echo": "no"}),
            "echo",
            "invalid_type",
        ),
    ];
    for (body, param, code) in cases {
        let err = completion_error(body.clone());
        assert_eq!(err.param(), Some(param), "{body}: {err:?}");
        assert_eq!(err.code(), Some(code), "{body}: {err:?}");
    }
    let ok: CompletionRequest =
        parse_request(br#"{"model":"m","prompt":"x","max_tokens":0,"best_of":2,"n":2}"#).unwrap();
    assert_eq!(ok.max_output_tokens(), 0);
}

#[test]
fn tokenize_wrong_types() {
    let err = parse_request::<TokenizeRequest>(br#"{"content": 5}"#).unwrap_err();
    assert_eq!(err.param(), Some("content"));
    let err = parse_request::<TokenizeRequest>(br#"{}"#).unwrap_err();
    assert_eq!(err.code(), Some("missing_required_parameter"));
    let err = parse_request::<DetokenizeRequest>(br#"{"tokens": ["a"]}"#).unwrap_err();
    assert_eq!(err.param(), Some("tokens"));
    let err = parse_request::<DetokenizeRequest>(br#"{"tokens": [5000000000]}"#).unwrap_err();
    assert_eq!(err.param(), Some("tokens"));
    assert_eq!(err.code(), Some("invalid_value"));
}
