//! Random bytes, random JSON and randomly mutated requests at every POST
//! route: no answer is ever a 5xx, every error is the OpenAI error object,
//! and the server still answers afterwards.

mod common;

use std::sync::OnceLock;

use axum::http::StatusCode;
use axum::Router;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{json, Map, Value};
use tokio::runtime::Runtime;

const ROUTES: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/tokenize",
    "/detokenize",
];

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().unwrap())
}

fn app() -> &'static Router {
    static APP: OnceLock<Router> = OnceLock::new();
    APP.get_or_init(common::app)
}

/// Posts `body` to `route` and checks the answer is not a server error.
fn check(route: &str, body: Vec<u8>) -> Result<(), TestCaseError> {
    let answer = runtime().block_on(common::post_bytes(app(), route, body));
    prop_assert!(
        !answer.status.is_server_error(),
        "{route} answered {}: {}",
        answer.status,
        answer.text()
    );
    if !answer.status.is_success() {
        answer.error();
    }
    Ok(())
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-10i64..10).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-3.0f64..3.0).prop_map(Value::from),
        "[a-z ]{0,8}".prop_map(Value::String),
        prop::sample::select(vec![
            "user",
            "system",
            "assistant",
            "tool",
            "text",
            common::MODEL
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const FIELDS: [&str; 22] = [
    "model",
    "messages",
    "prompt",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "response_format",
    "tools",
    "content",
    "tokens",
    "with_pieces",
];

/// A valid request for `route`, then one or two fields replaced by random
/// JSON (never an unbounded output: `max_tokens` stays a small number).
fn mutated(route: usize, edits: Vec<(usize, Value)>) -> Value {
    let mut body = match route {
        0 => common::chat("Hi", json!({"max_tokens": 3})),
        1 => json!({"model": common::MODEL, "prompt": "Hello", "max_tokens": 3}),
        2 => json!({"content": "Hello"}),
        _ => json!({"tokens": [1, 2, 3]}),
    };
    for (field, value) in edits {
        let name = FIELDS[field % FIELDS.len()];
        let value = match (name, value) {
            ("max_tokens" | "max_completion_tokens" | "n", value) => {
                json!(value.as_i64().unwrap_or(2).clamp(-2, 4))
            }
            (_, value) => value,
        };
        body[name] = value;
    }
    body
}

/// Runs `property` over `cases` inputs drawn from `strategy`.
fn fuzz<S: Strategy>(
    cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(ProptestConfig::with_cases(cases));
    if let Err(err) = runner.run(&strategy, property) {
        panic!("{err}");
    }
}

#[test]
fn fuzz_every_post_route_then_still_answers() {
    fuzz(
        96,
        (0usize..4, prop::collection::vec(any::<u8>(), 0..256)),
        |(route, bytes)| check(ROUTES[route], bytes),
    );
    fuzz(96, (0usize..4, any_json()), |(route, value)| {
        check(ROUTES[route], value.to_string().into_bytes())
    });
    let edits = prop::collection::vec((0usize..FIELDS.len(), any_json()), 1..3);
    fuzz(96, (0usize..4, edits), |(route, edits)| {
        check(
            ROUTES[route],
            mutated(route, edits).to_string().into_bytes(),
        )
    });

    // The server still answers, errors and generations alike.
    runtime().block_on(async {
        let answer = common::post_bytes(app(), "/v1/chat/completions", "{\"x\":").await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        let answer = common::get(app(), "/health").await;
        assert_eq!(answer.status, StatusCode::OK);
        let body = common::chat("Hi", json!({"max_tokens": 2}));
        let answer = common::post(app(), "/v1/chat/completions", body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    });
}
