//! Property tests: no JSON value and no byte string can panic the parser,
//! and every rejection is a well-formed error object.

use api::{
    parse_request, ApiError, ChatCompletionRequest, CompletionRequest, DetokenizeRequest,
    ErrorKind, RequestBody, TokenizeRequest,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Field names the parsers know, so that random objects hit real fields.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "include_usage",
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
    "json_schema",
    "tools",
    "tool_choice",
    "tool_calls",
    "tool_call_id",
    "function",
    "name",
    "arguments",
    "user",
    "prompt",
    "best_of",
    "echo",
    "suffix",
    "tokens",
    "add_special",
    "with_pieces",
];

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{0,8}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        proptest::sample::select(
            &[
                "user",
                "assistant",
                "system",
                "developer",
                "tool",
                "text",
                "image_url",
                "wizard",
                "",
                "auto",
                "json_object"
            ][..]
        )
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Parsing must return; a rejection must render four keys and be a 400.
fn check<T: RequestBody>(body: &[u8]) {
    if let Err(err) = parse_request::<T>(body) {
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err:?}");
        let value = serde_json::to_value(err.to_response()).expect("error serialises");
        assert_eq!(value["error"].as_object().map(Map::len), Some(4));
        if let ApiError::InvalidRequest { message, .. } = &err {
            assert!(!message.is_empty());
        }
    }
}

fn check_all(body: &[u8]) {
    check::<ChatCompletionRequest>(body);
    check::<CompletionRequest>(body);
    check::<TokenizeRequest>(body);
    check::<DetokenizeRequest>(body);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_never_panics(value in arb_json()) {
        check_all(value.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_chat_like_objects_never_panic(
        messages in prop::collection::vec(arb_json(), 0..4),
        extra in prop::collection::vec((arb_key(), arb_json()), 0..6),
    ) {
        let mut object = Map::new();
        object.insert("model".into(), Value::from("m"));
        object.insert("messages".into(), Value::Array(messages));
        object.extend(extra);
        check_all(Value::Object(object).to_string().as_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_all(&bytes);
    }
}
