//! The Anthropic translation against hand-written Messages API fixtures
//! (`tests/fixtures/`), served by a mock on 127.0.0.1: the request the
//! upstream receives, whole answers, streams, and error events before and
//! after output.

mod support;

use api::{ChatCompletionChunk, FinishReason, Role};
use futures_util::StreamExt;
use gateway::{
    BackendConfig, BackendKind, FailureKind, Gateway, GatewayError, GatewayReply, RouteOptions,
};
use serde_json::json;
use support::{config, model, openai, short_timeouts, Behavior, Mock};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

fn anthropic(id: &str, url: &str, priority: u32) -> BackendConfig {
    BackendConfig {
        kind: BackendKind::Anthropic,
        model: Some("claude-sonnet-4-20250514".into()),
        api_key: Some("sk-ant-test".into()),
        priority,
        ..openai(id, url, priority)
    }
}

async fn gateway_over(mock: &Mock) -> Gateway {
    let mut entry = anthropic("claude", &mock.base_url(), 0);
    entry.timeouts = short_timeouts();
    Gateway::builder(config(vec![model("m", vec![entry])], 60_000))
        .build()
        .expect("valid")
}

fn request(stream: bool) -> api::ChatCompletionRequest {
    serde_json::from_value(json!({
        "model": "m",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "How are you?"}
        ],
        "temperature": 1.6,
        "top_p": 0.9,
        "stop": ["END"],
        "user": "user-42"
    }))
    .expect("valid request")
}

async fn stream_of(
    gateway: &Gateway,
    req: api::ChatCompletionRequest,
) -> (Vec<ChatCompletionChunk>, Option<GatewayError>) {
    let reply = gateway
        .chat(req, RouteOptions::default())
        .await
        .expect("routed");
    let GatewayReply::Stream(mut stream, _) = reply else {
        panic!("expected a stream");
    };
    let mut chunks = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => chunks.push(chunk),
            Err(err) => return (chunks, Some(err)),
        }
    }
    (chunks, None)
}

#[tokio::test]
async fn whole_answer_and_the_request_sent() {
    let mock = Mock::start(
        "a",
        Behavior::Raw {
            content_type: "application/json",
            body: fixture("messages_whole.json"),
        },
    )
    .await;
    let gateway = gateway_over(&mock).await;
    let GatewayReply::Whole(answer, served) = gateway
        .chat(request(false), RouteOptions::default())
        .await
        .expect("answered")
    else {
        panic!("expected a whole answer");
    };
    assert_eq!(served.backend, "claude");
    assert_eq!(answer.object, "chat.completion");
    assert_eq!(answer.model, "m");
    assert_eq!(answer.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
    let choice = &answer.choices[0];
    assert_eq!(choice.message.role, Role::Assistant);
    assert_eq!(
        choice.message.content.as_deref(),
        Some("Hello! How can I help you today?")
    );
    assert_eq!(choice.finish_reason, FinishReason::Stop);
    let usage = answer.usage.expect("usage");
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (12, 10, 22)
    );

    let sent = &mock.recorded()[0];
    assert_eq!(sent.line, "POST /v1/messages");
    let header = |name: &str| {
        sent.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(header("authorization"), None);
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-sonnet-4-20250514",
            "system": "Be brief.\n\nAnswer in English.",
            "messages": [
                {"role": "user", "content": "Hi\n\nthere"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "How are you?"}
            ],
            "max_tokens": 256,
            "temperature": 1.0,
            "top_p": 0.9,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "user-42"}
        })
    );
}

#[tokio::test]
async fn max_tokens_and_cache_usage() {
    let mock = Mock::start(
        "a",
        Behavior::Raw {
            content_type: "application/json",
            body: fixture("messages_max_tokens.json"),
        },
    )
    .await;
    let gateway = gateway_over(&mock).await;
    let mut req = request(false);
    req.max_completion_tokens = Some(8);
    let Ok(GatewayReply::Whole(answer, _)) = gateway.chat(req, RouteOptions::default()).await
    else {
        panic!("expected a whole answer");
    };
    assert_eq!(answer.choices[0].finish_reason, FinishReason::Length);
    let usage = answer.usage.expect("usage");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (126, 8));
    assert_eq!(
        usage.prompt_tokens_details.expect("details").cached_tokens,
        100
    );
    assert_eq!(mock.recorded()[0].body["max_tokens"], 8);
}

