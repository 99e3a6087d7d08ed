//! The `openai` backend: any OpenAI-compatible server (a hosted provider,
//! vLLM, llama.cpp's server, another Parlance) at a base URL such as
//! `https://api.openai.com/v1`, with its own bearer key.
//!
//! Requests are forwarded as they are (the router has already set `model`
//! to the upstream's name and, for streams, `include_usage`). Streams are
//! read as SSE: `data: {chunk}` events, comments skipped, `[DONE]` ends
//! the stream, a `data: {"error": …}` event is an upstream failure, and a
//! body that ends without `[DONE]` was dropped. Embeddings and moderations
//! are posted to `embeddings` and `moderations` and read whole.

use std::time::Duration;

use api::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, EmbeddingList, EmbeddingRequest,
    Moderation, ModerationRequest,
};
use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use reqwest::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::{Backend, ChatReply, ChunkStream};
use crate::error::{BackendError, FailureKind};
use crate::http;

/// How long an upstream may take, as the backend enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// Making the connection.
    pub connect: Duration,
    /// From sending the request to the response head.
    pub headers: Duration,
    /// Reading a whole (non-streamed) body after the head.
    pub request: Duration,
}

/// An OpenAI-compatible upstream.
#[derive(Debug, Clone)]
pub struct OpenAiBackend {
    client: Client,
    base_url: String,
    api_key: Option<String>,
    health_path: String,
    timeouts: HttpTimeouts,
}

impl OpenAiBackend {
    /// A backend for `base_url` (which includes `/v1`), sending `api_key`
    /// as a bearer token when given; `health_path` is probed with `GET`.
    pub fn new(
        base_url: impl Into<String>,
        api_key: Option<String>,
        health_path: impl Into<String>,
        timeouts: HttpTimeouts,
    ) -> Result<Self, String> {
        Ok(OpenAiBackend {
            client: http::client(timeouts.connect)?,
            base_url: base_url.into(),
            api_key,
            health_path: health_path.into(),
            timeouts,
        })
    }

    /// Posts `body` as JSON to `path` and reads the whole answer.
    fn post_json<B, T>(&self, path: &str, body: &B) -> BoxFuture<'static, Result<T, BackendError>>
    where
        B: Serialize,
        T: DeserializeOwned + Send + 'static,
    {
        let builder = self.post(path);
        let timeouts = self.timeouts;
        let body = serde_json::to_vec(body).map_err(|err| {
            BackendError::new(
                FailureKind::Unsupported,
                format!("unencodable request: {err}"),
            )
        });
        Box::pin(async move {
            let builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body?);
            let response = http::send(builder, timeouts.headers).await?;
            http::read_json(response, timeouts.request).await
        })
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client.post(http::join(&self.base_url, path));
        match &self.api_key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }
}

impl Backend for OpenAiBackend {
    fn kind(&self) -> &'static str {
        "openai"
    }

    fn chat(
        &self,
        request: ChatCompletionRequest,
    ) -> BoxFuture<'static, Result<ChatReply, BackendError>> {
        let builder = self.post("chat/completions");
        let timeouts = self.timeouts;
        Box::pin(async move {
            let body = serde_json::to_vec(&request).map_err(|err| {
                BackendError::new(
                    FailureKind::Unsupported,
                    format!("unencodable request: {err}"),
                )
            })?;
            let builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            let response = http::send(builder, timeouts.headers).await?;
            if request.is_stream() {
                Ok(ChatReply::Stream(chunk_stream(response)))
            } else {
                let whole: ChatCompletion = http::read_json(response, timeouts.request).await?;
                Ok(ChatReply::Whole(whole))
            }
        })
    }

    fn embeddings(
        &self,
        request: EmbeddingRequest,
    ) -> BoxFuture<'static, Result<EmbeddingList, BackendError>> {
        self.post_json("embeddings", &request)
    }

    fn moderations(
        &self,
        request: ModerationRequest,
    ) -> BoxFuture<'static, Result<Moderation, BackendError>> {
        self.post_json("moderations", &request)
    }

    fn health(&self) -> BoxFuture<'static, Result<(), BackendError>> {
        let url = http::join(&self.base_url, &self.health_path);
        let mut builder = self.client.get(url);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let headers = self.timeouts.headers;
        Box::pin(async move { http::send(builder, headers).await.map(drop) })
    }
}

