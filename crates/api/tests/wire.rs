//! Wire shapes: realistic requests parse and round-trip, and responses
//! serialise exactly as the `openai` SDK expects them.

use api::{
    parse_request, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionMessage,
    ChatCompletionRequest, ChatMessage, ChoiceLogprobs, ChunkChoice, ChunkDelta, Completion,
    CompletionChoice, CompletionRequest, ContentPart, DetokenizeRequest, DetokenizeResponse,
    FinishReason, MessageContent, Model, ModelList, Piece, Prompt, PromptInput, ResponseFormat,
    Stop, TokenLogprob, TokenizeRequest, TokenizeResponse, TokenizeToken, ToolChoice, TopLogprob,
    Usage,
};
use serde_json::{json, Value};

fn chat(body: Value) -> ChatCompletionRequest {
    parse_request(body.to_string().as_bytes()).unwrap()
}

/// A request as the openai-python README sends it, plus most options.
fn full_chat_body() -> Value {
    json!({
        "model": "qwen2.5-0.5b-instruct",
        "messages": [
            {"role": "developer", "content": "Talk like a pirate."},
            {"role": "system", "content": "Be brief.", "name": "ops"},
            {"role": "user", "content": [{"type": "text", "text": "How do I check "},
                                         {"type": "text", "text": "if a list is empty?"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            {"role": "assistant", "content": "Arr."}
        ],
        "temperature": 0.7,
        "top_p": 0.9,
        "n": 2,
        "stream": true,
        "stream_options": {"include_usage": true},
        "stop": ["\n\n", "END"],
        "max_tokens": 64,
        "max_completion_tokens": 32,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logit_bias": {"50256": -100, "15": 2.5},
        "logprobs": true,
        "top_logprobs": 3,
        "seed": 1234,
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "answer", "schema": {"type": "object"}, "strict": true}},
        "tools": [{"type": "function", "function": {
            "name": "lookup", "description": "Look up", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "user": "user-1234"
    })
}

#[test]
fn realistic_chat_request_round_trips() {
    let body = full_chat_body();
    let request = chat(body.clone());
    assert_eq!(request.messages.len(), 6);
    assert_eq!(request.max_output_tokens(), Some(32));
    assert_eq!(request.choice_count(), 2);
    assert!(request.include_usage());
    assert_eq!(request.stop_sequences(), ["\n\n", "END"]);
    assert_eq!(request.logit_bias.as_ref().unwrap()["50256"], -100.0);
    assert_eq!(
        request.tool_choice,
        Some(ToolChoice::Mode(api::ToolChoiceMode::Auto))
    );
    assert!(matches!(
        request.response_format,
        Some(ResponseFormat::JsonSchema { .. })
    ));
    let again: ChatCompletionRequest =
        serde_json::from_value(serde_json::to_value(&request).unwrap()).unwrap();
    assert_eq!(again, request);
    // Every key we were sent comes back out, with the same value.
    let out = serde_json::to_value(&request).unwrap();
    for (key, value) in body.as_object().unwrap() {
        if key != "messages" && key != "logit_bias" {
            assert_eq!(&out[key], value, "{key}");
        }
    }
}

#[test]
fn minimal_chat_request_has_defaults() {
    let request = chat(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(request.max_output_tokens(), None);
    assert_eq!(request.choice_count(), 1);
    assert!(!request.is_stream());
    assert!(!request.include_usage());
    assert!(request.stop_sequences().is_empty());
    assert_eq!(request.messages[0].role(), "user");
    assert_eq!(request.messages[0].content().unwrap().text(), "hi");
}

#[test]
fn include_usage_needs_stream() {
    let request = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "stream_options": {"include_usage": true}}),
    );
    assert!(!request.include_usage());
}

#[test]
fn unknown_harmless_fields_are_ignored() {
    let request = chat(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi", "some_future_field": 1}],
        "metadata": {"team": "a"},
        "store": true,
        "service_tier": "auto",
        "reasoning_effort": "low",
        "prompt_cache_key": "k",
        "safety_identifier": "s",
        "modalities": ["text"],
        "a_field_nobody_has_heard_of": [1, 2, {"x": null}]
    }));
    assert_eq!(request.model, "m");
}

#[test]
fn content_parts_join_to_text() {
    let request = chat(full_chat_body());
    let content = request.messages[2].content().unwrap();
    assert!(matches!(content, MessageContent::Parts(parts) if parts.len() == 2));
    assert_eq!(content.text(), "How do I check if a list is empty?");
    assert!(matches!(
        &request.messages[3],
        ChatMessage::Assistant { content: None, tool_calls: Some(calls), .. } if calls.len() == 1
    ));
    assert!(
        matches!(&request.messages[4], ChatMessage::Tool { tool_call_id, .. } if tool_call_id == "call_1")
    );
}

