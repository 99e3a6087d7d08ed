//! Tools and structured output through the gateway to an OpenAI-compatible
//! upstream: `tools`, `tool_choice`, `parallel_tool_calls` and
//! `response_format` reach it as sent.

mod support;

use gateway::{Gateway, RouteOptions};
use serde_json::json;
use support::{config, model, openai, Behavior, Mock};

#[tokio::test]
async fn tools_and_response_format_pass_through() {
    let mock = Mock::start("a", Behavior::Ok { words: 1 }).await;
    let gateway = Gateway::builder(config(
        vec![model("m", vec![openai("o", &mock.base_url(), 0)])],
        60_000,
    ))
    .build()
    .expect("valid");
    let tools = json!([{"type": "function", "function": {"name": "f", "strict": true,
        "parameters": {"type": "object", "properties": {}, "additionalProperties": false}}}]);
    let format = json!({"type": "json_schema", "json_schema": {"name": "s",
        "schema": {"type": "object"}, "strict": true}});
    let req: api::ChatCompletionRequest = serde_json::from_value(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": false,
        "response_format": format,
    }))
    .expect("valid");
    gateway
        .chat(req, RouteOptions::default())
        .await
        .expect("answered");
    let sent = &mock.recorded()[0].body;
    assert_eq!(sent["tools"], tools);
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(sent["parallel_tool_calls"], json!(false));
    assert_eq!(sent["response_format"], format);
}