#[tokio::test]
async fn streamed_answer_becomes_openai_chunks() {
    let mock = Mock::start(
        "a",
        Behavior::Raw {
            content_type: "text/event-stream",
            body: fixture("messages_stream.sse"),
        },
    )
    .await;
    let gateway = gateway_over(&mock).await;
    let mut req = request(true);
    req.stream_options = Some(api::StreamOptions {
        include_usage: Some(true),
    });
    let (chunks, end) = stream_of(&gateway, req).await;
    assert!(end.is_none(), "{end:?}");
    assert_eq!(mock.recorded()[0].body["stream"], true);
    for chunk in &chunks {
        assert_eq!(chunk.object, "chat.completion.chunk");
        assert_eq!(chunk.id, "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY");
        assert_eq!(chunk.model, "m");
    }
    assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    let text: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(text, "Hello! How are you?");
    let finishes: Vec<FinishReason> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.finish_reason)
        .collect();
    assert_eq!(finishes, vec![FinishReason::Stop]);
    let last = chunks.last().expect("chunks");
    assert!(last.choices.is_empty());
    let usage = last.usage.as_ref().expect("usage chunk");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (25, 15));
    // Only the last chunk carries usage; the others say `null`.
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c.usage.is_none() && c.null_usage));
}

#[tokio::test]
async fn error_event_after_output_interrupts_with_usage() {
    let mock = Mock::start(
        "a",
        Behavior::Raw {
            content_type: "text/event-stream",
            body: fixture("messages_stream_error.sse"),
        },
    )
    .await;
    let gateway = gateway_over(&mock).await;
    let (chunks, end) = stream_of(&gateway, request(true)).await;
    let text: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(text, "Once upon a time");
    let Some(GatewayError::Interrupted {
        kind,
        usage,
        detail,
    }) = end
    else {
        panic!("expected Interrupted, got {end:?}");
    };
    assert_eq!(kind, FailureKind::Status { status: 529 });
    assert!(detail.contains("overloaded_error"), "{detail}");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (25, 2));
}

#[tokio::test]
async fn error_event_before_output_fails_over() {
    let mock = Mock::start(
        "a",
        Behavior::Raw {
            content_type: "text/event-stream",
            body: fixture("messages_stream_error_first.sse"),
        },
    )
    .await;
    let good = Mock::start("good", Behavior::Ok { words: 2 }).await;
    let gateway = Gateway::builder(config(
        vec![model(
            "m",
            vec![
                anthropic("claude", &mock.base_url(), 0),
                openai("good", &good.base_url(), 1),
            ],
        )],
        60_000,
    ))
    .build()
    .expect("valid");
    let (chunks, end) = stream_of(&gateway, request(true)).await;
    assert!(end.is_none());
    assert!(chunks.iter().all(|c| c.model == "m"));
    assert_eq!(good.chat_requests(), 1);
    assert_eq!(mock.chat_requests(), 1);
}

#[tokio::test]
async fn tools_reach_upstream_as_anthropic_tools() {
    let mock = Mock::start(
        "a",
        Behavior::Raw {
            content_type: "application/json",
            body: fixture("messages_whole.json"),
        },
    )
    .await;
    let gateway = gateway_over(&mock).await;
    let mut req = request(false);
    req.tools = Some(vec![serde_json::from_value(json!({
        "type": "function", "function": {"name": "f", "parameters": {"type": "object"}}
    }))
    .expect("tool")]);
    req.tool_choice = Some(serde_json::from_value(json!("required")).expect("choice"));
    gateway
        .chat(req, RouteOptions::default())
        .await
        .expect("answered");
    let sent = &mock.recorded()[0];
    assert_eq!(
        sent.body["tools"],
        json!([{"name": "f", "input_schema": {"type": "object"}}])
    );
    assert_eq!(sent.body["tool_choice"], json!({"type": "any"}));
}