#[test]
fn image_part_is_kept_as_other() {
    let part: ContentPart =
        serde_json::from_value(json!({"type": "image_url", "image_url": {"url": "x"}})).unwrap();
    assert!(matches!(part, ContentPart::Other(_)));
    let part: ContentPart = serde_json::from_value(json!({"type": "text", "text": "t"})).unwrap();
    assert_eq!(part, ContentPart::Text { text: "t".into() });
}

#[test]
fn stop_as_string_and_as_list() {
    let one = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "stop": "\n"}),
    );
    assert_eq!(one.stop, Some(Stop::One("\n".into())));
    assert_eq!(one.stop_sequences(), ["\n"]);
    let many = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "stop": ["a", "b", "c", "d"]}),
    );
    assert_eq!(many.stop_sequences(), ["a", "b", "c", "d"]);
    let null = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "stop": null}),
    );
    assert_eq!(null.stop, None);
}

fn completion(body: Value) -> CompletionRequest {
    parse_request(body.to_string().as_bytes()).unwrap()
}

#[test]
fn completion_prompt_shapes() {
    let text = completion(json!({"model": "m", "prompt": "Say this is a test"}));
    assert_eq!(
        text.prompt.inputs(),
        [PromptInput::Text("Say this is a test")]
    );
    assert_eq!(text.max_output_tokens(), 16);
    let texts = completion(json!({"model": "m", "prompt": ["a", "b"]}));
    assert_eq!(texts.prompt, Prompt::Texts(vec!["a".into(), "b".into()]));
    let tokens = completion(json!({"model": "m", "prompt": [1212, 318, 257]}));
    assert_eq!(
        tokens.prompt.inputs(),
        [PromptInput::Tokens(&[1212, 318, 257])]
    );
    let lists = completion(json!({"model": "m", "prompt": [[1, 2], [3]], "n": 2}));
    assert_eq!(lists.prompt, Prompt::TokenLists(vec![vec![1, 2], vec![3]]));
    assert_eq!(lists.prompt.inputs().len(), 2);
    assert_eq!(lists.choice_count(), 2);
    let again: CompletionRequest =
        serde_json::from_value(serde_json::to_value(&lists).unwrap()).unwrap();
    assert_eq!(again, lists);
}