/// Where a stream is: still going, or finished by `[DONE]` or an error.
enum Phase {
    Open,
    Closed,
}

/// The chunks of an OpenAI-style SSE body.
fn chunk_stream(response: reqwest::Response) -> ChunkStream {
    let events = http::sse_events(response);
    stream::unfold(
        (events, Phase::Open, false),
        |(mut events, phase, mut produced)| async move {
            if matches!(phase, Phase::Closed) {
                return None;
            }
            loop {
                let item = match events.next().await {
                    None => Err(BackendError::new(
                        FailureKind::Dropped,
                        "the stream ended without [DONE]",
                    )),
                    Some(Err(err)) => Err(err),
                    Some(Ok(event)) => match decode_event(&event.data) {
                        Decoded::Skip => continue,
                        Decoded::Done => return None,
                        Decoded::Chunk(chunk) => Ok(*chunk),
                        Decoded::Failed(err) => Err(err),
                    },
                };
                return Some(match item {
                    Ok(chunk) => {
                        produced = true;
                        (Ok(chunk), (events, Phase::Open, produced))
                    }
                    Err(mut err) => {
                        err.produced = produced;
                        (Err(err), (events, Phase::Closed, produced))
                    }
                });
            }
        },
    )
    .boxed()
}

enum Decoded {
    Skip,
    Done,
    Chunk(Box<ChatCompletionChunk>),
    Failed(BackendError),
}

/// One `data:` payload of an OpenAI stream.
fn decode_event(data: &str) -> Decoded {
    let data = data.trim();
    if data.is_empty() {
        return Decoded::Skip;
    }
    if data == "[DONE]" {
        return Decoded::Done;
    }
    let value: serde_json::Value = match serde_json::from_str(data) {
        Ok(value) => value,
        Err(err) => {
            return Decoded::Failed(BackendError::new(
                FailureKind::Decode,
                format!("undecodable stream event ({err}): {}", clip(data)),
            ))
        }
    };
    if let Some(error) = value.get("error") {
        let message = error
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("an error event without a message");
        return Decoded::Failed(BackendError::new(
            FailureKind::Status { status: 0 },
            format!("upstream error event: {message}"),
        ));
    }
    match serde_json::from_value::<ChatCompletionChunk>(value) {
        Ok(chunk) => Decoded::Chunk(Box::new(chunk)),
        Err(err) => Decoded::Failed(BackendError::new(
            FailureKind::Decode,
            format!("a stream event is not a chunk ({err}): {}", clip(data)),
        )),
    }
}

fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_and_blank_events() {
        assert!(matches!(decode_event("[DONE]"), Decoded::Done));
        assert!(matches!(decode_event(" "), Decoded::Skip));
    }

    #[test]
    fn error_event_is_a_failure() {
        let Decoded::Failed(err) = decode_event(r#"{"error":{"message":"overloaded"}}"#) else {
            panic!("expected a failure");
        };
        assert_eq!(err.kind, FailureKind::Status { status: 0 });
        assert!(err.detail.contains("overloaded"));
    }

    #[test]
    fn garbage_is_a_decode_failure() {
        let Decoded::Failed(err) = decode_event("{not json") else {
            panic!("expected a failure");
        };
        assert_eq!(err.kind, FailureKind::Decode);
    }

    #[test]
    fn chunk_decodes() {
        let data = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",
            "choices":[{"index":0,"delta":{"content":"hi"},"logprobs":null,"finish_reason":null}]}"#;
        let Decoded::Chunk(chunk) = decode_event(data) else {
            panic!("expected a chunk");
        };
        assert_eq!(chunk.choices[0].delta.content.as_deref(), Some("hi"));
    }
}