#[test]
fn chat_completion_serialises_every_required_key() {
    let logprobs = ChoiceLogprobs {
        content: Some(vec![TokenLogprob {
            token: "Hi".into(),
            logprob: -0.25,
            bytes: Some(b"Hi".to_vec()),
            top_logprobs: vec![TopLogprob {
                token: "Hi".into(),
                logprob: -0.25,
                bytes: Some(vec![72, 105]),
            }],
        }]),
        refusal: None,
    };
    let completion = ChatCompletion::new(
        "chatcmpl-1",
        1_700_000_000,
        "m",
        vec![ChatChoice {
            index: 0,
            message: ChatCompletionMessage::assistant("Hi"),
            logprobs: Some(logprobs),
            finish_reason: FinishReason::Stop,
        }],
        Usage::new(10, 1, 4),
    );
    let value = serde_json::to_value(&completion).unwrap();
    assert_eq!(value["object"], "chat.completion");
    let choice = &value["choices"][0];
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        choice["message"],
        json!({"role": "assistant", "content": "Hi", "refusal": null})
    );
    let token = &choice["logprobs"]["content"][0];
    assert_eq!(token["bytes"], json!([72, 105]));
    assert_eq!(token["top_logprobs"][0]["logprob"], -0.25);
    assert!(choice["logprobs"]["refusal"].is_null());
    assert_eq!(
        value["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11,
               "prompt_tokens_details": {"cached_tokens": 4},
               "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    let back: ChatCompletion = serde_json::from_value(value).unwrap();
    assert_eq!(back, completion);
}

#[test]
fn null_logprobs_and_length_finish() {
    let choice = ChatChoice {
        index: 1,
        message: ChatCompletionMessage::assistant(""),
        logprobs: None,
        finish_reason: FinishReason::Length,
    };
    let value = serde_json::to_value(choice).unwrap();
    assert!(value.as_object().unwrap().contains_key("logprobs"));
    assert!(value["logprobs"].is_null());
    assert_eq!(value["finish_reason"], "length");
}

fn opening_choice() -> ChunkChoice {
    ChunkChoice {
        index: 0,
        delta: ChunkDelta::opening(),
        logprobs: None,
        finish_reason: None,
    }
}

#[test]
fn chunk_writes_usage_null_under_include_usage() {
    let chunk = ChatCompletionChunk::new("chatcmpl-1", 7, "m", vec![opening_choice()], true);
    let value = serde_json::to_value(&chunk).unwrap();
    assert!(value.as_object().unwrap().contains_key("usage"));
    assert!(value["usage"].is_null());
    assert_eq!(value["object"], "chat.completion.chunk");
    assert_eq!(
        value["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert!(value["choices"][0]["finish_reason"].is_null());
    assert!(value["choices"][0]
        .as_object()
        .unwrap()
        .contains_key("logprobs"));
}

#[test]
fn chunk_omits_usage_without_include_usage() {
    let chunk = ChatCompletionChunk::new("chatcmpl-1", 7, "m", vec![opening_choice()], false);
    let value = serde_json::to_value(&chunk).unwrap();
    assert!(!value.as_object().unwrap().contains_key("usage"));
}

#[test]
fn final_usage_chunk_has_empty_choices() {
    let chunk = ChatCompletionChunk::usage_only("chatcmpl-1", 7, "m", Usage::new(3, 2, 0));
    let value = serde_json::to_value(&chunk).unwrap();
    assert_eq!(value["choices"], json!([]));
    assert_eq!(value["usage"]["total_tokens"], 5);
    let back: ChatCompletionChunk = serde_json::from_value(value).unwrap();
    assert_eq!(back.usage, chunk.usage);
}

#[test]
fn last_content_chunk_carries_finish_reason() {
    let choice = ChunkChoice {
        index: 0,
        delta: ChunkDelta::text("!"),
        logprobs: None,
        finish_reason: Some(FinishReason::Stop),
    };
    let chunk = ChatCompletionChunk::new("id", 1, "m", vec![choice], true);
    let text = serde_json::to_string(&chunk).unwrap();
    assert!(text.contains(r#""delta":{"content":"!"}"#), "{text}");
    assert!(text.contains(r#""finish_reason":"stop""#), "{text}");
    assert!(text.ends_with(r#""usage":null}"#), "{text}");
}

#[test]
fn legacy_completion_shape() {
    let mut completion = Completion::new(
        "cmpl-1",
        1,
        "m",
        vec![CompletionChoice {
            text: " test".into(),
            index: 0,
            logprobs: None,
            finish_reason: Some(FinishReason::Length),
        }],
    );
    completion.usage = Some(Usage::new(5, 1, 0));
    let value = serde_json::to_value(&completion).unwrap();
    assert_eq!(value["object"], "text_completion");
    assert_eq!(
        value["choices"][0],
        json!({"text": " test", "index": 0, "logprobs": null, "finish_reason": "length"})
    );
}

#[test]
fn model_list_shape() {
    let list = ModelList::new(vec![Model::new("org/model-7b", 1, "parlance")]);
    assert_eq!(
        serde_json::to_value(list).unwrap(),
        json!({"object": "list", "data": [
            {"id": "org/model-7b", "object": "model", "created": 1, "owned_by": "parlance"}]})
    );
}

#[test]
fn tokenize_shapes() {
    let request: TokenizeRequest =
        parse_request(br#"{"content": "Hello", "add_special": true, "with_pieces": false}"#)
            .unwrap();
    assert_eq!(request.add_special, Some(true));
    let plain = TokenizeResponse {
        tokens: vec![TokenizeToken::Id(9906)],
    };
    assert_eq!(
        serde_json::to_value(plain).unwrap(),
        json!({"tokens": [9906]})
    );
    let pieces = TokenizeResponse {
        tokens: vec![
            TokenizeToken::WithPiece {
                id: 9906,
                piece: Piece::from_bytes(b"Hello".to_vec()),
            },
            TokenizeToken::WithPiece {
                id: 1,
                piece: Piece::from_bytes(vec![0xe2, 0x82]),
            },
        ],
    };
    assert_eq!(
        serde_json::to_value(pieces).unwrap(),
        json!({"tokens": [{"id": 9906, "piece": "Hello"}, {"id": 1, "piece": [226, 130]}]})
    );
    let detok: DetokenizeRequest = parse_request(br#"{"tokens": [9906, 11]}"#).unwrap();
    assert_eq!(detok.tokens, [9906, 11]);
    let answer = DetokenizeResponse {
        content: "Hello,".into(),
    };
    assert_eq!(
        serde_json::to_value(answer).unwrap(),
        json!({"content": "Hello,"})
    );
}

#[test]
fn sse_frames_a_chunk() {
    let chunk = ChatCompletionChunk::new("id", 1, "m", vec![opening_choice()], false);
    let event = api::sse_data(&chunk);
    assert!(event.starts_with("data: {\"id\":\"id\""));
    assert!(event.ends_with("}\n\n"));
    assert_eq!(api::SSE_DONE, "data: [DONE]\n\n");
}
